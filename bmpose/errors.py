"""The one exception type for user-facing failures: the CLI prints its message on one line and exits 1."""


class BmposeError(Exception):
    """Bad input or a failed check. The message names the file and the problem, on one line."""
