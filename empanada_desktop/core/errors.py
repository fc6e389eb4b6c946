"""Errors whose message is written for the person using the app.

The CLI prints a ``UserError`` without a traceback and exits with status 2; the UI shows it in a
message box. Each message names the file or field at fault and says what to do about it.
"""


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole explanation."""


class ConfigError(UserError):
    """A setting or a config file is invalid."""


class ImageReadError(UserError):
    """An image file cannot be read or has an unsupported shape or type."""


class DatasetError(UserError):
    """A training or validation folder does not follow empanada's layout."""


class ModelLoadError(UserError):
    """A model file cannot be loaded or does not follow empanada's contract."""


class RegistryError(UserError):
    """A model registry operation cannot be done (unknown name, name taken, ...)."""
