"""empanada-desktop: finetune empanada organelle-segmentation models on your own EM images."""

__version__ = "0.1.0"
