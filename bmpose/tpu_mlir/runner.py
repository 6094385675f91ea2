"""Run TPU-MLIR's command-line tools as subprocesses, one build directory each, one log file per tool.

Why subprocesses: the tools write fixed-name side files into their cwd and the MLIR names its weight npz by a
relative path, so every build runs in its own directory. They call each other through PATH
(`#!/usr/bin/env python3`), so the venv's bin comes first. The cmodel simulator is one shared library
switched by a symlink: TPU-MLIR's model_runner switches it under /tmp/cmodel_so.lock, and every tool run
that names a chip holds bmpose.tpu_mlir.chiplock's lock for that chip, so parallel builds (`make -j`) of BM1684 and
BM1684X never simulate on the wrong chip's library. TPU-MLIR's own chip counter (CMODEL_LOCKFILE) leaks when a
run is killed, so each run gets a private one.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bmpose import procs
from bmpose.tpu_mlir import kernels
from bmpose.tpu_mlir.chiplock import chip_lock
from bmpose.errors import BmposeError

VENV_BIN = Path(sys.executable).parent


def tpu_env(extra_path: list | tuple = ()) -> dict[str, str]:
    """Environment for TPU-MLIR tools: venv bin first on PATH, oneDNN's kernels and the thread count pinned
    (bmpose.tpu_mlir.kernels: same bytes on every CPU)."""
    env = kernels.pin(dict(os.environ), threads=True)
    env["PATH"] = os.pathsep.join([*map(str, extra_path), str(VENV_BIN), env.get("PATH", "")])
    env.setdefault("PYTHONWARNINGS", "ignore::UserWarning")  # pkg_resources deprecation noise in every log
    return env


def log_tail(path: Path, lines: int = 6, width: int = 400) -> str:
    """Last meaningful lines of a log, on one line (progress-bar carriage returns removed)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    keep = []
    for line in text.splitlines():
        line = line.split("\r")[-1].strip()
        if line and not re.match(r"^[\[\]#% \d]*$", line):
            keep.append(line)
    # Python tracebacks and TPU-MLIR's compare failures: show the lines that say what went wrong.
    errors = [l for l in keep[-200:] if re.search(r"error|exception|failed|not.similar|assert", l, re.I)]
    tail = " | ".join((errors[-3:] + keep[-1:]) if errors else keep[-lines:])
    return tail[-width:]


def run_tool(tool: str, args: list, cwd: Path, log_name: str | None = None, extra_path=()) -> float:
    """Run `tool args...` in cwd, output to cwd/<log_name>; raise BmposeError with the log's tail on failure.

    Returns the wall time in seconds.
    """
    env = tpu_env(extra_path)
    exe = shutil.which(tool, path=env["PATH"])
    if exe is None:
        raise BmposeError(f"{tool}: TPU-MLIR tool not found in {VENV_BIN} (run `make setup`)")
    cwd = Path(cwd)
    log = cwd / (log_name or f"{Path(tool).stem}.log")
    cmd = [exe, *(str(a) for a in args)]
    chip = next((str(b) for a, b in zip(args, args[1:]) if str(a) == "--chip"), None)
    t0 = time.monotonic()
    # TPU-MLIR's chip counter gets a file private to this run (a killed run's leak dies with it); chip_lock
    # keeps chips apart
    with tempfile.NamedTemporaryFile(prefix="tpu_mlir_chip_", suffix=".lock") as private, open(log, "w") as fh, \
            (chip_lock(chip) if chip else contextlib.nullcontext()):
        env["CMODEL_LOCKFILE"] = private.name
        fh.write(f"$ cd {cwd} && {shlex.join([tool, *cmd[1:]])}\n")
        fh.flush()
        # procs.run: on an interrupt the tool and its own children are stopped and KeyboardInterrupt goes on
        rc = procs.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    with open(log, "a") as fh:
        fh.write(f"\n# exit {rc} after {seconds:.1f} s\n")
    if rc != 0:
        raise BmposeError(f"{tool} failed (exit {rc}); log {log}: {log_tail(log)}")
    return seconds


def dot_shim(folder: Path) -> tuple[Path, str]:
    """A `dot` for search_qtable's graph drawing: TPU-MLIR puts its bundled libs (an old libglib) on
    LD_LIBRARY_PATH, which breaks the system's graphviz, so the shim clears it; without graphviz installed the
    shim does nothing and only the picture is missing. Returns (folder to put first on PATH, what it does)."""
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("dot", path=os.environ.get("PATH", ""))
    shim = folder / "dot"
    if real:
        shim.write_text(f'#!/bin/sh\nexec env -u LD_LIBRARY_PATH "{real}" "$@"\n')
        note = f"graph drawn with {real}"
    else:
        shim.write_text("#!/bin/sh\nexit 0\n")
        note = "graph picture skipped (graphviz `dot` not installed)"
    shim.chmod(0o755)
    return folder, note
