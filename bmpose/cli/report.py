"""`bmpose report --model M`: artifacts/<model>/report/{index.html, report.md, report.json, *.png}
(bmpose.report.report)."""
from __future__ import annotations

import argparse

from bmpose.report.report import ensure_report
from bmpose.cli.args import add_artifacts_dir, load_model


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bmpose report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="deploy config name or yaml")
    add_artifacts_dir(ap)
    ap.add_argument("--checkpoint", help="accepted for the Makefile's common options; unused")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    cfg = load_model(args)
    path = ensure_report(cfg, force=args.force)
    print(f"report: {path}")
    return 0
