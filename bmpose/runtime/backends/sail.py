"""A bmodel on a real Sophon device (SE5/SC5 BM1684, SE7 BM1684X) through the vendor's `sophon.sail`: the
deploy bundle's own sail runner (bmpose.device.sail_runner) behind the Backend interface, so `bmpose infer
--backend sail` and `bmodel.py` on the box run the same code. No device exists on the build machines: the
tests run it against a sail stand-in (tests/sail_standin) whose engine is the cmodel or ONNX Runtime.
"""
from __future__ import annotations

import numpy as np

from bmpose.device.sail_runner import SailRunner
from bmpose.runtime.backends.base import Backend


class SailBackend(Backend):
    kind = "sail"

    def __init__(self, path, chip: str | None = None, dev_id: int = 0):
        super().__init__(path)
        self.runner = SailRunner(path, dev_id, chip)
        self.chip = self.runner.chip.lower()
        self.input_shape = self.runner.input_shape
        self.batch_size = self.runner.batch_size

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.runner.run(self.check_input(x))
