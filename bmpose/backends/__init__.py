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

import numpy as np

from ..errors import BmposeError

KINDS = ("onnx", "cmodel", "sail", "mlir")


class Backend:
    """Base class: `name`, `kind`, `batch_size`, `chip` (None for onnx), `slow` (seconds per crop matter)."""

    kind = "?"
    slow = False
    chip: str | None = None
    batch_size = 1
    input_shape: tuple[int, ...] = ()

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = self.path.name

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise BmposeError(f"{self.name}: input must be NCHW, got shape {x.shape}")
        if x.shape[0] != self.batch_size:
            raise BmposeError(f"{self.name}: batch size mismatch: the model takes batch {self.batch_size}, "
                              f"got {x.shape[0]} (pad the last batch)")
        if self.input_shape and any(want > 0 and got != want
                                    for got, want in zip(x.shape[1:], self.input_shape[1:])):
            raise BmposeError(f"{self.name}: input shape {tuple(x.shape)} does not match the model's "
                              f"{tuple(self.input_shape)}")
        return x

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def run_many(self, batches: list[np.ndarray]):
        """Outputs of `run` for each batch, in order (a backend may spread them over processes)."""
        for x in batches:
            yield self.run(x)

    def describe(self) -> str:
        chip = f" {self.chip}" if self.chip else ""
        return f"{self.kind}{chip} b{self.batch_size} ({self.path})"


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
        from .onnx import OnnxBackend

        return OnnxBackend(path)
    if kind == "cmodel":
        from .cmodel import CmodelBackend

        return CmodelBackend(path, chip)
    if kind == "sail":
        from .sail import SailBackend

        return SailBackend(path, chip)
    if kind == "mlir":
        from .mlir import MlirBackend

        return MlirBackend(path, chip)
    raise BmposeError(f"unknown backend {kind!r} (one of {', '.join(KINDS)})")


def check_chip(path, actual: str | None, wanted: str | None) -> None:
    if wanted and actual and actual.lower() != wanted.lower():
        raise BmposeError(f"{path}: built for {actual.lower()}, not for the requested chip {wanted.lower()}")
