"""`bmpose infer`: images + person boxes -> keypoints on any backend -> vis_results/ pictures + COCO results json.

Boxes: `gt` (the annotation file's persons, mmpose's clipped xyxy boxes, score 1), `dets:JSON` (COCO detection
results, score threshold from the config's filter_cfg), `image` (the whole image; default for --images),
`detector:NAME` (a person detector, configs/detectors/NAME.yaml or a yaml path, run on ONNX Runtime). A video
(`--images clip.mp4`, a camera index, an rtsp:// address) needs a detector and writes an annotated video.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from bmpose.cocodata import load_coco_keypoints
from bmpose.device.inputs import check_out_dir, is_video, list_images, positive_int
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, write_manifest
from bmpose.runtime.boxes import (PersonBox, bundled_sample, det_boxes, det_score_thr, gt_boxes, image_boxes,
                                  image_dets_boxes)
from bmpose.runtime.detector import detector_boxes
from bmpose.runtime.predict import SLOW_LIMIT, coco_results, draw_results, look, open_model, predict
from bmpose.cli.args import add_model, load_model


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose infer", description=__doc__.split("\n\n")[0])
    add_model(p)
    p.add_argument("--checkpoint", default=None, help="for the onnx backend's export (default: the config's)")
    p.add_argument("--images", default=None, help="image file or folder, or a video file, camera index or stream "
                                                  "address (default: the bundled COCO sample)")
    p.add_argument("--boxes", default=None,
                   help="gt (annotation boxes; default without --images) | dets:JSON (COCO detection results; with --images "
                        "and no --coco-ann matched by COCO file name) | "
                        "image (whole image; default with --images) | detector:NAME (a person detector config: "
                        "name or yaml; NAME empty: the bundled yolox_nano_416)")
    p.add_argument("--det-score-thr", type=float, default=None,
                   help="detector score threshold (default: the detector config's score_thr)")
    p.add_argument("--coco-ann", default=None, help="annotations for gt/dets boxes (default: the bundled sample)")
    p.add_argument("--coco-img", default=None, help="image folder of --coco-ann")
    p.add_argument("--backend", nargs="+", default=None, metavar="KIND [PATH]",
                   help="onnx (default, our export) | bmodel PATH (device if sophon.sail, else cmodel) | mlir PATH")
    p.add_argument("--chip", default=None, help="refuse a bmodel/tpu.mlir built for another chip")
    p.add_argument("--batch", type=int, choices=(1, 4), default=1, help="ONNX batch size (bmodels: their own)")
    p.add_argument("--flip", action="store_true", help="flip test (the config's shift_heatmap)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N persons (a video: frames) only")
    p.add_argument("--allow-slow", action="store_true", help="let the cmodel run more than %d crops" % SLOW_LIMIT)
    p.add_argument("--out", default="vis_results", help="pictures + results.json folder (replaced)")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="keypoints drawn above this score")
    p.add_argument("--no-vis", action="store_true", help="results json only")
    return p.parse_args(argv)


def collect_boxes(cfg, args) -> tuple[list[PersonBox], list, dict]:
    ann_default, img_default = bundled_sample()
    ann = Path(args.coco_ann) if args.coco_ann else ann_default
    img_dir = Path(args.coco_img) if args.coco_img else (img_default if not args.coco_ann else ann.parent)
    boxes_spec = args.boxes or ("image" if args.images else "gt")
    inputs = {}
    skipped: list = []
    only = None
    if args.images and boxes_spec != "image":
        files = list_images(args.images)
        only = {f.name for f in files}
        img_dir = files[0].parent
    if boxes_spec == "gt":
        boxes = gt_boxes(ann, img_dir, only)
        inputs["annotations"] = ann
    elif boxes_spec.startswith("dets:") and args.images and not args.coco_ann:
        dets = Path(boxes_spec[5:])   # matched to the images by COCO file name, as the device bundle does
        boxes = image_dets_boxes(dets, list_images(args.images), det_score_thr(cfg))
        inputs["detections"] = dets
    elif boxes_spec.startswith("dets:"):
        dets = Path(boxes_spec[5:])
        boxes = det_boxes(dets, ann, img_dir, det_score_thr(cfg))
        if only is not None:
            boxes = [b for b in boxes if b.file.name in only]
        inputs.update(annotations=ann, detections=dets)
    elif boxes_spec == "image":
        boxes, skipped = image_boxes(list_images(args.images or img_default))
    elif boxes_spec.startswith("detector:"):
        detector = open_detector(cfg, boxes_spec)
        # results scored against that file carry its image ids
        ids = load_coco_keypoints(ann, ann.parent).image_ids_by_name() if args.coco_ann else None
        boxes, skipped = detector_boxes(detector, list_images(args.images or img_default), args.det_score_thr, ids)
        inputs["detector"] = detector.backend.path
    else:
        raise BmposeError(f"--boxes {boxes_spec!r}: expected gt, dets:JSON, image or detector:NAME")
    if args.limit:
        boxes = boxes[:args.limit]
    if not boxes:
        raise BmposeError(_why_no_boxes(skipped, boxes_spec))
    return boxes, skipped, inputs


def open_detector(cfg, spec: str):
    from bmpose.detector_config import load_detector_spec
    from bmpose.runtime.detector import PersonDetector

    return PersonDetector(load_detector_spec(spec, artifacts=cfg.root))


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    dets = args.boxes[5:] if (args.boxes or "").startswith("dets:") else None
    check_out_dir(args.out, args.images, args.coco_ann, args.coco_img, dets)
    cfg = load_model(args)
    if args.images and is_video(args.images):
        return infer_video(cfg, args)
    boxes, skipped, inputs = collect_boxes(cfg, args)
    backend = open_model(cfg, args.backend, args.batch, args.checkpoint, args.chip)
    print(f"infer: {len(boxes)} persons on {backend.describe()}{' with flip test' if args.flip else ''}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped images are reported below, once each
        report = predict(cfg, backend, boxes, args.flip, allow_slow=args.allow_slow)
    report.skipped = skipped + report.skipped
    from bmpose.runtime.results import metric_options

    results = coco_results(cfg, report.predictions, options=metric_options(cfg))
    out = Path(args.out)
    with atomic_dir(out, keep_failed=False) as tmp:
        (tmp / "results.json").write_text(json.dumps(results))
        pictures = [] if args.no_vis else draw_results(report.predictions, tmp, args.kpt_thr, look(cfg))
        write_manifest(tmp, stage="infer", inputs={**inputs, "model": backend.path},
                       options={"backend": backend.kind, "chip": backend.chip, "batch": backend.batch_size,
                                "flip": args.flip, "boxes": args.boxes or ("image" if args.images else "gt"),
                                "limit": args.limit, "config": cfg.summary()},
                       outputs=["results.json"] + pictures,
                       checks={"persons": len(report.predictions), "results": len(results),
                               "skipped": [f for f, _ in report.skipped], "seconds": round(report.seconds, 3)})
    n = len(report.predictions)
    print(f"infer: {n} persons in {report.seconds:.2f} s ({n / max(report.seconds, 1e-9):.1f} persons/s), "
          f"{len(pictures)} pictures and results.json ({len(results)} after OKS-NMS) in {out}/")
    for f, why in report.skipped:
        print(f"infer: warning: skipped {f}: {why.split(': ', 1)[-1]}", file=sys.stderr)
    if report.skipped:
        print(f"infer: {len(report.skipped)} image(s) skipped", file=sys.stderr)
    return 0


def infer_video(cfg, args) -> int:
    """A video through detector -> pose: annotated.mp4 (same size and fps) + results.json (frame index = image id)
    in --out; Ctrl-C keeps the frames done."""
    from bmpose.runtime.results import metric_options
    from bmpose.runtime.video import run_video

    if not (args.boxes or "").startswith("detector:"):
        raise BmposeError(f"{args.images}: a video has no boxes of its own: name a person detector, "
                          f"--boxes detector:NAME (bundled: detector:yolox_nano_416)")
    detector = open_detector(cfg, args.boxes)
    backend = open_model(cfg, args.backend, args.batch, args.checkpoint, args.chip)
    print(f"infer: {args.images}: {detector.cfg.name} -> pose on {backend.describe()}")
    out = Path(args.out)
    with atomic_dir(out, keep_failed=False) as tmp:
        done = run_video(cfg, backend, detector, args.images, tmp / "annotated.mp4", flip=args.flip,
                         limit=args.limit, kpt_thr=args.kpt_thr, progress=sys.stderr.isatty())
        if done["frames"] == 0 and not done["interrupted"]:
            raise BmposeError(f"{args.images}: no frames could be read from this video")
        results = coco_results(cfg, done["predictions"], options={**metric_options(cfg), "nms_mode": "none"})
        (tmp / "results.json").write_text(json.dumps(results))
        write_manifest(tmp, stage="infer", inputs={"detector": detector.backend.path, "model": backend.path,
                                                   **({"video": args.images} if Path(args.images).is_file() else {})},
                       options={"backend": backend.kind, "chip": backend.chip, "flip": args.flip, "boxes": args.boxes,
                                "limit": args.limit, "config": cfg.summary(), "detector": detector.cfg.summary()},
                       outputs=["annotated.mp4", "results.json"],
                       checks={"frames": done["frames"], "persons": len(done["predictions"]),
                               "interrupted": done["interrupted"], "fps": done["fps"], "size": done["size"],
                               "seconds": round(done["seconds"], 3)})
    n, f = len(done["predictions"]), done["frames"]
    print(f"infer: {f} frames, {n} persons in {done['seconds']:.2f} s ({f / max(done['seconds'], 1e-9):.1f} "
          f"frames/s): annotated.mp4 and results.json in {out}/")
    if done["interrupted"]:
        print(f"infer: interrupted after {f} frames; those are kept in {out}/", file=sys.stderr)
        return 130
    return 0


def _why_no_boxes(skipped: list, boxes_spec: str) -> str:
    """The one line when nothing is left to run: the unreadable image itself when that is why (the first, and how
    many more), else what to check."""
    if skipped:
        more = f" (and {len(skipped) - 1} more image(s) skipped)" if len(skipped) > 1 else ""
        return f"{skipped[0][1]}{more}: no person boxes to run"
    if boxes_spec.startswith("detector:"):
        return "the detector found no person in the images (try a lower --det-score-thr): no person boxes to run"
    return "no person boxes to run (check --images / --boxes / --coco-ann)"
