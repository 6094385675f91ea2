"""How well a detector finds the persons of a COCO annotation file: person-box recall at an IoU and COCO's own
bbox AP for the person category (xtcocotools, iouType "bbox")."""
from __future__ import annotations

import contextlib
import io

import numpy as np

from bmpose.evaluate.coco import STAT_NAMES, load_gt

PERSON = 1           # COCO's category id of person
MIN_AREA = 32 * 32   # recall counts persons larger than COCO's "small"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xywh boxes a [N, 4] against b [M, 4] -> [N, M]."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = (np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    return inter / (a[:, 2:].prod(1)[:, None] + b[:, 2:].prod(1)[None] - inter)


def box_recall(gt, dets: list[dict], iou: float = 0.5, min_area: float = MIN_AREA) -> dict:
    """Share of the non-crowd persons with a box larger than min_area that some detection (COCO results: image_id,
    bbox xywh) overlaps at >= iou. -> {"recall", "found", "persons"}"""
    coco = load_gt(gt)
    by_image: dict = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d["bbox"])
    found = persons = 0
    for a in coco.dataset["annotations"]:
        w, h = a["bbox"][2:]
        if a.get("iscrowd") or a.get("category_id", PERSON) != PERSON or w * h <= min_area:
            continue
        persons += 1
        mine = by_image.get(a["image_id"])
        if mine and _iou(np.asarray([a["bbox"]], float), np.asarray(mine, float)).max() >= iou:
            found += 1
    return {"recall": found / persons if persons else 0.0, "found": found, "persons": persons}


def box_ap(gt, dets: list[dict]) -> dict:
    """COCO bbox AP/AR of the person category (the 10 headline numbers, keyed like the keypoint ones)."""
    from xtcocotools.cocoeval import COCOeval

    coco = load_gt(gt)
    if not dets:
        return {name: 0.0 for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes([{**d, "category_id": PERSON} for d in dets])
        ev = COCOeval(coco, dt, "bbox")
        ev.params.catIds = [PERSON]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # bbox summarize order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
    s = ev.stats
    return {"AP": s[0], "AP50": s[1], "AP75": s[2], "APm": s[4], "APl": s[5], "AR": s[8], "AR50": None,
            "AR75": None, "ARm": s[10], "ARl": s[11]}
