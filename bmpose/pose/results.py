"""Per-person keypoints -> COCO keypoint results as mmpose's CocoMetric writes them: rescored (`bbox_keypoint`:
box score x mean of the keypoint scores above 0.2) and OKS-NMS'd per image. numpy only, so the device bundle
writes the same results json as `bmpose infer`; tests/pose/test_pose_results.py checks it against mmpose's own
`oks_nms` and CocoMetric options.
"""
from __future__ import annotations

import numpy as np

from .errors import PoseError

# mmpose's oks_iou default (COCO), used when the caller passes no sigmas
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0


def oks_iou(g: np.ndarray, d: np.ndarray, a_g: float, a_d: np.ndarray, sigmas=None) -> np.ndarray:
    """OKS of one instance's flat (K*3,) keypoints `g` against each row of `d` (N, K*3), as mmpose's oks_iou
    without vis_thr (float64 arithmetic in its order, result float32)."""
    variances = (np.asarray(COCO_SIGMAS if sigmas is None else sigmas) * 2) ** 2
    dx = d[:, 0::3] - g[0::3]
    dy = d[:, 1::3] - g[1::3]
    e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[:, None]) / 2 + np.spacing(1)) / 2
    return np.array([np.sum(np.exp(-row)) / len(row) if len(row) else 0.0 for row in e], dtype=np.float32)


def oks_nms(instances: list, thr: float, sigmas=None) -> list:
    """Indices of the instances kept by greedy OKS-NMS (each: keypoints (K, 3), score, area), as mmpose's."""
    if not instances:
        return []
    scores = np.array([inst["score"] for inst in instances])
    kpts = np.array([np.asarray(inst["keypoints"]).flatten() for inst in instances])
    areas = np.array([inst["area"] for inst in instances])
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(int(i))
        overlap = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas)
        order = order[np.where(overlap <= thr)[0] + 1]
    return keep


def instance_score(keypoint_scores: np.ndarray, bbox_score: float, score_mode: str,
                   keypoint_score_thr: float) -> float:
    """CocoMetric's instance score."""
    if score_mode == "bbox":
        return float(bbox_score)
    if score_mode == "keypoint":
        return float(np.mean(keypoint_scores))
    if score_mode == "bbox_keypoint":
        valid = keypoint_scores[keypoint_scores > keypoint_score_thr]
        return float(bbox_score) * (float(valid.mean()) if valid.size else 0.0)
    raise PoseError(f"score_mode {score_mode!r} is not supported (bbox, keypoint, bbox_keypoint)")


def to_coco_results(instances: list, sigmas=None, score_mode: str = "bbox_keypoint",
                    keypoint_score_thr: float = 0.2, nms_mode: str = "oks_nms", nms_thr: float = 0.9,
                    coco_keypoints=None, **_ignored) -> list:
    """Per-person predictions -> COCO keypoint results, as CocoMetric.compute_metrics makes them.

    Each instance: image_id, keypoints (K, 2) in image pixels, keypoint_scores (K,), bbox_score (1.0 for
    ground-truth boxes), area (the padded, aspect-fixed box scale product: mmpose's `bbox_scales`), and
    optionally bbox (x, y, w, h) and category_id. Results keep the order of first appearance of each image.
    `coco_keypoints` (17 indices, a keypoint set that is not COCO's, e.g. BlazePose's 33): results hold those
    keypoints, in COCO's order, rescored and OKS-NMS'd with COCO's sigmas, so COCO evaluation reads them; the
    model's own keypoints stay beside them as `model_keypoints` (flat x, y, score, which COCO evaluation ignores).
    """
    if nms_mode not in ("oks_nms", "none"):
        raise PoseError(f"nms_mode {nms_mode!r} is not supported (oks_nms, none)")
    pick = None if coco_keypoints is None else list(coco_keypoints)
    if pick is not None:
        sigmas = COCO_SIGMAS
    by_image = {}
    for inst in instances:
        kpts = np.asarray(inst["keypoints"], dtype=np.float64)
        scores = np.asarray(inst["keypoint_scores"], dtype=np.float64)
        own = None
        if pick is not None:
            own = np.concatenate([kpts, scores[:, None]], axis=1)
            kpts, scores = kpts[pick], scores[pick]
        by_image.setdefault(inst["image_id"], []).append({
            "image_id": inst["image_id"], "category_id": int(inst.get("category_id", 1)),
            "keypoints": np.concatenate([kpts, scores[:, None]], axis=1),
            "score": instance_score(scores, inst.get("bbox_score", 1.0), score_mode, keypoint_score_thr),
            "area": float(inst["area"]), "bbox": inst.get("bbox"), "bbox_score": float(inst.get("bbox_score", 1.0)),
            "own": own})
    out = []
    for image_id, insts in by_image.items():
        if nms_mode == "oks_nms":
            insts = [insts[k] for k in oks_nms(insts, nms_thr, sigmas)]
        for inst in insts:
            res = {"image_id": image_id, "category_id": inst["category_id"],
                   "keypoints": [float(v) for v in inst["keypoints"].reshape(-1)], "score": float(inst["score"])}
            if inst["own"] is not None:
                res["model_keypoints"] = [float(v) for v in inst["own"].reshape(-1)]
            if inst["bbox"] is not None:   # the person box and its detector's score, beside the rescored score
                res["bbox"] = [float(v) for v in inst["bbox"]]
                res["bbox_score"] = inst["bbox_score"]
            out.append(res)
    return out
