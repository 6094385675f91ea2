"""A bmodel on a real Sophon device (SE5/SC5 BM1684, SE7 BM1684X) through the vendor's `sophon.sail`.

UNTESTED HERE: no device and no sophon.sail wheel exist on the build machine. Kept deliberately thin, following
the Engine/Handle calls of the vendor's Python samples (sophon-demo): `sail.Engine(path, dev_id,
sail.IOMode.SYSIO)`, `engine.get_graph_names()`, `get_input_names/get_output_names`, `get_input_shape`, and
`engine.process(graph, {input_name: array})`, which returns {output_name: float32 array}. The bmodel's input is
the normalised float tensor (bmpose feeds the same batch to every backend), so no sail.Bmcv preprocessing is
involved. The chip check reads the device's chip id through `sail.Handle`.
"""
from __future__ import annotations

import numpy as np

from bmpose.errors import BmposeError
from bmpose.runtime.backends.base import Backend, check_chip


class SailBackend(Backend):
    kind = "sail"

    def __init__(self, path, chip: str | None = None, dev_id: int = 0):
        super().__init__(path)
        try:
            import sophon.sail as sail
        except ImportError:
            raise BmposeError(f"{path}: sophon.sail is not installed (a Sophon device and its SDK are needed; "
                              f"without one, bmodels run on the cmodel backend)") from None
        self.handle = sail.Handle(dev_id)
        device_chip = None
        get_chip = getattr(self.handle, "get_target", None)  # newer sail: "BM1684" / "BM1684X"
        if get_chip is not None:
            device_chip = get_chip()
        check_chip(path, device_chip, chip)
        self.chip = (device_chip or chip or "").lower() or None
        try:
            self.engine = sail.Engine(str(path), dev_id, sail.IOMode.SYSIO)
        except Exception as e:  # sail raises RuntimeError for a bmodel of another chip
            raise BmposeError(f"{path}: sophon.sail cannot load it on device {dev_id} ({e})") from None
        self.graph = self.engine.get_graph_names()[0]
        self.input_name = self.engine.get_input_names(self.graph)[0]
        self.output_name = self.engine.get_output_names(self.graph)[0]
        self.input_shape = tuple(self.engine.get_input_shape(self.graph, self.input_name))
        self.batch_size = self.input_shape[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        out = self.engine.process(self.graph, {self.input_name: x})
        return np.asarray(out[self.output_name], dtype=np.float32)
