"""One bmodel on one Sophon device through the SDK's `sophon.sail`: float32 NCHW batch in, float32 heatmaps
out. Shared by the deploy bundle's `bmodel.py` and `bmpose infer --backend sail`.

The calls are those of sail's Python API (sophon-sail docs, `sail.Engine` / `sail.Handle`):
`Handle(dev_id).get_target()`, `Engine(path, dev_id, IOMode.SYSIO)`, `get_graph_names()`,
`get_input_names/get_output_names(graph)`, `get_input_shape(graph, name)`, `get_input_dtype`,
`get_output_dtype`, `get_output_scale`, and `process(graph, {name: array}) -> {name: array}` with tensors in
system memory. bmpose's bmodels take the normalised float32 input (no sail.Bmcv preprocessing).
"""
from __future__ import annotations

import numpy as np

from ..pose.errors import PoseError
from .bmodel_file import bmodel_chip


def import_sail():
    try:
        import sophon.sail as sail
    except ImportError:
        raise PoseError("sophon.sail is not importable: on the box, put the SDK's sail on PYTHONPATH (see "
                        "README.md); without a device, bmpose runs bmodels on the cmodel backend") from None
    return sail


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
        self.device_chip = str(get_target()).upper() if get_target else None
        if self.device_chip and self.device_chip != self.chip:
            raise PoseError(f"{path}: built for {self.chip.lower()}, but device {dev_id} is a "
                            f"{self.device_chip.lower()}: use the bundle for that chip")
        try:
            self.engine = sail.Engine(self.path, dev_id, sail.IOMode.SYSIO)
        except Exception as e:
            raise PoseError(f"{path}: sophon.sail cannot load it on device {dev_id} ({e})") from None
        self.graph = self.engine.get_graph_names()[0]
        self.input_name = self.engine.get_input_names(self.graph)[0]
        self.output_name = self.engine.get_output_names(self.graph)[0]
        self.input_shape = tuple(int(d) for d in self.engine.get_input_shape(self.graph, self.input_name))
        self.batch_size = self.input_shape[0]
        in_dtype = self.engine.get_input_dtype(self.graph, self.input_name)
        if "FLOAT32" not in str(in_dtype).upper():
            raise PoseError(f"{path}: its input is {in_dtype}, bmpose feeds float32 (build it with bmpose)")
        out_dtype = self.engine.get_output_dtype(self.graph, self.output_name)
        self.output_scale = None if "FLOAT32" in str(out_dtype).upper() else \
            float(self.engine.get_output_scale(self.graph, self.output_name))

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if tuple(x.shape) != self.input_shape:
            raise PoseError(f"{self.path}: input shape {tuple(x.shape)} does not match the bmodel's "
                            f"{self.input_shape} (pad the last batch)")
        y = np.asarray(self.engine.process(self.graph, {self.input_name: x})[self.output_name])
        if self.output_scale is not None:   # an integer output: dequantise as sail's scale says
            return y.astype(np.float32) * np.float32(self.output_scale)
        return y.astype(np.float32, copy=False)
