"""`bmpose nntc`: the NNTC (BMNNSDK2 2.7) bundle for BM1684: opset-12 ONNX, the calibration crops as a ufw
LMDB, gen_fp32bmodel.sh / gen_int8bmodel.sh (bmpose.convert.nntc). Inside the SDK docker it also runs them."""
from __future__ import annotations

import argparse
import sys
import time

from bmpose.calib.calibset import ensure_calib
from bmpose.convert.nntc import SCRIPTS, TH_METHODS, ensure_nntc, th_method_name
from bmpose.cli.args import add_calibration, add_model, load_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bmpose nntc", description=__doc__.split("\n\n")[0])
    add_model(p)
    p.add_argument("--checkpoint", default=None, help="'fixture', a .pth path or a URL (default: the config's)")
    add_calibration(p)
    p.add_argument("--method", default=None, help="calibration method: kl, max or an NNTC -th_method ("
                   + ", ".join(TH_METHODS) + "; default: the config's)")
    p.add_argument("--force", action="store_true", help="rewrite the bundle even when up to date")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    cfg = load_model(a)
    cfg.require_heatmaps("the NNTC bundle")   # what the model is decides first, then the method
    method = a.method or cfg.calibration.get("method", "kl")
    th_method_name(method)   # refuse a method NNTC lacks before any crop or export work
    # a CalibWarning (fewer persons than --num) prints as bmpose's one line through bmpose.cli
    lmdb = ensure_calib(cfg, a.calib, coco_ann=a.coco_ann, coco_img=a.coco_img, num=a.num,
                        progress=sys.stderr.isatty())
    r = ensure_nntc(cfg, lmdb, checkpoint=a.checkpoint, method=method, force=a.force)
    d = r["dir"]
    print(f"{d}: {r['records']} calibration crops, -th_method={r['th_method']}, FP32 tail {', '.join(r['tail'])}")
    if r["ran"]:
        print(f"NNTC ran here: {len(r['models'])} bmodels in {d / 'models'}")
    else:
        print(f"bundle ready in {d} (NNTC does not import here): run {' and '.join(SCRIPTS)} inside the "
              f"BMNNSDK2 2.7 docker, see {d / 'README.md'}")
    print(f"nntc: {time.perf_counter() - t0:.1f} s")
    return 0
