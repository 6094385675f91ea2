"""The installed TPU-MLIR: its package imported (environment kept), its python/ runtimes, model_tool, the chip
of a bmodel or an MLIR file, and the cmodel simulator bound to one chip per process."""
from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

from bmpose.tpu_mlir import kernels
from bmpose.tpu_mlir.chiplock import chip_lock
from bmpose.errors import BmposeError


@functools.lru_cache(None)
def tpu_mlir_root() -> Path:
    """Import tpu_mlir (it sets TPUC_ROOT, PATH, PYTHONPATH for its tools) and put its python/ on sys.path,
    where its runtimes (pyruntime_bm, pymlir) live as top-level modules. oneDNN's kernels are pinned first
    (bmpose.tpu_mlir.kernels): every TPU-MLIR runtime in this process, and every process it spawns, computes alike."""
    kernels.pin()
    # `import tpu_mlir` puts its lib/ dirs on this process's LD_LIBRARY_PATH. Nothing here needs that (its
    # runtimes load through their rpath, its tools set it up themselves), but every Python this process starts
    # afterwards would load TPU-MLIR's bundled libpython (3.10.12) instead of the venv's: a `bmpose` started by
    # a test after a model_tool call then keyed its manifests on another Python and rebuilt everything.
    ld_path = os.environ.get("LD_LIBRARY_PATH")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its __init__ imports pkg_resources
        try:
            import tpu_mlir
        except ImportError:
            raise BmposeError("tpu_mlir is not installed in this environment (run `make setup`)") from None
        finally:
            if ld_path is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = ld_path
    root = Path(tpu_mlir.__file__).resolve().parent
    for p in (root, root / "python"):
        if str(p) not in sys.path:
            sys.path.append(str(p))
    return root


def model_tool(*args, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """TPU-MLIR's bmodel tool (`model_tool --chip/--print/--dump ...`), output captured as text."""
    tool = tpu_mlir_root() / "bin" / "model_tool"
    try:
        return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                              timeout=timeout)
    except OSError as e:
        raise BmposeError(f"cannot run {tool} ({e.strerror})") from None


def bmodel_chip(path: str | os.PathLike) -> str:
    """The chip a bmodel was built for, as TPU-MLIR's `model_tool --chip` says (e.g. "BM1684X")."""
    out = model_tool("--chip", path, timeout=60)
    chip = out.stdout.strip().splitlines()[-1].strip() if out.stdout.strip() else ""
    if out.returncode != 0 or not chip:
        raise BmposeError(f"{path}: not a readable bmodel (model_tool --chip failed)")
    return chip


def _module_attr(path: str | os.PathLike, name: str) -> str | None:
    import re

    with open(path, errors="replace") as fh:
        head = fh.read(8192)
    m = re.search(r'module\.%s\s*=\s*"([^"]+)"' % name, head)
    return m.group(1) if m else None


def mlir_chip(path: str | os.PathLike) -> str | None:
    """The chip of a deployed tpu.mlir (its `module.chip` attribute), None when it has none."""
    return _module_attr(path, "chip")


def mlir_weight_file(path: str | os.PathLike) -> str | None:
    """The weight npz a (top or tpu) mlir names (`module.weight_file`), relative to its folder."""
    return _module_attr(path, "weight_file")


def runtime_module(name: str):
    """A module of TPU-MLIR's python/ (pymlir, pyruntime_bm, utils.*, tools.*), imported through its root."""
    tpu_mlir_root()
    return importlib.import_module(name)


# ------------------------------------------------------------------------------------------------ cmodel
# The bmodel runtime loads lib/libcmodel.so lazily when a model is opened; that link is shared by every
# TPU-MLIR process on the machine, so it is switched to libcmodel_<chip>.so while holding the lock file
# TPU-MLIR's model_runner takes. Once loaded, the simulator stays bound to that chip for the process's life.

CMODEL_LOCK = "/tmp/cmodel_so.lock"
_bound_chip: str | None = None


def cmodel_runtime(chip: str):
    """pyruntime_bm with the simulator of `chip` loaded (switching the shared link under TPU-MLIR's lock)."""
    if _bound_chip is not None and _bound_chip != chip:
        raise BmposeError(f"the bmodel simulator of this process is bound to {_bound_chip.lower()}; a "
                          f"{chip.lower()} bmodel needs its own process (one chip per process)")
    from filelock import FileLock

    mr = runtime_module("tools.model_runner")   # TPU-MLIR's: its chip -> libcmodel mapping and link helpers

    lock = FileLock(CMODEL_LOCK)
    with chip_lock(chip), lock, contextlib.redirect_stdout(io.StringIO()):
        mr.link_cmodel_so(chip)
        mr.link_bmlib_so(chip)
        rt = runtime_module("pyruntime_bm")
    return rt, lock


def bind_cmodel(chip: str) -> None:
    """Record that this process's simulator now holds `chip` (after a model opened under the lock)."""
    global _bound_chip
    _bound_chip = chip
