"""Inference backends behind one interface: `open_backend(path) -> Backend`; `backend.run(x) -> heatmaps`.

`x` is the normalised float32 NCHW batch the core produces (bmpose.pose.normalize), exactly
`backend.batch_size` crops (the caller pads the last batch and drops the padding); the result is float32
heatmaps (N, K, h, w). Which backend runs an artifact follows from its type:

| artifact        | backend  | where                                                        |
|-----------------|----------|--------------------------------------------------------------|
| `*.onnx`        | onnx     | ONNX Runtime, CPU                                            |
| `*.bmodel`      | sail     | a Sophon device, when `sophon.sail` imports (untested here)  |
| `*.bmodel`      | cmodel   | TPU-MLIR's bmodel runtime on its chip simulator (slow)       |
| `*_tpu.mlir`    | mlir     | TPU-MLIR's MLIR interpreter (pymlir) on the deployed tpu.mlir |
"""
from __future__ import annotations

import os
from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.runtime.backends.base import Backend, check_chip

__all__ = ["Backend", "KINDS", "check_chip", "detect_kind", "open_backend", "sail_available"]

KINDS = ("onnx", "cmodel", "sail", "mlir")




def detect_kind(path: str | os.PathLike) -> str:
    p = str(path)
    if p.endswith(".onnx"):
        return "onnx"
    if p.endswith(".mlir"):
        return "mlir"
    if p.endswith(".bmodel"):
        return "sail" if sail_available() else "cmodel"
    raise BmposeError(f"{path}: unknown artifact type (expected .onnx, .bmodel or a deployed *_tpu.mlir)")


def sail_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("sophon") is not None and os.environ.get("BMPOSE_NO_SAIL") != "1"


def open_backend(path: str | os.PathLike, chip: str | None = None, kind: str | None = None) -> Backend:
    """Open an artifact with the backend its type calls for (or `kind`). `chip`: refuse a bmodel/tpu.mlir
    built for another chip."""
    path = Path(path)
    if not path.exists():
        raise BmposeError(f"{path}: model file not found")
    kind = kind or detect_kind(path)
    if kind == "onnx":
        from bmpose.runtime.backends.onnx import OnnxBackend

        return OnnxBackend(path)
    if kind == "cmodel":
        from bmpose.runtime.backends.cmodel import CmodelBackend

        return CmodelBackend(path, chip)
    if kind == "sail":
        from bmpose.runtime.backends.sail import SailBackend

        return SailBackend(path, chip)
    if kind == "mlir":
        from bmpose.runtime.backends.mlir import MlirBackend

        return MlirBackend(path, chip)
    raise BmposeError(f"unknown backend {kind!r} (one of {', '.join(KINDS)})")
