"""`bmpose infer`: images + person boxes -> keypoints on any backend -> vis_results/ pictures + COCO results json.

Boxes: `gt` (the annotation file's persons, mmpose's clipped xyxy boxes, score 1), `dets:JSON` (COCO detection
results, score threshold from the config's filter_cfg), `image` (the whole image; default for --images).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from bmpose.device.inputs import list_images
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, write_manifest
from bmpose.runtime.boxes import (PersonBox, bundled_sample, det_boxes, det_score_thr, gt_boxes, image_boxes,
                                  image_dets_boxes)
from bmpose.runtime.predict import SLOW_LIMIT, coco_results, draw_results, open_model, predict
from bmpose.cli.args import add_model, load_model


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose infer", description=__doc__.split("\n\n")[0])
    add_model(p)
    p.add_argument("--checkpoint", default=None, help="for the onnx backend's export (default: the config's)")
    p.add_argument("--images", default=None, help="image file or folder (default: the bundled COCO sample)")
    p.add_argument("--boxes", default=None,
                   help="gt (annotation boxes; default without --images) | dets:JSON (COCO detection results; with --images "
                        "and no --coco-ann matched by COCO file name) | "
                        "image (whole image; default with --images)")
    p.add_argument("--coco-ann", default=None, help="annotations for gt/dets boxes (default: the bundled sample)")
    p.add_argument("--coco-img", default=None, help="image folder of --coco-ann")
    p.add_argument("--backend", nargs="+", default=None, metavar="KIND [PATH]",
                   help="onnx (default, our export) | bmodel PATH (device if sophon.sail, else cmodel) | mlir PATH")
    p.add_argument("--chip", default=None, help="refuse a bmodel/tpu.mlir built for another chip")
    p.add_argument("--batch", type=int, choices=(1, 4), default=1, help="ONNX batch size (bmodels: their own)")
    p.add_argument("--flip", action="store_true", help="flip test (the config's shift_heatmap)")
    p.add_argument("--limit", type=int, default=None, help="first N persons only")
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
    else:
        raise BmposeError(f"--boxes {boxes_spec!r}: expected gt, dets:JSON or image")
    if args.limit:
        boxes = boxes[:args.limit]
    if not boxes:
        raise BmposeError("no person boxes to run (check --images / --boxes / --coco-ann)")
    return boxes, skipped, inputs


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    cfg = load_model(args)
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
        (tmp / "results.json").write_text(__import__("json").dumps(results))
        pictures = [] if args.no_vis else draw_results(report.predictions, tmp, args.kpt_thr)
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
