import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
# TPU-MLIR's tools call each other through PATH: the venv's bin must come first, as the Makefile does.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def coco_mini() -> tuple[Path, Path]:
    """(annotation json, image folder) of the bundled real COCO val2017 subset (22 images, 39 persons)."""
    d = DATA / "coco_val_mini"
    return d / "person_keypoints_val2017_subset.json", d / "images"


@pytest.fixture(scope="session")
def mmpose_coco() -> Path:
    """mmpose's own COCO test data: 4 images, test_coco.json, detector boxes, reference predictions."""
    return DATA / "mmpose_coco"
