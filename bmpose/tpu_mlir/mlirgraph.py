"""Read TPU-MLIR .mlir files with TPU-MLIR's own parser (utils.mlir_parser.MlirParser, MLIR's Python bindings).

Used for three facts: which op names exist (qtable validation), the graph near the outputs (the automatic FP32
tail), and each op's type and quantisation mode in a deployed *_tpu.mlir (compare CSV, the "tail is F32" check).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bmpose.errors import BmposeError


def _parser_class():
    # `import tpu_mlir` rewrites PATH/LD_LIBRARY_PATH/PYTHONPATH of this process (it expects to be a tool's
    # launcher); we only need its sys.path entries, so the environment is restored afterwards.
    saved = dict(os.environ)
    try:
        import tpu_mlir  # noqa: F401  (adds tpu_mlir/python to sys.path)
        from utils.mlir_parser import MlirParser
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return MlirParser


@dataclass(frozen=True)
class Op:
    name: str            # MLIR loc name: what qtables, calibration tables and npz dumps call the op
    type: str            # "top.Conv", "tpu.Conv2D", ...
    inputs: tuple        # activation operand names (weights excluded)
    out_type: str        # element type of the first result, e.g. "f32" or "!quant.uniform<i8:f32, 0.1>"

    @property
    def quant(self) -> str:
        """Quantisation mode of the op's output as deployed: INT8/UINT8/F16/BF16/F32."""
        t = self.out_type
        if "quant.uniform<i8" in t:
            return "INT8"
        if "quant.uniform<u8" in t:
            return "UINT8"
        if t.startswith("bf16"):
            return "BF16"
        if t.startswith("f16"):
            return "F16"
        return "F32"   # f32 and !quant.calibrated<f32<...>> (a float op that carries a threshold)


@dataclass(frozen=True)
class Graph:
    path: Path
    ops: tuple            # Op, in program order (Input and Weight ops excluded)
    outputs: tuple        # names of the ops feeding the function's return

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def producers(self) -> dict[str, Op]:
        return {op.name: op for op in self.ops}


def read_graph(path: str | os.PathLike) -> Graph:
    path = Path(path)
    st = path.stat() if path.is_file() else None
    if st is None:
        raise BmposeError(f"{path}: MLIR file not found")
    return _read_graph(str(path.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _read_graph(path: str, _mtime: int, _size: int) -> Graph:
    MlirParser = _parser_class()
    try:
        parser = MlirParser(path)
    except Exception as e:  # MLIR's bindings raise plain RuntimeError/ValueError on bad text
        raise BmposeError(f"{path}: cannot parse MLIR ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    import mlir.ir  # TPU-MLIR's MLIR bindings, importable once _parser_class() ran

    produced = {out for op in parser.ops for out in op.outputs}
    ops = []
    for op in parser.ops:
        if op.type == "top.Input" or not len(op.op.results):
            continue
        res = op.op.results[0].type
        try:
            elem = str(mlir.ir.ShapedType(res).element_type)
        except ValueError:  # not a shaped type (none)
            elem = str(res)
        ops.append(Op(op.name, op.type, tuple(o for o in op.opds if o in produced), elem))
    outputs = tuple(parser.get_output_op_names_n_shapes() or ())
    return Graph(Path(path), tuple(ops), outputs)
