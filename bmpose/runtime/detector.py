"""Frames -> person boxes: a detector config (bmpose.detector_config) on a backend, around the shared core's
letterbox, decode and NMS (bmpose.pose.detect), the same calls the device bundle makes."""
from __future__ import annotations

import time
from pathlib import Path

from bmpose.device.inputs import image_id_of
from bmpose.pose.detect import Detections, detect, detector_input, letterbox
from bmpose.pose.errors import PoseError
from bmpose.pose.image_io import read_image
from bmpose.runtime.boxes import PersonBox


class PersonDetector:
    def __init__(self, dcfg, backend=None):
        from bmpose.runtime.backends import open_backend

        self.cfg = dcfg
        self.backend = backend or open_backend(dcfg.onnx, kind="onnx")
        self.seconds = {"pre": 0.0, "infer": 0.0, "post": 0.0}

    def input(self, frame):
        """A BGR frame -> (its letterbox, the network's input tensor)."""
        c = self.cfg
        box = letterbox(frame, c.input_size, c.pad_value, c.center)
        return box, detector_input(box.canvas, bgr_to_rgb=c.bgr_to_rgb, scale=c.scale, mean=c.mean, std=c.std)

    def __call__(self, frame, score_thr: float | None = None) -> Detections:
        c = self.cfg
        t0 = time.perf_counter()
        box, x = self.input(frame)
        t1 = time.perf_counter()
        raw = self.backend.run(x)[0]
        t2 = time.perf_counter()
        dets = detect(raw, c.decoder, box, frame.shape, classes=c.classes,
                      score_thr=c.score_thr if score_thr is None else score_thr, iou_thr=c.nms_iou, strides=c.strides)
        self.seconds["pre"] += t1 - t0
        self.seconds["infer"] += t2 - t1
        self.seconds["post"] += time.perf_counter() - t2
        return dets


def detector_boxes(detector: PersonDetector, files: list[Path], score_thr: float | None = None,
                   image_ids: dict | None = None) -> tuple[list[PersonBox], list]:
    """Each image's detected persons as PersonBoxes (xywh, the detector's score) -> (boxes, skipped files).

    image_ids: file name -> image id (a COCO annotation file's), else the COCO file-name rule."""
    boxes, skipped = [], []
    for i, f in enumerate(files):
        try:
            frame = read_image(f)
        except PoseError as e:
            skipped.append((str(f), str(e)))
            continue
        image_id = (image_ids or {}).get(Path(f).name, image_id_of(Path(f), i))
        d = detector(frame, score_thr)
        for (x1, y1, x2, y2), s in zip(d.boxes.tolist(), d.scores.tolist()):
            boxes.append(PersonBox(image_id, Path(f), (x1, y1, x2 - x1, y2 - y1), float(s), None,
                                   f"{detector.cfg.name} on {Path(f).name}"))
    return boxes, skipped
