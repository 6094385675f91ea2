"""`bmpose fixture`: deterministic random-init checkpoints, so every stage runs with no download."""
from __future__ import annotations

import argparse

from bmpose import config as config_mod
from bmpose.weights.fixture import make_fixture
from bmpose.cli.args import add_artifacts_dir, load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bmpose fixture", description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append",
                    help="deploy config name or yaml path (repeatable; default: every bundled config)")
    add_artifacts_dir(ap)
    ap.add_argument("--force", action="store_true", help="rewrite even when up to date")
    args = ap.parse_args(argv)
    for name in args.model or config_mod.list_models():
        cfg = load_model(args, name)
        if cfg.onnx is not None:   # a trained ONNX file (BlazePose): its weights are in it
            print(f"fixture: {cfg.name}: an ONNX model, its weights are in {cfg.onnx.name}; no fixture to make")
            continue
        path = cfg.layout.fixture_checkpoint()
        before = path.stat().st_mtime_ns if path.exists() else None
        make_fixture(cfg, force=args.force)
        if before is not None and path.stat().st_mtime_ns == before:
            print(f"fixture: {path} is up to date (skipped)")
    return 0
