"""What several test modules share that is not a fixture: paths, a toy ONNX network, checks of built
bmodels. Fixtures live in conftest.py."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DATA = ROOT / "data"              # the bundled COCO samples (bmpose.config.DATA_DIR)
TEST_DATA = TESTS / "data"        # what only the tests read
SAIL_STANDIN = TESTS / "sail_standin"
NNTC_STANDINS = TESTS / "nntc_standins"
SMALL = "hrnet_small_128x96"


def copy_stages(src_root: Path, dst_root: Path, model: str, stages: tuple[str, ...]) -> Path:
    """Copy finished stages (e.g. "onnx", "mlir/b1", a bmodel dir) of `model` from one artifacts root into
    another: a test that must change or interrupt a build redoes only its own stage, on the shared build's
    inputs (the manifests record content hashes and names, so the copies are up to date where they land).
    -> dst_root/model."""
    for stage in stages:
        src = Path(src_root) / model / stage
        assert (src / "manifest.json").is_file(), f"{src}: not a finished stage"
        shutil.copytree(src, Path(dst_root) / model / stage)
    return Path(dst_root) / model


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


def skip_or_fail(reason: str):
    """Skip, saying why; under CI (CI=true) fail with that line instead: a CI machine that lacks a tool the
    README's claims rest on (Python 3.7/3.8 for the bundle, chromium for the report) must not pass quietly."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def pyenv_python(version: str) -> Path:
    """The newest pyenv Python `version` (the device side's 3.7 and 3.8 exist on these machines)."""
    root = Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() or
                Path.home() / ".pyenv") if shutil.which("pyenv") else Path.home() / ".pyenv"
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    if not found:
        skip_or_fail(f"no Python {version} under {root}/versions")
    return found[-1]


def cached_venv(version: str, pins: list[str]) -> Path:
    """The python of a venv of pyenv's Python `version` with `pins` installed, made once per machine and kept
    by content (the interpreter's path and version, the pins) under $BMPOSE_TEST_CACHE (default
    ~/.cache/bmpose-tests): every test run and fresh clone on this machine reuses it (measured: 15-40 s to
    make). A half-made venv is never used: it is completed under a lock and marked by its stamp file."""
    from bmpose.manifest import locked

    base = pyenv_python(version)
    real = subprocess.run([str(base), "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
    key = hashlib.sha256("\n".join([str(base), real.stdout, *pins]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("BMPOSE_TEST_CACHE") or Path.home() / ".cache" / "bmpose-tests")
    venv = cache / f"py{version}-{key}"
    python, stamp = venv / "bin" / "python", venv / ".complete"
    with locked(venv):
        if not stamp.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                                 capture_output=True, text=True)
            assert pip.returncode == 0, f"pip install {' '.join(pins)} failed:\n{pip.stderr[-3000:]}"
            stamp.write_text("\n".join(pins) + "\n")
    return python
