"""Build manifests, skip-if-unchanged and atomic outputs, shared by every stage.

A stage calls `up_to_date(out_dir, inputs, options)`; when False it builds inside `atomic_dir(out_dir)` and
finishes with `write_manifest(...)` in the temporary dir, so the final directory appears, complete, only on
success. A failed build is kept as `<out_dir>.failed/` (logs included) and never under the final name.
"""
from __future__ import annotations

import contextlib
import errno
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Iterator, Mapping

MANIFEST = "manifest.json"
# Versions recorded in every manifest; a change in any of them rebuilds (importlib.metadata: no imports).
TOOLS = ("tpu_mlir", "torch", "mmpose", "mmengine", "onnx", "onnxruntime", "numpy", "opencv-python-headless")


# TPU-MLIR writes two things into its files that differ between builds of the same inputs; everything else
# is byte-for-byte the same (measured: two clean builds). Content hashes leave them out, so manifests agree
# across builds and a re-made calibration table does not redeploy every bmodel.
STAMPS = {
    "calibration table": "its '# genetated time:' comment line",
    "bmodel": "its build time and, where the bmodel has no kernel module, that module's unset `mode` word "
              "(uninitialised memory in TPU-MLIR 1.30.2: 12656 in one build, 650051760 in the next, "
              "-52382799 in a third); the "
              "bmodel is hashed as `model_tool --print` of its header plus its binary payload, raw",
    "LMDB folder": "its lock.mdb, the readers' table that any reader opening it with locking (the vendor's ufwio) "
                   "writes; data.mdb is the content",
}
_NOT_CONTENT = {"lock.mdb"}
_TABLE_STAMP = re.compile(rb"^# gene[tr]ated time:[^\n]*\n", re.M)
_PRINT_TIME = re.compile(r'^\s*time: "[^"]*",?\n', re.M)
_EMPTY_KERNEL_MODE = re.compile(r'(kernel_module: \{\s*file_name: "",\s*binary: \{\s*start: 0,\s*size: 0\s*\},'
                                r'\s*mode: )-?\d+')   # an int32: negative too


def _feed(h, fh) -> None:
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)


def sha256_bytes(path: str | os.PathLike) -> str:
    """sha256 of every byte of a file, stamps included: what `sha256sum` says on the device."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        _feed(h, fh)
    return h.hexdigest()


def _bmodel_digest(p: Path, h) -> None:
    """Feed `h` the bmodel's header as model_tool prints it (stamps blanked) and its binary payload."""
    import struct

    from bmpose.tpu_mlir.installed import model_tool

    with open(p, "rb") as fh:
        magic, header_size, fb_size, _ = struct.unpack("<IIII", fh.read(16))
        if magic != 0xFF55AAEE:
            fh.seek(0)
            return _feed(h, fh)
        out = model_tool("--print", p)
        if out.returncode != 0 and not os.access(p, os.W_OK):   # model_tool opens it read-write: a read-only
            with tempfile.TemporaryDirectory() as tmp:          # tree (a mounted build) is read from a copy
                shutil.copyfile(p, Path(tmp) / p.name)
                out = model_tool("--print", Path(tmp) / p.name)
        text = _EMPTY_KERNEL_MODE.sub(r"\g<1>0", _PRINT_TIME.sub("", out.stdout))
        h.update(f"model_tool --print rc={out.returncode}\n{text}".encode())
        fh.seek(header_size + fb_size)
        _feed(h, fh)


def sha256_file(path: str | os.PathLike, _cache: dict = {}) -> str:
    """Content sha256 of a file, or of a directory's files (sorted relative paths + contents). TPU-MLIR's
    build-time stamps (STAMPS) are left out of the hash; every other byte counts."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file() and q.name not in _NOT_CONTENT):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            h.update(sha256_file(f).encode())
    elif p.name.endswith(".bmodel"):
        _bmodel_digest(p, h)
    elif p.name.endswith("_cali_table") or p.name == "shape_pattern_qtable":
        h.update(_TABLE_STAMP.sub(b"", p.read_bytes()))
    else:
        with open(p, "rb") as fh:
            _feed(h, fh)
    _cache[key] = h.hexdigest()
    return _cache[key]


def tool_versions() -> dict[str, str]:
    from bmpose.tpu_mlir import kernels

    # the oneDNN kernel cap and the thread count change TPU-MLIR's float results: they key builds like versions
    out = {"python": platform.python_version(), "onednn_max_cpu_isa": kernels.isa(),
           "tool_threads": kernels.TOOL_THREADS}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hash_inputs(inputs: Mapping[str, str | os.PathLike | None]) -> dict[str, dict]:
    out = {}
    for key, path in sorted(inputs.items()):
        if path is None:
            continue
        out[key] = {"path": str(path), "sha256": sha256_file(path)}
    return out


def jsonable(obj):
    """obj as it reads back from a manifest (JSON types, sorted keys, anything else as str): compare like this."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def result_key(inputs: Mapping[str, str | os.PathLike | None], options: Mapping) -> dict:
    """What a cached result (an evaluation row, a study's scores, a detector's boxes) is keyed on, by the rule a
    build's manifest follows: its inputs' content hashes, its options as JSON reads them back, the tool versions."""
    return {"inputs": {k: r["sha256"] for k, r in hash_inputs(inputs).items()}, "options": jsonable(options),
            "tools": tool_versions()}


def cached_result(path: str | os.PathLike, key: Mapping) -> dict | None:
    """The JSON result at `path` when it was written under `key` (write_result), else None: missing, stale or
    unreadable, so computed again."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and all(doc.get(k) == v for k, v in key.items()) else None


def write_result(path: str | os.PathLike, key: Mapping, result: Mapping) -> dict:
    """`result` with its key beside it, written atomically to `path`; -> the document cached_result returns."""
    doc = {**result, **key}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return doc


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    p = Path(out_dir) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def up_to_date(out_dir: str | os.PathLike, inputs: Mapping, options: Mapping) -> bool:
    """True when out_dir holds a complete build of exactly these inputs, options and tool versions."""
    m = read_manifest(out_dir)
    if m is None or m.get("status") != "ok":
        return False
    try:
        want = hash_inputs(inputs)
    except FileNotFoundError:
        return False
    same = (
        {k: v["sha256"] for k, v in m.get("inputs", {}).items()} == {k: v["sha256"] for k, v in want.items()}
        and m.get("options") == jsonable(dict(options))
        and m.get("tools") == tool_versions()
    )
    return same and outputs_intact(out_dir, m)


def outputs_intact(out_dir: str | os.PathLike, m: Mapping) -> bool:
    """Every output the manifest records is there with the bytes it recorded: a truncated or edited bmodel or
    ONNX is not "up to date" (it is rebuilt, and never shipped). The content hashes are cached per (path, size,
    mtime) within a process, so a no-op run hashes each file once."""
    for name, digest in m.get("outputs", {}).items():
        try:
            if sha256_file(Path(out_dir) / name) != digest:
                return False
        except FileNotFoundError:
            return False
    return True


def write_manifest(out_dir: str | os.PathLike, *, stage: str, inputs: Mapping, options: Mapping,
                   outputs: list[str] | tuple[str, ...] = (), checks: Mapping | None = None,
                   extra: Mapping | None = None) -> dict:
    """Write manifest.json in out_dir; `outputs` are file names relative to out_dir (hashed here)."""
    out_dir = Path(out_dir)
    m = {
        "stage": stage,
        "status": "ok",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "inputs": hash_inputs(inputs),
        "options": jsonable(dict(options)),
        "tools": tool_versions(),
        "outputs": {o: sha256_file(out_dir / o) for o in outputs},
        "hashes": "sha256 of content; left out: " + "; ".join(f"{k}: {v}" for k, v in STAMPS.items()),
        "checks": jsonable(dict(checks or {})),
    }
    if extra:
        m.update(jsonable(dict(extra)))
    atomic_write_text(out_dir / MANIFEST, json.dumps(m, indent=2, sort_keys=False) + "\n")
    return m


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        Path(tmp).write_text(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


LOCK_WAIT = [0.0]   # seconds this process has waited on other processes' build locks (build times leave it out)


def waited_since(mark: float) -> float:
    """Lock wait since `mark` (a LOCK_WAIT[0] read earlier)."""
    return LOCK_WAIT[0] - mark


@contextlib.contextmanager
def locked(out_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for building out_dir (a `.<name>.lock` file beside it): several processes
    (parallel tests, two make targets) asking for the same artifact then build it once, one after the other."""
    import fcntl

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(out_dir.with_name(f".{out_dir.name}.lock"), "w")
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        # a read-only artifacts tree: no build can happen in it, so there is nothing to serialise, and a stage
        # that is up to date still serves (was: OSError on the lock file even when everything was up to date)
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:   # another process builds it: say so, and count the wait apart from build time
            print(f"waiting for another process that builds {out_dir} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            LOCK_WAIT[0] += time.monotonic() - t0
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_dir(out_dir: str | os.PathLike, keep_failed: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory beside out_dir; on success it replaces out_dir.

    On failure it is kept as `<out_dir>.failed` (so its logs can be read) and out_dir is left untouched; on an
    interrupt (KeyboardInterrupt, which the CLI also raises for SIGTERM) it is removed: half a stage is no
    failure to read, and the next run builds the stage again.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    failed = out_dir.with_name(out_dir.name + ".failed")
    try:
        yield tmp
    except BaseException as e:
        # a full disk: a kept copy of the half stage would keep it full; an interrupt: half a stage is no failure
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        if keep_failed and not isinstance(e, KeyboardInterrupt) and not full:
            shutil.rmtree(failed, ignore_errors=True)
            os.replace(tmp, failed)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(failed, ignore_errors=True)
