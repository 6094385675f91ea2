"""Fixtures shared across the test packages; plain helpers and paths are in helpers.py."""
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import DATA, ROOT, SMALL, cached_venv, toy_onnx

# TPU-MLIR's tools call each other through PATH: the venv's bin must come first, as the Makefile does.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# A test run started in the background (`make test &` in a script, nohup) inherits SIGINT ignored, and so
# would every process it starts: the interrupt tests send real signals, as a terminal's Ctrl-C does. A handled
# signal goes back to its default at exec, so each child gets SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def default_artifacts(tmp_path_factory) -> Path:
    """The default artifacts root ($BMPOSE_ARTIFACTS, inherited by every bmpose a test starts) is a folder of the
    run's basetemp: no test reads or writes the repository's artifacts/, where a developer's own builds live."""
    root = tmp_path_factory.mktemp("default_artifacts", numbered=False)
    os.environ["BMPOSE_ARTIFACTS"] = str(root)
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def coco_mini() -> tuple[Path, Path]:
    """(annotation json, image folder) of the bundled real COCO val2017 subset (22 images, 39 persons)."""
    d = DATA / "coco_val_mini"
    return d / "person_keypoints_val2017_subset.json", d / "images"


@pytest.fixture(scope="session")
def coco_train() -> tuple[Path, Path]:
    """(annotation json, image folder) of the bundled COCO train2017 subset, the default calibration set
    (28 images, 86 persons with keypoints; never evaluated on)."""
    d = DATA / "coco_train_mini"
    return d / "person_keypoints_train2017_subset.json", d / "images"


@pytest.fixture(scope="session")
def mmpose_coco() -> Path:
    """mmpose's own COCO test data: 4 images, test_coco.json, detector boxes, reference predictions."""
    return DATA / "mmpose_coco"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy model transformed by TPU-MLIR in a private artifacts dir: (cfg, mlir dir, crops)."""
    from bmpose import config
    from bmpose.convert import steps

    root = tmp_path_factory.mktemp("toy")
    cfg = dataclasses.replace(config.load("hrnet_small_128x96", artifacts=root / "artifacts"), name="toy",
                              input_size=(8, 8))
    crops = []
    for i in range(4):
        crops.append(root / f"crop{i}.npz")
        np.savez(crops[-1], input=np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32))
    return cfg, steps.ensure_transform(cfg, 1, toy_onnx(root / "toy.onnx"), crops), crops


@pytest.fixture(scope="session")
def bundle_py38():
    """A Python 3.8 venv with numpy, opencv-python-headless and onnxruntime (for the stand-in) only, made once
    per machine (helpers.cached_venv)."""
    # the build venv's versions (constraints.txt): another OpenCV decodes JPEGs a little differently (measured
    # with the newest wheels for 3.8: keypoint scores moved by 2e-3, a keypoint by 0.7 px)
    pins = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()
            if ln.split("==")[0].strip() in ("numpy", "opencv-python-headless", "onnxruntime")]
    assert len(pins) == 3, pins
    return cached_venv("3.8", pins)


# ------------------------------------------------- builds the whole run shares: each artifact is built once per run

@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    """The artifacts root of the builds every test may read (basetemp/shared). The manifests make each build
    happen once, whichever test asks first; a test that changes a build works on a copy (helpers.copy_stages)."""
    return tmp_path_factory.mktemp("shared", numbered=False)


@pytest.fixture(scope="session")
def small(shared_root):
    """The small HRNet as `make fp32` + `make int8` build it (its trained fixture, the default calibration on the
    bundled train2017 persons): ONNX b1 + b4, calibration set, FP32 + INT8 x BM1684/BM1684X x batch 1/4 with
    compare files, and the report. -> its config."""
    from bmpose import config
    from bmpose.flows.build import BuildRequest, build

    for precision in ("fp32", "int8"):
        build(BuildRequest(precision, model=SMALL, artifacts_dir=shared_root))
    return config.load(SMALL, artifacts=shared_root)


@pytest.fixture(scope="session")
def detector(shared_root):
    """`bmpose detector` as a user runs it: the config's precision per chip (BM1684X FP16, BM1684 FP32), its
    boxes scored against ONNX Runtime's. -> (detector config, the finished process: tests assert its exit)."""
    from bmpose.detector_config import load_detector

    run = subprocess.run([sys.executable, "-m", "bmpose", "detector", "--artifacts-dir", str(shared_root)],
                         capture_output=True, text=True)
    return load_detector(artifacts=shared_root), run


@pytest.fixture(scope="session")
def rtmpose_onnx(shared_root):
    """RTMPose-t (its trained fixture) exported to ONNX batch 1 in the shared root. -> its config."""
    from bmpose import config
    from bmpose.convert.export import ensure_onnx

    cfg = config.load("rtmpose-t_256x192", artifacts=shared_root)
    ensure_onnx(cfg, batches=(1,), verbose=False)
    return cfg


@pytest.fixture(scope="session")
def rtmpose(rtmpose_onnx):
    """RTMPose-t FP32 + INT8 for BM1684X at batch 1. -> (config, {precision: bmodel entry})."""
    from bmpose.flows.build import BuildRequest, build
    from bmpose.layout import list_bmodels

    cfg = rtmpose_onnx
    for precision in ("fp32", "int8"):
        build(BuildRequest(precision, model=cfg.name, artifacts_dir=cfg.root, chips=("bm1684x",), batches=(1,),
                           report=False))
    return cfg, {b["precision"]: b for b in list_bmodels(cfg)}


@pytest.fixture(scope="session")
def w32_onnx(shared_root):
    """HRNet-W32 256x192 (the vendor sample's network, deterministic random-init weights: no trained W32 can be
    downloaded here) exported to ONNX batch 1 and 4 in the shared root, parity-checked. -> its config."""
    from bmpose import config
    from bmpose.convert.export import ensure_onnx

    cfg = config.load("hrnet_w32_256x192", artifacts=shared_root)
    ensure_onnx(cfg, batches=(1, 4), verbose=False)
    return cfg
