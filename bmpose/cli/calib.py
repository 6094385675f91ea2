"""`bmpose calib`: COCO person crops -> the calibration LMDB and its contact sheet (bmpose.calib)."""
from __future__ import annotations

import argparse
import sys

from bmpose import manifest
from bmpose.calib.calibset import ensure_calib
from bmpose.calib.select import DEFAULT_MIN_BOX, DEFAULT_MIN_KEYPOINTS
from bmpose.calib.sheet import SHEET_NAME
from bmpose.calib.store import read_meta
from bmpose.cli.args import add_calibration, add_model, load_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bmpose calib", description="COCO person crops -> calibration LMDB")
    add_model(p)
    p.add_argument("--checkpoint", default=None, help="accepted for the Makefile's COMMON options; unused")
    add_calibration(p)
    p.add_argument("--seed", type=int, default=None, help="selection seed (default: config's calibration.seed)")
    p.add_argument("--min-keypoints", type=int, default=None,
                   help=f"least labelled keypoints per person (default {DEFAULT_MIN_KEYPOINTS})")
    p.add_argument("--min-box", type=float, default=None,
                   help=f"least box side in pixels (default {DEFAULT_MIN_BOX:g})")
    p.add_argument("--workers", type=int, default=None, help="crop processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace an LMDB built for a different config")
    a = p.parse_args(argv)
    cfg = load_model(a)
    # its CalibWarning (fewer persons than --num) prints as bmpose's one line through bmpose.cli
    path = ensure_calib(cfg, a.calib, coco_ann=a.coco_ann, coco_img=a.coco_img, num=a.num, seed=a.seed,
                        min_keypoints=a.min_keypoints, min_box=a.min_box, force=a.force, workers=a.workers,
                        progress=sys.stderr.isatty())
    meta = read_meta(path)
    sheet = path.parent / SHEET_NAME
    m = manifest.read_manifest(path.parent) or {}
    checks = m.get("checks", {})
    print(f"{path}: {meta['count']} crops {meta['preprocess']['input_size']} (w, h) from {meta['source']['source']}"
          + (f", {checks['crops_per_s']} crops/s" if "crops_per_s" in checks else ""))
    if sheet.is_file():
        print(f"contact sheet: {sheet}")
    return 0
