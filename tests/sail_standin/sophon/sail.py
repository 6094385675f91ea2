"""A stand-in for the Sophon SDK's `sophon.sail`, for tests only: no device exists on the build machines.

It has the calls bmpose's sail runner makes, with the signatures of sail's Python API (sophon-sail docs:
sail.Handle, sail.Engine, sail.IOMode, sail.Dtype), and one of two engines behind them, chosen by
SAIL_STANDIN_ENGINE:
- `cmodel` (default; needs bmpose's .venv): the bmodel itself on TPU-MLIR's chip simulator, with its real
  numerics and I/O dtypes (bmpose.runtime.backends.cmodel);
- `onnx:PATH`: ONNX Runtime on PATH instead of the bmodel (for Python 3.8 venvs without TPU-MLIR); the bmodel
  file is still opened for its chip and batch checks by bmpose's own reader.
Either may name a stand-in per bmodel file, os.pathsep-separated: `onnx:PATH:NAME.bmodel=OTHER.onnx`,
`cmodel:NAME.bmodel=X_tpu.mlir` (a .onnx runs on ONNX Runtime, a deployed tpu.mlir on pymlir). The chip
simulator holds one bmodel per process reliably (a second, larger bmodel loaded beside the first corrupts the
first one's outputs), so a detector next to the pose bmodel runs through its tpu.mlir.
SAIL_STANDIN_TARGET is what the "device" answers to Handle.get_target() (default BM1684X); like a real box
it may be an alias (an SE9-8 answers CV186AH for a CV186X) or a string that names no chip.
The I/O follows sail's own code for system-memory tensors (sophon-sail src/engine.cpp, docs/device.md):
process() takes a dict of numpy arrays of any numeric dtype and converts them to float32 (pybind11's
array_t<float> casts); for an INT8/UINT8 input it quantises them, round(x * get_input_scale()) clamped to the
dtype's range ([-127, 127] for INT8), where get_input_scale() is 1/qscale; an INT8/UINT8 output comes back as
float32, raw * get_output_scale() (= qscale, no zero point). Several outputs (RTMPose's simcc_x, simcc_y)
come back by name, each with its own dtype and scale. The onnx engine can pretend to be such a bmodel:
SAIL_STANDIN_INPUT / SAIL_STANDIN_OUTPUT = "int8:QSCALE" or "uint8:QSCALE" (default float32).
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


_NUMPY = {"BM_FLOAT32": np.float32, "BM_INT8": np.int8, "BM_UINT8": np.uint8}


def _io_spec(var):
    """SAIL_STANDIN_INPUT / _OUTPUT: "int8:0.05" -> (Dtype.BM_INT8, 0.05); unset -> (BM_FLOAT32, 1.0)."""
    text = os.environ.get(var, "")
    if not text:
        return Dtype.BM_FLOAT32, 1.0
    kind, _, scale = text.partition(":")
    return Dtype["BM_" + kind.upper()], float(scale or 1.0)


def _quantise(x, dtype, multiplier):
    """sail's scale_fp32_to_int8/uint8: round(x * multiplier), clamped (INT8 to [-127, 127])."""
    info = np.iinfo(_NUMPY[dtype.name])
    lo = -127 if dtype is Dtype.BM_INT8 else info.min
    return np.clip(np.round(np.asarray(x, np.float32) * np.float32(multiplier)), lo, info.max).astype(info.dtype)


class _Onnx:
    def __init__(self, bmodel_path, onnx_path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.input_name = self.input.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shape = list(self.input.shape)
        self.in_dtype, self.in_scale = _io_spec("SAIL_STANDIN_INPUT")
        out = _io_spec("SAIL_STANDIN_OUTPUT")
        self.out_dtype, self.out_scale = dict.fromkeys(self.output_names, out[0]), dict.fromkeys(self.output_names, out[1])
        self.fed = None   # the array the "device" got last, in the input's own dtype

    def forward(self, x):
        """-> {output name: the raw output tensor, as on the device}."""
        self.fed = x
        ys = self.session.run(None, {self.input_name: x.astype(np.float32) * np.float32(self.in_scale)})
        return {n: y if self.out_dtype[n] is Dtype.BM_FLOAT32 else _quantise(y, self.out_dtype[n], 1 / self.out_scale[n])
                for n, y in zip(self.output_names, ys)}


class _Cmodel:
    def __init__(self, bmodel_path):
        from bmpose.runtime.backends.cmodel import CmodelBackend

        self.backend = CmodelBackend(bmodel_path)
        net = self.backend.net
        self.input_name = net.inputs[0].name
        self.output_names = [o.name for o in net.outputs]
        self.input_shape = list(self.backend.input_shape)
        names = {"f32": Dtype.BM_FLOAT32, "f16": Dtype.BM_FLOAT16, "i8": Dtype.BM_INT8, "u8": Dtype.BM_UINT8}
        self.in_dtype = names.get(net.inputs[0].dtype, Dtype.BM_FLOAT32)
        self.in_scale = float(net.inputs[0].qscale or 1.0)
        self.out_dtype = {o.name: names.get(o.dtype, Dtype.BM_FLOAT32) for o in net.outputs}
        self.out_scale = {o.name: float(o.qscale or 1.0) for o in net.outputs}
        self.fed = None

    def forward(self, x):
        self.fed = x
        # the runtime's outputs dequantised (bmpose's cmodel backend); re-quantised for an integer output, so
        # that process() below dequantises it once more, as sail does with the device's raw tensor
        ys = self.backend.run_outputs(x.astype(np.float32) * np.float32(self.in_scale) if x.dtype != np.float32 else x)
        return {n: _quantise(y, self.out_dtype[n], 1 / self.out_scale[n])
                if self.out_dtype[n] in (Dtype.BM_INT8, Dtype.BM_UINT8) else y for n, y in zip(self.output_names, ys)}


def _engine_for(bmodel_path, spec):
    """The engine standing in for this bmodel: its NAME.bmodel=PATH entry, else the spec's default."""
    kind, _, rest = spec.partition(":")
    default, named = None, {}
    for entry in rest.split(os.pathsep) if rest else []:
        name, eq, path = entry.partition("=")
        if eq:
            named[name] = path
        else:
            default = entry
    path = named.get(os.path.basename(bmodel_path))
    if path is None:
        return _Onnx(bmodel_path, default) if kind == "onnx" else _Cmodel(bmodel_path)
    return _Mlir(path) if path.endswith(".mlir") else _Onnx(bmodel_path, path)


class _Mlir:
    def __init__(self, path):
        from bmpose.runtime.backends.mlir import MlirBackend

        self.backend = MlirBackend(path)
        self.input_name, self.output_names = self.backend.input_name, list(self.backend.output_names)
        self.input_shape = list(self.backend.input_shape)
        self.in_dtype, self.in_scale = Dtype.BM_FLOAT32, 1.0
        self.out_dtype = dict.fromkeys(self.output_names, Dtype.BM_FLOAT32)
        self.out_scale = dict.fromkeys(self.output_names, 1.0)
        self.fed = None

    def forward(self, x):
        self.fed = x
        return dict(zip(self.output_names, self.backend.run_outputs(np.asarray(x, np.float32))))


class Engine:
    def __init__(self, bmodel_path, tpu_id, mode):
        Handle(tpu_id)
        if not isinstance(mode, IOMode):
            raise TypeError("mode must be a sail.IOMode")
        if not os.path.isfile(bmodel_path):
            raise RuntimeError(f"bmodel {bmodel_path} does not exist")
        spec = os.environ.get("SAIL_STANDIN_ENGINE", "cmodel")
        self._impl = _engine_for(bmodel_path, spec)
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
        return list(self._impl.output_names)

    def get_input_shape(self, graph_name, tensor_name):
        self._check(graph_name)
        return list(self._impl.input_shape)

    def get_input_dtype(self, graph_name, tensor_name):
        return self._impl.in_dtype

    def get_output_dtype(self, graph_name, tensor_name):
        return self._impl.out_dtype[tensor_name]

    def get_input_scale(self, graph_name, tensor_name):
        return 1.0 / self._impl.in_scale   # TPU-MLIR stores the inverse for inputs: sail multiplies by it

    def get_output_scale(self, graph_name, tensor_name):
        return self._impl.out_scale[tensor_name]

    def process(self, graph_name, input_tensors, core_list=None):
        self._check(graph_name)
        impl = self._impl
        x = input_tensors[impl.input_name]
        if not isinstance(x, np.ndarray) or list(x.shape) != list(impl.input_shape):
            raise RuntimeError(f"input shape {getattr(x, 'shape', None)} != {impl.input_shape}")
        if x.dtype.kind not in "fiub":
            raise TypeError(f"input dtype {x.dtype}: process() takes numeric numpy arrays")
        x = x.astype(np.float32)                                     # pybind11 array_t<float> casts
        if impl.in_dtype is not Dtype.BM_FLOAT32:
            x = _quantise(x, impl.in_dtype, self.get_input_scale(graph_name, impl.input_name))
        # every output by name; integer outputs dequantised
        return {n: np.asarray(y.astype(np.float32) * np.float32(impl.out_scale[n])
                              if impl.out_dtype[n] in (Dtype.BM_INT8, Dtype.BM_UINT8) else y, dtype=np.float32)
                for n, y in impl.forward(x).items()}
