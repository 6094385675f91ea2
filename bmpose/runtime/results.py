"""Per-person predictions -> COCO keypoint results, exactly as mmpose's CocoMetric writes them (the core's
bmpose.pose.results), with the dataset's OKS sigmas and the metric options read from the model's mmpose config."""
from __future__ import annotations

import warnings

import numpy as np

from bmpose.pose import results as pose_results

# CocoMetric's defaults (mmpose 1.3.2); a config's val_evaluator may override them (see metric_options).
METRIC_DEFAULTS = {"score_mode": "bbox_keypoint", "keypoint_score_thr": 0.2, "nms_mode": "oks_nms",
                   "nms_thr": 0.9, "use_area": True}


def dataset_metainfo(cfg) -> dict | None:
    """The keypoint facts of the dataset the model's mmpose config evaluates on (its metainfo file):
    keypoint_names, flip_indices, skeleton_links, sigmas; None when the config names no metainfo."""
    from mmengine.config import Config

    from bmpose.weights.mmpose_shim import import_mmpose

    with warnings.catch_warnings():  # mmcv-lite's missing ops; "configs/_base_/... does not exist, the
        warnings.simplefilter("ignore")  # installed one is used": both fine here
        import_mmpose()
        from mmpose.datasets.datasets.utils import parse_pose_metainfo
        from mmpose.registry import DATASETS

        mm = Config.fromfile(str(cfg.mmpose_config))
        ds = mm.get("val_dataloader", {}).get("dataset", {})
        metainfo = ds.get("metainfo") or getattr(DATASETS.get(ds.get("type", "CocoDataset")), "METAINFO", None)
        if not metainfo:
            return None
        meta = parse_pose_metainfo(dict(metainfo))
    names = meta["keypoint_id2name"]
    return {"keypoint_names": [names[i] for i in range(meta["num_keypoints"])],
            "flip_indices": [int(i) for i in meta["flip_indices"]],
            "skeleton_links": [[int(a), int(b)] for a, b in meta["skeleton_links"]],
            "sigmas": [float(s) for s in meta["sigmas"]]}


def dataset_sigmas(cfg) -> np.ndarray | None:
    """The OKS sigmas of the dataset the model's mmpose config evaluates on (its metainfo file)."""
    meta = dataset_metainfo(cfg)
    return None if meta is None else np.asarray(meta["sigmas"], dtype=np.float64)


def metric_options(cfg) -> dict:
    """CocoMetric's scoring options, with the config's val_evaluator overrides."""
    from mmengine.config import Config

    mm = Config.fromfile(str(cfg.mmpose_config))
    ev = mm.get("val_evaluator", {}) or {}
    return {k: ev.get(k, v) for k, v in METRIC_DEFAULTS.items()}


def to_coco_results(instances: list[dict], sigmas, **options) -> list[dict]:
    """CocoMetric's results (rescored, OKS-NMS'd): the core's numpy implementation (bmpose.pose.results), the
    one the device bundle runs too; tested equal to mmpose's own oks_nms."""
    return pose_results.to_coco_results(instances, sigmas, **options)
