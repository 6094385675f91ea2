"""The same network through both doors gives the same bytes (slow): the small HRNet exported by bmpose from its
mmpose config and trained checkpoint, and that ONNX file fed back through an `onnx:` yaml that says what its
mmpose config says (codec, preprocessor, flip test), build the same ONNX, calibration crops, top MLIR,
calibration table and BM1684X INT8 bmodel (content hashes, TPU-MLIR's stamps aside: bmpose.manifest.STAMPS)
and score the same AP."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from bmpose import config
from bmpose.layout import list_bmodels
from bmpose.manifest import read_manifest, sha256_file
from helpers import SMALL, bmpose_ok, copy_stages

pytestmark = pytest.mark.slow
BUILD = ["--precision", "int8", "--chips", "bm1684x", "--batches", "1", "--no-report"]
NUM = 100   # the config's calibration count: the mmpose door is the run's shared `make int8` build
MMPOSE_DOOR = ("onnx", "calib", "cali_inputs", "mlir/b1", f"cali_table/kl_n{NUM}", "bm1684x_int8_b1")


@pytest.fixture(scope="module")
def doors(small, tmp_path_factory):
    """The mmpose door is the run's shared build of the small model (conftest's `small`), copied: its build here
    must find every stage up to date; the ONNX door builds everything from the exported file."""
    root = tmp_path_factory.mktemp("two_doors")
    copy_stages(small.root, root / "mmpose_door", SMALL, MMPOSE_DOOR)
    mm = config.load(SMALL, artifacts=root / "mmpose_door")
    out = bmpose_ok("build", "--model", SMALL, "--artifacts-dir", mm.root, *BUILD)
    assert "up to date" in out and "built" not in out, out
    shutil.copyfile(mm.layout.onnx_file(1), root / "small.onnx")
    doc = {"name": SMALL, "onnx": "small.onnx", "codec": mm.codec,
           "data_preprocessor": {"mean": list(mm.mean), "std": list(mm.std), "bgr_to_rgb": mm.bgr_to_rgb},
           "test_cfg": {"flip_test": mm.flip_test, "shift_heatmap": mm.shift_heatmap}, "dataset": "coco"}
    (root / "small_onnx.yaml").write_text(yaml.safe_dump(doc))
    ox = config.load(root / "small_onnx.yaml", artifacts=root / "onnx_door")
    bmpose_ok("build", "--model", ox.path, "--artifacts-dir", ox.root, *BUILD)
    for cfg in (mm, ox):
        bmpose_ok("eval", "--model", cfg.path, "--artifacts-dir", cfg.root)
    return mm, ox


def _outputs(d):
    """A stage's output hashes; data_list.txt lists the crops by absolute path, which differ by root."""
    return {k: v for k, v in (read_manifest(d) or {}).get("outputs", {}).items() if k != "data_list.txt"}


def _files(d, pattern):
    return {p.name: sha256_file(p) for p in sorted(d.glob(pattern))}


def test_both_doors_build_the_same_bytes(doors):
    mm, ox = doors
    assert (mm.input_size, mm.heatmap_size, mm.codec, mm.flip_test) == (ox.input_size, ox.heatmap_size, ox.codec,
                                                                         ox.flip_test)
    assert _outputs(ox.layout.onnx())[f"{SMALL}_b1.onnx"] == _outputs(mm.layout.onnx())[f"{SMALL}_b1.onnx"]
    assert _outputs(ox.layout.calib()) == _outputs(mm.layout.calib()) != {}   # the LMDB and contact sheet
    assert _files(ox.layout.cali_inputs(), "*.npz") == _files(mm.layout.cali_inputs(), "*.npz") != {}
    assert _outputs(ox.layout.mlir(1)) == _outputs(mm.layout.mlir(1))
    assert _outputs(ox.layout.cali_table("kl", NUM)) == _outputs(mm.layout.cali_table("kl", NUM))
    (a,), (b,) = list_bmodels(mm), list_bmodels(ox)
    assert a["manifest"]["outputs"] == b["manifest"]["outputs"]   # bmodel, deployed MLIR, weights, compare files
    assert a["manifest"]["checks"]["final"] == b["manifest"]["checks"]["final"]


def test_both_doors_score_the_same_ap(doors):
    ap = [{p.stem: json.loads(p.read_text())["AP"] for p in cfg.layout.eval().glob("*.json") if p.stem != "manifest"}
          for cfg in doors]
    assert ap[0] == ap[1] and set(ap[0]) == {"onnx_fp32", "bm1684x_int8_b1"} and ap[0]["onnx_fp32"] > 0.5
