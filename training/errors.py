"""The project's own error types, and how a script reports them.

A user error is a problem with what was asked for (a setting, a file, a folder, the network or the disk) whose message
names it and the way on: a script prints it as ``error: ...`` and exits 2. Anything else is a bug: it keeps its
traceback (a ``ValueError`` raised by a bug is not dressed up as the user's mistake).

Errors that cannot derive from ``UserError`` (an ``OSError`` such as a failed download or a full disk, an error of
``modeling/``, which imports nothing of ``training/``) say they are the user's with a class attribute
``user_error = True``. A file the user named that is missing or unreadable (``FileNotFoundError`` and its kin) is
the user's too: its message names the path.

A leaf module (imports nothing of the project).
"""

import functools
import sys
from collections.abc import Callable

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # Ctrl-C, as a shell reports it
FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class UserError(ValueError):
    """Something the user asked for cannot be done as asked; the message names the setting, file or folder and
    what to do. (A ``ValueError`` so that code written against the older ``ConfigError(ValueError)`` still
    catches it.)"""

    user_error = True


class ConfigError(UserError):
    """A bad preset file or option; the message names it."""


class FolderNotOwned(UserError):
    """A folder holds files this project did not write, so it will not remove, move or replace them."""


def is_user_error(error: BaseException) -> bool:
    return bool(getattr(error, "user_error", False)) or isinstance(error, FILE_ERRORS)


def script_main(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A script's ``main(argv) -> exit code`` that reports user errors as ``error: ...`` (exit 2) and Ctrl-C as
    exit 130, and lets every other exception through with its traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("\nInterrupted.", file=sys.stderr)
            return INTERRUPTED_EXIT
        except Exception as error:
            if not is_user_error(error):
                raise
            print(f"error: {error}", file=sys.stderr)
            return USER_ERROR_EXIT

    return wrapped
