"""Training data: picking patches, the training set, its gallery and the autosave."""
