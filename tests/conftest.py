"""Fixtures shared across the test packages; plain helpers and paths are in helpers.py."""
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import DATA, ROOT, pyenv_python, toy_onnx

# TPU-MLIR's tools call each other through PATH: the venv's bin must come first, as the Makefile does.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# A test run started in the background (`make test &` in a script, nohup) inherits SIGINT ignored, and so
# would every process it starts: the interrupt tests send real signals, as a terminal's Ctrl-C does. A handled
# signal goes back to its default at exec, so each child gets SIGINT as a terminal gives it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
def bundle_py38(tmp_path_factory):
    """A Python 3.8 venv with numpy, opencv-python-headless and onnxruntime (for the stand-in) only."""
    venv = tmp_path_factory.mktemp("py38") / "venv"
    subprocess.run([str(pyenv_python("3.8")), "-m", "venv", str(venv)], check=True)
    # the build venv's versions (constraints.txt): another OpenCV decodes JPEGs a little differently (measured
    # with the newest wheels for 3.8: keypoint scores moved by 2e-3, a keypoint by 0.7 px)
    pins = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()
            if ln.split("==")[0].strip() in ("numpy", "opencv-python-headless", "onnxruntime")]
    assert len(pins) == 3, pins
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *pins], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv / "bin" / "python"
