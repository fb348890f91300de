"""The project's own error types: a user error is a problem with what was asked for (a setting, a file, a folder)
whose message names it and the way on; scripts print it as ``error: ...`` and exit 2. Anything else is a bug and
shows its traceback.

A leaf module (imports nothing of the project).
"""


class UserError(ValueError):
    """Something the user asked for cannot be done as asked; the message names the setting, file or folder and
    what to do. (A ``ValueError`` so that code written against the older ``ConfigError(ValueError)`` still
    catches it.)"""


class ConfigError(UserError):
    """A bad preset file or option; the message names it."""


class FolderNotOwned(UserError):
    """A folder holds files this project did not write, so it will not remove, move or replace them."""
