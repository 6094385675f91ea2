"""ONNX Runtime on the CPU."""
from __future__ import annotations

import numpy as np

from bmpose.errors import BmposeError
from bmpose.pose.pipeline import join_outputs
from bmpose.runtime.backends.base import Backend


class OnnxBackend(Backend):
    kind = "onnx"

    def __init__(self, path, threads: int | None = None):
        super().__init__(path)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BmposeError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.dynamic_batch = self.input_shape[0] == -1
        self.batch_size = 1 if self.dynamic_batch else self.input_shape[0]

    def check_input(self, x):
        if self.dynamic_batch:  # any batch goes
            self.batch_size = int(np.shape(x)[0])
        return super().check_input(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The output; several (SimCC's simcc_x, simcc_y) end to end along the last axis, in graph order."""
        x = self.check_input(x)
        return join_outputs(self.session.run(None, {self.input_name: x}))
