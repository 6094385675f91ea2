"""`bmpose deploy`: per chip, a bundle that runs on the Sophon box with Python 3.7+, numpy, OpenCV and sail:
the chip's bmodels (INT8 and FP32 by default, plus any other precision built for it), its person detector's
bmodel (default yolox_nano_416, at the detector config's precision for the chip; `--detector none` leaves it
out), deploy.json, bmpose's pose core and device app, sample images, a README; as a folder and a .tar.gz in
artifacts/<model>/deploy/. Missing bmodels are built first (`bmpose build`, `bmpose detector`: the detector's
boxes must pass their gate against ONNX), reusing whatever is up to date."""
from __future__ import annotations

import argparse
import json
import time

from bmpose.device.inputs import positive_int
from bmpose.chips import CHIPS, PRECISIONS
from bmpose.layout import list_bmodels
from bmpose.cli.args import add_calibration, add_model, artifacts_argv, load_model


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose deploy", description=__doc__)
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint path/URL or 'fixture' (default: the config's)")
    ap.add_argument("--chips", nargs="+", choices=CHIPS, help="chips (default: the config's)")
    ap.add_argument("--precisions", nargs="+", default=["int8", "fp32"], choices=PRECISIONS,
                    help="precisions to build and bundle "
                    "(default: int8 fp32; other precisions already built for the chip are bundled too)")
    ap.add_argument("--batches", nargs="+", type=positive_int, help="batch sizes (default: the config's)")
    ap.add_argument("--detector", default="yolox_nano_416",
                    help="person detector config name or yaml to bundle, or none (default: yolox_nano_416)")
    add_calibration(ap)
    return ap.parse_args(argv)


def detector_builds(args, cfg, chips) -> dict:
    """{chip: (detector config of that build, bmodel, box row)} for the chips the detector config has a
    precision for, built and scored by `bmpose detector` (which refuses a build whose boxes miss the gate)."""
    from dataclasses import replace

    from bmpose.cli import detector as detector_cli
    from bmpose.detector_config import load_detector
    from bmpose.errors import BmposeError

    if args.detector == "none":
        return {}
    dcfg = load_detector(args.detector, cfg.root)
    have = [c for c in chips if c in dcfg.precisions]
    for c in chips:
        if c not in have:
            print(f"deploy: {c}: {dcfg.name} has no precision for this chip (its precisions: "
                  f"{', '.join(f'{k} {v}' for k, v in dcfg.precisions.items())}); the bundle has no detector")
    if not have:
        return {}
    if detector_cli.main(["--detector", str(args.detector), "--artifacts-dir", str(cfg.root), "--chips", *have]):
        raise BmposeError(f"{dcfg.path}: its bmodels miss their box gate (above); nothing bundled")
    rows = {r["label"]: r for r in json.loads((dcfg.layout.eval() / "boxes.json").read_text())["rows"]}
    out = {}
    for c in have:
        d = replace(dcfg, build=f"{c}_{dcfg.precisions[c]}")
        out[c] = (d, d.model_path(), rows.get(d.tag))
    return out


def build_argv(args, cfg, precision: str, chips, batches) -> list[str]:
    argv = ["--precision", precision, "--model", str(args.model or cfg.name), *artifacts_argv(cfg),
            "--chips", *chips, "--batches", *map(str, batches), "--no-report", "--calib", args.calib]
    for flag, value in (("--checkpoint", args.checkpoint), ("--coco-ann", args.coco_ann),
                        ("--coco-img", args.coco_img), ("--num", args.num)):
        if value:
            argv += [flag, str(value)]
    return argv


def main(argv: list[str]) -> int:
    from bmpose.cli import build
    from bmpose.deploy.bundle import write_bundle

    args = parse_args(argv)
    cfg = load_model(args)
    chips = tuple(args.chips or cfg.chips)
    batches = tuple(args.batches or cfg.batches)
    for precision in args.precisions:
        build.main(build_argv(args, cfg, precision, chips, batches))
    detectors = detector_builds(args, cfg, chips)
    for chip in chips:
        t0 = time.monotonic()
        bmodels = [b for b in list_bmodels(cfg) if b["chip"] == chip and b["batch"] in batches
                   and (b["precision"] in args.precisions or b["precision"] not in ("int8", "fp32"))]
        folder, archive, written = write_bundle(cfg, chip, bmodels, detectors.get(chip))
        names = ", ".join(f"{b['precision']} b{b['batch']}" for b in bmodels)
        if chip in detectors:
            names += f"; detector {detectors[chip][0].tag}"
        print(f"deploy: {chip}: {folder} and {archive.name} ({names}; "
              f"{'written' if written else 'up to date'}, {time.monotonic() - t0:.1f} s)")
    return 0
