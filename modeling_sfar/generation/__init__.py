"""Writing the texts of a label set with local language models: sub-texts (selected by TPP) and entity corpora."""
