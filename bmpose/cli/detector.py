"""`bmpose detector`: a person detector's bmodels, built and checked like a pose model's.

  bmpose detector                                   # the config's precision per chip (yolox_nano_416: BM1684X FP16, BM1684 FP32)
  bmpose detector --chips bm1684x --precision int8  # one build
  bmpose detector --precision auto                  # the fastest build whose boxes agree with ONNX's (a search)
  bmpose detector --detector my_yolov8.yaml --frames /data/frames

Each bmodel is built by the pose models' stages (calibration frames letterboxed by the function inference uses,
top MLIR, calibration table for INT8, model_deploy with TPU-MLIR's own check, output vs ONNX gate, compare
files, simulated device time) under artifacts/<detector>/. Then its person boxes on the evaluation images
(default: the bundled COCO val persons) are scored beside ONNX Runtime's: recall at IoU 0.5 and COCO person box
AP, held to the config's margins (tolerances max_recall_drop / max_ap_drop; int8_* for INT8). Results:
artifacts/<detector>/eval/boxes.json and report/report.md; exit 1 when a build misses its gate.
Run a build's boxes elsewhere with `--boxes detector:NAME@<chip>_<precision>` (bmpose infer / eval).

`--precision auto` (bmpose.convert.auto) builds the float precisions of the chip, then INT8, then INT8 with its
most sensitive layers in float (F16 where the chip has it), and keeps the fastest whose boxes agree with ONNX's
to the config's auto target (COCO box AP against ONNX's persons, on the bundled val frames, never calibrated
on); artifacts/<detector>/auto/<chip>/choice.json and the report hold what was tried and why the winner won.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bmpose.chips import CHIPS, PRECISIONS
from bmpose.cli.args import add_artifacts_dir, add_auto, check_auto
from bmpose.detector_config import AUTO
from bmpose.flows.detector import DetectorRequest, run
from bmpose.report.detector import auto_lines, cells


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose detector", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default=None, help="detector config name or yaml (default: yolox_nano_416)")
    add_artifacts_dir(ap)
    ap.add_argument("--chips", nargs="+", choices=CHIPS, help="chips (default: those in the config's precisions)")
    ap.add_argument("--precision", choices=(*PRECISIONS, AUTO),
                    help="one precision for every chip, or auto (default: the config's per chip)")
    ap.add_argument("--auto-target", type=float, metavar="X", help="auto: box AP against ONNX's persons to keep "
                    "(default: the config's auto target)")
    add_auto(ap, "the config's")
    ap.add_argument("--frames", type=Path, help="folder of whole frames to calibrate on (default: the 80 bundled "
                                                "COCO train2017 frames, data/coco_train_mini and "
                                                "coco_train_frames)")
    ap.add_argument("--num", type=int, help="calibration frames (default: the config's calibration.num)")
    ap.add_argument("--coco-ann", type=Path, help="COCO annotations whose persons score the boxes (default: the "
                                                  "bundled val persons)")
    ap.add_argument("--coco-img", type=Path, help="its image folder (default: beside the json)")
    ap.add_argument("--runtime", choices=("mlir", "cmodel"), default="mlir",
                    help="how a bmodel's boxes are computed without a device: its deployed tpu.mlir on pymlir "
                         "(default; what TPU-MLIR checks the bmodel against) or the bmodel on the chip simulator")
    args = ap.parse_args(argv)
    if args.auto_target is not None and not 0 < args.auto_target <= 1:
        ap.error(f"--auto-target {args.auto_target}: a box AP against ONNX's persons, in (0, 1]")
    check_auto(ap, args)
    return args


def request(args) -> DetectorRequest:
    return DetectorRequest(detector=args.detector, artifacts_dir=args.artifacts_dir, chips=tuple(args.chips or ()),
                           precision=args.precision, auto_target=args.auto_target, auto_budget=args.auto_budget,
                           auto_tools=tuple(args.auto_tools) if args.auto_tools else None,
                           auto_best=args.auto_best, frames=args.frames, num=args.num, coco_ann=args.coco_ann,
                           coco_img=args.coco_img, runtime=args.runtime)


def main(argv=None) -> int:
    done = run(request(parse_args(argv)))
    print_table(done["rows"])
    for chip, choice in done["choices"].items():
        if (chip, AUTO) in done["plan"]:
            print("\n" + "\n".join(auto_lines(choice)))
    for r in done["failed"]:
        g = r["gate"]
        print(f"detector: {r['label']}: FAILED its box gate: recall -{g['recall_drop']:.3f} (max "
              f"{g['max_recall_drop']}), box AP -{g['ap_drop']:.4f} (max {g['max_ap_drop']}) vs ONNX", file=sys.stderr)
    return 1 if done["failed"] else 0


def print_table(rows: list[dict]) -> None:
    print(f"\n{'build':<28} {'backend':<7} {'box AP':>7} {'AP50':>7} {'recall':>7} {'@thr':>7} {'ms':>6}  gate")
    for r in rows:
        c = cells(r)
        print(f"{r['label']:<28} {r['backend']:<7} {c['ap']:>7} {c['ap50']:>7} {c['recall']:>7} {c['at_thr']:>7} "
              f"{c['ms']:>6}  {c['gate']}")
