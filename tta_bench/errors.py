"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (missing folder, wrong layout, unknown name...): the message says what was
    expected and where."""


class DataError(UserError):
    """A dataset on disk is not what its suite expects (layout, size, a corrupt file)."""


class ReportError(UserError, ValueError):
    """A table, plot or check that cannot be made from the given run folders or files (a ValueError too, for callers
    of the Python API that catch the built-in)."""
