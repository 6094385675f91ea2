"""`bmpose deploy`: per chip, a bundle that runs on the Sophon box with Python 3.7+, numpy, OpenCV and sail:
the chip's bmodels (INT8 and FP32 by default, plus any other precision built for it), its person detector's
bmodel (default yolox_nano_416, at the detector config's precision for the chip; `--detector none` leaves it
out), deploy.json, bmpose's pose core and device app, sample images, a README; as a folder and a .tar.gz in
artifacts/<model>/deploy/. Missing bmodels are built first (`bmpose build`, `bmpose detector`: the detector's
boxes must pass their gate against ONNX), reusing whatever is up to date. `--precisions auto` bundles each chip's
`--precision auto` winner (searched first when missing) at every batch, as `<model>_<chip>_auto_b<N>.bmodel`,
and makes it the bundle's default."""
from __future__ import annotations

import argparse

from bmpose.device.inputs import positive_int
from bmpose.chips import CHIPS, PRECISIONS
from bmpose.cli.args import add_calibration, add_model
from bmpose.flows.deploy import DeployRequest, deploy


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose deploy", description=__doc__)
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint path/URL or 'fixture' (default: the config's)")
    ap.add_argument("--chips", nargs="+", choices=CHIPS, help="chips (default: the config's)")
    ap.add_argument("--precisions", nargs="+", default=["int8", "fp32"], choices=(*PRECISIONS, "auto"),
                    help="precisions to build and bundle; auto: the --precision auto winner "
                    "(default: int8 fp32; other float precisions already built for the chip are bundled too)")
    ap.add_argument("--batches", nargs="+", type=positive_int, help="batch sizes (default: the config's)")
    ap.add_argument("--detector", default="yolox_nano_416",
                    help="person detector config name or yaml to bundle, or none (default: yolox_nano_416)")
    add_calibration(ap)
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    req = DeployRequest(model=args.model, artifacts_dir=args.artifacts_dir, checkpoint=args.checkpoint,
                        chips=tuple(args.chips or ()), precisions=tuple(args.precisions),
                        batches=tuple(args.batches or ()), detector=args.detector, calib=args.calib,
                        coco_ann=args.coco_ann, coco_img=args.coco_img, num=args.num)
    for b in deploy(req):
        names = ", ".join(f"{m.get('variant') and 'auto ' + m['variant'] or m['precision']} b{m['batch']}"
                          for m in b["bmodels"])
        if b["detector"]:
            names += f"; detector {b['detector']}"
        print(f"deploy: {b['chip']}: {b['folder']} and {b['archive'].name} ({names}; "
              f"{'written' if b['written'] else 'up to date'}, {b['seconds']:.1f} s)")
    return 0
