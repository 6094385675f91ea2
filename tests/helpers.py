"""What several test modules share that is not a fixture: paths, a toy ONNX network, checks of built
bmodels. Fixtures live in conftest.py."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DATA = TESTS / "data"
SAIL_STANDIN = TESTS / "sail_standin"
NNTC_STANDINS = TESTS / "nntc_standins"


def toy_onnx(path: Path) -> Path:
    """input -> [conv+relu, conv] -> add -> relu (a "fuse") -> conv "heatmaps": the shape of HRNet's end."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, f"w{i}")
             for i, s in enumerate([(4, 3, 3, 3), (4, 3, 1, 1), (2, 4, 1, 1)])]
    nodes = [
        helper.make_node("Conv", ["input", inits[0].name], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_a"),
        helper.make_node("Conv", ["input", inits[1].name], ["b"], name="conv_b"),
        helper.make_node("Add", ["a_relu", "b"], ["fused"], name="add"),
        helper.make_node("Relu", ["fused"], ["fused_relu"], name="relu_fuse"),
        helper.make_node("Conv", ["fused_relu", inits[2].name], ["heatmaps"], name="head"),
    ]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def simulate_like_the_build(b: dict, chip: str) -> tuple[np.ndarray, np.ndarray]:
    """Run a built bmodel (an entry of list_bmodels) on its chip's cmodel and through the deployed tpu.mlir,
    checking what must hold for every chip and precision: the cmodel (a spawned process, one chip per process)
    gives the build's own output bit for bit, its profile equals the estimate embedded in the build, and the
    mlir backend matches TPU-MLIR's own output. Returns (the mlir backend's output, the ONNX reference)."""
    from bmpose.runtime import simulate
    from bmpose.runtime.backends import open_backend

    m = b["manifest"]
    with np.load(b["dir"] / m["input"]) as z:
        x = z[z.files[0]]
    r = simulate.simulate_time(b["path"], chip, x=x, want_output=True)
    with np.load(b["dir"] / "compare.npz") as z:
        np.testing.assert_array_equal(r["output"], z["bmodel"])
        onnx, tpu = z["onnx"], z["tpu_mlir"]
    assert r["chip"] == chip.upper() and r["matches_embedded"] is True
    assert r["cycles"] == m["checks"]["device_time"]["cycles"]
    y = open_backend(b["tpu_mlir"], chip, kind="mlir").run(x)
    np.testing.assert_allclose(y, tpu, atol=1e-6)
    return y, onnx


def assert_random_weight_gates_passed(cfg, bmodels: list[dict], heatmaps_shape: tuple) -> None:
    """Each bmodel built from random-init fixture weights passed its own gate at the config's value (FP32:
    fp32_cos; INT8: int8_cos_random, the weights being meaningless) and gives heatmaps of the model's shape."""
    for b in bmodels:
        m = b["manifest"]
        key = {"fp32": "fp32_cos", "int8": "int8_cos_random"}[b["precision"]]
        assert m["checks"]["final"]["cosine"] >= m["checks"]["tolerance"][key] == cfg.tolerances[key]
        with np.load(b["dir"] / "compare.npz") as z:
            assert z["bmodel"].shape == heatmaps_shape


def bmpose_ok(*args) -> str:
    """`python -m bmpose ARGS` in a process of its own; it must succeed. -> its stdout."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bmpose", *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def pyenv_python(version: str) -> Path:
    """The newest pyenv Python `version` (the device side's 3.7 and 3.8 exist on these machines)."""
    root = Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() or
                Path.home() / ".pyenv")
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under {root}/versions")
    return found[-1]
