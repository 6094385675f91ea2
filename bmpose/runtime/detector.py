"""Frames -> person boxes: a detector config (bmpose.detector_config) on a backend, around the shared core's
letterbox, decode and NMS (bmpose.pose.detect), the same calls the device bundle makes."""
from __future__ import annotations

from pathlib import Path

from bmpose.device.inputs import image_id_of
from bmpose.pose.detect import Detections, detect_frame
from bmpose.pose.errors import PoseError
from bmpose.pose.frames import person_boxes
from bmpose.pose.image_io import read_image
from bmpose.runtime.boxes import PersonBox


class PersonDetector:
    def __init__(self, dcfg, backend=None, kind: str | None = None):
        """kind: how a bmodel build runs: sail (a device), mlir (its deployed tpu.mlir on pymlir) or cmodel.
        Default: sail where it imports, else mlir. Not cmodel unless asked: the simulator takes about 100 s per
        416x416 frame here, and a second bmodel in the same process (the pose model on the cmodel) corrupts
        the first one's outputs (measured: docs/detection.md)."""
        from bmpose.runtime.backends import open_backend, sail_available

        self.cfg = dcfg
        if dcfg.build and kind is None:
            kind = "sail" if sail_available() else "mlir"
        self.backend = backend or open_backend(dcfg.model_path(kind), kind=kind if dcfg.build else "onnx")
        self.seconds = {"pre": 0.0, "infer": 0.0, "post": 0.0}

    def __call__(self, frame, score_thr: float | None = None) -> Detections:
        return detect_frame(self.backend.run, frame, self.cfg, score_thr, self.seconds)


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
        for xywh, s in person_boxes(detector(frame, score_thr)):
            boxes.append(PersonBox(image_id, Path(f), tuple(xywh), float(s), None,
                                   f"{detector.cfg.name} on {Path(f).name}"))
    return boxes, skipped
