"""`bmpose report --model M`: artifacts/<model>/report/{index.html, report.md, report.json, *.png, *.jpg}
(bmpose.report.report), after drawing each chip's pose picture where it is missing (bmpose.evaluate.pictures)."""
from __future__ import annotations

import argparse

from bmpose.cli.args import add_model, load_model
from bmpose.flows.report import refresh_report


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bmpose report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model(ap)
    ap.add_argument("--checkpoint", help="accepted for the Makefile's common options; unused")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    cfg = load_model(args)
    path = refresh_report(cfg, force=args.force)
    print(f"report: {path}")
    return 0
