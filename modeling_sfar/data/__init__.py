"""Video datasets and the text sets a label set reads: loading and checking datasets, reading videos for a run,
the embedded storyboard benchmark, sub-text sets and entity corpora as Hugging Face datasets."""
