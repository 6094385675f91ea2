"""MediaPipe BlazePose lite (configs/blazepose/): a trained pose network that generalises, through the ONNX door.

The committed ONNX is the one its conversion script records; the import cuts it to the landmark output; the
regression codec, BlazePose's 33 keypoints and their COCO 17 give COCO AP on the bundled persons; detect ->
BlazePose on a photo lands limbs on the right persons; FP32 and INT8 bmodels (BM1684X, batch 1) are built,
compared and run by the device bundle as `bmpose infer` runs them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from bmpose import config
from bmpose.errors import BmposeError
from helpers import SAIL_STANDIN, bmpose_ok

MODEL = "blazepose_lite_256x256"
ONNX = config.CONFIG_DIR / "blazepose" / "pose_landmark_lite.onnx"
BASEBALL = "000000196141.jpg"   # data/mmpose_coco: 4 players, none of them ever seen by BlazePose


def test_committed_onnx_is_what_its_conversion_recorded():
    record = json.loads((ONNX.parent / "pose_landmark_lite.conversion.json").read_text())
    digest = hashlib.sha256(ONNX.read_bytes()).hexdigest()
    assert record["onnx_sha256"] == digest and digest in (ONNX.parent / "README.md").read_text()
    script = (config.ROOT / "scripts" / "blazepose" / "convert.py").read_text()
    assert record["tflite_sha256"] in script     # the pinned upstream file
    assert record["max_abs_diff_vs_tflite"]["Identity"] <= 0.05   # the script's gate, in input pixels
    assert (ONNX.parent / "LICENSE").read_text().startswith(" " * 33 + "Apache License")


def test_import_cuts_the_extra_outputs(tmp_path):
    import onnx

    from bmpose.convert.onnx_import import ensure_imported

    cfg = config.load(MODEL, artifacts=tmp_path)
    files = ensure_imported(cfg, batches=(1, 4), verbose=False)
    original = onnx.load(str(ONNX))
    for b, path in files.items():
        m = onnx.load(str(path))
        assert [o.name for o in m.graph.output] == ["keypoints"]
        assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [b, 195]
        assert len(m.graph.node) < len(original.graph.node)   # the mask, heatmap and world branches are gone
    checks = json.loads((cfg.layout.onnx() / "manifest.json").read_text())["checks"]
    assert all(c["max_abs_diff"] == 0.0 and c["passed"] for c in checks.values())


def _yaml(tmp_path, **change) -> Path:
    raw = yaml.safe_load((config.CONFIG_DIR / f"{MODEL}.yaml").read_text())
    raw["onnx"] = str(ONNX)
    for k, v in change.items():
        if v is None:
            raw.pop(k)
        else:
            raw[k] = v
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"output": None}, r"5 outputs \(Identity, Identity_1, .*say which one is the keypoint output"),
    ({"output": "Identity_9"}, r"output 'Identity_9' is not one of pose_landmark_lite.onnx's outputs"),
    ({"extra_outputs": {"Identity_1": "pose flag"}}, r"extra_outputs does not say what Identity_2, Identity_3, "
                                                     r"Identity_4 of pose_landmark_lite.onnx are"),
])
def test_several_outputs_are_named_or_refused(tmp_path, change, message):
    from bmpose.convert.onnx_import import ensure_imported

    cfg = config.load(_yaml(tmp_path, **change), artifacts=tmp_path)
    with pytest.raises(BmposeError, match=message):
        ensure_imported(cfg, batches=(1,), verbose=False)
    assert not (tmp_path / "bp" / "onnx").exists()


def test_regression_codec_keys_are_checked(tmp_path):
    codec = {"type": "RegressionLabel", "input_size": [256, 256], "values_per_keypoint": 5,
             "coordinates": "pixels", "visibility_index": 5}
    with pytest.raises(BmposeError, match=r"visibility_index must index one of the values after x, y \(2 to 4\)"):
        config.load(_yaml(tmp_path, codec=codec), artifacts=tmp_path)
    bad = {**yaml.safe_load((config.CONFIG_DIR / f"{MODEL}.yaml").read_text())["dataset"], "coco_keypoints": [0, 1]}
    with pytest.raises(BmposeError, match=r"coco_keypoints must be 17 indices into its 33 keypoints"):
        config.load(_yaml(tmp_path, dataset=bad), artifacts=tmp_path)


def test_commands_that_need_an_mmpose_model_say_so(tmp_path, capsys):
    """`bmpose fixture` (every bundled config by default) passes over the ONNX model with a note; the NNTC
    bundle (heatmap models only) refuses it in one line naming the codec, before looking at the method."""
    from bmpose.cli import fixture, nntc

    assert fixture.main(["--model", MODEL, "--artifacts-dir", str(tmp_path)]) == 0
    assert "an ONNX model, its weights are in pose_landmark_lite.onnx" in capsys.readouterr().out
    with pytest.raises(BmposeError, match=r"the NNTC bundle of a RegressionLabel model \(output keypoints\)"):
        nntc.main(["--model", MODEL, "--artifacts-dir", str(tmp_path)])
    assert not list(tmp_path.rglob("*.pth"))


@pytest.fixture(scope="module")
def onnx_cfg(shared_root):
    from bmpose.convert.onnx_import import ensure_imported

    cfg = config.load(MODEL, artifacts=shared_root)
    ensure_imported(cfg, batches=(1, 4), verbose=False)
    return cfg


def test_coco_ap_through_its_coco_keypoints(onnx_cfg):
    """The bundled 51 persons with ground-truth boxes on ONNX Runtime: results carry COCO's 17 keypoints, scored
    with COCO's sigmas, and the model's 33 as `model_keypoints`. Measured AP 0.2096 (a plain box crop; docs/blazepose.md): gate 0.18, margin 0.03."""
    from bmpose.evaluate.coco import coco_keypoint_ap
    from bmpose.evaluate.sets import eval_boxes, eval_set
    from bmpose.runtime import predict as infer
    from bmpose.runtime.results import dataset_sigmas, metric_options

    cfg = onnx_cfg
    ann, img = eval_set()
    run = infer.predict(cfg, infer.open_model(cfg, None, 4), eval_boxes(ann, img), progress=False)
    assert run.predictions[0].keypoints.shape == (33, 2)
    results = infer.coco_results(cfg, run.predictions, dataset_sigmas(cfg), metric_options(cfg))
    assert {len(r["keypoints"]) for r in results} == {17 * 3}
    assert {len(r["model_keypoints"]) for r in results} == {33 * 3}   # the model's own set stays beside them
    r = results[0]
    assert r["keypoints"][:3] == r["model_keypoints"][:3]   # COCO's nose is BlazePose's 0
    assert coco_keypoint_ap(ann, results, sigmas=dataset_sigmas(cfg))["AP"] >= 0.18


def test_detector_then_blazepose_lands_limbs_on_the_right_players(onnx_cfg, mmpose_coco):
    """YOLOX-nano's boxes on a baseball photo, then BlazePose: each detected player's limb keypoints (shoulders
    to ankles) fall inside its own box, and the poses match the annotated players. Measured OKS against the
    annotation 0.84, 0.79, 0.87 and 0.18 (the crouching catcher): gates 3 players at OKS >= 0.6 (margin 0.19)."""
    from bmpose.cocodata import load_coco_keypoints
    from bmpose.detector_config import load_detector
    from bmpose.evaluate.paired import oks
    from bmpose.pose.results import COCO_SIGMAS
    from bmpose.runtime import predict as infer
    from bmpose.runtime.detector import PersonDetector, detector_boxes
    from bmpose.runtime.results import coco_view

    cfg = onnx_cfg
    boxes, _ = detector_boxes(PersonDetector(load_detector("yolox_nano_416")), [mmpose_coco / BASEBALL], 0.3)
    run = infer.predict(cfg, infer.open_model(cfg, None, 1), boxes, progress=False)
    truth = [p for p in load_coco_keypoints(mmpose_coco / "test_coco.json", mmpose_coco).persons()
             if Path(p.file).name == BASEBALL and p.num_keypoints]
    assert len(run.predictions) == len(truth) == 4
    good = 0
    for p in run.predictions:
        x, y, w, h = p.box.bbox
        limbs = coco_view(cfg, p.keypoints)[5:]
        inside = (limbs[:, 0] >= x - 0.1 * w) & (limbs[:, 0] <= x + 1.1 * w) & \
                 (limbs[:, 1] >= y - 0.1 * h) & (limbs[:, 1] <= y + 1.1 * h)
        assert inside.all(), (p.box.bbox, limbs.round())
        best = max(oks(coco_view(cfg, p.keypoints), t.keypoints.astype(np.float64), t.bbox[2] * t.bbox[3] * 0.53,
                       COCO_SIGMAS) for t in truth)
        good += best >= 0.6
    assert good >= 3


@pytest.fixture(scope="module")
def built(onnx_cfg):
    """FP32 and INT8 (the config's calibration) bmodels for BM1684X, batch 1, in the shared root."""
    from bmpose.flows.build import BuildRequest, build
    from bmpose.layout import list_bmodels

    cfg = onnx_cfg
    for precision in ("fp32", "int8"):
        build(BuildRequest(precision, model=MODEL, artifacts_dir=cfg.root, chips=("bm1684x",), batches=(1,),
                           report=False))
    return cfg, {b["precision"]: b for b in list_bmodels(cfg) if b["chip"] == "bm1684x" and b["batch"] == 1}


@pytest.mark.slow
def test_bmodels_are_built_and_compared(built):
    cfg, bms = built
    assert set(bms) == {"fp32", "int8"}
    for b in bms.values():
        checks = b["manifest"]["checks"]
        key = f"{b['precision']}_cos"
        assert checks["final"]["cosine"] >= checks["tolerance"][key] == cfg.tolerances[key]
        assert b["manifest"]["output_names"] == ["keypoints_Reshape"] or \
            b["manifest"]["output_names"][0].startswith("keypoints")
        with np.load(b["dir"] / "compare.npz") as z:
            assert z["bmodel"].shape == (1, 195)


def _keypoints(results_json) -> np.ndarray:
    rows = json.loads(Path(results_json).read_text())
    return np.array(sorted((r["image_id"], *r["keypoints"]) for r in rows))


@pytest.mark.slow
def test_the_bundle_runs_blazepose_as_bmpose_infer_does(built, bundle_py38, tmp_path):
    """`bmpose deploy` bundles the regression model with its keypoint set; bmodel.py (Python 3.8, ONNX behind the
    sail stand-in; and the INT8 bmodel's tpu.mlir on the build venv) writes `bmpose infer`'s results."""
    cfg, bms = built
    art = ["--artifacts-dir", str(cfg.root)]
    bmpose_ok("deploy", "--model", MODEL, *art, "--chips", "bm1684x", "--batches", "1", "--detector", "none")
    with tarfile.open(cfg.artifacts / "deploy" / f"{MODEL}_bm1684x.tar.gz") as tar:
        tar.extractall(tmp_path)
    bundle = tmp_path / f"{MODEL}_bm1684x"
    pose = json.loads((bundle / "deploy.json").read_text())["pose"]
    assert pose["codec"]["type"] == "RegressionLabel" and len(pose["keypoint_names"]) == 33
    assert len(pose["coco_keypoints"]) == 17
    boxes = f"dets:{bundle / 'images' / 'boxes.json'}"
    int8 = bms["int8"]["path"]
    tpu_mlir = bms["int8"]["dir"] / bms["int8"]["manifest"]["tpu_mlir"]
    for python, engine, ref in ((sys.executable, f"cmodel:{int8.name}={tpu_mlir}", ("--backend", "mlir", tpu_mlir)),
                                (bundle_py38, f"onnx:{cfg.layout.onnx_file(1)}",
                                 ("--backend", "onnx", cfg.layout.onnx_file(1)))):
        device, host = tmp_path / f"device_{engine[:4]}", tmp_path / f"host_{engine[:4]}"
        run = subprocess.run([str(python), str(bundle / "bmodel.py"), "--bmodel", str(bundle / "models" / int8.name),
                              "--out", str(device)], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(SAIL_STANDIN), "SAIL_STANDIN_ENGINE": engine})
        assert run.returncode == 0, run.stderr[-2000:]
        bmpose_ok("infer", "--model", MODEL, *art, *ref, "--images", bundle / "images", "--boxes", boxes,
                  "--no-vis", "--out", host)
        got, want = _keypoints(device / "results.json"), _keypoints(host / "results.json")
        assert got.shape == want.shape and got.shape[1] == 1 + 17 * 3 and len(got) >= 3
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
        assert list(device.glob("*.jpg"))   # pictures drawn with BlazePose's own skeleton


@pytest.mark.slow
def test_weight_equalisation_is_refused_across_relu6(built):
    """BlazePose's convs carry a fused ReLU6 (min(x, 6) is not scale-invariant): TPU-MLIR's --we would equalise
    those pairs anyway and change the network (the held-out MobileNetV2 pose net: AP 0.0), so bmpose refuses it
    in one line, before run_calibration, and writes no table."""
    from bmpose.convert import cali_tools, steps

    cfg, _ = built
    mlir = cfg.layout.mlir(1) / steps.transform_files(cfg)["mlir"]
    ok, clipped = cali_tools.we_pairs(mlir)
    assert clipped and len(clipped) > len(ok)
    with pytest.raises(BmposeError, match=r"we: \d+ of the \d+ Conv -> Conv pairs .* pass through a clipped ReLU"):
        steps.ensure_cali_table(cfg, cfg.layout.mlir(1), [Path("unused.npz")], "mse", 1, tools=["we"])
    assert not list(cfg.layout.root.glob("cali_table/*_we*"))
