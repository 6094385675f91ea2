"""The core's one exception type. The rest of bmpose re-uses it (bmpose.errors.BmposeError is this class),
so the device bundle can ship `pose/` alone and still raise what the CLI reports on one line."""


class PoseError(Exception):
    """Bad input or a failed check. The message names the file and the problem, on one line."""
