"""`bmpose train` as a library call: a TrainRequest -> the fixture trained (or its up-to-date run reused) under
artifacts/<model>/train/ with its manifest (bmpose.experiments.train), optionally installed into
configs/checkpoints/."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from bmpose import config as bmconfig
from bmpose.experiments.train import (CURVE, DEFAULT_MODEL, INSTALL_DIR, SUMMARY, THREADS, checkpoint_name,
                                     installed_names, load_train_config, recipe_of, train, train_config_of)
from bmpose.manifest import atomic_dir, sha256_file, up_to_date, write_manifest


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    model: str = DEFAULT_MODEL           # a deploy config with a recipe (experiments.train.RECIPES)
    config: str | None = None            # mmpose training config (None: the model's recipe)
    out: Path | None = None              # None: artifacts/<model>/train
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    val_interval: int | None = None
    seed: int | None = None
    threads: int = THREADS
    install: bool = False
    force: bool = False


def train_fixture(req: TrainRequest) -> dict:
    """-> {"out", "checkpoint", "summary", "trained" (this call), "installed" (into INSTALL_DIR),
    "same_as_installed" (None when nothing is installed)}."""
    deploy = bmconfig.load(req.model)
    config_path = req.config or str(train_config_of(req.model))
    ckpt_name = checkpoint_name(req.model)
    out = Path(req.out) if req.out else deploy.layout.train()
    cfg = load_train_config(config_path, work_dir=out, epochs=req.epochs, lr=req.lr, batch_size=req.batch_size,
                            val_interval=req.val_interval, seed=req.seed, threads=req.threads)
    data = cfg.train_dataloader.dataset
    inputs = {"train_config": config_path, "model_config": deploy.mmpose_config,
              "annotations": Path(data.data_root) / data.ann_file}
    options = {"recipe": json.loads(json.dumps(recipe_of(cfg), default=str))}
    trained = req.force or not up_to_date(out, inputs, options)
    if trained:
        with atomic_dir(out) as tmp:
            cfg.work_dir = str(tmp)
            summary = train(cfg, tmp, model_name=req.model)
            write_manifest(tmp, stage="train", inputs=inputs, options=options,
                           outputs=[ckpt_name, SUMMARY] + ([CURVE] if summary["val"] else []),
                           checks={"final_ap": (summary["final"] or {}).get("AP")})
    installed = INSTALL_DIR / ckpt_name
    if req.install:
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        for name, installed_name in installed_names(req.model).items():
            if (out / name).is_file():
                shutil.copyfile(out / name, INSTALL_DIR / installed_name)
    same = sha256_file(installed) == sha256_file(out / ckpt_name) if installed.is_file() else None
    return {"out": out, "checkpoint": out / ckpt_name, "summary": json.loads((out / SUMMARY).read_text()),
            "trained": trained, "installed": req.install, "same_as_installed": same}
