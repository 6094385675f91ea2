"""`bmpose export`: mmpose model -> ONNX (backbone + head), checked against PyTorch with onnxruntime."""
from __future__ import annotations

import argparse

from bmpose.convert.export import ensure_onnx
from bmpose.cli.args import add_model, load_model


def _batch(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bmpose export", description=__doc__.splitlines()[0])
    add_model(ap)
    ap.add_argument("--checkpoint", default=None,
                    help="'fixture', a .pth path or an http(s) URL (default: the deploy config's)")
    ap.add_argument("--batches", nargs="+", type=_batch, default=None,
                    help="static batch sizes (default: the deploy config's, e.g. 1 4)")
    ap.add_argument("--dynamic", action="store_true", help="also export a dynamic-batch file")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    cfg = load_model(args)
    paths = ensure_onnx(cfg, args.checkpoint, batches=args.batches or cfg.batches, dynamic=args.dynamic,
                        force=args.force)
    for path in paths.values():
        print(path)
    return 0
