"""Child processes that stop when bmpose is interrupted, without tracebacks of their own.

An interrupt (Ctrl-C, or SIGTERM/SIGHUP, which the CLI turns into KeyboardInterrupt) is answered by bmpose
alone: it stops its children, the stage's temporary output is removed on the way out (manifest.atomic_dir)
and the CLI prints one `interrupted` line. So children must neither outlive bmpose nor print their own
KeyboardInterrupt traceback:
- tool subprocesses (`run`) get a session of their own: a terminal's Ctrl-C reaches only bmpose, which then
  terminates the child's whole process group (TPU-MLIR's tools start tools of their own);
- worker processes (`quiet_sigint`) are started with SIGINT ignored, for life; bmpose answers a Ctrl-C by
  terminating them (multiprocessing's Pool.terminate).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import Iterator

GRACE_S = 5.0   # how long a terminated tool gets to exit before its process group is killed
# exit statuses that mean "stopped by SIGINT/SIGTERM": killed by the signal, or a shell's 128 + signal
INTERRUPTED = {-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}


def run(cmd: list, **popen_kwargs) -> int:
    """subprocess.run(cmd).returncode, in a session of its own; if bmpose is interrupted meanwhile, the
    child's process group is terminated before KeyboardInterrupt goes on, and a child that was itself stopped
    by SIGINT/SIGTERM raises KeyboardInterrupt too (an interrupt, not a failure to report)."""
    proc = subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)
    try:
        rc = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if rc in INTERRUPTED:
        raise KeyboardInterrupt
    return rc


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, then SIGKILL to whatever is left of it after GRACE_S."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)   # the child if still there, and any grandchild left behind
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)   # the group's id is the child's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass   # nobody left in the group


@contextlib.contextmanager
def quiet_sigint() -> Iterator[None]:
    """Start worker processes inside this with SIGINT ignored, which they inherit (across exec too: Python keeps
    an inherited ignore), so a terminal's Ctrl-C never reaches them. SIGINT is also blocked meanwhile, so one
    that arrives here is held and delivered to bmpose when the block ends, not lost."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    main = threading.current_thread() is threading.main_thread()   # signal.signal works only there
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
