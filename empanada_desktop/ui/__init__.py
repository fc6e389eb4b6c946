"""PySide6 + pyqtgraph desktop interface over the backend, in rooms that import downwards only:
``shell`` (start-up, main window; its base: worker, messages, theme, settings, screen registry),
``wizard`` (finetuning), ``models`` (model manager, inference), ``training_data`` (patches, the
training set, autosave) and ``viewer`` (document, viewer, labels layer, annotation)."""
