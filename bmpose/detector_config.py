"""A person detector's deploy config (`configs/detectors/<name>.yaml`, or a yaml anywhere): an ONNX file, how
its exporter wants the frame (letterbox, colour order, scale/mean/std) and how to decode its output.

  onnx: yolox_nano_416/yolox_nano_416x416.onnx   # relative to this yaml, or absolute
  input_size: [416, 416]                         # [width, height]
  letterbox: {align: topleft, pad_value: 114}    # topleft (YOLOX's demo) or center (YOLOv5/YOLOv8)
  preprocess: {bgr_to_rgb: false, scale: 1.0, mean: null, std: null}   # x * scale, then (x - mean) / std
  decoder: yolox                                 # yolox | yolov5 | yolov8 (bmpose.pose.detect)
  strides: [8, 16, 32]                           # yolox only
  classes: [0]                                   # the output's person class(es)
  score_thr: 0.3                                 # pictures and video
  nms_iou: 0.65
  eval_score_thr: 0.01                           # evaluation keeps low-score boxes (AP rewards them)
  precisions: {bm1684x: fp16, bm1684: fp32}      # what `bmpose detector build` makes per chip by default
  tolerances: {fp16_cos: 0.999, ...}             # output vs ONNX at build; box gates: max_recall_drop, max_ap_drop
  int8_float_stem: 8                             # INT8 keeps the first 8 ops of the top MLIR in FP32

Built like a pose model (bmpose.convert.detector_build): the same transform, calibration and deploy stages
under artifacts/<name>/, so a DetectorConfig answers what they ask of a config (name, layout, input_hw,
input_name, tolerances, checkpoint).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from bmpose.chips import CHIPS, PRECISIONS
from bmpose.config import CONFIG_DIR, artifacts_root, check_keys, read_yaml
from bmpose.errors import BmposeError
from bmpose.pose.detect import DECODERS

DETECTOR_DIR = CONFIG_DIR / "detectors"
DEFAULT_DETECTOR = "yolox_nano_416"
# What a detector build makes per chip unless told: INT8 loses a third of YOLOX-nano's box AP (docs/detection.md).
DEFAULT_PRECISIONS = {"bm1684x": "fp16", "bm1684": "fp32"}
# Gates of a detector bmodel: its raw output vs ONNX (cosine, at build, on a calibration frame) and its person
# boxes vs ONNX's on the evaluation images (bmpose detector build). INT8 box gates from YOLOX-nano on BM1684X
# (kl, stem FP32, four 21-frame calibration subsets: AP drop 0.029-0.066, recall within one person of 44): 0.08
# and 0.05; a chip may have its own (`int8_max_ap_drop_bm1684`). Margins and numbers: docs/detection.md.
DEFAULT_TOLERANCES = {"fp32_cos": 0.9999, "fp16_cos": 0.999, "bf16_cos": 0.99, "int8_cos": 0.80,
                      "max_recall_drop": 0.02, "max_ap_drop": 0.01, "int8_max_recall_drop": 0.05,
                      "int8_max_ap_drop": 0.08}
PER_CHIP_TOLERANCES = ("int8_max_recall_drop", "int8_max_ap_drop", "max_recall_drop", "max_ap_drop")
# `auto` (bmpose.convert.auto): the fastest build whose boxes agree with ONNX's to `target` (COCO box AP of the
# build's boxes against ONNX's persons at score_thr, on frames never calibrated on), within `budget` builds
AUTO = "auto"
DEFAULT_AUTO = {"target": 0.95, "budget": 14}


@dataclass(frozen=True)
class DetectorConfig:
    name: str
    path: Path
    onnx: Path
    input_size: tuple[int, int]          # (w, h)
    center: bool = False
    pad_value: int = 114
    bgr_to_rgb: bool = False
    scale: float = 1.0
    mean: tuple | None = None
    std: tuple | None = None
    decoder: str = "yolox"
    strides: tuple[int, ...] = (8, 16, 32)
    classes: tuple[int, ...] = (0,)
    score_thr: float = 0.3
    nms_iou: float = 0.65
    eval_score_thr: float = 0.01
    precisions: dict = field(default_factory=lambda: dict(DEFAULT_PRECISIONS))
    tolerances: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    calibration: dict = field(default_factory=lambda: {"method": "kl", "num": 100})
    int8_float_stem: int = 0   # INT8 builds keep the first N ops of the top MLIR in FP32
    auto: dict = field(default_factory=lambda: dict(DEFAULT_AUTO))
    root: Path = field(default_factory=artifacts_root)
    build: str | None = None   # "<chip>_<precision>": run its bmodel (bmpose detector) instead of the ONNX
    checkpoint = None   # a detector is its ONNX file (hashed as the transform's input)

    @property
    def artifacts(self) -> Path:
        return self.root / self.name

    @property
    def tag(self) -> str:
        """The name, with the build when a bmodel runs (eval rows and files)."""
        return self.name + (f"_{self.build}" if self.build else "")

    @property
    def chip(self) -> str | None:
        return self.build.split("_", 1)[0] if self.build else None

    @property
    def precision(self) -> str:
        return self.build.split("_", 1)[1] if self.build else "fp32"

    def model_path(self, kind: str | None = None) -> Path:
        """The file that runs: the ONNX, or the build's bmodel (its deployed tpu.mlir for kind "mlir")."""
        if not self.build:
            return self.onnx
        from bmpose.manifest import read_manifest

        chip, precision = self.chip, self.precision
        d = (self.auto_choice(chip) or self.layout.auto(chip)) if precision == AUTO else \
            self.layout.bmodel(chip, precision, 1)
        m = read_manifest(d)
        if m is None or m.get("status") != "ok":
            raise BmposeError(f"{d}: detector {self.name} has no {precision} bmodel for {chip}; build it: bmpose "
                              f"detector --detector {self.name} --chips {chip} --precision {precision}")
        return d / (m["tpu_mlir"] if kind == "mlir" else
                    self.layout.bmodel_name(chip, m["options"]["precision"], 1))

    def auto_choice(self, chip: str) -> Path | None:
        """The build `--precision auto` chose for `chip` (its folder), None before a search has chosen one."""
        import json

        choice = self.layout.auto_choices().get(chip)
        return Path(json.loads(choice.read_text())["winner_dir"]) if choice else None

    @property
    def layout(self):
        from bmpose.layout import Layout

        return Layout(self.artifacts, self.name)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[0]

    @cached_property
    def input_name(self) -> str:
        """Read once from the ONNX file (frames, transform and calibration all key their npz by it)."""
        import onnx

        return onnx.load(str(self.onnx), load_external_data=False).graph.input[0].name

    def box_gate(self, precision: str, chip: str | None = None) -> dict:
        """The most a bmodel of `precision` (for `chip`) may lose against ONNX: person-box recall and box AP
        (`auto` is held to the float builds' margins: it is chosen to keep the boxes)."""
        pre = "int8_" if precision == "int8" else ""
        t = self.tolerances

        def limit(key):
            return t.get(f"{pre}{key}_{chip}", t[pre + key]) if chip else t[pre + key]

        return {"max_recall_drop": limit("max_recall_drop"), "max_ap_drop": limit("max_ap_drop")}

    def summary(self) -> dict:
        return {"name": self.name, "onnx": str(self.onnx), "input_size": list(self.input_size),
                "center": self.center, "pad_value": self.pad_value, "bgr_to_rgb": self.bgr_to_rgb,
                "scale": self.scale, "mean": self.mean, "std": self.std, "decoder": self.decoder,
                "strides": list(self.strides), "classes": list(self.classes)}


def list_detectors() -> list[str]:
    return sorted(p.stem for p in DETECTOR_DIR.glob("*.yaml"))


def _path(ref: str) -> Path:
    p = Path(ref).expanduser()
    if p.suffix in (".yaml", ".yml"):
        return p
    return DETECTOR_DIR / f"{ref}.yaml"


def _triple(value, key: str, path: Path):
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise BmposeError(f"{path}: preprocess {key} must be three numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def _number(raw: dict, key: str, default: float, path: Path, lo: float = 0.0, hi: float = 1.0) -> float:
    v = raw.get(key, default)
    if not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise BmposeError(f"{path}: {key} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


DETECTOR_KEYS = ("name", "onnx", "input_size", "decoder", "letterbox", "preprocess", "classes", "strides", "precisions",
                 "tolerances", "calibration", "score_thr", "nms_iou", "eval_score_thr", "int8_float_stem", "auto")


def load_detector_spec(spec: str, artifacts=None) -> DetectorConfig:
    """`detector:NAME` (a name or a yaml path; empty: the bundled default), as --boxes gives it;
    `detector:NAME@<chip>_<precision>` runs that bmodel of it (built by `bmpose detector`)."""
    ref, at, build = spec[len("detector:"):].partition("@")
    dcfg = load_detector(ref or None, artifacts)
    if at:
        chip, _, precision = build.partition("_")
        if chip not in CHIPS or precision not in (*PRECISIONS, AUTO):
            raise BmposeError(f"--boxes {spec}: after @ name a build as <chip>_<precision>, e.g. bm1684x_fp16 "
                              f"(chips: {', '.join(CHIPS)}; precisions: {', '.join(PRECISIONS)})")
        dcfg = replace(dcfg, build=build)
    return dcfg


def load_detector(ref: str | os.PathLike | None = None, artifacts: str | os.PathLike | None = None) -> DetectorConfig:
    """A detector config by name (configs/detectors/<name>.yaml) or yaml path; one-line errors naming the file."""
    path = _path(str(ref or DEFAULT_DETECTOR))
    if not path.is_file():
        raise BmposeError(f"{path}: no such detector config (bundled: {', '.join(list_detectors())})")
    raw = read_yaml(path, "onnx:, input_size:, decoder:, ...")
    check_keys(path, raw, DETECTOR_KEYS)
    check_keys(path, raw.get("letterbox") or {}, ("align", "pad_value"), "letterbox")
    check_keys(path, raw.get("preprocess") or {}, ("bgr_to_rgb", "scale", "mean", "std"), "preprocess")
    check_keys(path, raw.get("calibration") or {}, ("method", "num"), "calibration")
    if "onnx" not in raw:
        raise BmposeError(f"{path}: missing key 'onnx' (the detector's ONNX file)")
    onnx = Path(str(raw["onnx"])).expanduser()
    onnx = (onnx if onnx.is_absolute() else path.parent / onnx).resolve()
    if not onnx.is_file():
        raise BmposeError(f"{path}: onnx: {raw['onnx']}: no such file")
    size = raw.get("input_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise BmposeError(f"{path}: input_size must be [width, height] in pixels, got {size!r}")
    decoder = raw.get("decoder")
    if decoder not in DECODERS:
        raise BmposeError(f"{path}: decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
    box = raw.get("letterbox") or {}
    pre = raw.get("preprocess") or {}
    if box.get("align", "topleft") not in ("topleft", "center"):
        raise BmposeError(f"{path}: letterbox align {box.get('align')!r}: expected topleft or center")
    classes = raw.get("classes", [0])
    if not (isinstance(classes, list) and classes and all(isinstance(c, int) and c >= 0 for c in classes)):
        raise BmposeError(f"{path}: classes must be a list of class indices (person: 0 for COCO), got {classes!r}")
    root = Path(artifacts).expanduser().absolute() if artifacts else artifacts_root()
    precisions = raw.get("precisions") or DEFAULT_PRECISIONS
    if not isinstance(precisions, dict) or not all(c in CHIPS and p in (*PRECISIONS, AUTO)
                                                   for c, p in precisions.items()):
        raise BmposeError(f"{path}: precisions must map chips ({', '.join(CHIPS)}) to one of {', '.join(PRECISIONS)}, "
                          f"{AUTO}, got {precisions!r}")
    check_keys(path, raw.get("auto") or {}, tuple(DEFAULT_AUTO), "auto")
    auto = {**DEFAULT_AUTO, **(raw.get("auto") or {})}
    _number(auto, "target", 0.95, path)
    if not isinstance(auto["budget"], int) or not 2 <= auto["budget"] <= 64:
        raise BmposeError(f"{path}: auto budget must be a whole number of builds in [2, 64], got {auto['budget']!r}")
    given = raw.get("tolerances") or {}
    if not isinstance(given, dict):
        raise BmposeError(f"{path}: tolerances must be a mapping (tolerances: {{...}}), got {given!r}")
    # the same check as a pose yaml's: a typo gets the nearest known key (per-chip keys: <key>_<chip>)
    check_keys(path, given, {*DEFAULT_TOLERANCES, *(f"{k}_{c}" for k in PER_CHIP_TOLERANCES for c in CHIPS)},
               "tolerances")
    tolerances = {**DEFAULT_TOLERANCES, **given}
    return DetectorConfig(
        name=raw.get("name", path.stem), path=path.resolve(), onnx=onnx, input_size=(size[0], size[1]),
        center=box.get("align", "topleft") == "center", pad_value=int(box.get("pad_value", 114)),
        bgr_to_rgb=bool(pre.get("bgr_to_rgb", False)), scale=float(pre.get("scale", 1.0)),
        mean=_triple(pre.get("mean"), "mean", path), std=_triple(pre.get("std"), "std", path), decoder=decoder,
        strides=tuple(int(s) for s in raw.get("strides", (8, 16, 32))), classes=tuple(classes),
        score_thr=_number(raw, "score_thr", 0.3, path), nms_iou=_number(raw, "nms_iou", 0.65, path),
        eval_score_thr=_number(raw, "eval_score_thr", 0.01, path), precisions=dict(precisions),
        tolerances=tolerances, calibration={"method": "kl", "num": 100, **(raw.get("calibration") or {})},
        int8_float_stem=int(_number(raw, "int8_float_stem", 0, path, 0, 10000)), auto=auto, root=root)
