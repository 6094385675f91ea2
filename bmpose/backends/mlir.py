"""A deployed `*_tpu.mlir` (what model_deploy lowers to before code generation) through TPU-MLIR's MLIR
interpreter `pymlir`, on the CPU.

TPU-MLIR validates every bmodel against this file, so its output stands for the bmodel's at a fraction of the
simulator's cost; tests/test_backends.py checks it against the cmodel run of the bmodel on fixture crops (see
the README's "infer" section for the bound and the speed). The weights npz named in the file's
`module.weight_file` must sit beside it (model_deploy's layout).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import BmposeError
from . import Backend, check_chip
from ._tpu_mlir import mlir_chip, mlir_weight_file, tpu_mlir_root


@contextlib.contextmanager
def _in_dir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class MlirBackend(Backend):
    kind = "mlir"

    def __init__(self, path, chip: str | None = None):
        super().__init__(path)
        actual = mlir_chip(path)
        weights = mlir_weight_file(path)
        if weights is not None and not (self.path.resolve().parent / weights).is_file():
            # pymlir aborts the whole process on a missing weight file: say it first, on one line
            raise BmposeError(f"{path}: its weight file {weights} is missing beside it (model_deploy deletes "
                              f"it unless run with --debug)")
        if actual is None:
            raise BmposeError(f"{path}: not a deployed tpu.mlir (no module.chip attribute); pass the "
                              f"*_tpu.mlir that model_deploy wrote")
        check_chip(path, actual, chip)
        self.chip = actual.lower()
        tpu_mlir_root()
        import pymlir

        pymlir.set_mem_mode("value_mem")
        self.module = pymlir.module()
        # the weight file is named relative to the mlir's folder (read at load and at invoke)
        with _in_dir(self.path.resolve().parent):
            try:
                self.module.load(self.path.name)
            except Exception as e:
                raise BmposeError(f"{path}: pymlir cannot load it ({e})") from None
        self.module.set_progress_silent(True)  # no per-op progress bar on stdout (segfaults before load)
        if len(self.module.input_names) != 1:
            raise BmposeError(f"{path}: expected one input, the model has {len(self.module.input_names)}")
        self.input_name = self.module.input_names[0]
        self.output_name = self.module.output_names[0]
        self.input_shape = _input_shape(self.path)
        self.batch_size = self.input_shape[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        self.module.set_tensor(self.input_name, x, x.shape)
        with _in_dir(self.path.resolve().parent):  # pymlir reads the weights lazily, by relative name
            self.module.invoke(True)  # True: dequantised float outputs, as the bmodel runtime returns them
        return np.array(self.module.get_tensor(self.output_name), dtype=np.float32)


def _input_shape(path) -> tuple[int, ...]:
    """The main function's input tensor shape, e.g. (1, 3, 128, 96), from the mlir text."""
    import re

    with open(path, errors="replace") as fh:
        for line in fh:
            m = re.search(r"func\.func @main\(%arg0: tensor<([0-9x]+)x[a-z0-9]+>", line)
            if m:
                return tuple(int(d) for d in m.group(1).split("x"))
    raise BmposeError(f"{path}: no main function input found")
