"""Dataset builders and sub-text generation for SFAR."""
