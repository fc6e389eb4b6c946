"""Torch layer: devices, models, training and inference. Knows nothing about Qt."""
