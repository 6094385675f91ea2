"""Fidelity gates on the trained fixture (configs/hrnet_small_128x96.yaml's default checkpoint) and its 51
training persons (data/person_keypoints_bundled.json, ground-truth boxes, the model's flip test):

- ONNX FP32 AP equals the AP of mmpose's own `inference_topdown` (PyTorch, mmpose's preprocessing and decode);
- the FP32 bmodel's AP (its deployed tpu.mlir on the mlir backend) equals ONNX's, per chip;
- the INT8 bmodel (default calibration on the bundled train2017 persons, FP32 tail, batch 1) costs at most
  INT8_MAX_OKS_DROP of per-person OKS against ONNX on the jittered evaluation set (bmpose.evaluate.paired:
  51 persons x 8 seeded boxes, the upper end of the 95% paired bootstrap interval), per chip; its COCO AP drop
  is bounded loosely (INT8_MAX_AP_DROP).

The mlir backend stands for the bmodel: tests/runtime/test_backends.py proves it equal to the bmodel on the cmodel
for INT8 (both chips, <= 1e-5); test_fp32_mlir_equals_cmodel here does the same for the FP32 bmodels on one
real crop (the cmodel binds one chip per process, so each chip runs in a child). The run's shared build of the
small model (conftest's `small`: FP32 + INT8, both chips, the defaults) serves every test.
"""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from bmpose import config
from bmpose.evaluate import coco as evaluate
from bmpose.runtime import predict as infer
from bmpose.runtime import results
from bmpose.runtime.backends import open_backend
from bmpose.evaluate import sets

pytestmark = pytest.mark.slow

MODEL = "hrnet_small_128x96"
# Calibrated on the bundled COCO train2017 persons (data/coco_train_mini, 71 crops), which the fixture has
# never seen, and scored on its 51 memorised val persons: INT8 costs the memorising fixture far more than it
# did when calibrated on those very persons (docs/calibration.md). Measured with the defaults (kl, automatic
# FP32 tail, kernels pinned: byte-identical builds on any machine): AP drop 0.0570 (bm1684) and 0.0528
# (bm1684x) from ONNX's 0.8280. The AP of 51 persons moves in steps of a few persons' OKS: a coarse sanity
# bound only, the measured drop plus about 0.025.
INT8_MAX_AP_DROP = {"bm1684": 0.08, "bm1684x": 0.08}
# The gate: per-person OKS drop, upper end of its 95% interval. Measured: bm1684 +0.0283 [+0.0198, +0.0377],
# bm1684x +0.0272 [+0.0188, +0.0367]; over calibration sets that each lack one crop (study --fragility) the
# drop moved by up to 0.0052 and the upper end reached +0.0379. Gate = that worst case plus a margin of 0.0071
# (more than the one-crop spread again: a kl threshold jump of the size once seen between CPUs).
INT8_MAX_OKS_DROP = {"bm1684": 0.045, "bm1684x": 0.045}
FP32_MAX_DIFF = 1e-3       # FP32 bmodel vs ONNX Runtime
TORCH_MAX_DIFF = 1e-4      # ONNX Runtime vs PyTorch (mmpose inference_topdown)


@pytest.fixture(scope="session")
def fidelity(small):
    """The default builds (the run's shared `small` set), the 51 persons, and an AP cache shared by the tests."""
    from bmpose.layout import list_bmodels

    cfg = small
    bmodels = {(b["chip"], b["precision"]): b for b in list_bmodels(cfg) if b["batch"] == 1}
    ann, img = sets.eval_set()
    boxes = sets.eval_boxes(ann, img)
    assert len(boxes) == 51
    return {"cfg": cfg, "bmodels": bmodels, "ann": ann, "boxes": boxes, "ap": {}, "runs": {}}


def _ap(fx, label, predictions_or_instances) -> float:
    cfg = fx["cfg"]
    sigmas, options = results.dataset_sigmas(cfg), results.metric_options(cfg)
    if predictions_or_instances and isinstance(predictions_or_instances[0], infer.Prediction):
        coco = infer.coco_results(cfg, predictions_or_instances, sigmas, options)
    else:
        coco = results.to_coco_results(predictions_or_instances, sigmas, **options)
    ap = evaluate.coco_keypoint_ap(fx["ann"], coco, sigmas=sigmas)["AP"]
    print(f"{label}: AP {ap:.4f}")
    return ap


def backend_ap(fx, label, path, chip=None, kind="mlir") -> float:
    if label not in fx["ap"]:
        from bmpose.runtime.backends import open_backend

        cfg = fx["cfg"]
        run = infer.predict(cfg, open_backend(path, chip, kind=kind), fx["boxes"], cfg.flip_test, progress=False,
                            allow_slow=True)
        assert len(run.predictions) == len(fx["boxes"])
        fx["runs"][label] = run
        fx["ap"][label] = _ap(fx, label, run.predictions)
    return fx["ap"][label]


def onnx_ap(fx) -> float:
    from bmpose.convert.export import ensure_onnx

    return backend_ap(fx, "onnx", ensure_onnx(fx["cfg"], batches=(1,), verbose=False)[1], kind="onnx")


def test_default_int8_is_calibrated_on_persons_it_is_never_scored_on(fidelity):
    """make int8's default set is the bundled train2017 persons; the build records it, the report says it."""
    from bmpose.calib.provenance import seen
    from bmpose.report.render import sets_line
    from bmpose.report.report import collect

    train = "data/coco_train_mini/person_keypoints_train2017_subset.json"
    for chip in ("bm1684", "bm1684x"):
        cal = fidelity["bmodels"][(chip, "int8")]["manifest"]["calibration"]
        assert cal["set"] == train and cal["crops"] == 71 and len(cal["images"]) == 26
        assert seen(cal, sorted({b.file for b in fidelity["boxes"]})) == []
    assert f"INT8 calibrated on `{train}` (71 crops)" in sets_line(collect(fidelity["cfg"]))


def test_onnx_ap_equals_pytorch(fidelity):
    """mmpose's inference_topdown on the same boxes (its own crop, flip test, decode) scored the same way."""
    fx = fidelity
    from bmpose.weights.checkpoint import build_model
    from bmpose.weights.mmpose_shim import import_mmpose

    cfg = fx["cfg"]
    ref = onnx_ap(fx)
    import_mmpose()
    from mmpose.apis import inference_topdown

    model = build_model(cfg)
    by_file: dict = {}
    for i, b in enumerate(fx["boxes"]):
        by_file.setdefault(str(b.file), []).append(i)
    instances = [None] * len(fx["boxes"])
    onnx_preds = {id(p.box): p for p in fx["runs"]["onnx"].predictions}   # predict() groups boxes by image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f, idx in by_file.items():
            samples = inference_topdown(model, f, np.stack([fx["boxes"][i].xyxy for i in idx]), "xyxy")
            for i, s in zip(idx, samples):
                p = onnx_preds[id(fx["boxes"][i])]
                instances[i] = {"image_id": p.box.image_id, "keypoints": s.pred_instances.keypoints[0],
                                "keypoint_scores": s.pred_instances.keypoint_scores[0], "bbox_score": p.box.score,
                                "area": p.area, "bbox": p.box.bbox}
    torch_ap = _ap(fx, "pytorch (mmpose inference_topdown)", instances)
    assert abs(ref - torch_ap) <= TORCH_MAX_DIFF, f"ONNX AP {ref:.5f} vs PyTorch AP {torch_ap:.5f}"
    assert ref > 0.8, f"the trained fixture should fit its training persons (AP {ref:.4f})"


CMODEL_CHILD = r"""
import json, sys
import numpy as np
from bmpose.runtime.backends import open_backend
bmodel, tpu_mlir, test_input, chip = sys.argv[1:5]
with np.load(test_input) as z:
    x = z[z.files[0]][:1].astype(np.float32)
cm = open_backend(bmodel, chip, kind="cmodel").run(x)
ml = open_backend(tpu_mlir, chip, kind="mlir").run(x)
print("RESULT " + json.dumps(float(np.abs(cm - ml).max())))
"""


@pytest.mark.parametrize("chip", ["bm1684", "bm1684x"])
def test_fp32_mlir_equals_cmodel(fidelity, chip):
    """The FP32 bmodel on TPU-MLIR's simulator vs its deployed tpu.mlir on pymlir, on the build's real test crop."""
    b = fidelity["bmodels"][(chip, "fp32")]
    args = [b["path"], b["tpu_mlir"], b["dir"] / b["manifest"]["input"], chip]
    r = subprocess.run([sys.executable, "-c", CMODEL_CHILD, *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    diff = json.loads(line[7:])
    print(f"{chip} FP32: max |cmodel - mlir| = {diff:.2e}")
    assert diff <= 1e-5


@pytest.mark.parametrize("chip", ["bm1684", "bm1684x"])
def test_fp32_bmodel_ap_equals_onnx(fidelity, chip):
    b = fidelity["bmodels"][(chip, "fp32")]
    ap = backend_ap(fidelity, f"{chip} fp32", b["tpu_mlir"], chip)
    assert abs(ap - onnx_ap(fidelity)) <= FP32_MAX_DIFF, f"{chip} FP32 AP {ap:.5f} vs ONNX {onnx_ap(fidelity):.5f}"


@pytest.mark.parametrize("chip", ["bm1684", "bm1684x"])
def test_int8_ap_drop(fidelity, chip):
    b = fidelity["bmodels"][(chip, "int8")]
    m = b["manifest"]["options"]
    assert m["method"] == fidelity["cfg"].calibration["method"] and not m["search"]   # the defaults
    ap = backend_ap(fidelity, f"{chip} int8", b["tpu_mlir"], chip)
    drop = onnx_ap(fidelity) - ap
    print(f"{chip}: INT8 AP drop {drop:+.4f} (sanity bound {INT8_MAX_AP_DROP[chip]})")
    assert drop <= INT8_MAX_AP_DROP[chip], f"{chip} INT8 AP {ap:.4f} is {drop:.4f} below ONNX FP32"


@pytest.fixture(scope="module")
def jittered(fidelity):
    from bmpose.convert.export import ensure_onnx
    from bmpose.evaluate import paired

    cfg = fidelity["cfg"]
    boxes, owner, truth = paired.jittered_boxes(fidelity["ann"], sets.eval_set()[1])
    sigmas = results.dataset_sigmas(cfg)
    onnx = ensure_onnx(cfg, batches=(1,), verbose=False)[1]
    ref = paired.score_backend(cfg, open_backend(onnx, kind="onnx"), boxes, owner, truth, sigmas, cfg.flip_test)
    return boxes, owner, truth, sigmas, ref


@pytest.mark.parametrize("chip", ["bm1684", "bm1684x"])
def test_int8_oks_drop(fidelity, jittered, chip):
    """The gate: INT8 vs ONNX per-person OKS on the same 408 crops, 95% paired bootstrap interval."""
    from bmpose.evaluate import paired

    boxes, owner, truth, sigmas, ref = jittered
    cfg, b = fidelity["cfg"], fidelity["bmodels"][(chip, "int8")]
    test = paired.score_backend(cfg, open_backend(b["tpu_mlir"], chip, kind="mlir"), boxes, owner, truth, sigmas,
                                cfg.flip_test)
    d = paired.paired_drop(ref, test)
    print(f"{chip}: INT8 OKS drop {d['drop']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] "
          f"(gate {INT8_MAX_OKS_DROP[chip]} on the upper end)")
    assert d["ci95"][1] <= INT8_MAX_OKS_DROP[chip], d


def test_fp32_oks_drop_is_zero(fidelity, jittered):
    """FP32 bmodels decode to the same keypoints as ONNX on every jittered crop (measured: exactly)."""
    from bmpose.evaluate import paired

    boxes, owner, truth, sigmas, ref = jittered
    cfg, b = fidelity["cfg"], fidelity["bmodels"][("bm1684x", "fp32")]
    test = paired.score_backend(cfg, open_backend(b["tpu_mlir"], "bm1684x", kind="mlir"), boxes, owner, truth,
                                sigmas, cfg.flip_test)
    assert abs(paired.paired_drop(ref, test)["drop"]) <= 1e-4
