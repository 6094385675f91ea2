"""The chip simulator's C code prints to the process's own stdout/stderr ("bmcpu init: skip cpu_user_defined",
"Cannot open libusercpu.so", "[0] do_allreduce: 0.", "BMLIB Send Quit Message" at exit): chatter, not bmpose's
output, and the "Cannot open" line reads like an error that is not one. Python's sys.stdout cannot catch it;
this redirects the file descriptors themselves while such code runs, and keeps what it printed for an error
message."""
from __future__ import annotations

import atexit
import ctypes
import os
import sys
import tempfile
from contextlib import contextmanager

_LIBC = ctypes.CDLL(None)
_AT_EXIT = []


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    _LIBC.fflush(None)   # C stdio buffers, or the chatter lands after the descriptors are restored


@contextmanager
def quiet_c_output():
    """fd 1 and 2 into a temporary file for the block; yields a list that holds what was printed afterwards."""
    printed: list[str] = []
    _flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield printed
        finally:
            _flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            printed.append(tmp.read().decode(errors="replace"))


def quiet_at_exit() -> None:
    """The simulator's runtime prints again when it is torn down after Python's own exit: send fd 1 and 2 to
    /dev/null then (registered once, by the first simulator opened; everything bmpose prints is out by then)."""
    if _AT_EXIT:
        return

    def silence():
        _flush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)

    _AT_EXIT.append(silence)
    atexit.register(silence)
