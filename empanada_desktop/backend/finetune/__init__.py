"""Finetuning: config, data + augmentation, targets, loss, optimiser, loop, checkpoints, run folder."""
