"""The finetune wizard: model, data, settings, run, results (one file per page)."""
