"""A stand-in for the Sophon SDK's `sophon.sail`, for tests only: no device exists on the build machines.

It has the calls bmpose's sail runner makes, with the signatures of sail's Python API (sophon-sail docs:
sail.Handle, sail.Engine, sail.IOMode, sail.Dtype), and one of two engines behind them, chosen by
SAIL_STANDIN_ENGINE:
- `cmodel` (default; needs bmpose's .venv): the bmodel itself on TPU-MLIR's chip simulator, with its real
  numerics and I/O dtypes (bmpose.runtime.backends.cmodel);
- `onnx:PATH`: ONNX Runtime on PATH instead of the bmodel (for Python 3.8 venvs without TPU-MLIR); the bmodel
  file is still opened for its chip and batch checks by bmpose's own reader.
SAIL_STANDIN_TARGET is the chip the "device" reports (Handle.get_target; default BM1684X).
What it cannot show: device memory, sail's own dtype conversions and timing on a real box.
"""
import enum
import os

import numpy as np


class IOMode(enum.Enum):
    SYSI = 0
    SYSO = 1
    SYSIO = 2
    DEVIO = 3


class Dtype(enum.Enum):
    BM_FLOAT32 = 0
    BM_FLOAT16 = 1
    BM_INT8 = 2
    BM_UINT8 = 3
    BM_INT16 = 4
    BM_UINT16 = 5
    BM_INT32 = 6
    BM_UINT32 = 7


class Handle:
    def __init__(self, tpu_id):
        if int(tpu_id) != 0:
            raise RuntimeError(f"bm_dev_request failed, tpu_id {tpu_id} (the stand-in has device 0 only)")
        self.tpu_id = int(tpu_id)

    def get_device_id(self):
        return self.tpu_id

    def get_target(self):
        return os.environ.get("SAIL_STANDIN_TARGET", "BM1684X")


class _Onnx:
    def __init__(self, bmodel_path, onnx_path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.input, self.output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = self.input.name, self.output.name
        self.input_shape = list(self.input.shape)
        self.dtypes = (Dtype.BM_FLOAT32, Dtype.BM_FLOAT32)

    def forward(self, x):
        return self.session.run(None, {self.input_name: x})[0]


class _Cmodel:
    def __init__(self, bmodel_path):
        from bmpose.runtime.backends.cmodel import CmodelBackend

        self.backend = CmodelBackend(bmodel_path)
        net = self.backend.net
        self.input_name, self.output_name = net.inputs[0].name, net.outputs[0].name
        self.input_shape = list(self.backend.input_shape)
        names = {"f32": Dtype.BM_FLOAT32, "f16": Dtype.BM_FLOAT16, "i8": Dtype.BM_INT8, "u8": Dtype.BM_UINT8}
        self.dtypes = (names.get(net.inputs[0].dtype, Dtype.BM_FLOAT32), Dtype.BM_FLOAT32)

    def forward(self, x):
        return self.backend.run(x)   # the runtime's output, dequantised to float32 as sail's SYSO does


class Engine:
    def __init__(self, bmodel_path, tpu_id, mode):
        Handle(tpu_id)
        if not isinstance(mode, IOMode):
            raise TypeError("mode must be a sail.IOMode")
        if not os.path.isfile(bmodel_path):
            raise RuntimeError(f"bmodel {bmodel_path} does not exist")
        spec = os.environ.get("SAIL_STANDIN_ENGINE", "cmodel")
        self._impl = _Onnx(bmodel_path, spec[5:]) if spec.startswith("onnx:") else _Cmodel(bmodel_path)
        self._graph = os.path.splitext(os.path.basename(bmodel_path))[0]

    def get_graph_names(self):
        return [self._graph]

    def _check(self, graph_name):
        if graph_name != self._graph:
            raise RuntimeError(f"graph {graph_name} does not exist")

    def get_input_names(self, graph_name):
        self._check(graph_name)
        return [self._impl.input_name]

    def get_output_names(self, graph_name):
        self._check(graph_name)
        return [self._impl.output_name]

    def get_input_shape(self, graph_name, tensor_name):
        self._check(graph_name)
        return list(self._impl.input_shape)

    def get_input_dtype(self, graph_name, tensor_name):
        return self._impl.dtypes[0]

    def get_output_dtype(self, graph_name, tensor_name):
        return self._impl.dtypes[1]

    def get_output_scale(self, graph_name, tensor_name):
        return 1.0

    def process(self, graph_name, input_tensors, core_list=None):
        self._check(graph_name)
        x = input_tensors[self._impl.input_name]
        if not isinstance(x, np.ndarray) or list(x.shape) != list(self._impl.input_shape):
            raise RuntimeError(f"input shape {getattr(x, 'shape', None)} != {self._impl.input_shape}")
        return {self._impl.output_name: np.asarray(self._impl.forward(x), dtype=np.float32)}
