"""`bmpose train`: train the small HRNet fixture on the bundled real COCO persons with mmpose's own loop
(bmpose.experiments.train)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bmpose import config as bmconfig
from bmpose.manifest import atomic_dir, sha256_file, up_to_date, write_manifest
from bmpose.experiments.train import (CHECKPOINT, CURVE, INSTALL_DIR, INSTALLED, SUMMARY, THREADS, TRAIN_CONFIG,
                                  load_train_config, recipe_of, train)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(TRAIN_CONFIG), help="mmpose training config (default: %(default)s)")
    p.add_argument("--out", help="output folder (default: artifacts/<model>/train)")
    p.add_argument("--epochs", type=int, help="override the config's max_epochs")
    p.add_argument("--lr", type=float, help="override the config's Adam lr")
    p.add_argument("--batch-size", type=int, help="override the config's train batch size")
    p.add_argument("--val-interval", type=int, help="validate every N epochs")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--threads", type=int, default=THREADS, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--install", action="store_true",
                   help=f"copy checkpoint, summary and curve to {INSTALL_DIR.relative_to(bmconfig.ROOT)}/")
    p.add_argument("--force", action="store_true", help="train even when the output is up to date")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    deploy = bmconfig.load("hrnet_small_128x96")
    out = Path(args.out) if args.out else deploy.layout.train()
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "val_interval": args.val_interval, "seed": args.seed, "threads": args.threads}
    cfg = load_train_config(args.config, work_dir=out, **overrides)
    data = cfg.train_dataloader.dataset
    inputs = {"train_config": args.config, "model_config": deploy.mmpose_config,
              "annotations": Path(data.data_root) / data.ann_file}
    options = {"recipe": json.loads(json.dumps(recipe_of(cfg), default=str))}
    if not args.force and up_to_date(out, inputs, options):
        print(f"{out}: up to date (--force to train again)")
    else:
        with atomic_dir(out) as tmp:
            cfg.work_dir = str(tmp)
            summary = train(cfg, tmp)
            write_manifest(tmp, stage="train", inputs=inputs, options=options,
                           outputs=[CHECKPOINT, SUMMARY] + ([CURVE] if summary["val"] else []),
                           checks={"final_ap": (summary["final"] or {}).get("AP")})
    summary = json.loads((out / SUMMARY).read_text())
    final = (summary["final"] or {}).get("AP")
    print(f"{out / CHECKPOINT}: {summary['recipe']['epochs']} epochs in {summary['train_seconds']:.0f} s, "
          f"final COCO AP on the training persons: {'not validated' if final is None else f'{final:.4f}'}")
    installed = INSTALL_DIR / CHECKPOINT
    if args.install:
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        for name, installed_name in INSTALLED.items():
            if (out / name).is_file():
                shutil.copyfile(out / name, INSTALL_DIR / installed_name)
        print(f"installed into {INSTALL_DIR}")
    elif installed.is_file():
        same = sha256_file(installed) == sha256_file(out / CHECKPOINT)
        print(f"{installed}: {'identical to this run' if same else 'differs from this run (--install to replace it)'}")
    return 0
