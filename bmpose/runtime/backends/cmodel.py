"""A bmodel on TPU-MLIR's chip simulator (cmodel), in-process through its bmodel runtime `pyruntime_bm`.

The runtime comes from bmpose.tpu_mlir.installed with the chip's simulator linked; the model is opened under
the same lock, and from then on the simulator stays bound to that chip for the life of the process: one chip
per process (a second chip raises). We do not call model_runner's
`model_inference`: it writes a context directory next to the bmodel on every call.

The simulator is slow (HRNet-W32: 9-15 s per crop measured here): callers show progress and refuse a whole
dataset unless asked (see bmpose.runtime.predict).
"""
from __future__ import annotations

import numpy as np

from bmpose.errors import BmposeError
from bmpose.pose.pipeline import join_outputs
from bmpose.runtime.backends.base import Backend, check_chip
from bmpose.tpu_mlir.chiplock import chip_lock
from bmpose.tpu_mlir.installed import bind_cmodel, bmodel_chip, cmodel_runtime, runtime_module
from bmpose.tpu_mlir.quiet import quiet_at_exit, quiet_c_output


class CmodelBackend(Backend):
    kind = "cmodel"
    slow = True

    def __init__(self, path, chip: str | None = None):
        super().__init__(path)
        actual = bmodel_chip(path)
        check_chip(path, actual, chip)
        self.chip = actual.lower()
        rt, lock = cmodel_runtime(actual)
        # Opening the model dlopens libcmodel.so: do it under the lock, so the link still points at our chip;
        # from then on the loaded library stays ours whatever the link says.
        with chip_lock(actual), lock:
            try:
                with quiet_c_output() as printed:
                    self.model = rt.Model(str(path), 0, "")
            except Exception as e:
                said = " ".join(printed[-1].split()[-30:]) if printed else ""
                raise BmposeError(f"{path}: the bmodel runtime cannot load it ({e})"
                                  + (f"; it said: {said}" if said else "")) from None
            bind_cmodel(actual)
        quiet_at_exit()
        self.net = self.model.Net(self.model.networks[0])
        if len(self.net.inputs) != 1:
            raise BmposeError(f"{path}: expected one input, the bmodel has {len(self.net.inputs)}")
        self.input_shape = tuple(self.net.inputs[0].data.shape)
        self.batch_size = self.input_shape[0]
        self.output_names = tuple(o.name for o in self.net.outputs)

    def run(self, x: np.ndarray) -> np.ndarray:
        # several outputs (SimCC's simcc_x, simcc_y) come back end to end, as every backend returns them
        return join_outputs(self.run_outputs(x))

    def run_outputs(self, x: np.ndarray) -> list:
        """Each output, dequantised to float32, in the bmodel's order."""
        lowering = runtime_module("utils.lowering").lowering  # TPU-MLIR's float -> input dtype conversion

        x = self.check_input(x)
        inp = self.net.inputs[0]
        inp.data.reshape(-1)[:] = lowering(x, pdtype=inp.dtype, pshape=x.shape, pzero_point=inp.qzero_point,
                                           pscale=inp.qscale).flatten()
        with quiet_c_output():
            shapes = self.net.forward_dynamic([list(x.shape)])
        return [self._output(out, shape) for out, shape in zip(self.net.outputs, shapes)]

    @staticmethod
    def _output(out, shape) -> np.ndarray:
        data = out.data
        if data.dtype in (np.int8, np.uint8) and out.qscale != 0:
            data = (data.astype(np.float32) - out.qzero_point) * np.float32(out.qscale)
        elif out.dtype in ("f16", "u16"):
            data = data.astype(np.float32)
        data = np.array(data, dtype=np.float32)
        return data.reshape(-1)[:int(np.prod(shape))].reshape(shape)
