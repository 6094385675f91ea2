"""Which crop suits BlazePose: bmpose's plain box crop against the ROI MediaPipe's own pipeline feeds.

MediaPipe crops a square centred on BlazePose's hip alignment point (landmark 33), of side 2 x its distance to
the second alignment point (landmark 34) x 1.25, rotated so that the vector between them points up (its
`pose_landmarks_to_roi`); from person boxes alone that needs a first pass on the box crop. This runs every
variant on ONNX Runtime over the 51 bundled persons with ground-truth boxes and prints COCO AP, then the
paired per-person OKS difference of the ROI against the box crop on 8 jittered boxes per person, with its 95%
bootstrap interval (bmpose.evaluate.paired, the study's statistic); docs/blazepose.md has the tables. Run from the repository: .venv/bin/python scripts/blazepose/roi_study.py
(after `bmpose export --model blazepose_lite_256x256`, which writes the batch-1 ONNX it reads).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bmpose import config  # noqa: E402
from bmpose.evaluate import paired  # noqa: E402
from bmpose.evaluate.coco import coco_keypoint_ap  # noqa: E402
from bmpose.evaluate.sets import eval_boxes, eval_set  # noqa: E402
from bmpose.pose import regression  # noqa: E402
from bmpose.pose.results import to_coco_results  # noqa: E402
from bmpose.runtime.results import metric_options  # noqa: E402

SIZE = 256


def warp(image, center, side: float, rotation: float):
    """A square of `side` px centred at `center`, rotated by `rotation` (radians) -> SIZE x SIZE RGB crop, and
    the 2x3 matrix taking crop pixels back to the image."""
    c, s, k = math.cos(rotation), math.sin(rotation), side / SIZE
    back = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]])
    back[:, 2] = np.asarray(center, np.float64) - back[:, :2] @ np.array([SIZE / 2, SIZE / 2])
    crop = cv2.warpAffine(image, cv2.invertAffineTransform(back), (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), back


def mediapipe_roi(landmarks: np.ndarray, back: np.ndarray, rotate: bool):
    """MediaPipe's tracking ROI from landmarks 33 (hip centre) and 34 (full-body alignment point)."""
    p = np.c_[landmarks[:, :2], np.ones(len(landmarks))] @ back.T
    a, b = p[33], p[34]
    rotation = math.pi / 2 - math.atan2(-(b[1] - a[1]), b[0] - a[0])
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    return a, 2 * np.linalg.norm(b - a) * 1.25, rotation if rotate else 0.0


def pose(cfg, session, box, padding: float = 1.25, passes: int = 1, rotate: bool = True):
    """One person's 33 keypoints in the image, their scores, and the crop side used."""
    image = cv2.imread(str(box.file))
    x, y, w, h = box.bbox
    center, side, rotation = (x + w / 2, y + h / 2), max(w, h) * padding, 0.0
    for i in range(passes):
        crop, back = warp(image, center, side, rotation)
        out = session.run(None, {"input": (crop.astype(np.float32) / 255).transpose(2, 0, 1)[None]})[0]
        landmarks = regression.landmarks(out, {**cfg.codec, "num_keypoints": 39})[0]
        if i < passes - 1:
            center, side, rotation = mediapipe_roi(landmarks, back, rotate)
    _, scores = regression.decode_regression(out, cfg.codec)
    return np.c_[landmarks[:33, :2], np.ones(33)] @ back.T, scores[0], side


def score(cfg, session, **crop) -> float:
    ann, img = eval_set()
    instances = []
    for box in eval_boxes(ann, img):
        keypoints, scores, side = pose(cfg, session, box, **crop)
        instances.append({"image_id": box.image_id, "keypoints": keypoints, "keypoint_scores": scores,
                          "bbox_score": 1.0, "area": side * side, "bbox": box.bbox})
    return coco_keypoint_ap(ann, to_coco_results(instances, None, **metric_options(cfg)))["AP"]


def person_oks(cfg, session, boxes, owner, truth, **crop) -> np.ndarray:
    from bmpose.pose.results import COCO_SIGMAS

    per_crop = [paired.oks(pose(cfg, session, b, **crop)[0][cfg.dataset["coco_keypoints"]], *truth[owner[i]],
                           COCO_SIGMAS) for i, b in enumerate(boxes)]
    return np.bincount(owner, per_crop) / np.bincount(owner)


def main() -> int:
    import onnxruntime as ort

    cfg = config.load("blazepose_lite_256x256")
    session = ort.InferenceSession(str(cfg.layout.onnx_file(1)), providers=["CPUExecutionProvider"])
    for label, kw in (("box, 1.0x", {"padding": 1.0}), ("box, 1.25x (bmpose's crop)", {}),
                      ("box, 1.5x", {"padding": 1.5}), ("MediaPipe ROI, rotated, 2 passes", {"passes": 2}),
                      ("MediaPipe ROI, not rotated, 2 passes", {"passes": 2, "rotate": False}),
                      ("MediaPipe ROI, rotated, 3 passes", {"passes": 3})):
        print(f"{label:40s} COCO AP {score(cfg, session, **kw):.4f}", flush=True)
    boxes, owner, truth = paired.jittered_boxes(*eval_set())
    ref = person_oks(cfg, session, boxes, owner, truth)
    for label, kw in (("MediaPipe ROI, rotated, 2 passes", {"passes": 2}),
                      ("MediaPipe ROI, not rotated, 2 passes", {"passes": 2, "rotate": False})):
        d = paired.paired_drop(person_oks(cfg, session, boxes, owner, truth, **kw), ref)
        print(f"{label:40s} per-person OKS {d['reference_oks']:.4f} vs box crop {d['test_oks']:.4f}: "
              f"{d['drop']:+.4f}, 95% interval {d['ci95'][0]:+.4f}..{d['ci95'][1]:+.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
