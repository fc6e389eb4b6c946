"""The application shell: start-up, the main window, the worker thread, theme, screenshots."""
