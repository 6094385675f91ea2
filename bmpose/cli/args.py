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
                                      "train2017 persons, tests/data/coco_train_mini)")
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
