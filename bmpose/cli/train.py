"""`bmpose train`: train a fixture (the small HRNet by default; --model rtmpose-t_256x192) on the bundled real
COCO persons with mmpose's own loop (bmpose.experiments.train)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bmpose import config as bmconfig
from bmpose.manifest import atomic_dir, sha256_file, up_to_date, write_manifest
from bmpose.experiments.train import (CURVE, DEFAULT_MODEL, INSTALL_DIR, RECIPES, SUMMARY, THREADS, checkpoint_name,
                                     installed_names, load_train_config, recipe_of, train, train_config_of)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(RECIPES),
                   help="the deploy config whose fixture to train (default: %(default)s)")
    p.add_argument("--config", help="mmpose training config (default: the model's recipe in configs/mmpose/)")
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
    deploy = bmconfig.load(args.model)
    config_path = args.config or str(train_config_of(args.model))
    ckpt_name = checkpoint_name(args.model)
    out = Path(args.out) if args.out else deploy.layout.train()
    overrides = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "val_interval": args.val_interval, "seed": args.seed, "threads": args.threads}
    cfg = load_train_config(config_path, work_dir=out, **overrides)
    data = cfg.train_dataloader.dataset
    inputs = {"train_config": config_path, "model_config": deploy.mmpose_config,
              "annotations": Path(data.data_root) / data.ann_file}
    options = {"recipe": json.loads(json.dumps(recipe_of(cfg), default=str))}
    if not args.force and up_to_date(out, inputs, options):
        print(f"{out}: up to date (--force to train again)")
    else:
        with atomic_dir(out) as tmp:
            cfg.work_dir = str(tmp)
            summary = train(cfg, tmp, model_name=args.model)
            write_manifest(tmp, stage="train", inputs=inputs, options=options,
                           outputs=[ckpt_name, SUMMARY] + ([CURVE] if summary["val"] else []),
                           checks={"final_ap": (summary["final"] or {}).get("AP")})
    summary = json.loads((out / SUMMARY).read_text())
    final = (summary["final"] or {}).get("AP")
    print(f"{out / ckpt_name}: {summary['recipe']['epochs']} epochs in {summary['train_seconds']:.0f} s, "
          f"final COCO AP on the training persons: {'not validated' if final is None else f'{final:.4f}'}")
    installed = INSTALL_DIR / ckpt_name
    if args.install:
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        for name, installed_name in installed_names(args.model).items():
            if (out / name).is_file():
                shutil.copyfile(out / name, INSTALL_DIR / installed_name)
        print(f"installed into {INSTALL_DIR}")
    elif installed.is_file():
        same = sha256_file(installed) == sha256_file(out / ckpt_name)
        print(f"{installed}: {'identical to this run' if same else 'differs from this run (--install to replace it)'}")
    return 0
