"""A model with its own keypoint set (an ONNX-door yaml: five keypoints, its own names, flip pairs, skeleton and
sigmas) gives the same keypoints and the same pictures through `bmpose infer` on the host and through its
bundle's `bmodel.py` under Python 3.8 (numpy + OpenCV, ONNX Runtime behind the sail stand-in), with the flip
test on: both resolve the model's spec the same way (bmpose.runtime.results.pose_facts, shipped as deploy.json)
and run the core's one pose step (bmpose.pose.frames). COCO's 17 flip indices or skeleton would index past the
five keypoints. Random weights: the figures prove the plumbing, not accuracy."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile

import cv2
import numpy as np
import pytest

from bmpose import config
from helpers import SAIL_STANDIN, bmpose_ok
from test_onnx_import import heatmap_net, write_yaml

pytestmark = pytest.mark.slow
NAMES = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
DATASET = {"keypoint_names": NAMES, "flip_pairs": [[1, 2], [3, 4]], "skeleton": [[0, 1], [0, 2], [0, 3], [0, 4]],
           "sigmas": [0.026, 0.079, 0.079, 0.089, 0.089]}
KPT_TOL = 1e-3   # px: JSON float round trips


def _keypoints(results: str) -> dict:
    by_image = {}
    for r in json.loads(results):
        by_image.setdefault(r["image_id"], []).append(r["keypoints"])
    return {k: np.array(sorted(v)) for k, v in by_image.items()}


def test_own_keypoint_set_same_keypoints_and_pictures_on_host_and_box(bundle_py38, tmp_path):
    d = tmp_path / "net"
    d.mkdir()
    heatmap_net(d / "net.onnx", opset=13, batch=None, spatial=False, keypoints=len(NAMES))
    yml = write_yaml(d, chips=["bm1684"], batches=[1], dataset=DATASET,
                     test_cfg={"flip_test": True, "shift_heatmap": False})
    cfg = config.load(yml, artifacts=d / "artifacts")
    bmpose_ok("deploy", "--model", yml, "--artifacts-dir", cfg.root, "--precisions", "fp32", "--batches", "1",
              "--chips", "bm1684", "--detector", "none")
    with tarfile.open(cfg.layout.bundle("bm1684").with_suffix(".tar.gz")) as tar:
        tar.extractall(tmp_path)
    bundle = tmp_path / f"{cfg.name}_bm1684"
    pose = json.loads((bundle / "deploy.json").read_text())["pose"]
    assert pose["keypoint_names"] == NAMES and pose["flip_indices"] == [0, 2, 1, 4, 3]
    assert pose["skeleton_links"] == DATASET["skeleton"]
    onnx = cfg.layout.onnx_file(1)
    env = {**os.environ, "PYTHONPATH": str(SAIL_STANDIN), "SAIL_STANDIN_ENGINE": f"onnx:{onnx}",
           "SAIL_STANDIN_TARGET": "BM1684"}
    box = subprocess.run([str(bundle_py38), str(bundle / "bmodel.py"), "--flip", "--kpt-thr", "0", "--out",
                          tmp_path / "box"], capture_output=True, text=True, env=env, cwd=bundle)
    assert box.returncode == 0, box.stderr[-2000:]
    bmpose_ok("infer", "--model", yml, "--artifacts-dir", cfg.root, "--backend", "onnx", onnx, "--images",
              bundle / "images", "--boxes", f"dets:{bundle / 'images' / 'boxes.json'}", "--flip", "--kpt-thr", "0",
              "--out", tmp_path / "host")
    host, dev = (_keypoints((tmp_path / w / "results.json").read_text()) for w in ("host", "box"))
    assert host.keys() == dev.keys() and host
    for k in host:
        assert host[k].shape == dev[k].shape and host[k].shape[1] == 3 * len(NAMES)
        np.testing.assert_allclose(host[k], dev[k], atol=KPT_TOL, rtol=0)
    pictures = sorted(p.name for p in (tmp_path / "host").glob("*.jpg"))
    assert pictures and pictures == sorted(p.name for p in (tmp_path / "box").glob("*.jpg"))
    for name in pictures:   # the same drawing of the same keypoints: equal but for JPEG's rounding
        a, b = (cv2.imread(str(tmp_path / w / name)).astype(np.int16) for w in ("host", "box"))
        assert a.shape == b.shape and np.abs(a - b).mean() < 0.5, name
