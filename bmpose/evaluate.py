"""COCO keypoint AP, scored the way mmpose's CocoMetric scores it.

Two jobs:
- `coco_keypoint_ap(gt, results)`: the 10 standard COCO keypoint metrics of a COCO results file
  (xtcocotools, iouType "keypoints", the dataset's OKS sigmas, `use_area` as mmpose).
- `to_coco_results(instances, ...)`: per-person predictions -> COCO results, rescored
  (`bbox_keypoint`: box score x mean of the keypoint scores above 0.2) and OKS-NMS'd per image with mmpose's
  own `oks_nms`, exactly as CocoMetric does before it writes its results json.

`bmpose eval --gt ANN --results RES [--json]` scores an existing file; `bmpose eval --model M` runs inference
for ONNX FP32 and each built bmodel (see `bmpose.evalrun`) and records artifacts/<model>/eval/<label>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import BmposeError

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
STAT_LABELS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
# CocoMetric's defaults (mmpose 1.3.2); a config's val_evaluator may override them (see metric_options).
METRIC_DEFAULTS = {"score_mode": "bbox_keypoint", "keypoint_score_thr": 0.2, "nms_mode": "oks_nms",
                   "nms_thr": 0.9, "use_area": True}


def _load_json(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise BmposeError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BmposeError(f"{path}: {what} is not valid JSON ({e})") from None


def load_gt(gt: str | Path):
    """xtcocotools COCO object of a person-keypoints annotation file (its chatter silenced)."""
    from xtcocotools.coco import COCO

    data = _load_json(gt, "annotation file")
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


# ---- sigmas and CocoMetric options from the model's mmpose config -------------------------------------------

def dataset_sigmas(cfg) -> np.ndarray | None:
    """The OKS sigmas of the dataset the model's mmpose config evaluates on (its metainfo file)."""
    from mmengine.config import Config

    from .mmpose_shim import import_mmpose

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


# ---- mmpose's rescoring + OKS-NMS --------------------------------------------------------------------------

def to_coco_results(instances: list[dict], sigmas, score_mode: str = "bbox_keypoint",
                    keypoint_score_thr: float = 0.2, nms_mode: str = "oks_nms", nms_thr: float = 0.9,
                    **_ignored) -> list[dict]:
    """Per-person predictions -> COCO keypoint results, as CocoMetric.compute_metrics makes them.

    Each instance: image_id, keypoints (K, 2) in image pixels, keypoint_scores (K,), bbox_score (1.0 for
    ground-truth boxes), area (the padded, aspect-fixed box scale product: mmpose's `bbox_scales`), and
    optionally bbox (x, y, w, h) and category_id.
    """
    from .mmpose_shim import install

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


# ---- CLI ---------------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose eval", description=(
        "COCO keypoint AP. With --gt and --results: score an existing COCO results file. Otherwise: run "
        "inference on the evaluation set for ONNX FP32 and each built bmodel of --model and record AP "
        "in artifacts/<model>/eval/<label>.json."))
    p.add_argument("--gt", help="COCO person-keypoints annotation json (with --results)")
    p.add_argument("--results", help="COCO keypoint results json to score")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--model", default=None, help="deploy config name or yaml (default: the small model)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--coco-ann", default=None, help="annotation json (default: bundled coco_val_mini)")
    p.add_argument("--coco-img", default=None, help="image folder of --coco-ann")
    p.add_argument("--boxes", default="gt", help="gt | dets:JSON (person boxes)")
    p.add_argument("--artifacts", nargs="*", default=None,
                   help="labels to evaluate (onnx_fp32, or a bmodel build dir name); default: all that exist")
    p.add_argument("--subset", type=int, default=None,
                   help="persons for bmodels run on the cmodel (default: 4, named in the result)")
    p.add_argument("--bmodel-runtime", choices=("mlir", "cmodel"), default="mlir",
                   help="how bmodels are evaluated without a device: their deployed tpu.mlir through pymlir on "
                        "the whole set (default), or the bmodel itself on the cmodel on --subset persons")
    p.add_argument("--flip", action="store_true", help="flip test")
    p.add_argument("--force", action="store_true", help="re-run even when the recorded result is up to date")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.results or args.gt:
        if not (args.results and args.gt):
            raise BmposeError("--gt and --results go together")
        sigmas = None
        if args.model:
            from . import config

            sigmas = dataset_sigmas(config.load(args.model))
        stats = coco_keypoint_ap(args.gt, args.results, sigmas=sigmas)
        print(json.dumps(stats) if args.json else format_stats(stats))
        return 0
    from .evalrun import run_eval

    return run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
