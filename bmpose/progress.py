"""Progress bars and the lines printed while one is open, in one place so a bar frame and a log line never
share a line. Bars draw on stderr only when it is a terminal (tqdm's disable=None): captured output (CI,
pipes, log files) gets no carriage-return frames, only the log lines."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def bar(total: int, desc: str, unit: str = "it", show: bool = True):
    """A tqdm bar on stderr that erases itself when done (leave=False), also when the body raises."""
    b = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None if show else True, file=sys.stderr)
    try:
        yield b
    finally:
        b.close()


def say(line: str, file=None) -> None:
    """Print a line (stdout unless file is given); an open bar is erased first and redrawn under it."""
    tqdm.write(line, file=file if file is not None else sys.stdout)
