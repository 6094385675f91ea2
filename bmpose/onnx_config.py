"""A deploy config for a trained network held as an ONNX file (`onnx:` instead of `mmpose_config:`).

It says, in mmpose's own vocabulary, what an mmpose config would have said, so a user copies it from the config
that trained the model:

  onnx: hrnet_w32.onnx                   # relative to this yaml, or absolute
  codec: {type: MSRAHeatmap, input_size: [192, 256], heatmap_size: [48, 64], sigma: 2}   # or UDPHeatmap;
                                         # DARK: unbiased: true
  data_preprocessor: {mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], bgr_to_rgb: true}
  dataset: coco                          # a metainfo file of mmpose's (configs/_base_/datasets/<name>.py),
                                         # or inline: {keypoint_names, flip_pairs, skeleton, sigmas}
  test_cfg: {flip_test: true, shift_heatmap: false}    # mmpose's head defaults: both false
  val_evaluator: {nms_thr: 0.9}          # CocoMetric overrides (optional)
  bbox_score_thr: 0.0                    # detection boxes below this are dropped (mmpose's filter_cfg)

mean/std are on the 0-255 scale, in the network's channel order (RGB when bgr_to_rgb), as in mmpose.
"""
from __future__ import annotations

import math
from pathlib import Path

from bmpose.errors import BmposeError

CODECS = ("MSRAHeatmap", "UDPHeatmap")
CODEC_EXAMPLE = "{type: MSRAHeatmap, input_size: [192, 256], heatmap_size: [48, 64], sigma: 2}"
INLINE_DATASET_KEYS = ("keypoint_names", "flip_pairs", "skeleton", "sigmas")
ONNX_KEYS = frozenset({"onnx", "codec", "data_preprocessor", "dataset", "test_cfg", "val_evaluator", "bbox_score_thr"})
# mmpose's own argument names (MSRAHeatmap / UDPHeatmap __init__), so a codec copied from a config passes
CODEC_KEYS = frozenset({"type", "input_size", "heatmap_size", "sigma", "unbiased", "blur_kernel_size",
                        "heatmap_type", "radius_factor"})
# the known keys of each nested mapping (config.load checks them all, with the nearest key for a typo)
NESTED_KEYS = {"codec": CODEC_KEYS, "test_cfg": ("flip_test", "shift_heatmap", "flip_mode"),
               "data_preprocessor": ("type", "mean", "std", "bgr_to_rgb")}


def onnx_facts(raw: dict, path: Path) -> dict:
    """What bmpose reads from an `onnx:` yaml, checked; one-line errors naming the yaml."""
    test = raw.get("test_cfg") or {}
    if not isinstance(test, dict):
        raise BmposeError(f"{path}: test_cfg must be a mapping (flip_test, shift_heatmap)")
    pre = _preprocessor(raw.get("data_preprocessor"), path)
    return {"onnx": _onnx_file(raw["onnx"], path), "codec": _codec(raw.get("codec"), path), **pre,
            "flip_test": bool(test.get("flip_test", False)), "shift_heatmap": bool(test.get("shift_heatmap", False)),
            "dataset": _dataset(raw.get("dataset", "coco"), path),
            "evaluator": dict(raw.get("val_evaluator") or {}), "bbox_score_thr": float(raw.get("bbox_score_thr", 0))}


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


def _codec(codec, path: Path) -> dict:
    if codec is None:
        raise BmposeError(f"{path}: missing key 'codec' (an mmpose codec dict, e.g. {CODEC_EXAMPLE})")
    if not isinstance(codec, dict):
        raise BmposeError(f"{path}: codec must be a mapping, e.g. {CODEC_EXAMPLE}")
    if codec.get("type") not in CODECS:
        raise BmposeError(f"{path}: codec type {codec.get('type')!r} is not one bmpose decodes "
                          f"({', '.join(CODECS)})")
    out = dict(codec)
    out["input_size"] = _pair(codec.get("input_size"), "input_size", path)
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


def _dataset(ds, path: Path):
    if isinstance(ds, str) and ds.replace("_", "").isalnum():
        return ds
    if isinstance(ds, dict):
        missing = [k for k in INLINE_DATASET_KEYS if k not in ds]
        if missing:
            raise BmposeError(f"{path}: dataset: missing {', '.join(missing)} (inline keypoint sets give "
                              f"{', '.join(INLINE_DATASET_KEYS)})")
        k = len(ds["keypoint_names"])
        if len(ds["sigmas"]) != k:
            raise BmposeError(f"{path}: dataset: {len(ds['sigmas'])} sigmas for {k} keypoints")
        return {key: ds[key] for key in INLINE_DATASET_KEYS}
    raise BmposeError(f"{path}: dataset must be a name of mmpose's (coco, mpii, ...) or an inline keypoint set")
