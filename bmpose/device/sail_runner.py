"""One bmodel on one Sophon device through the SDK's `sophon.sail`: a batch in, float32 heatmaps out. Shared
by the deploy bundle's `bmodel.py` and `bmpose infer --backend sail`.

The calls are those of sail's Python API (sophon-sail docs, `sail.Engine` / `sail.Handle`):
`Handle(dev_id).get_target()`, `Engine(path, dev_id, IOMode.SYSIO)`, `get_graph_names()`,
`get_input_names/get_output_names(graph)`, `get_input_shape(graph, name)`, `get_input_dtype`,
`get_output_dtype`, `get_output_scale`, and `process(graph, {name: array}) -> {name: array}` with tensors in
system memory. What sail does underneath, from its source (sophon-sail src/engine.cpp; docs/device.md):
- process() has one numpy overload, dict of float32 arrays; an array of another numeric dtype is cast to
  float32 on the way in. For an INT8/UINT8 input sail quantises it, round(x * get_input_scale()) - the scale
  TPU-MLIR stores for an input is 1/qscale, 1 for a uint8 input with the normalisation fused in, so uint8
  pixels arrive unchanged. Non-float inputs are therefore fed, not refused.
- An INT8/UINT8 output comes back as float32 already dequantised (raw * get_output_scale()): it is NOT
  multiplied again here. Only a raw integer array (a path that reads the device tensor itself, such as
  sail.Tensor.asnumpy()) is dequantised with get_output_scale().
"""
from __future__ import annotations

import numpy as np

from ..pose.errors import PoseError
from ..pose.pipeline import join_outputs
from .bmodel_file import bmodel_chip

# Handle.get_target() answers from the board name (sophon-sail src/tensor.cpp): BM1684, BM1684X, BM1688, and
# CV186AH - the SoC's name - on a CV186X box (SE9-8); "NOT 1684, 1684X, BM1688, or CV186AH !" for any other
# board and "Error" where the name cannot be read. Known answers map to bmodel chip names; anything else means
# "cannot tell": the bmodel is loaded and the runtime decides.
TARGET_ALIASES = {"BM1684": "BM1684", "BM1684X": "BM1684X", "BM1688": "BM1688", "CV186X": "CV186X",
                  "CV186AH": "CV186X"}


def import_sail():
    try:
        import sophon.sail as sail
    except ImportError:
        raise PoseError("sophon.sail is not importable: on the box, put the SDK's sail on PYTHONPATH (see "
                        "README.md); without a device, bmpose runs bmodels on the cmodel backend") from None
    return sail


def device_chip(answer) -> str | None:
    """get_target()'s answer as a bmodel chip name, or None when it names no chip we know."""
    return TARGET_ALIASES.get(str(answer or "").strip().upper())


def dtype_name(dtype) -> str:
    """sail.Dtype.BM_INT8 (or its str) -> "INT8"."""
    return str(getattr(dtype, "name", dtype)).upper().rsplit(".", 1)[-1].replace("BM_", "")


class SailRunner:
    def __init__(self, path, dev_id: int = 0, chip: str | None = None):
        self.path = str(path)
        self.chip = bmodel_chip(path)
        if chip and chip.upper() != self.chip:
            raise PoseError(f"{path}: built for {self.chip.lower()}, not for the requested chip {chip.lower()}")
        sail = import_sail()
        try:
            handle = sail.Handle(dev_id)
        except Exception as e:  # sail raises RuntimeError for a missing device
            raise PoseError(f"device {dev_id}: sophon.sail cannot open it ({e})") from None
        get_target = getattr(handle, "get_target", None)   # not in every sail release
        try:
            self.device_answer = str(get_target()) if get_target else None
        except Exception:   # an answer we cannot even read is "cannot tell" too
            self.device_answer = None
        self.device_chip = device_chip(self.device_answer)
        if self.device_chip and self.device_chip != self.chip:
            raise PoseError(f"{path}: built for {self.chip.lower()}, but device {dev_id} is a "
                            f"{self.device_chip.lower()}: use the bundle for that chip")
        try:
            self.engine = sail.Engine(self.path, dev_id, sail.IOMode.SYSIO)
        except Exception as e:
            raise PoseError(f"{path}: sophon.sail cannot load it on device {dev_id} ({e})") from None
        self.graph = self.engine.get_graph_names()[0]
        self.input_name = self.engine.get_input_names(self.graph)[0]
        self.output_names = list(self.engine.get_output_names(self.graph))
        self.input_shape = tuple(int(d) for d in self.engine.get_input_shape(self.graph, self.input_name))
        self.batch_size = self.input_shape[0]
        self.input_dtype = dtype_name(self.engine.get_input_dtype(self.graph, self.input_name))
        self.output_dtype = dtype_name(self.engine.get_output_dtype(self.graph, self.output_names[0]))

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if tuple(x.shape) != self.input_shape:
            raise PoseError(f"{self.path}: input shape {tuple(x.shape)} does not match the bmodel's "
                            f"{self.input_shape} (pad the last batch)")
        if x.dtype.kind not in "fiub":
            raise PoseError(f"{self.path}: input dtype {x.dtype} is not numeric")
        x = np.ascontiguousarray(x, dtype=np.float32)   # what sail's numpy overload casts to anyway (exact for uint8)
        outputs = self.engine.process(self.graph, {self.input_name: x})
        # several outputs (SimCC's simcc_x, simcc_y) come back end to end, as every backend returns them
        return join_outputs([self._dequantised(name, outputs[name]) for name in self.output_names])

    def _dequantised(self, name: str, y) -> np.ndarray:
        y = np.asarray(y)
        if y.dtype.kind in "iu":   # a raw device tensor: dequantise as sail's output scale says
            return y.astype(np.float32) * np.float32(float(self.engine.get_output_scale(self.graph, name)))
        return y.astype(np.float32, copy=False)   # process() has dequantised it already
