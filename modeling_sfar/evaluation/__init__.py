"""Scoring a trained model on a video dataset: metrics, prediction with several views, the evaluation run."""
