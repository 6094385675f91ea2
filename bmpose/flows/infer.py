"""`bmpose infer` as a library call: an InferRequest -> person boxes (annotations, a detection file, the whole
image, or a person detector) -> keypoints on any backend (bmpose.runtime.predict; a video through the core's
frame loop, bmpose.runtime.video) -> an --out folder with results.json, pictures (or annotated.mp4) and a
manifest, written whole or not at all."""
from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

from bmpose import config
from bmpose.cocodata import load_coco_keypoints
from bmpose.device.inputs import is_video, list_images
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, write_manifest
from bmpose.runtime.boxes import (PersonBox, bundled_sample, det_boxes, det_score_thr, gt_boxes, image_boxes,
                                  image_dets_boxes)
from bmpose.runtime.detector import detector_boxes
from bmpose.runtime.predict import coco_results, draw_results, look, open_model, predict


@dataclasses.dataclass(frozen=True)
class InferRequest:
    model: str | None = None
    artifacts_dir: Path | None = None
    checkpoint: str | None = None
    images: str | None = None            # image, folder, video, camera index or stream (None: the bundled sample)
    boxes: str | None = None             # gt | dets:JSON | image | detector:NAME (None: image with --images, else gt)
    det_score_thr: float | None = None
    coco_ann: str | None = None
    coco_img: str | None = None
    backend: tuple | None = None         # ("onnx",) | ("bmodel", PATH) | ("mlir", PATH) ...
    chip: str | None = None
    batch: int = 1
    flip: bool = False
    limit: int | None = None
    allow_slow: bool = False
    out: str = "vis_results"
    kpt_thr: float = 0.3
    no_vis: bool = False


def infer(req: InferRequest) -> dict:
    """-> what the run did: {"kind": "images"|"video", "out", "results", "pictures", "persons", "seconds",
    "skipped", "backend", ...; a video: "frames", "interrupted"}."""
    cfg = config.load(req.model, artifacts=req.artifacts_dir)
    if req.images and is_video(req.images):
        return infer_video(cfg, req)
    boxes, skipped, inputs = collect_boxes(cfg, req)
    backend = open_model(cfg, list(req.backend) if req.backend else None, req.batch, req.checkpoint, req.chip)
    print(f"infer: {len(boxes)} persons on {backend.describe()}{' with flip test' if req.flip else ''}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped images are reported by the caller, once each
        report = predict(cfg, backend, boxes, req.flip, allow_slow=req.allow_slow)
    report.skipped = skipped + report.skipped
    from bmpose.runtime.results import metric_options

    results = coco_results(cfg, report.predictions, options=metric_options(cfg))
    out = Path(req.out)
    with atomic_dir(out, keep_failed=False) as tmp:
        (tmp / "results.json").write_text(json.dumps(results))
        pictures = [] if req.no_vis else draw_results(report.predictions, tmp, req.kpt_thr, look(cfg))
        write_manifest(tmp, stage="infer", inputs={**inputs, "model": backend.path},
                       options={"backend": backend.kind, "chip": backend.chip, "batch": backend.batch_size,
                                "flip": req.flip, "boxes": req.boxes or ("image" if req.images else "gt"),
                                "limit": req.limit, "config": cfg.summary()},
                       outputs=["results.json"] + pictures,
                       checks={"persons": len(report.predictions), "results": len(results),
                               "skipped": [f for f, _ in report.skipped], "seconds": round(report.seconds, 3)})
    return {"kind": "images", "out": out, "results": results, "pictures": pictures,
            "persons": len(report.predictions), "seconds": report.seconds, "skipped": report.skipped}


def infer_video(cfg, req: InferRequest) -> dict:
    """A video through detector -> pose: annotated.mp4 (same size and fps) + results.json (frame index = image id)
    in req.out; Ctrl-C keeps the frames done."""
    from bmpose.runtime.results import metric_options
    from bmpose.runtime.video import run_video

    if not (req.boxes or "").startswith("detector:"):
        raise BmposeError(f"{req.images}: a video has no boxes of its own: name a person detector, "
                          f"--boxes detector:NAME (bundled: detector:yolox_nano_416)")
    detector = open_detector(cfg, req.boxes)
    backend = open_model(cfg, list(req.backend) if req.backend else None, req.batch, req.checkpoint, req.chip)
    print(f"infer: {req.images}: {detector.cfg.name} -> pose on {backend.describe()}")
    out = Path(req.out)
    with atomic_dir(out, keep_failed=False) as tmp:
        done = run_video(cfg, backend, detector, req.images, tmp / "annotated.mp4", flip=req.flip,
                         limit=req.limit, kpt_thr=req.kpt_thr, progress=sys.stderr.isatty())
        if done["frames"] == 0 and not done["interrupted"]:
            raise BmposeError(f"{req.images}: no frames could be read from this video")
        results = coco_results(cfg, done["predictions"], options={**metric_options(cfg), "nms_mode": "none"})
        (tmp / "results.json").write_text(json.dumps(results))
        write_manifest(tmp, stage="infer", inputs={"detector": detector.backend.path, "model": backend.path,
                                                   **({"video": req.images} if Path(req.images).is_file() else {})},
                       options={"backend": backend.kind, "chip": backend.chip, "flip": req.flip, "boxes": req.boxes,
                                "limit": req.limit, "config": cfg.summary(), "detector": detector.cfg.summary()},
                       outputs=["annotated.mp4", "results.json"],
                       checks={"frames": done["frames"], "persons": len(done["predictions"]),
                               "interrupted": done["interrupted"], "fps": done["fps"], "size": done["size"],
                               "seconds": round(done["seconds"], 3)})
    return {"kind": "video", "out": out, "results": results, "frames": done["frames"],
            "persons": len(done["predictions"]), "seconds": done["seconds"], "interrupted": done["interrupted"]}


def collect_boxes(cfg, req: InferRequest) -> tuple[list[PersonBox], list, dict]:
    ann_default, img_default = bundled_sample()
    ann = Path(req.coco_ann) if req.coco_ann else ann_default
    img_dir = Path(req.coco_img) if req.coco_img else (img_default if not req.coco_ann else ann.parent)
    boxes_spec = req.boxes or ("image" if req.images else "gt")
    inputs = {}
    skipped: list = []
    only = None
    if req.images and boxes_spec != "image":
        files = list_images(req.images)
        only = {f.name for f in files}
        img_dir = files[0].parent
    if boxes_spec == "gt":
        boxes = gt_boxes(ann, img_dir, only)
        inputs["annotations"] = ann
    elif boxes_spec.startswith("dets:") and req.images and not req.coco_ann:
        dets = Path(boxes_spec[5:])   # matched to the images by COCO file name, as the device bundle does
        boxes = image_dets_boxes(dets, list_images(req.images), det_score_thr(cfg))
        inputs["detections"] = dets
    elif boxes_spec.startswith("dets:"):
        dets = Path(boxes_spec[5:])
        boxes = det_boxes(dets, ann, img_dir, det_score_thr(cfg))
        if only is not None:
            boxes = [b for b in boxes if b.file.name in only]
        inputs.update(annotations=ann, detections=dets)
    elif boxes_spec == "image":
        boxes, skipped = image_boxes(list_images(req.images or img_default))
    elif boxes_spec.startswith("detector:"):
        detector = open_detector(cfg, boxes_spec)
        # results scored against that file carry its image ids
        ids = load_coco_keypoints(ann, ann.parent).image_ids_by_name() if req.coco_ann else None
        boxes, skipped = detector_boxes(detector, list_images(req.images or img_default), req.det_score_thr, ids)
        inputs["detector"] = detector.backend.path
    else:
        raise BmposeError(f"--boxes {boxes_spec!r}: expected gt, dets:JSON, image or detector:NAME")
    if req.limit:
        boxes = boxes[:req.limit]
    if not boxes:
        raise BmposeError(_why_no_boxes(skipped, boxes_spec))
    return boxes, skipped, inputs


def open_detector(cfg, spec: str):
    from bmpose.detector_config import load_detector_spec
    from bmpose.runtime.detector import PersonDetector

    return PersonDetector(load_detector_spec(spec, artifacts=cfg.root))


def _why_no_boxes(skipped: list, boxes_spec: str) -> str:
    """The one line when nothing is left to run: the unreadable image itself when that is why (the first, and how
    many more), else what to check."""
    if skipped:
        more = f" (and {len(skipped) - 1} more image(s) skipped)" if len(skipped) > 1 else ""
        return f"{skipped[0][1]}{more}: no person boxes to run"
    if boxes_spec.startswith("detector:"):
        return "the detector found no person in the images (try a lower --det-score-thr): no person boxes to run"
    return "no person boxes to run (check --images / --boxes / --coco-ann)"
