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
    """The keypoint facts of the dataset the model evaluates on: keypoint_names, flip_indices, skeleton_links,
    sigmas. From the mmpose config's metainfo file, or an `onnx:` config's dataset (a name of mmpose's metainfo
    files, or inline); None when an mmpose config names no metainfo."""
    from mmengine.config import Config

    from bmpose.weights.mmpose_shim import import_mmpose

    if isinstance(cfg.dataset, dict):
        return _inline_metainfo(cfg.dataset)
    with warnings.catch_warnings():  # mmcv-lite's missing ops; "configs/_base_/... does not exist, the
        warnings.simplefilter("ignore")  # installed one is used": both fine here
        import_mmpose()
        from mmpose.datasets.datasets.utils import parse_pose_metainfo
        from mmpose.registry import DATASETS

        if cfg.mmpose_config is None:
            metainfo = _named_metainfo(cfg)
        else:
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


def _named_metainfo(cfg) -> dict:
    from bmpose.config import mmpose_config_root
    from bmpose.errors import BmposeError

    f = mmpose_config_root() / "_base_" / "datasets" / f"{cfg.dataset}.py"
    if not f.is_file():
        known = sorted(p.stem for p in f.parent.glob("*.py"))
        raise BmposeError(f"{cfg.path}: dataset {cfg.dataset!r}: mmpose has no such metainfo file (known: "
                          f"{', '.join(known[:12])}, ...)")
    return {"from_file": str(f)}


def _inline_metainfo(ds: dict) -> dict:
    names = [str(n) for n in ds["keypoint_names"]]
    flip = list(range(len(names)))
    for a, b in ds["flip_pairs"]:
        flip[int(a)], flip[int(b)] = int(b), int(a)
    return {"keypoint_names": names, "flip_indices": flip,
            "skeleton_links": [[int(a), int(b)] for a, b in ds["skeleton"]], "sigmas": [float(s) for s in ds["sigmas"]],
            **({"coco_keypoints": [int(i) for i in ds["coco_keypoints"]]} if ds.get("coco_keypoints") else {})}


_META = {}


def keypoint_set(cfg) -> dict:
    """dataset_metainfo, once per config (it reads the mmpose config), COCO's when the config names none."""
    from bmpose.pose import skeleton

    key = (str(cfg.path), str(cfg.mmpose_config), repr(cfg.dataset))
    if key not in _META:
        _META[key] = dataset_metainfo(cfg) or {
            "keypoint_names": list(skeleton.KEYPOINT_NAMES), "flip_indices": list(skeleton.FLIP_INDICES),
            "skeleton_links": [list(link) for link in skeleton.SKELETON_LINKS], "sigmas": skeleton.SIGMAS.tolist()}
    return _META[key]


def pose_facts(cfg) -> dict:
    """What the core needs about the model (the bundle's deploy.json "pose"): sizes, normalisation, codec, test
    settings and its keypoint set (keypoint_set)."""
    return {"input_size": list(cfg.input_size), "heatmap_size": list(cfg.heatmap_size) if cfg.heatmap_size else None,
            "padding": cfg.padding,
            "mean": list(cfg.mean), "std": list(cfg.std), "bgr_to_rgb": cfg.bgr_to_rgb, "codec": cfg.codec,
            "flip_test": cfg.flip_test, "shift_heatmap": cfg.shift_heatmap, "shift_coords": cfg.shift_coords,
            **keypoint_set(cfg)}


def model_spec(cfg):
    """pose_facts as the spec the core's estimate and frame loop read (bmpose.pose.frames.model_spec): the same
    facts, resolved the same way, as the bundle's."""
    from bmpose.pose.frames import model_spec as spec_of

    return spec_of(pose_facts(cfg))


def coco_keypoints(cfg) -> list | None:
    """The 17 indices of a keypoint set that is not COCO's but declares its COCO keypoints (BlazePose's 33), else
    None: COCO evaluation and results read those, with COCO's sigmas."""
    return cfg.dataset.get("coco_keypoints") if isinstance(cfg.dataset, dict) else None


def coco_view(cfg, keypoints: np.ndarray) -> np.ndarray:
    """Keypoints (..., K, D) as COCO evaluation reads them: the declared COCO 17 of another keypoint set."""
    pick = coco_keypoints(cfg)
    return np.asarray(keypoints)[..., pick, :] if pick else np.asarray(keypoints)


def dataset_sigmas(cfg) -> np.ndarray | None:
    """The OKS sigmas of the dataset the model's mmpose config evaluates on (its metainfo file); COCO's for a
    keypoint set evaluated through its declared COCO keypoints."""
    if coco_keypoints(cfg):
        return pose_results.COCO_SIGMAS.copy()
    meta = dataset_metainfo(cfg)
    return None if meta is None else np.asarray(meta["sigmas"], dtype=np.float64)


def metric_options(cfg) -> dict:
    """CocoMetric's scoring options, with the config's val_evaluator overrides."""
    from mmengine.config import Config

    ev = cfg.evaluator if cfg.mmpose_config is None else (Config.fromfile(str(cfg.mmpose_config))
                                                          .get("val_evaluator", {}) or {})
    coco = coco_keypoints(cfg)
    return {**{k: ev.get(k, v) for k, v in METRIC_DEFAULTS.items()}, **({"coco_keypoints": coco} if coco else {})}


def to_coco_results(instances: list[dict], sigmas, **options) -> list[dict]:
    """CocoMetric's results (rescored, OKS-NMS'd): the core's numpy implementation (bmpose.pose.results), the
    one the device bundle runs too; tested equal to mmpose's own oks_nms."""
    return pose_results.to_coco_results(instances, sigmas, **options)
