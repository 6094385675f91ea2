"""COCO keypoint AP, scored the way mmpose's CocoMetric scores it.

`coco_keypoint_ap(gt, results)`: the 10 standard COCO keypoint metrics of a COCO results file (xtcocotools,
iouType "keypoints", the dataset's OKS sigmas, `use_area` as mmpose). The results themselves are made by
`bmpose.runtime.results.to_coco_results`, as CocoMetric makes them.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from bmpose.device.inputs import finite_number
from bmpose.errors import BmposeError

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
STAT_LABELS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


def _load_json(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise BmposeError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BmposeError(f"{path}: {what} is not valid JSON ({e})") from None


def load_gt(gt: str | Path | dict):
    """xtcocotools COCO object of a person-keypoints annotation file, or of its content already loaded (a
    pseudo ground truth made in memory), its chatter silenced."""
    from xtcocotools.coco import COCO

    data = gt if isinstance(gt, dict) else _load_json(gt, "annotation file")
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise BmposeError(f"{gt}: not a COCO annotation file (needs images, annotations, categories)")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def check_results(results: list, gt_coco, source: str) -> None:
    """One-line errors for results that COCOeval would reject with a traceback or score silently wrong."""
    if not isinstance(results, list) or not results:
        raise BmposeError(f"{source}: no predictions (expected a non-empty JSON list of COCO keypoint results)")
    num_kpts = None
    for cat in gt_coco.dataset["categories"]:
        if cat.get("keypoints"):
            num_kpts = len(cat["keypoints"])
    known = set(gt_coco.getImgIds())
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "keypoints", "score"} <= set(r):
            raise BmposeError(f"{source}: result {i} lacks image_id, keypoints or score")
        if r["image_id"] not in known:
            raise BmposeError(f"{source}: result {i} is for image_id {r['image_id']}, which is not in the "
                              f"annotation file")
        if num_kpts and len(r["keypoints"]) != 3 * num_kpts:
            raise BmposeError(f"{source}: result {i} has {len(r['keypoints'])} keypoint values, expected "
                              f"{3 * num_kpts}")
        # COCOeval takes NaN without a word and scores it (a NaN coordinate raised AP 0.79 -> 0.90): refuse it
        if not (isinstance(r["keypoints"], list) and all(finite_number(v) for v in r["keypoints"])):
            raise BmposeError(f"{source}: result {i} (image {r['image_id']}): keypoints must be finite numbers")
        if not finite_number(r["score"]):
            raise BmposeError(f"{source}: result {i} (image {r['image_id']}): score must be a finite number, got "
                              f"{r['score']!r}")


def check_scorable(gt_coco, gt, image_ids=None) -> None:
    """AP over no person is undefined (COCOeval says -1, which reads as a number): say so, and name a person
    annotation that lacks the area OKS needs instead of a KeyError."""
    ids = None if image_ids is None else {int(i) for i in image_ids}
    persons = [a for a in gt_coco.dataset["annotations"] if ids is None or a.get("image_id") in ids]
    for a in persons:
        if "area" not in a and not a.get("iscrowd"):
            raise BmposeError(f"{gt}: annotation {a.get('id')} (image {a.get('image_id')}) has no 'area' (COCO's "
                              f"OKS divides by each person's area)")
    if not any(not a.get("iscrowd") and a.get("num_keypoints", 0) > 0 for a in persons):
        raise BmposeError(f"{gt}: no scorable persons (every person is crowd or has no labelled keypoint): "
                          f"keypoint AP is undefined")


def coco_keypoint_ap(gt: str | Path, results: str | Path | list, sigmas=None, use_area: bool = True,
                     verbose: bool = False, image_ids=None) -> dict[str, float]:
    """The 10 COCO keypoint metrics (keys STAT_NAMES) of `results` (a path or a list of result dicts);
    `image_ids` restricts the evaluation to those images (a named subset)."""
    from xtcocotools.cocoeval import COCOeval

    gt_coco = load_gt(gt)
    source = str(results) if not isinstance(results, list) else "results"
    if not isinstance(results, list):
        results = _load_json(results, "results file")
    check_results(results, gt_coco, source)
    check_scorable(gt_coco, gt, image_ids)
    sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)  # None: COCO's own sigmas
    out = io.StringIO()
    with contextlib.redirect_stdout(out if not verbose else sys.stdout):
        dt = gt_coco.loadRes([dict(r) for r in results])  # loadRes adds fields in place: give it copies
        ev = COCOeval(gt_coco, dt, "keypoints", sigmas, use_area)
        ev.params.useSegm = None
        if image_ids is not None:
            ev.params.imgIds = sorted(set(int(i) for i in image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def format_stats(stats: dict[str, float]) -> str:
    return "\n".join(f"{label:<7} {stats[name]:.4f}" for name, label in zip(STAT_NAMES, STAT_LABELS))
