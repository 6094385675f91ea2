"""RTMPose (SimCC: two outputs, simcc_x [N,K,384] and simcc_y [N,K,512]) through the TPU path (issue 24).

Slow: RTMPose-t with its trained fixture weights (fitted to the 51 bundled persons), exported and built to FP32
and INT8 for BM1684X at batch 1 once per run (conftest's `rtmpose`); both outputs reach the compare files joined end to
end, as every backend returns them; both bmodels pass the config's trained gates (fp32_cos, int8_cos); the
cmodel, mlir and sail (stand-in) backends give ONNX Runtime's keypoints (INT8: within a few pixels), and the
device bundle gives `bmpose infer`'s.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bmpose import config
from bmpose.runtime import predict as infer
from bmpose.runtime.backends import open_backend
from bmpose.runtime.boxes import bundled_sample, gt_boxes
from helpers import SAIL_STANDIN, bmpose_ok

MODEL = "rtmpose-t_256x192"


@pytest.fixture(scope="module")
def built(rtmpose):
    """The run's shared RTMPose-t builds (conftest's `rtmpose`)."""
    return rtmpose


@pytest.mark.slow
def test_both_simcc_outputs_are_built_and_compared(built):
    cfg, bms = built
    assert set(bms) == {"fp32", "int8"} and not list(cfg.artifacts.rglob("*.failed"))
    assert cfg.checkpoint != "fixture"  # the trained fixture: the trained gates apply
    for b in bms.values():
        checks = b["manifest"]["checks"]
        key = f"{b['precision']}_cos"
        assert checks["final"]["cosine"] >= checks["tolerance"][key] == cfg.tolerances[key]
        with np.load(b["dir"] / "compare.npz") as z:
            assert z["bmodel"].shape == (1, 17, 384 + 512)
        names = b["manifest"]["output_names"]
        assert len(names) == 2 and names[0].startswith("simcc_x") and names[1].startswith("simcc_y")
        assert b["manifest"]["checks"]["device_time"]["runtime_ms"] > 0


def _cmodel_keypoints(artifacts_root: str, bmodel: str, n: int) -> np.ndarray:
    cfg = config.load(MODEL, artifacts=artifacts_root)
    boxes = gt_boxes(*bundled_sample())[:n]
    report = infer.predict(cfg, open_backend(bmodel, kind="cmodel"), boxes, progress=False)
    return np.stack([p.keypoints for p in report.predictions])


@pytest.mark.slow
def test_every_backend_gives_onnx_keypoints(built, monkeypatch):
    cfg, bms = built
    boxes = gt_boxes(*bundled_sample())[:3]
    onnx = infer.predict(cfg, open_backend(cfg.layout.onnx_file(1), kind="onnx"), boxes, progress=False)
    with multiprocessing.get_context("spawn").Pool(1) as pool:   # the cmodel binds one chip per process
        fp32 = pool.apply(_cmodel_keypoints, (str(cfg.artifacts.parent), str(bms["fp32"]["path"]), len(boxes)))
    tpu_mlir = bms["int8"]["dir"] / bms["int8"]["manifest"]["tpu_mlir"]
    int8 = infer.predict(cfg, open_backend(tpu_mlir, kind="mlir"), boxes, progress=False)
    ref = np.stack([p.keypoints for p in onnx.predictions])
    # FP32 on the chip simulator: SimCC's argmax lands on the same bin (0.5 px at split ratio 2)
    np.testing.assert_allclose(fp32, ref, rtol=0, atol=1e-3)
    got = np.stack([p.keypoints for p in int8.predictions])
    assert got.shape == ref.shape == (3, 17, 2)
    # INT8 (trained fixture, kl, FP32 tail): most keypoints land on ONNX's bin, a few jump to another peak.
    # Measured on these 3 persons: median 0 px, 90% within 10 px (BM1684X; 84% on BM1684); gates 1 px / 75%.
    dist = np.linalg.norm(got - ref, axis=-1)
    assert np.median(dist) <= 1.0 and (dist < 10).mean() >= 0.75, dist.round(1)

    # the device runner on the sail stand-in (the deployed tpu.mlir behind it): both outputs by name, joined
    monkeypatch.syspath_prepend(str(SAIL_STANDIN))
    monkeypatch.setenv("SAIL_STANDIN_ENGINE", f"cmodel:{bms['int8']['path'].name}={tpu_mlir}")
    from bmpose.device.sail_runner import SailRunner

    runner = SailRunner(str(bms["int8"]["path"]), 0, chip="BM1684X")
    assert len(runner.output_names) == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 192)).astype(np.float32)
    np.testing.assert_array_equal(runner.run(x), open_backend(tpu_mlir, kind="mlir").run(x))
    assert os.environ["SAIL_STANDIN_ENGINE"].startswith("cmodel:")


def _keypoints(results_json) -> np.ndarray:
    rows = json.loads(Path(results_json).read_text())
    return np.array(sorted((r["image_id"], *r["keypoints"]) for r in rows))


@pytest.mark.slow
def test_the_bundle_runs_rtmpose_as_bmpose_infer_does(built, bundle_py38, tmp_path):
    """`bmpose deploy` bundles the SimCC model (no special case outside the codec); its bmodel.py gives
    `bmpose infer`'s keypoints: on the build venv with the INT8 bmodel behind the stand-in, computed by its
    deployed tpu.mlir (TPU-MLIR's own build check holds the bmodel on the cmodel bit-equal to it; the cmodel's
    own run of a bundle is test_deploy's), and under Python 3.8 (numpy + OpenCV + ONNX Runtime behind the
    stand-in)."""
    cfg, bms = built
    art = ["--artifacts-dir", str(cfg.artifacts.parent)]
    bmpose_ok("deploy", "--model", MODEL, *art, "--chips", "bm1684x", "--batches", "1", "--detector", "none")
    with tarfile.open(cfg.artifacts / "deploy" / f"{MODEL}_bm1684x.tar.gz") as tar:
        tar.extractall(tmp_path)
    bundle = tmp_path / f"{MODEL}_bm1684x"
    meta = json.loads((bundle / "deploy.json").read_text())
    assert meta["pose"]["codec"]["type"] == "SimCCLabel" and meta["pose"]["heatmap_size"] is None
    boxes = f"dets:{bundle / 'images' / 'boxes.json'}"
    int8 = bms["int8"]["path"]
    tpu_mlir = bms["int8"]["dir"] / bms["int8"]["manifest"]["tpu_mlir"]
    for python, engine, ref in ((sys.executable, f"cmodel:{int8.name}={tpu_mlir}", ("--backend", "mlir", tpu_mlir)),
                                (bundle_py38, f"onnx:{cfg.layout.onnx_file(1)}",
                                 ("--backend", "onnx", cfg.layout.onnx_file(1)))):
        device, host = tmp_path / f"device_{engine[:4]}", tmp_path / f"host_{engine[:4]}"
        run = subprocess.run([str(python), str(bundle / "bmodel.py"), "--bmodel", str(bundle / "models" / int8.name),
                              "--no-vis", "--out", str(device)], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(SAIL_STANDIN), "SAIL_STANDIN_ENGINE": engine})
        assert run.returncode == 0, run.stderr[-2000:]
        bmpose_ok("infer", "--model", MODEL, *art, *ref, "--images", bundle / "images", "--boxes", boxes,
                  "--no-vis", "--out", host)
        got, want = _keypoints(device / "results.json"), _keypoints(host / "results.json")
        assert got.shape == want.shape and len(got) >= 3
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
