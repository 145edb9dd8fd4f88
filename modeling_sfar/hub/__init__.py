"""Publishing to the Hub: cards, staging folders and one-commit pushes of model, dataset and Space repos."""
