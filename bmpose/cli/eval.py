"""`bmpose eval`: COCO keypoint AP of every artifact of a model (`--model`), or of an existing results file
(`--gt ANN --results RES`)."""
from __future__ import annotations

import argparse
import json
import sys

from bmpose.errors import BmposeError
from bmpose.evaluate.coco import coco_keypoint_ap, format_stats
from bmpose.device.inputs import positive_int
from bmpose.runtime.results import dataset_sigmas
from bmpose.cli.args import add_model, add_shards, load_model


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose eval", description=(
        "COCO keypoint AP. With --gt and --results: score an existing COCO results file. Otherwise: run "
        "inference on the evaluation set for ONNX FP32 and each built bmodel of --model and record AP "
        "in artifacts/<model>/eval/<label>.json."))
    p.add_argument("--gt", help="COCO person-keypoints annotation json (with --results)")
    p.add_argument("--results", help="COCO keypoint results json to score")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (with --model: "
                   "{label: metrics} of every row, the progress on stderr)")
    add_model(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--coco-ann", default=None,
                   help="annotation json (default: the bundled COCO val2017 sample, coco_val_mini)")
    p.add_argument("--coco-img", default=None, help="image folder of --coco-ann")
    p.add_argument("--boxes", default="gt", help="gt | dets:JSON | detector:NAME (person boxes; a detector's rows are "
                                                 "labelled <artifact>__NAME, beside the gt rows, with its own box AP)")
    p.add_argument("--artifacts", nargs="*", default=None,
                   help="labels to evaluate (onnx_fp32, or a bmodel build dir name); default: all that exist")
    p.add_argument("--subset", type=positive_int, default=None,
                   help="persons for bmodels run on the cmodel (default: 4, named in the result)")
    p.add_argument("--bmodel-runtime", choices=("mlir", "cmodel"), default="mlir",
                   help="how bmodels are evaluated without a device: their deployed tpu.mlir through pymlir on "
                        "the whole set (default), or the bmodel itself on the cmodel on --subset persons")
    p.add_argument("--flip", action="store_true", help="flip test")
    add_shards(p)
    p.add_argument("--force", action="store_true", help="re-run even when the recorded result is up to date")
    p.add_argument("--allow-calib-overlap", action="store_true",
                   help="score an INT8 bmodel on images that calibrated it (refused otherwise; marked in the result)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.results or args.gt:
        if not (args.results and args.gt):
            raise BmposeError("--gt and --results go together")
        sigmas = None
        if args.model:
            sigmas = dataset_sigmas(load_model(args))
        stats = coco_keypoint_ap(args.gt, args.results, sigmas=sigmas)
        print(json.dumps(stats) if args.json else format_stats(stats))
        return 0
    from bmpose.evaluate.run import EvalRequest, run_eval

    req = EvalRequest(checkpoint=args.checkpoint, coco_ann=args.coco_ann, coco_img=args.coco_img, boxes=args.boxes,
                      artifacts=tuple(args.artifacts) if args.artifacts is not None else None, subset=args.subset,
                      bmodel_runtime=args.bmodel_runtime, flip=args.flip, shard_persons=args.shard_persons,
                      ray=args.ray, force=args.force, allow_calib_overlap=args.allow_calib_overlap)
    if not args.json:
        return run_eval(req, load_model(args))
    # --json: stdout carries one JSON object ({label: metrics}); the progress lines and the table go to stderr
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        rows = {}
        code = run_eval(req, load_model(args), rows)
    print(json.dumps(rows))
    return code


if __name__ == "__main__":
    sys.exit(main())
