"""Finetuning: config, data + augmentation, targets, loss, optimiser, loop, checkpoints (issue 3)."""
