"""A detector build's agreement with its float model, no labels: boxes scored against ONNX's persons."""
from __future__ import annotations

from bmpose.evaluate.box_agreement import boxes_vs_float, pseudo_truth

REF = [{"image_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9},
       {"image_id": 1, "bbox": [200, 20, 40, 90], "score": 0.6},
       {"image_id": 2, "bbox": [30, 30, 60, 120], "score": 0.8},
       {"image_id": 2, "bbox": [300, 30, 60, 120], "score": 0.1}]   # below the picture threshold: not a person


def test_pseudo_truth_keeps_the_persons_a_picture_would_draw():
    truth = pseudo_truth(REF, [1, 2, 3], 0.3)
    assert [a["bbox"] for a in truth["annotations"]] == [r["bbox"] for r in REF[:3]]
    assert {i["id"] for i in truth["images"]} == {1, 2, 3} and all(not a["iscrowd"] for a in truth["annotations"])


def test_the_float_models_own_boxes_agree_fully():
    s = boxes_vs_float(REF, REF, [1, 2], 0.3)
    assert s["box_ap_vs_float"] > 0.99 and s["found_vs_float"] == 1.0 and s["float_persons"] == 3


def test_moved_boxes_and_lost_persons_cost_agreement():
    moved = [{**r, "bbox": [r["bbox"][0] + 8, *r["bbox"][1:]]} for r in REF]
    s = boxes_vs_float(moved, REF, [1, 2], 0.3)
    assert 0.2 < s["box_ap_vs_float"] < 0.9 and s["found_vs_float"] == 1.0   # still found at IoU 0.5
    # a person whose score fell under the picture threshold is not found, though its box is there
    faded = [{**r, "score": 0.2} if i == 1 else r for i, r in enumerate(REF)]
    s = boxes_vs_float(faded, REF, [1, 2], 0.3)
    assert abs(s["found_vs_float"] - 2 / 3) < 1e-9 and s["box_ap_vs_float"] > 0.99


def test_no_float_person_measures_nothing():
    assert boxes_vs_float(REF, [], [1], 0.3) == {"box_ap_vs_float": None, "found_vs_float": None, "float_persons": 0}
