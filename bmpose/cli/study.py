"""`bmpose study --model M` (`make study`): which INT8 calibration settings cost the least COCO AP.

Builds and evaluates every chip x calibration method x FP32-layer variant (bmpose.experiments.study), writes
artifacts/<model>/study/ and refreshes the report.
"""
from __future__ import annotations

import argparse

from bmpose.experiments.fragility import to_markdown as to_markdown_fragility
from bmpose.experiments.study import LAYERS, METHODS, StudyRequest, run_study, to_markdown
from bmpose.cli.args import add_model, add_shards, load_model


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint (default: the config's, the trained fixture)")
    ap.add_argument("--chips", nargs="+", help="chips (default: the config's)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="calibration methods (default: %(default)s)")
    ap.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS,
                    help="FP32 layer variants (default: %(default)s)")
    ap.add_argument("--search-methods", nargs="+", default=["all"],
                    help="methods that get the searched qtable (default: all of --methods; measured: minutes for kl, "
                         "whose all-INT8 heatmaps miss int8_cos, seconds for the others, which meet it unsearched)")
    ap.add_argument("--tools", nargs="+", default=["none"], metavar="TOOLS",
                    help="TPU-MLIR calibration tools per INT8 variant, each 'none' or tools joined by '+' from "
                         "search_threshold, bc, we (e.g. --tools none search_threshold bc bc+we); one TPU-MLIR "
                         "cannot apply to the model is a row with its reason (default: none)")
    ap.add_argument("--coco-ann", help="evaluation annotations (default: data/person_keypoints_bundled.json)")
    ap.add_argument("--coco-img", help="image root of --coco-ann (default: its folder)")
    ap.add_argument("--no-flip", action="store_true", help="evaluate without the flip test (default: the model's "
                    "test_cfg, as mmpose and the fixture's training AP)")
    add_shards(ap)
    ap.add_argument("--force-eval", action="store_true",
                    help="re-run the evaluations (AP and the paired OKS) even when cached")
    ap.add_argument("--no-report", action="store_true", help="do not refresh artifacts/<model>/report")
    ap.add_argument("--fragility", action="store_true",
                    help="instead: how far INT8 moves when the calibration set loses one crop (per method and "
                         "chip; study/fragility/)")
    return ap.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    cfg = load_model(args)
    if args.fragility:
        from bmpose.experiments.fragility import run_fragility

        doc = run_fragility(cfg, tuple(args.chips or cfg.chips), args.methods, args.checkpoint)
        print(to_markdown_fragility(doc))
        return 0
    req = StudyRequest(checkpoint=args.checkpoint, chips=tuple(args.chips or ()), methods=tuple(args.methods),
                       layers=tuple(args.layers), search_methods=tuple(args.search_methods), tools=tuple(args.tools),
                       coco_ann=args.coco_ann, coco_img=args.coco_img, no_flip=args.no_flip,
                       force_eval=args.force_eval, shard_persons=args.shard_persons, ray=args.ray)
    study = run_study(cfg, req)
    print(to_markdown(study))
    if not args.no_report:
        from bmpose.flows.report import refresh_report

        print(f"study: report {refresh_report(cfg)}")
    return 0
