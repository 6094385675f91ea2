"""`bmpose train`: train a fixture (the small HRNet by default; --model rtmpose-t_256x192) on the bundled real
COCO persons with mmpose's own loop (bmpose.experiments.train)."""
from __future__ import annotations

import argparse

from bmpose import config as bmconfig
from bmpose.experiments.train import DEFAULT_MODEL, INSTALL_DIR, RECIPES, THREADS
from bmpose.flows.train import TrainRequest, train_fixture


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
    done = train_fixture(TrainRequest(model=args.model, config=args.config, out=args.out, epochs=args.epochs,
                                      lr=args.lr, batch_size=args.batch_size, val_interval=args.val_interval,
                                      seed=args.seed, threads=args.threads, install=args.install,
                                      force=args.force))
    if not done["trained"]:
        print(f"{done['out']}: up to date (--force to train again)")
    summary = done["summary"]
    final = (summary["final"] or {}).get("AP")
    print(f"{done['checkpoint']}: {summary['recipe']['epochs']} epochs in {summary['train_seconds']:.0f} s, "
          f"final COCO AP on the training persons: {'not validated' if final is None else f'{final:.4f}'}")
    if done["installed"]:
        print(f"installed into {INSTALL_DIR}")
    elif done["same_as_installed"] is not None:
        verdict = "identical to this run" if done["same_as_installed"] else \
            "differs from this run (--install to replace it)"
        print(f"{INSTALL_DIR / done['checkpoint'].name}: {verdict}")
    return 0
