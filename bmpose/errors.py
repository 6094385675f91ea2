"""The one exception type for user-facing failures: the CLI prints its message on one line and exits 1.

It is the core's own `PoseError` (bmpose.pose.errors), re-used under the name the rest of bmpose knows, so an
error raised on the device by the shipped core and one raised by the build are the same type.
"""
from bmpose.pose.errors import PoseError as BmposeError

__all__ = ["BmposeError"]
