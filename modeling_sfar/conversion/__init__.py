"""Building models from CLIP checkpoints: the weight renaming (a small pure function) and the converters."""
