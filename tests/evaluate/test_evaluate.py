"""COCO keypoint AP: known answers on mmpose's bundled data, mmpose's CocoMetric semantics, bad input."""
import json

import numpy as np
import pytest

from bmpose.cli import eval as eval_cli
from bmpose.evaluate import coco as evaluate
from bmpose.runtime import results
from bmpose.errors import BmposeError

KNOWN = {"AP": 0.8609, "AP50": 0.9931, "AP75": 0.9109, "APm": 0.7756, "APl": 0.9373, "AR": 0.8750}


def test_known_answer(mmpose_coco):
    stats = evaluate.coco_keypoint_ap(mmpose_coco / "test_coco.json", mmpose_coco / "example_coco_preds.json")
    assert set(stats) == set(evaluate.STAT_NAMES)
    for k, v in KNOWN.items():
        assert stats[k] == pytest.approx(v, abs=5e-5), k


def _gt_as_results(ann):
    data = json.loads(ann.read_text())
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
            for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")]


def test_ground_truth_scores_one(mmpose_coco, coco_mini):
    for ann in (mmpose_coco / "test_coco.json", coco_mini[0]):
        stats = evaluate.coco_keypoint_ap(ann, _gt_as_results(ann))
        assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_cli_json(mmpose_coco, capsys):
    rc = eval_cli.main(["--gt", str(mmpose_coco / "test_coco.json"),
                        "--results", str(mmpose_coco / "example_coco_preds.json"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == list(evaluate.STAT_NAMES) and out["AP"] == pytest.approx(0.8609, abs=5e-5)


def test_cli_text(mmpose_coco, capsys):
    eval_cli.main(["--gt", str(mmpose_coco / "test_coco.json"),
                   "--results", str(mmpose_coco / "example_coco_preds.json")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].split() == ["AP", "0.8609"]


def test_rescore_and_nms_match_mmpose_cocometric(mmpose_coco, tmp_path):
    """Noisy GT keypoints with duplicates and detector-like box scores: our rescoring + OKS-NMS gives the
    same results json and AP as mmpose's CocoMetric."""
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.evaluation.metrics import CocoMetric

    ann = mmpose_coco / "test_coco.json"
    data = json.loads(ann.read_text())
    rng = np.random.default_rng(0)
    instances, samples = [], []
    for i, a in enumerate(a for a in data["annotations"] if a["num_keypoints"] > 0):
        for dup in range(2):  # a near-duplicate per person: OKS-NMS must drop one of them
            kp = np.array(a["keypoints"], float).reshape(17, 3)[:, :2] + rng.normal(0, 2 + dup, (17, 2))
            ks = rng.uniform(0, 1, 17)
            bs, scale = float(rng.uniform(0.3, 1)), np.array(a["bbox"][2:]) * 1.25
            instances.append({"image_id": a["image_id"], "keypoints": kp, "keypoint_scores": ks,
                              "bbox_score": bs, "area": float(np.prod(scale))})
            samples.append({"id": 2 * i + dup, "img_id": a["image_id"], "category_id": 1,
                            "pred_instances": {"keypoints": kp[None], "keypoint_scores": ks[None]},
                            "gt_instances": {"bbox_scores": np.array([bs]), "bbox_scales": scale[None]}})
    meta = parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))
    metric = CocoMetric(ann_file=str(ann), outfile_prefix=str(tmp_path / "mm"))
    metric.dataset_meta = meta
    metric.process([], samples)
    mm_stats = metric.compute_metrics(metric.results)
    mm_results = json.loads((tmp_path / "mm.keypoints.json").read_text())

    ours = results.to_coco_results(instances, meta["sigmas"])
    assert len(ours) == len(mm_results) < len(instances)
    key = lambda r: (r["image_id"], round(r["score"], 9))  # noqa: E731
    for a, b in zip(sorted(ours, key=key), sorted(mm_results, key=key)):
        assert a["image_id"] == b["image_id"] and a["score"] == pytest.approx(b["score"], abs=1e-9)
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-6)
    stats = evaluate.coco_keypoint_ap(ann, ours, sigmas=meta["sigmas"])
    assert stats["AP"] == pytest.approx(mm_stats["AP"], abs=1e-9)


def test_results_for_unknown_image(mmpose_coco, tmp_path):
    res = _gt_as_results(mmpose_coco / "test_coco.json")
    res[0]["image_id"] = 123456789
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(res))
    with pytest.raises(BmposeError, match="123456789.*not in the annotation file"):
        evaluate.coco_keypoint_ap(mmpose_coco / "test_coco.json", bad)


@pytest.mark.parametrize("content,match", [("[]", "no predictions"), ("{", "not valid JSON")])
def test_bad_results_file(mmpose_coco, tmp_path, content, match):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(BmposeError, match=match):
        evaluate.coco_keypoint_ap(mmpose_coco / "test_coco.json", bad)


@pytest.mark.parametrize("field, value, match", [
    ("keypoints", float("nan"), "keypoints must be finite numbers"),   # scored AP 0.90 against 0.79 before
    ("keypoints", float("inf"), "keypoints must be finite numbers"),
    ("score", float("nan"), "score must be a finite number"),
    ("score", "0.9", "score must be a finite number, got '0.9'"),         # a TypeError before
])
def test_a_non_finite_or_string_value_in_results_is_refused(mmpose_coco, tmp_path, field, value, match):
    res = _gt_as_results(mmpose_coco / "test_coco.json")
    if field == "keypoints":
        res[1]["keypoints"][4] = value
    else:
        res[1]["score"] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(res))   # json writes NaN / Infinity, and reads them back
    with pytest.raises(BmposeError, match=f"bad.json: result 1 .*{match}") as e:
        evaluate.coco_keypoint_ap(mmpose_coco / "test_coco.json", bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("change, match", [
    (lambda a: a.update(iscrowd=1), "no scorable persons"),
    (lambda a: a.update(num_keypoints=0), "no scorable persons"),
    (lambda a: a.pop("area"), "has no 'area'"),
])
def test_annotations_without_a_scorable_person_are_refused_not_scored_minus_one(mmpose_coco, tmp_path, change,
                                                                                match):
    gt = json.loads((mmpose_coco / "test_coco.json").read_text())
    results = _gt_as_results(mmpose_coco / "test_coco.json")
    for a in gt["annotations"]:
        change(a)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(BmposeError, match=match) as e:
        evaluate.coco_keypoint_ap(path, results)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_missing_gt(tmp_path, mmpose_coco):
    with pytest.raises(BmposeError, match="annotation file not found"):
        evaluate.coco_keypoint_ap(tmp_path / "nope.json", mmpose_coco / "example_coco_preds.json")


def test_eval_with_the_bundled_detector(tmp_path, coco_mini, capsys):
    """--boxes detector: keypoint AP with the detector's boxes, beside (not over) the ground-truth-box rows, and
    the detector's own person-box AP and recall; the ground-truth AP stays what it was."""
    common = ["--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path), "--artifacts", "onnx_fp32"]
    assert eval_cli.main(common) == 0
    assert eval_cli.main(common + ["--boxes", "detector:yolox_nano_416"]) == 0
    ev = tmp_path / "hrnet_small_128x96" / "eval"
    gt_row = json.loads((ev / "onnx_fp32.json").read_text())
    det_row = json.loads((ev / "onnx_fp32__yolox_nano_416.json").read_text())
    boxes = json.loads((ev / "detector_yolox_nano_416.json").read_text())
    print(f"AP gt boxes {gt_row['AP']:.4f}, detector boxes {det_row['AP']:.4f}; person box AP {boxes['AP']:.4f}, "
          f"recall {boxes['recall_iou50']}")
    assert gt_row["options"]["boxes"] == "gt" and det_row["options"]["boxes"] == "detector:yolox_nano_416"
    assert 0.3 < det_row["AP"] < gt_row["AP"]   # boxes found, but not the annotators' own
    assert boxes["AP"] > 0.4 and boxes["recall_iou50"]["recall"] > 0.9 and boxes["eval_score_thr"] == 0.01
    assert "box AP" in capsys.readouterr().out
    # --json: one JSON object on stdout (it printed the table and ignored the flag), progress on stderr
    assert eval_cli.main(common + ["--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["onnx_fp32"]["AP"] == gt_row["AP"] and "up to date" in out.err


def test_rows_of_another_set_or_box_source_land_beside_the_default_rows(tmp_path):
    """`bmpose eval --coco-ann OTHER` (or a detection file's boxes) wrote eval/onnx_fp32.json over the bundled
    set's row, and the report then showed the other set's AP under the default label."""
    import argparse

    from bmpose.evaluate.run import _label_tag
    from bmpose.runtime.boxes import bundled_sample

    default = bundled_sample()[0]
    other = tmp_path / "person_keypoints_val2017.json"
    tag = lambda boxes, ann: _label_tag(argparse.Namespace(boxes=boxes), ann)  # noqa: E731
    assert tag("gt", default) == ""
    assert tag("gt", other) == "@person_keypoints_val2017"
    assert tag("dets:/d/COCO_val2017_detections.json", other) == "@person_keypoints_val2017__dets_COCO_val2017_detections"
    assert tag("detector:yolox_nano_416", default) == "__yolox_nano_416"


def test_a_build_answers_to_its_folder_name_on_the_cmodel_too(monkeypatch, tmp_path):
    """`--bmodel-runtime cmodel --artifacts bm1684x_int8_b1` said "not built": the cmodel rows are labelled
    `<folder>_cmodel`; both names pick the build now, and an unknown one is still refused."""
    import argparse

    from bmpose import layout
    from bmpose.evaluate.run import _artifacts

    d = tmp_path / "bm1684x_int8_b1"
    fake = [{"dir": d, "tpu_mlir": d / "x_tpu.mlir", "path": d / "x.bmodel", "chip": "bm1684x",
             "precision": "int8", "batch": 1, "manifest": {}, "name": d.name}]
    monkeypatch.setattr(layout, "list_bmodels", lambda cfg, auto=False: fake)
    for name in ("bm1684x_int8_b1", "bm1684x_int8_b1_cmodel"):
        args = argparse.Namespace(bmodel_runtime="cmodel", artifacts=[name])
        assert [a["label"] for a in _artifacts(None, args, tmp_path / "m.onnx")] == ["bm1684x_int8_b1_cmodel"]
    with pytest.raises(BmposeError, match="--artifacts bm1684_int8_b1: not built"):
        _artifacts(None, argparse.Namespace(bmodel_runtime="cmodel", artifacts=["bm1684_int8_b1"]), tmp_path)
