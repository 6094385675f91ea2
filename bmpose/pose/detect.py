"""Person detection around a detector network, the part shared by host and device: letterbox a frame into the
detector's input, decode its raw output (YOLOX, YOLOv5, YOLOv8 exports), class-wise NMS, and map the boxes back
to the frame. numpy + cv2 only, Python 3.7+ (shipped to the device with the rest of pose/).

Boxes are float32 [N, 4] xyxy in frame pixels; scores [N]; classes [N] int.
"""
from __future__ import annotations

import time
from collections import namedtuple

import cv2
import numpy as np

from .errors import PoseError

# where the resized frame sits on the canvas, and by how much it was scaled: what maps boxes back
Letterbox = namedtuple("Letterbox", "canvas ratio pad")
Detections = namedtuple("Detections", "boxes scores classes")

DECODERS = ("yolox", "yolov5", "yolov8")


def letterbox(frame: np.ndarray, size, pad_value: int = 114, center: bool = False) -> Letterbox:
    """Resize `frame` (HxWx3 uint8) keeping its aspect ratio to fit `size` (w, h), on a canvas of pad_value.

    center=False pastes it at the top-left (the official YOLOX export's demo), True centres it (YOLOv5/v8)."""
    w, h = int(size[0]), int(size[1])
    fh, fw = frame.shape[:2]
    ratio = min(w / fw, h / fh)
    nw, nh = max(1, int(round(fw * ratio))), max(1, int(round(fh * ratio)))
    px, py = ((w - nw) // 2, (h - nh) // 2) if center else (0, 0)
    canvas = np.full((h, w, 3), pad_value, dtype=np.uint8)
    resized = frame if (nw, nh) == (fw, fh) else cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[py:py + nh, px:px + nw] = resized
    return Letterbox(canvas, ratio, (px, py))


def detector_input(canvas: np.ndarray, *, bgr_to_rgb: bool = False, scale: float = 1.0, mean=None,
                   std=None) -> np.ndarray:
    """A BGR letterboxed canvas -> float32 1x3xHxW: optional BGR->RGB, x * scale, then (x - mean) / std."""
    # cv2.split + stack lays out the planes as uint8 first: the float conversion then runs on contiguous memory
    # (0.6 ms for 416x416 here, against 1.4 ms for astype + transpose); the arithmetic is numpy's float32 as before
    planes = cv2.split(canvas)
    x = np.stack(planes[::-1] if bgr_to_rgb else planes).astype(np.float32)[None]
    if scale != 1.0:
        x *= np.float32(scale)
    if mean is not None:
        x -= np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    if std is not None:
        x /= np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return x


_GRIDS = {}


def _grids(input_hw, strides):
    """Per anchor: (grid x, grid y, stride), in the order the YOLOX head concatenates its levels (cached)."""
    key = (tuple(input_hw), tuple(strides))
    if key not in _GRIDS:
        rows = []
        for s in strides:
            gh, gw = input_hw[0] // s, input_hw[1] // s
            ys, xs = np.mgrid[0:gh, 0:gw]
            rows.append(np.stack([xs.ravel(), ys.ravel(), np.full(gh * gw, s)], 1))
        _GRIDS[key] = np.concatenate(rows).astype(np.float32)
    return _GRIDS[key]


def _split(raw: np.ndarray, decoder: str, input_hw, strides):
    """-> (rows [A, 4+...] with the box first, class score columns [A, C], objectness [A, 1] or None)."""
    raw = np.asarray(raw, dtype=np.float32)
    if decoder == "yolov8":
        raw = raw.T
        cls, obj = raw[:, 4:], None
    elif decoder in ("yolox", "yolov5"):
        cls, obj = raw[:, 5:], raw[:, 4:5]
        if decoder == "yolox" and len(_grids(input_hw, strides)) != len(raw):
            raise PoseError(f"yolox decode: {len(raw)} anchors, but an input of {input_hw[1]}x{input_hw[0]} "
                            f"at strides {list(strides)} has {len(_grids(input_hw, strides))}")
    else:
        raise PoseError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
    if cls.shape[1] < 1:
        raise PoseError(f"{decoder} decode: no class scores in an output of shape {raw.shape}")
    return raw, cls, obj


def _xyxy(raw: np.ndarray, rows: np.ndarray, decoder: str, input_hw, strides) -> np.ndarray:
    """The boxes of anchors `rows`, xyxy in input pixels."""
    cxcywh = raw[rows, :4]
    if decoder == "yolox":
        g = _grids(input_hw, strides)[rows]
        cxcywh = np.concatenate([(cxcywh[:, :2] + g[:, :2]) * g[:, 2:],
                                 np.exp(np.minimum(cxcywh[:, 2:], 20.0)) * g[:, 2:]], 1)
    half = cxcywh[:, 2:] / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], 1)


def decode(raw: np.ndarray, decoder: str, input_hw, strides=(8, 16, 32)):
    """One image's raw output -> (boxes xyxy in input pixels, per-class scores [A, C]).

    yolox: [A, 5+C] (x, y, log w, log h) relative to grid cells of `strides`, objectness, class scores;
    yolov5: [A, 5+C] boxes already decoded (cx, cy, w, h), objectness, class scores;
    yolov8: [4+C, A] decoded (cx, cy, w, h) and class scores, no objectness."""
    raw, cls, obj = _split(raw, decoder, input_hw, strides)
    return _xyxy(raw, np.arange(len(raw)), decoder, input_hw, strides), cls if obj is None else cls * obj


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_thr: float, iou_thr: float,
        max_det: int = 300) -> np.ndarray:
    """Class-wise NMS (OpenCV's): indices kept, best score first."""
    keep = np.flatnonzero(scores >= score_thr)
    if not len(keep):
        return keep
    b = boxes[keep]
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
    # boxes of different classes never overlap once shifted apart by more than the largest coordinate
    offset = (classes[keep].astype(np.float32) * (float(np.abs(b).max()) + 1.0))[:, None]
    xywh[:, :2] += offset
    picked = cv2.dnn.NMSBoxes(xywh.tolist(), scores[keep].astype(float).tolist(), float(score_thr), float(iou_thr))
    picked = np.asarray(picked, dtype=np.int64).reshape(-1)
    order = picked[np.argsort(-scores[keep][picked], kind="stable")]
    return keep[order][:max_det]


def detect(raw: np.ndarray, decoder: str, box: Letterbox, frame_hw, *, classes=(0,), score_thr: float = 0.3,
           iou_thr: float = 0.65, strides=(8, 16, 32)) -> Detections:
    """Raw output of one letterboxed frame -> the detections of `classes` in frame pixels, NMS'd per class."""
    input_hw = box.canvas.shape[:2]
    raw, cls, obj = _split(raw, decoder, input_hw, strides)
    wanted = np.asarray(classes, dtype=np.int64)
    if wanted.max(initial=-1) >= cls.shape[1]:
        raise PoseError(f"{decoder} decode: class {int(wanted.max())} asked, the output has {cls.shape[1]} classes")
    # score the wanted classes only, and decode only the anchors above the threshold (most are not)
    if len(wanted) == 1:  # one class (persons): no argmax over classes
        scores = cls[:, wanted[0]] if obj is None else cls[:, wanted[0]] * obj[:, 0]
        rows = np.flatnonzero(scores >= score_thr)
        labels = np.full(len(rows), wanted[0])
    else:
        sub = cls[:, wanted] if obj is None else cls[:, wanted] * obj
        best = sub.argmax(1)
        scores = sub[np.arange(len(sub)), best]
        rows = np.flatnonzero(scores >= score_thr)
        labels = wanted[best[rows]]
    boxes = _xyxy(raw, rows, decoder, input_hw, strides)
    scores = scores[rows]
    keep = nms(boxes, scores, labels, score_thr, iou_thr)
    px, py = box.pad
    out = (boxes[keep] - np.array([px, py, px, py], np.float32)) / np.float32(box.ratio)
    fh, fw = frame_hw[:2]
    # inside the frame (minimum/maximum: np.clip's checks cost more than the work here)
    out = np.minimum(np.maximum(out, np.float32(0)), np.array([fw, fh, fw, fh], np.float32))
    return Detections(out.astype(np.float32), scores[keep].astype(np.float32), labels[keep])


def frame_input(frame: np.ndarray, spec):
    """A BGR frame -> (its letterbox, the network's input tensor), as `spec` says (a detector config, or the
    bundle's deploy.json "detector": input_size, pad_value, center, bgr_to_rgb, scale, mean, std). What
    inference feeds and detector calibration stores."""
    if frame is None or frame.ndim != 3 or 0 in frame.shape[:2]:
        raise PoseError(f"a frame of shape {getattr(frame, 'shape', None)}: not an image with pixels")
    box = letterbox(frame, spec.input_size, spec.pad_value, spec.center)
    return box, detector_input(box.canvas, bgr_to_rgb=spec.bgr_to_rgb, scale=spec.scale, mean=spec.mean,
                               std=spec.std)


def detect_frame(run, frame: np.ndarray, spec, score_thr: float | None = None, seconds: dict | None = None):
    """One frame through a person detector, `run(x) -> raw output` (any backend): letterbox, run, decode, NMS.
    `seconds` accumulates "pre", "infer", "post". -> Detections in frame pixels."""
    t0 = time.perf_counter()
    box, x = frame_input(frame, spec)
    t1 = time.perf_counter()
    raw = np.asarray(run(x))[0]
    t2 = time.perf_counter()
    dets = detect(raw, spec.decoder, box, frame.shape, classes=spec.classes,
                  score_thr=spec.score_thr if score_thr is None else score_thr, iou_thr=spec.nms_iou,
                  strides=spec.strides)
    if seconds is not None:
        for key, dt in (("pre", t1 - t0), ("infer", t2 - t1), ("post", time.perf_counter() - t2)):
            seconds[key] = seconds.get(key, 0.0) + dt
    return dets
