"""The ONNX door end to end (slow): two small heatmap networks that exist only as ONNX files, an opset-8 batch-1
one as MXNet/GluonCV export it (BatchNormalization spatial=0 beside per-channel statistics, Upsample-7, IR 3;
RGB input) and an opset-13 dynamic-batch one fed BGR, each through
an `onnx:` yaml to INT8 bmodels for both chips, then `bmpose eval`, `infer` and `deploy`, and the bundle run on
the sail stand-in. Random weights: the figures prove the pipeline, not accuracy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from bmpose import config
from bmpose.layout import list_bmodels
from helpers import SAIL_STANDIN, bmpose_ok
from test_onnx_import import CODEC, PRE, heatmap_net, write_yaml

pytestmark = pytest.mark.slow
CHIPS = ("bm1684", "bm1684x")
BGR = {**PRE, "mean": PRE["mean"][::-1], "std": PRE["std"][::-1], "bgr_to_rgb": False}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """{"rgb": cfg, "bgr": cfg}: both networks built to INT8, batch 1, both chips (8 calibration crops)."""
    out = {}
    for kind in ("rgb", "bgr"):
        d = tmp_path_factory.mktemp(kind)
        if kind == "rgb":
            heatmap_net(d / "net.onnx", opset=8, batch=1, spatial=0)
        else:
            heatmap_net(d / "net.onnx", opset=13, batch=None, spatial=False)
        yml = write_yaml(d, chips=list(CHIPS), batches=[1], data_preprocessor=PRE if kind == "rgb" else BGR,
                         calibration={"num": 8})
        bmpose_ok("build", "--precision", "int8", "--model", yml, "--artifacts-dir", d / "artifacts", "--no-report")
        out[kind] = config.load(yml, artifacts=d / "artifacts")
    return out


def test_both_networks_build_int8_for_both_chips_within_their_gate(nets):
    for cfg in nets.values():
        bms = list_bmodels(cfg)
        assert [(b["chip"], b["precision"], b["batch"]) for b in bms] == [(c, "int8", 1) for c in CHIPS]
        onnx_checks = json.loads((cfg.layout.onnx() / "manifest.json").read_text())["checks"]
        assert all(c["passed"] for c in onnx_checks.values())   # ONNX Runtime parity with the original, recorded
        for b in bms:
            checks = b["manifest"]["checks"]
            assert checks["final"]["cosine"] >= checks["tolerance"]["int8_cos"] == cfg.tolerances["int8_cos"]
            assert len(b["manifest"]["fp32_layers"]) >= 1   # the automatic FP32 tail found the heatmap conv


def test_the_bgr_network_is_fed_bgr(nets):
    """The same persons, crops in the other channel order (with mean/std given in that order)."""
    crops = {k: sorted(cfg.layout.cali_inputs().glob("*.npz")) for k, cfg in nets.items()}
    assert len(crops["rgb"]) == len(crops["bgr"]) == 8
    with np.load(crops["rgb"][0]) as a, np.load(crops["bgr"][0]) as b:
        x, y = a[a.files[0]], b[b.files[0]]
    np.testing.assert_allclose(y, x[:, ::-1], atol=1e-5)
    assert not np.allclose(x, y, atol=1e-2)


def test_eval_and_infer_run_on_an_onnx_config(nets, tmp_path):
    cfg = nets["bgr"]
    model = ["--model", cfg.path, "--artifacts-dir", cfg.root]
    bmpose_ok("eval", *model)
    rows = {p.stem: json.loads(p.read_text()) for p in cfg.layout.eval().glob("*.json") if p.stem != "manifest"}
    assert set(rows) == {"onnx_fp32", "bm1684_int8_b1", "bm1684x_int8_b1"}
    assert all(r["persons"] > 0 and 0 <= r["AP"] <= 1 for r in rows.values())
    b = next(b for b in list_bmodels(cfg) if b["chip"] == "bm1684x")
    bmpose_ok("infer", *model, "--backend", "mlir", b["tpu_mlir"], "--out", tmp_path / "vis")
    results = json.loads((tmp_path / "vis" / "results.json").read_text())
    assert results and all(len(r["keypoints"]) == 17 * 3 for r in results)


def test_deploy_bundle_of_an_onnx_config_runs_on_the_standin(nets, tmp_path):
    cfg = nets["rgb"]
    bmpose_ok("deploy", "--model", cfg.path, "--artifacts-dir", cfg.root, "--precisions", "int8", "--batches", "1",
              "--chips", "bm1684x", "--num", "8", "--detector", "none")   # no detector: its builds take minutes
    with tarfile.open(cfg.layout.bundle("bm1684x").with_suffix(".tar.gz")) as tar:
        tar.extractall(tmp_path)
    bundle = tmp_path / f"{cfg.name}_bm1684x"
    meta = json.loads((bundle / "deploy.json").read_text())
    assert meta["pose"]["codec"]["type"] == CODEC["type"] and len(meta["pose"]["keypoint_names"]) == 17
    assert meta["detector"] is None and not list((bundle / "models").glob("yolox*"))
    env = {**os.environ, "PYTHONPATH": str(SAIL_STANDIN), "SAIL_STANDIN_ENGINE": "cmodel",
           "SAIL_STANDIN_TARGET": "BM1684X"}
    out = subprocess.run([sys.executable, str(bundle / "bmodel.py"), "--no-vis", "--out", tmp_path / "dev"],
                         capture_output=True, text=True, env=env, cwd=bundle)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "dev" / "results.json").read_text())
