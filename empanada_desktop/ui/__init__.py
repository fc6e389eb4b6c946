"""PySide6 + pyqtgraph desktop interface over the backend."""
