"""Per-person predictions -> COCO keypoint results, exactly as mmpose's CocoMetric writes them: rescored
(`bbox_keypoint`: box score x mean of the keypoint scores above 0.2) and OKS-NMS'd per image with mmpose's own
`oks_nms`; plus the dataset's OKS sigmas and the metric options, read from the model's mmpose config."""
from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np

from bmpose.errors import BmposeError

# CocoMetric's defaults (mmpose 1.3.2); a config's val_evaluator may override them (see metric_options).
METRIC_DEFAULTS = {"score_mode": "bbox_keypoint", "keypoint_score_thr": 0.2, "nms_mode": "oks_nms",
                   "nms_thr": 0.9, "use_area": True}


def dataset_sigmas(cfg) -> np.ndarray | None:
    """The OKS sigmas of the dataset the model's mmpose config evaluates on (its metainfo file)."""
    from mmengine.config import Config

    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.registry import DATASETS

    mm = Config.fromfile(str(cfg.mmpose_config))
    ds = mm.get("val_dataloader", {}).get("dataset", {})
    metainfo = ds.get("metainfo") or getattr(DATASETS.get(ds.get("type", "CocoDataset")), "METAINFO", None)
    if not metainfo:
        return None
    with warnings.catch_warnings():  # "configs/_base_/... does not exist, the installed one is used": fine
        warnings.simplefilter("ignore")
        return np.asarray(parse_pose_metainfo(dict(metainfo))["sigmas"], dtype=np.float64)


def metric_options(cfg) -> dict:
    """CocoMetric's scoring options, with the config's val_evaluator overrides."""
    from mmengine.config import Config

    mm = Config.fromfile(str(cfg.mmpose_config))
    ev = mm.get("val_evaluator", {}) or {}
    return {k: ev.get(k, v) for k, v in METRIC_DEFAULTS.items()}


def to_coco_results(instances: list[dict], sigmas, score_mode: str = "bbox_keypoint",
                    keypoint_score_thr: float = 0.2, nms_mode: str = "oks_nms", nms_thr: float = 0.9,
                    **_ignored) -> list[dict]:
    """Per-person predictions -> COCO keypoint results, as CocoMetric.compute_metrics makes them.

    Each instance: image_id, keypoints (K, 2) in image pixels, keypoint_scores (K,), bbox_score (1.0 for
    ground-truth boxes), area (the padded, aspect-fixed box scale product: mmpose's `bbox_scales`), and
    optionally bbox (x, y, w, h) and category_id.
    """
    from bmpose.weights.mmpose_shim import install

    install()
    from mmpose.evaluation.functional import oks_nms, soft_oks_nms

    by_image = defaultdict(list)
    for inst in instances:
        kpts = np.asarray(inst["keypoints"], dtype=np.float64)
        scores = np.asarray(inst["keypoint_scores"], dtype=np.float64)
        bbox_score = float(inst.get("bbox_score", 1.0))
        if score_mode == "bbox":
            score = bbox_score
        elif score_mode == "keypoint":
            score = float(np.mean(scores))
        elif score_mode == "bbox_keypoint":
            valid = scores[scores > keypoint_score_thr]
            score = bbox_score * (float(valid.mean()) if valid.size else 0.0)
        else:
            raise BmposeError(f"score_mode {score_mode!r} is not supported (bbox, keypoint, bbox_keypoint)")
        by_image[inst["image_id"]].append({
            "image_id": inst["image_id"], "category_id": int(inst.get("category_id", 1)),
            "keypoints": np.concatenate([kpts, scores[:, None]], axis=1), "score": score,
            "area": float(inst["area"]), "bbox": inst.get("bbox")})
    out = []
    for image_id, insts in by_image.items():
        if nms_mode != "none":
            nms = oks_nms if nms_mode == "oks_nms" else soft_oks_nms
            insts = [insts[k] for k in nms(insts, nms_thr, sigmas=None if sigmas is None else np.asarray(sigmas))]
        for inst in insts:
            res = {"image_id": image_id, "category_id": inst["category_id"],
                   "keypoints": [float(v) for v in inst["keypoints"].reshape(-1)], "score": float(inst["score"])}
            if inst["bbox"] is not None:
                res["bbox"] = [float(v) for v in inst["bbox"]]
            out.append(res)
    return out
