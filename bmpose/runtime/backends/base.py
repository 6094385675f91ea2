"""The interface every backend implements (see bmpose.runtime.backends for which runs what)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError


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


def check_chip(path, actual: str | None, wanted: str | None) -> None:
    if wanted and actual and actual.lower() != wanted.lower():
        raise BmposeError(f"{path}: built for {actual.lower()}, not for the requested chip {wanted.lower()}")
