"""Options that every command with a `--model` shares: where its artifacts live."""
from __future__ import annotations

import argparse
from pathlib import Path

from bmpose import config as config_mod


def add_model(p: argparse.ArgumentParser) -> None:
    """--model and where its artifacts live."""
    p.add_argument("--model", default=None,
                   help=f"deploy config name or yaml path (default: {config_mod.DEFAULT_MODEL})")
    add_artifacts_dir(p)


def add_artifacts_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts-dir", type=Path, metavar="DIR",
                   help="artifacts root; the model's builds go under DIR/<model> "
                        "(default: $BMPOSE_ARTIFACTS, else artifacts/ in the repository)")


def add_calibration(p: argparse.ArgumentParser) -> None:
    """Which persons calibrate INT8 (bmpose.calib)."""
    p.add_argument("--calib", default="coco", help="calibration set: coco | dir:PATH | lmdb:PATH (default: coco)")
    p.add_argument("--coco-ann", help="COCO person keypoints json for --calib coco (default: the bundled COCO "
                                      "train2017 persons, data/coco_train_mini)")
    p.add_argument("--coco-img", help="its image folder (default: beside the json)")
    p.add_argument("--num", type=int, help="calibration crops (default: the config's calibration.num)")


def add_shards(p: argparse.ArgumentParser) -> None:
    """--shard-persons and --ray: an evaluation in shards, here or as tasks of a Ray cluster."""
    from bmpose.device.inputs import positive_int
    from bmpose.evaluate.shards import SHARD_PERSONS

    p.add_argument("--shard-persons", type=positive_int, default=SHARD_PERSONS, metavar="N",
                   help="persons per result shard (whole images; written as they finish, so an interrupted run "
                        "resumes at its first missing shard; default %(default)s)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the shards as tasks of a Ray cluster: auto (the cluster "
                   "this machine joined), host:port, or local (a one-machine Ray for this run); artifacts and images "
                   "must be at the same paths on every node")


def load_model(args, model=None):
    """The deploy config named by --model (or `model`), with its artifacts under --artifacts-dir."""
    return config_mod.load(model if model is not None else args.model, artifacts=args.artifacts_dir)


def add_auto(p: argparse.ArgumentParser, budget_default: str) -> None:
    """--precision auto's search options, shared by `bmpose build` and `bmpose detector`."""
    p.add_argument("--auto-budget", type=int, default=None, metavar="N",
                   help=f"auto: most builds per chip, float builds included (default: {budget_default})")
    p.add_argument("--auto-tools", nargs="+", metavar="TOOLS",
                   help="auto: TPU-MLIR calibration tools tried on all-INT8 before float layers, in order, each a "
                        "tool or tools joined by '+' (search_threshold, bc, we), or none (default: "
                        "search_threshold bc we; bc runs the chip's INT8 model once per conv: minutes on large nets)")
    p.add_argument("--auto-best", action="store_true", help="auto: when no build meets the target, keep the best "
                   "one built (marked) instead of failing")


def check_auto(p: argparse.ArgumentParser, args) -> None:
    """add_auto's options checked: an argparse error line for a budget under 2 or an unknown tool."""
    from bmpose.convert.auto import parse_tools
    from bmpose.errors import BmposeError

    if args.auto_budget is not None and args.auto_budget < 2:
        p.error(f"--auto-budget {args.auto_budget}: at least 2 builds")
    try:
        parse_tools(args.auto_tools)
    except BmposeError as e:
        p.error(f"--auto-tools: {e}")
