"""`bmpose infer`: images + person boxes -> keypoints on any backend -> vis_results/ pictures + COCO results json.

Boxes: `gt` (the annotation file's persons, mmpose's clipped xyxy boxes, score 1), `dets:JSON` (COCO detection
results, score threshold from the config's filter_cfg), `image` (the whole image; default for --images),
`detector:NAME` (a person detector, configs/detectors/NAME.yaml or a yaml path, run on ONNX Runtime). A video
(`--images clip.mp4`, a camera index, an rtsp:// address) needs a detector and writes an annotated video.
"""
from __future__ import annotations

import argparse
import sys

from bmpose.device.inputs import check_out_dir, positive_int
from bmpose.flows.infer import InferRequest, infer
from bmpose.runtime.predict import SLOW_LIMIT
from bmpose.cli.args import add_model


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


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    dets = args.boxes[5:] if (args.boxes or "").startswith("dets:") else None
    check_out_dir(args.out, args.images, args.coco_ann, args.coco_img, dets)
    done = infer(InferRequest(model=args.model, artifacts_dir=args.artifacts_dir, checkpoint=args.checkpoint,
                              images=args.images, boxes=args.boxes, det_score_thr=args.det_score_thr,
                              coco_ann=args.coco_ann, coco_img=args.coco_img,
                              backend=tuple(args.backend) if args.backend else None, chip=args.chip,
                              batch=args.batch, flip=args.flip, limit=args.limit, allow_slow=args.allow_slow,
                              out=args.out, kpt_thr=args.kpt_thr, no_vis=args.no_vis))
    n, s = done["persons"], done["seconds"]
    if done["kind"] == "video":
        f = done["frames"]
        print(f"infer: {f} frames, {n} persons in {s:.2f} s ({f / max(s, 1e-9):.1f} frames/s): annotated.mp4 and "
              f"results.json in {done['out']}/")
        if done["interrupted"]:
            print(f"infer: interrupted after {f} frames; those are kept in {done['out']}/", file=sys.stderr)
            return 130
        return 0
    print(f"infer: {n} persons in {s:.2f} s ({n / max(s, 1e-9):.1f} persons/s), {len(done['pictures'])} pictures "
          f"and results.json ({len(done['results'])} after OKS-NMS) in {done['out']}/")
    for f, why in done["skipped"]:
        print(f"infer: warning: skipped {f}: {why.split(': ', 1)[-1]}", file=sys.stderr)
    if done["skipped"]:
        print(f"infer: {len(done['skipped'])} image(s) skipped", file=sys.stderr)
    return 0
