"""Training with the Trainer and Accelerate: arguments, the video transform and augmentation, the Trainer, the run."""
