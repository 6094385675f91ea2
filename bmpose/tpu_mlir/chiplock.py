"""Keep simulator runs of different chips apart, with locks the kernel drops when a process dies.

TPU-MLIR's cmodel is one shared library switched by a symlink (lib/libcmodel.so -> libcmodel_<chip>.so).
Its model_runner can keep chips apart (CMODEL_LOCKFILE, `ChipLock`) with a counter in a file ("BM1684X:1")
that a process killed mid-run never decrements: every later run of another chip then waits forever (seen:
after an interrupted BM1684X build, a BM1684 build hung in model_runner). bmpose uses this lock instead,
built on flock, which the kernel releases however a process ends: a run of chip X holds
<tmp>/bmpose_cmodel.<X>.lock shared while it runs; to start, it takes the <tmp>/bmpose_cmodel.lock mutex and
checks that no other chip's file is held. TPU-MLIR's own counter then gets a private file per run
(bmpose.tpu_mlir.runner), where a leak cannot outlive the run.
"""
from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from pathlib import Path
from typing import Iterator

LOCK_DIR = Path(tempfile.gettempdir())


def _path(chip: str) -> Path:
    return LOCK_DIR / f"bmpose_cmodel.{chip.upper()}.lock"


def _other_chip_running(chip: str) -> bool:
    for p in LOCK_DIR.glob("bmpose_cmodel.*.lock"):
        if p == _path(chip):
            continue
        with open(p, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def chip_lock(chip: str, poll: float = 0.5) -> Iterator[None]:
    """Hold `chip`'s simulator: runs of the same chip share it, a run of another chip waits."""
    mine = open(_path(chip), "a")
    try:
        while True:
            with open(LOCK_DIR / "bmpose_cmodel.lock", "a") as mutex:
                fcntl.flock(mutex, fcntl.LOCK_EX)
                if not _other_chip_running(chip):
                    fcntl.flock(mine, fcntl.LOCK_SH)
                    break
            time.sleep(poll)
        yield
    finally:
        mine.close()   # closing the file drops its lock
