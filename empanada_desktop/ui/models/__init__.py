"""Models: the model manager and the inference panel."""
