"""A person detector's bmodels: built by the pose models' stages and held to a box gate against ONNX."""
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from bmpose.flows.detector import targets
from bmpose.convert.detector_build import default_frames, ensure_frames, list_frames
from bmpose.detector_config import load_detector, load_detector_spec
from bmpose.errors import BmposeError
from bmpose.evaluate.detector_boxes import gate
from bmpose.pose.image_io import read_image
from bmpose.pose.detect import frame_input


def test_default_targets_follow_the_config_and_bm1684_has_no_fp16():
    d = load_detector()
    assert targets(d, None, None) == [("bm1684x", "fp16"), ("bm1684", "fp32")]
    assert targets(d, ["bm1684x"], "int8") == [("bm1684x", "int8")]
    with pytest.raises(BmposeError, match="bm1684"):
        targets(d, ["bm1684"], "fp16")
    with pytest.raises(BmposeError, match="no precision for bm1688.*--precision"):
        targets(d, ["bm1688"], None)


def test_a_build_is_named_after_the_at_sign(tmp_path):
    d = load_detector_spec("detector:yolox_nano_416@bm1684x_fp16", artifacts=tmp_path)
    assert (d.build, d.tag, d.precision) == ("bm1684x_fp16", "yolox_nano_416_bm1684x_fp16", "fp16")
    assert load_detector_spec("detector:", artifacts=tmp_path).model_path() == d.onnx
    with pytest.raises(BmposeError, match=r"has no fp16 bmodel for bm1684x; build it: bmpose detector") as e:
        d.model_path()
    assert "\n" not in str(e.value)
    with pytest.raises(BmposeError, match=r"after @ name a build as <chip>_<precision>"):
        load_detector_spec("detector:yolox_nano_416@fp16")
    # --precision auto's choice is a build too, once a search has made one
    auto = load_detector_spec("detector:yolox_nano_416@bm1684x_auto", artifacts=tmp_path)
    with pytest.raises(BmposeError, match=r"auto.bm1684x: detector yolox_nano_416 has no auto bmodel for bm1684x; "
                                          r"build it: bmpose detector .* --precision auto"):
        auto.model_path()
    assert targets(load_detector(), ["bm1684"], "auto") == [("bm1684", "auto")]


@pytest.mark.parametrize("text,match", [
    ("precisions: {bm1684: fp8}\n", "precisions must map chips"),
    ("precisions: {sc5: fp32}\n", "precisions must map chips"),
    ("tolerances: {fp16: 0.9}\n", "unknown key 'fp16' in tolerances"),
    ("tolerances: {int8_max_ap_drp: 0.1}\n", "unknown key 'int8_max_ap_drp' in tolerances; did you mean "
                                             "'int8_max_ap_drop'"),
    ("tolerances: 7\n", "tolerances must be a mapping"),
    ("auto: {target: 2}\n", r"target must be a number in \[0, 1\]"),
    ("auto: {budjet: 3}\n", "unknown key 'budjet' in auto; did you mean 'budget'"),
    ("auto: {budget: 1}\n", r"auto budget must be a whole number of builds in \[2, 64\]"),
    ("precisions: {bm1684: automatic}\n", "precisions must map chips"),
])
def test_bad_build_keys_are_one_line(tmp_path, text, match):
    import shutil

    shutil.copy(load_detector().onnx, tmp_path / "m.onnx")
    (tmp_path / "d.yaml").write_text("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolox\n" + text)
    with pytest.raises(BmposeError, match=match) as e:
        load_detector(tmp_path / "d.yaml")
    assert str(e.value).startswith(str(tmp_path / "d.yaml"))


def test_box_gate():
    onnx = {"AP": 0.50, "recall_iou50": {"recall": 1.0}}
    limits = {"max_recall_drop": 0.02, "max_ap_drop": 0.01}
    assert gate({"AP": 0.491, "recall_iou50": {"recall": 0.98}}, onnx, limits)["passed"]
    assert not gate({"AP": 0.489, "recall_iou50": {"recall": 1.0}}, onnx, limits)["passed"]
    assert not gate({"AP": 0.50, "recall_iou50": {"recall": 0.97}}, onnx, limits)["passed"]
    d = load_detector()
    assert d.box_gate("int8")["max_ap_drop"] > d.box_gate("fp16")["max_ap_drop"]
    assert d.box_gate("int8", "bm1684")["max_ap_drop"] > d.box_gate("int8", "bm1684x")["max_ap_drop"]


def test_calibration_frames_are_what_inference_feeds(tmp_path):
    d = load_detector(artifacts=tmp_path)
    files = ensure_frames(d, num=3)
    assert len(files) == 3 and d.input_name == "images"
    for npz, img in zip(files, list_frames(default_frames())):
        with np.load(npz) as z:
            assert z["images"].shape == (1, 3, 416, 416)
            np.testing.assert_array_equal(z["images"], frame_input(read_image(img), d)[1])
    stamp = (files[0].parent / "manifest.json").stat().st_mtime_ns
    assert ensure_frames(d, num=3) == files and (files[0].parent / "manifest.json").stat().st_mtime_ns == stamp
    (tmp_path / "empty").mkdir()
    with pytest.raises(BmposeError, match="empty: no images"):
        ensure_frames(replace(d, name="other"), folder=tmp_path / "empty")


@pytest.fixture(scope="module")
def built(detector):
    """`bmpose detector` as a user runs it (conftest's `detector`, shared with the deploy tests). -> (its artifacts
    folder, the finished run)."""
    dcfg, run = detector
    return dcfg.artifacts, run


@pytest.mark.slow
def test_detector_bmodels_find_the_persons_onnx_finds(built):
    art, run = built
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["label"]: r for r in json.loads((art / "eval" / "boxes.json").read_text())["rows"]}
    onnx = rows.pop("yolox_nano_416")
    assert onnx["AP"] > 0.45 and onnx["recall_iou50"]["recall"] > 0.9   # measured 0.5056, 43/44
    assert set(rows) == {"yolox_nano_416_bm1684x_fp16", "yolox_nano_416_bm1684_fp32"}
    for label, r in rows.items():
        assert r["backend"] == "mlir" and r["gate"]["passed"], (label, r["gate"])
        assert r["recall_iou50"]["found"] >= onnx["recall_iou50"]["found"] - 1
        assert abs(r["AP"] - onnx["AP"]) <= 0.01, (label, r["AP"], onnx["AP"])
        assert r["device_ms"] > 0 and r["output_cos"] > 0.999
    for sub in ("bm1684x_fp16_b1", "bm1684_fp32_b1"):
        m = json.loads((art / sub / "manifest.json").read_text())
        assert m["stage"] == "deploy" and m["checks"]["device_time"]["runtime_ms"] > 0
        assert (art / sub / "compare.csv").is_file() and (art / sub / f"yolox_nano_416_{sub}.bmodel").is_file()
    report = (art / "report" / "report.md").read_text()
    assert report.count("| yolox_nano_416") == 1 + len(rows) and "| pass |" in report


@pytest.mark.slow
def test_a_second_run_reuses_builds_and_scores(built):
    art, first = built
    assert first.returncode == 0, first.stderr[-3000:]
    stamp = (art / "bm1684x_fp16_b1" / "manifest.json").stat().st_mtime_ns
    run = subprocess.run([sys.executable, "-m", "bmpose", "detector", "--artifacts-dir", str(art.parent)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("up to date") == 2 and "scoring" not in run.stdout
    assert (art / "bm1684x_fp16_b1" / "manifest.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_int8_build_passes_its_box_gate(built, tmp_path):
    """`bmpose detector --precision int8 --chips bm1684x`: kl on the 80 train frames, the stem in FP32, the chip's
    box gate. Runs in a copy of the shared detector builds (the report keeps the float rows beside the new INT8
    one). BM1684X only in CI (issue 32's budget): its gate is the tight one (0.08; BM1684's is 0.22) and the
    calibration, stem and scoring are the chip's only differences; BM1684's INT8 row is measured in
    docs/detection.md and by `bmpose detector --precision auto`."""
    shared, first = built
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(shared, tmp_path / shared.name, ignore=shutil.ignore_patterns(".*.lock"))
    art = tmp_path / shared.name
    run = subprocess.run([sys.executable, "-m", "bmpose", "detector", "--precision", "int8", "--chips", "bm1684x",
                          "--artifacts-dir", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rows = {r["label"]: r for r in json.loads((art / "eval" / "boxes.json").read_text())["rows"]}
    r = rows["yolox_nano_416_bm1684x_int8"]
    assert r["gate"]["passed"] and r["recall_iou50"]["found"] >= 33, (r["gate"], r["recall_iou50"])
    m = json.loads((art / "bm1684x_int8_b1" / "manifest.json").read_text())
    assert m["options"]["qtables"][0].endswith("float_stem_5.txt") and len(m["fp32_layers"]) >= 4
    assert m["options"]["calib"]["num"] == 80   # every train frame, the 44 empty scenes too
    assert {"yolox_nano_416_bm1684x_fp16", "yolox_nano_416_bm1684_fp32"} <= set(rows)   # the report keeps them
    report = (art / "report" / "report.md").read_text()
    assert "yolox_nano_416_bm1684x_int8" in report and "yolox_nano_416_bm1684x_fp16" in report
