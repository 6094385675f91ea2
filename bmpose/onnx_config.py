"""A deploy config for a trained network held as an ONNX file (`onnx:` instead of `mmpose_config:`).

It says, in mmpose's own vocabulary, what an mmpose config would have said, so a user copies it from the config
that trained the model:

  onnx: hrnet_w32.onnx                   # relative to this yaml, or absolute
  codec: {type: MSRAHeatmap, input_size: [192, 256], heatmap_size: [48, 64], sigma: 2}   # or UDPHeatmap;
                                         # DARK: unbiased: true; or RegressionLabel (coordinates out, below)
  data_preprocessor: {mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], bgr_to_rgb: true}
  dataset: coco                          # a metainfo file of mmpose's (configs/_base_/datasets/<name>.py),
                                         # or inline: {keypoint_names, flip_pairs, skeleton, sigmas}
  test_cfg: {flip_test: true, shift_heatmap: false}    # mmpose's head defaults: both false
  val_evaluator: {nms_thr: 0.9}          # CocoMetric overrides (optional)
  bbox_score_thr: 0.0                    # detection boxes below this are dropped (mmpose's filter_cfg)
  output: Identity                       # a file with several outputs: the one bmpose reads ...
  extra_outputs: {Identity_1: pose flag} # ... and what each other one is; the import cuts them off

A RegressionLabel codec (mmpose's name for a head that outputs coordinates) reads an output of
[N, L * values_per_keypoint] or [N, L, values_per_keypoint] with L >= num_keypoints landmarks (the first
num_keypoints are the keypoint set's): x, y first, in `coordinates: normalized` (mmpose's, 0-1 of the input) or
`pixels` (of the input); `visibility_index: i` makes sigmoid(value i) each keypoint's score (else 1).
An inline dataset may add `coco_keypoints:` (17 indices into its keypoints, in COCO's order): what COCO
evaluation and the COCO results json read.

mean/std are on the 0-255 scale, in the network's channel order (RGB when bgr_to_rgb), as in mmpose.
"""
from __future__ import annotations

import math
from pathlib import Path

from bmpose.errors import BmposeError

CODECS = ("MSRAHeatmap", "UDPHeatmap", "RegressionLabel")
CODEC_EXAMPLE = "{type: MSRAHeatmap, input_size: [192, 256], heatmap_size: [48, 64], sigma: 2}"
INLINE_DATASET_KEYS = ("keypoint_names", "flip_pairs", "skeleton", "sigmas")
ONNX_KEYS = frozenset({"onnx", "codec", "data_preprocessor", "dataset", "test_cfg", "val_evaluator", "bbox_score_thr",
                       "output", "extra_outputs"})
# mmpose's own argument names (MSRAHeatmap / UDPHeatmap / RegressionLabel __init__), so a codec copied from a
# config passes; the last four are bmpose's, for regression outputs that are not mmpose's [N, K, 2] in 0-1
CODEC_KEYS = frozenset({"type", "input_size", "heatmap_size", "sigma", "unbiased", "blur_kernel_size",
                        "heatmap_type", "radius_factor",
                        "num_keypoints", "values_per_keypoint", "coordinates", "visibility_index"})
COCO_KEYPOINTS = 17
# the known keys of each nested mapping (config.load checks them all, with the nearest key for a typo)
NESTED_KEYS = {"codec": CODEC_KEYS, "test_cfg": ("flip_test", "shift_heatmap", "flip_mode", "shift_coords"),
               "data_preprocessor": ("type", "mean", "std", "bgr_to_rgb"),
               "dataset": (*INLINE_DATASET_KEYS, "coco_keypoints"),
               # CocoMetric's options bmpose reads (runtime.results.METRIC_DEFAULTS) and its other arguments
               "val_evaluator": ("type", "score_mode", "keypoint_score_thr", "nms_mode", "nms_thr", "use_area",
                                 "ann_file", "iou_type", "format_only", "outfile_prefix", "pred_converter",
                                 "gt_converter")}


def onnx_facts(raw: dict, path: Path) -> dict:
    """What bmpose reads from an `onnx:` yaml, checked; one-line errors naming the yaml."""
    test = raw.get("test_cfg") or {}
    if not isinstance(test, dict):
        raise BmposeError(f"{path}: test_cfg must be a mapping (flip_test, shift_heatmap)")
    pre = _preprocessor(raw.get("data_preprocessor"), path)
    dataset = _dataset(raw.get("dataset", "coco"), path)
    return {"onnx": _onnx_file(raw["onnx"], path), "codec": _codec(raw.get("codec"), path, dataset), **pre,
            "flip_test": bool(test.get("flip_test", False)), "shift_heatmap": bool(test.get("shift_heatmap", False)),
            "shift_coords": bool(test.get("shift_coords", True)),
            "dataset": dataset, **_outputs(raw, path),
            "evaluator": _evaluator(raw.get("val_evaluator"), path), "bbox_score_thr": _score(raw, path)}


def _score(raw: dict, path: Path) -> float:
    v = raw.get("bbox_score_thr", 0)
    if not (type(v) in (int, float) and 0 <= v <= 1):
        raise BmposeError(f"{path}: bbox_score_thr must be a detection score from 0 to 1, got {v!r}")
    return float(v)


def _evaluator(ev, path: Path) -> dict:
    """val_evaluator: CocoMetric's overrides, its numbers numbers (the known keys are checked by config.load)."""
    if ev is None:
        return {}
    if not isinstance(ev, dict):
        raise BmposeError(f"{path}: val_evaluator must be a mapping of CocoMetric options, got {ev!r}")
    for key in ("keypoint_score_thr", "nms_thr"):
        if key in ev and not (type(ev[key]) in (int, float) and 0 <= ev[key] <= 1):
            raise BmposeError(f"{path}: val_evaluator {key} must be a number from 0 to 1, got {ev[key]!r}")
    for key, kinds in (("score_mode", ("bbox", "keypoint", "bbox_keypoint")), ("nms_mode", ("oks_nms", "none"))):
        if key in ev and ev[key] not in kinds:
            raise BmposeError(f"{path}: val_evaluator {key} must be one of {', '.join(kinds)}, got {ev[key]!r}")
    return dict(ev)


def _onnx_file(ref, path: Path) -> Path:
    f = Path(str(ref)).expanduser()
    f = f if f.is_absolute() else (path.parent / f)
    if not f.is_file():
        raise BmposeError(f"{path}: onnx: {ref}: no such file")
    return f.resolve()


def _pair(value, what: str, path: Path) -> list[int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0
                                                                           for v in value)):
        raise BmposeError(f"{path}: codec {what} must be [width, height] in pixels, got {value!r}")
    return [int(v) for v in value]


def _outputs(raw: dict, path: Path) -> dict:
    """`output:` (the one output bmpose reads) and `extra_outputs:` ({name: what it is}), both optional."""
    out, extra = raw.get("output"), raw.get("extra_outputs") or {}
    if out is not None and not isinstance(out, str):
        raise BmposeError(f"{path}: output must be the name of one of the ONNX file's outputs, got {out!r}")
    if not isinstance(extra, dict):
        raise BmposeError(f"{path}: extra_outputs must map each other output's name to what it is")
    return {"output": out, "extra_outputs": {str(k): str(v) for k, v in extra.items()}}


def _regression(codec: dict, out: dict, path: Path, dataset) -> dict:
    """RegressionLabel: keypoints from the inline dataset when not given; the layout of the output checked."""
    k = codec.get("num_keypoints", len(dataset["keypoint_names"]) if isinstance(dataset, dict) else COCO_KEYPOINTS)
    v = codec.get("values_per_keypoint", 2)
    vis = codec.get("visibility_index")
    if not (isinstance(k, int) and k > 0 and isinstance(v, int) and v >= 2):
        raise BmposeError(f"{path}: codec num_keypoints must be a positive integer and values_per_keypoint one "
                          f">= 2 (x, y, ...), got {k!r} and {v!r}")
    if codec.get("coordinates", "normalized") not in ("normalized", "pixels"):
        raise BmposeError(f"{path}: codec coordinates must be normalized (0-1, mmpose's) or pixels (of the input), "
                          f"got {codec.get('coordinates')!r}")
    if vis is not None and not (isinstance(vis, int) and 2 <= vis < v):
        raise BmposeError(f"{path}: codec visibility_index must index one of the values after x, y (2 to {v - 1}), "
                          f"got {vis!r}")
    return {**out, "num_keypoints": k, "values_per_keypoint": v, "coordinates": codec.get("coordinates", "normalized")}


def _codec(codec, path: Path, dataset=None) -> dict:
    if codec is None:
        raise BmposeError(f"{path}: missing key 'codec' (an mmpose codec dict, e.g. {CODEC_EXAMPLE})")
    if not isinstance(codec, dict):
        raise BmposeError(f"{path}: codec must be a mapping, e.g. {CODEC_EXAMPLE}")
    if codec.get("type") not in CODECS:
        raise BmposeError(f"{path}: codec type {codec.get('type')!r} is not one bmpose decodes "
                          f"({', '.join(CODECS)})")
    out = dict(codec)
    out["input_size"] = _pair(codec.get("input_size"), "input_size", path)
    if codec["type"] == "RegressionLabel":
        return _regression(codec, out, path, dataset)
    out["heatmap_size"] = _pair(codec.get("heatmap_size"), "heatmap_size", path)
    sigma = codec.get("sigma", 2)
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise BmposeError(f"{path}: codec sigma must be a positive number, got {sigma!r}")
    return out


def _triple(pre: dict, key: str, path: Path) -> list[float]:
    v = pre.get(key)
    if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) and math.isfinite(x)
                                                                  for x in v)):
        raise BmposeError(f"{path}: data_preprocessor {key} must be 3 numbers (0-255 scale), got {v!r}")
    if key == "std" and not all(x > 0 for x in v):
        raise BmposeError(f"{path}: data_preprocessor std must be positive, got {v!r}")
    return [float(x) for x in v]


def _preprocessor(pre, path: Path) -> dict:
    if not isinstance(pre, dict):
        raise BmposeError(f"{path}: missing key 'data_preprocessor' ({{mean: [...], std: [...], bgr_to_rgb: "
                          f"true|false}}, as in the mmpose config)")
    return {"mean": _triple(pre, "mean", path), "std": _triple(pre, "std", path),
            "bgr_to_rgb": bool(pre.get("bgr_to_rgb", False))}


def _keypoint_set(ds: dict, path: Path) -> None:
    """An inline keypoint set's parts, each the right kind (lists of names, index pairs, positive sigmas)."""
    import math

    names, sigmas = ds["keypoint_names"], ds["sigmas"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise BmposeError(f"{path}: dataset keypoint_names must be a list of names, got {names!r}")
    if not (isinstance(sigmas, list) and all(type(x) in (int, float) and math.isfinite(x) and x > 0 for x in sigmas)):
        raise BmposeError(f"{path}: dataset sigmas must be a list of positive numbers, got {sigmas!r}")
    for key in ("flip_pairs", "skeleton"):
        pairs = ds[key]
        if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and all(
                type(i) is int and 0 <= i < len(names) for i in p) for p in pairs)):
            raise BmposeError(f"{path}: dataset {key} must be a list of [a, b] keypoint indices (0 to "
                              f"{len(names) - 1}), got {pairs!r}"[:300])


def _dataset(ds, path: Path):
    if isinstance(ds, str) and ds.replace("_", "").isalnum():
        return ds
    if isinstance(ds, dict):
        missing = [k for k in INLINE_DATASET_KEYS if k not in ds]
        if missing:
            raise BmposeError(f"{path}: dataset: missing {', '.join(missing)} (inline keypoint sets give "
                              f"{', '.join(INLINE_DATASET_KEYS)})")
        _keypoint_set(ds, path)
        k = len(ds["keypoint_names"])
        if len(ds["sigmas"]) != k:
            raise BmposeError(f"{path}: dataset: {len(ds['sigmas'])} sigmas for {k} keypoints")
        coco = ds.get("coco_keypoints")
        if coco is not None and not (isinstance(coco, list) and len(coco) == COCO_KEYPOINTS
                                     and all(isinstance(i, int) and 0 <= i < k for i in coco)):
            raise BmposeError(f"{path}: dataset coco_keypoints must be {COCO_KEYPOINTS} indices into its {k} "
                              f"keypoints, in COCO's order (nose, left_eye, ...)")
        return {key: ds[key] for key in (*INLINE_DATASET_KEYS, "coco_keypoints") if key in ds}
    raise BmposeError(f"{path}: dataset must be a name of mmpose's (coco, mpii, ...) or an inline keypoint set")
