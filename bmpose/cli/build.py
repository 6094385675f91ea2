"""`bmpose build --precision fp32|fp16|bf16|int8`: ONNX -> bmodels for every chip x batch, compared and gated.

  bmpose build --precision int8 --model hrnet_small_128x96 --calib coco --method kl --qtable extra.txt --search
  bmpose build --precision fp16 --chips bm1684x
  bmpose build --precision auto --chips bm1684x    # the fastest batch-1 build that keeps the keypoints (a search)

BM1684 has no fp16/bf16: named in --chips, it is refused before anything runs; from the config's chips it is
left out, with a note.

Each stage is skipped when its manifest says it is up to date. Before anything heavy is imported, a cheap
check (manifests and file hashes only, no torch/mmpose) decides whether there is anything to do at all, so a
no-op `make int8` returns in about a second.

`--precision auto` (bmpose.choose.pose) searches per chip, at batch 1, from the cheapest simulated time:
the float builds, INT8, then INT8 with its most sensitive layers (TPU-MLIR's ranking) in F16 (F32 on BM1684),
and keeps the fastest whose keypoints agree with ONNX FP32's to the tolerance auto_target (mean OKS against
float on the bundled val persons, never calibrated on). artifacts/<model>/auto/<chip>/choice.json and the
printed table say what was tried and why the winner won; the winner's recipe is then built at every batch asked
for (--batches, else the config's), listed as <chip>_auto_b<N> by `bmpose eval` and bundled by `bmpose deploy
--precisions auto`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bmpose.device.inputs import positive_int
from bmpose.chips import CHIPS, PRECISIONS
from bmpose.convert import steps
from bmpose.cli.args import add_auto, add_calibration, add_model, check_auto
from bmpose.flows.build import BuildRequest, build


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", required=True, choices=(*PRECISIONS, "auto"))
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint path/URL or 'fixture' (default: the config's)")
    ap.add_argument("--chips", nargs="+", help=f"chips (default: the config's; known: {' '.join(CHIPS)})")
    ap.add_argument("--batches", nargs="+", type=positive_int, help="batch sizes (default: the config's)")
    add_calibration(ap)
    ap.add_argument("--method", help="calibration method: " + ", ".join(steps.CALI_METHODS)
                    + " (default: the config's, kl)")
    ap.add_argument("--qtable", action="append", default=[], type=Path,
                    help="extra qtable (`op_name F32` lines), added to the automatic FP32 tail; repeatable")
    ap.add_argument("--search", action="store_true", help="also run TPU-MLIR's search_qtable per chip and "
                    "add the layers it finds to the qtable")
    ap.add_argument("--tolerance", action="append", default=[], metavar="KEY=VALUE",
                    help="override a tolerance of the config, e.g. int8_cos=0.98 (int8_cos_random gates INT8 "
                         "builds of the random-init fixture checkpoint); recorded in the manifests")
    ap.add_argument("--no-report", action="store_true", help="do not refresh artifacts/<model>/report")
    add_auto(ap, "14")
    args = ap.parse_args(argv)
    for c in args.chips or ():
        if c not in CHIPS:
            ap.error(f"--chips {c}: unknown chip (choose from {', '.join(CHIPS)})")
    for b in args.batches or ():
        if b < 1:
            ap.error(f"--batches {b}: must be >= 1")
    check_auto(ap, args)
    return args


def request(args) -> BuildRequest:
    return BuildRequest(precision=args.precision, model=args.model, artifacts_dir=args.artifacts_dir,
                        checkpoint=args.checkpoint, chips=tuple(args.chips or ()), batches=tuple(args.batches or ()),
                        calib=args.calib, coco_ann=args.coco_ann, coco_img=args.coco_img, num=args.num,
                        method=args.method, qtables=tuple(args.qtable), search=args.search,
                        tolerances=tuple(args.tolerance), report=not args.no_report, auto_budget=args.auto_budget,
                        auto_tools=tuple(args.auto_tools) if args.auto_tools else None, auto_best=args.auto_best)


def main(argv: list[str]) -> int:
    build(request(parse_args(argv)))
    return 0
