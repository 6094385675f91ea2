"""`bmpose train`: train a trained fixture (the small HRNet, RTMPose-t: RECIPES) on the bundled real COCO
persons with mmpose's own loop.

A fixture exists so that INT8 and calibration effects can be measured on weights that have learnt something
(random weights have not); it memorises its 51 persons, so its accuracy ranks nothing about real nets. Each
recipe is an mmpose training config (configs/mmpose/*_fixture-train.py, each saying which augmentation it keeps
and why): mmengine's Runner on the CPU, both bundled COCO subsets in one annotation file (51 persons),
validated with mmpose's CocoMetric on the same persons with their ground-truth boxes.

A run writes artifacts/<model>/train/: the stripped checkpoint (mmpose format: state_dict + meta, no
optimizer state), training_summary.json (loss per epoch, COCO AP per validation), training_curve.png, the
Runner's own logs and a manifest. `--install` copies checkpoint, summary and curve to configs/checkpoints/,
where the deploy config's `checkpoint:` points. The run is seeded and deterministic (same weights for the same
seed, torch build and thread count); `score_checkpoint` re-checks a checkpoint's AP outside the training loop.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from pathlib import Path

from bmpose import config as bmconfig
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_file, sha256_file
from bmpose.progress import bar

# The models with a trained-fixture recipe: deploy config name -> its mmpose training config.
RECIPES = {"hrnet_small_128x96": "td-hm_hrnet-small_coco-128x96_fixture-train.py",
           "rtmpose-t_256x192": "rtmpose-t_coco-256x192_fixture-train.py"}
DEFAULT_MODEL = "hrnet_small_128x96"
INSTALL_DIR = bmconfig.CONFIG_DIR / "checkpoints"
SUMMARY = "training_summary.json"
CURVE = "training_curve.png"


def train_config_of(model: str) -> Path:
    if model not in RECIPES:
        raise BmposeError(f"--model {model}: no trained-fixture recipe (recipes: {', '.join(RECIPES)})")
    return bmconfig.CONFIG_DIR / "mmpose" / RECIPES[model]


def checkpoint_name(model: str = DEFAULT_MODEL) -> str:
    return f"{model}_fixture.pth"


def installed_names(model: str = DEFAULT_MODEL) -> dict:
    """Run file -> name in configs/checkpoints/ (the model's own names, so fixtures never collide)."""
    return {checkpoint_name(model): checkpoint_name(model), SUMMARY: f"{model}_fixture.summary.json",
            CURVE: f"{model}_fixture.curve.png"}


TRAIN_CONFIG = train_config_of(DEFAULT_MODEL)
CHECKPOINT = checkpoint_name(DEFAULT_MODEL)
INSTALLED = installed_names(DEFAULT_MODEL)
# One torch thread: on the shared 2-core machine an iteration took 0.12 s with 1 thread and 0.30 s with 2
# (the second thread fights the data pipeline and the neighbours); fixed, it also keeps runs reproducible.
THREADS = 1
# Both bundled COCO subsets in one annotation file (file names relative to data): one ground truth for
# training and for CocoMetric. (A ConcatDataset of two CocoDatasets does not evaluate: both are named "coco"
# and CocoMetric picks the ground truth of the last one registered.)
BUNDLED_SOURCES = (("coco_val_mini/person_keypoints_val2017_subset.json", "coco_val_mini/images/"),
                   ("mmpose_coco/test_coco.json", "mmpose_coco/"))
BUNDLED_PERSONS = bmconfig.DATA_DIR / "person_keypoints_bundled.json"


def merge_bundled_coco(data_dir: Path = bmconfig.DATA_DIR) -> dict:
    """The bundled COCO subsets as one COCO person-keypoints dict (disjoint image and annotation ids)."""
    merged: dict = {"info": {"description": "bmpose: all bundled COCO val2017 persons (coco_val_mini + "
                                             "mmpose_coco), file_name relative to the data/ folder",
                             "contributor": "COCO Consortium", "year": 2017},
                    "licenses": None, "images": [], "annotations": [], "categories": None}
    for ann_file, prefix in BUNDLED_SOURCES:
        src = json.loads((data_dir / ann_file).read_text())
        merged["licenses"] = merged["licenses"] or src["licenses"]
        merged["categories"] = merged["categories"] or src["categories"]
        if src["categories"] != merged["categories"]:
            raise BmposeError(f"{data_dir / ann_file}: categories differ from the other bundled subset")
        merged["images"] += [{**img, "file_name": prefix + img["file_name"]} for img in src["images"]]
        merged["annotations"] += src["annotations"]
    for key in ("images", "annotations"):
        ids = [x["id"] for x in merged[key]]
        if len(ids) != len(set(ids)):
            raise BmposeError(f"bundled COCO subsets share {key} ids: cannot merge them")
    return merged


def write_bundled_coco(path: Path = BUNDLED_PERSONS) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(merge_bundled_coco(path.parent), indent=None, separators=(",", ":")) + "\n")
    return path


# ---- the training config ----------------------------------------------------------------------------------

def load_train_config(path: str | Path = TRAIN_CONFIG, *, work_dir: str | Path, epochs: int | None = None,
                      lr: float | None = None, batch_size: int | None = None, val_interval: int | None = None,
                      seed: int | None = None, persons: int | None = None, validate: bool = True,
                      threads: int = THREADS):
    """The mmengine Config of a training run, with the command line's overrides applied.

    `persons` keeps only the first N training persons (quick tests); `validate=False` drops the
    validation loop (tests that only look at the loss)."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise BmposeError(f"{path}: training config not found")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many types for a broken config
        raise BmposeError(f"{path}: cannot read training config ({type(e).__name__}: {e})") from None
    cfg.work_dir = str(work_dir)
    cfg.launcher = "none"
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:  # epoch-based schedules span the whole run
            if sched.get("by_epoch", True):
                sched.update({k: epochs for k in ("end", "T_max") if k in sched})
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = lr
        for sched in cfg.param_scheduler:
            if "eta_min" in sched:
                sched.eta_min = lr * 0.01
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if val_interval is not None:
        cfg.train_cfg.val_interval = val_interval
    if seed is not None:
        cfg.randomness = dict(seed=seed, deterministic=True)
    if persons is not None:
        cfg.train_dataloader.dataset.indices = persons
    if not validate:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    # mmengine keeps one visualizer per name for the whole process, and mmpose's runtime config names it
    # "visualizer": a second training in the same process would write into the first one's (maybe deleted) dir.
    cfg.visualizer.name = f"bmpose-train-{uuid.uuid4().hex}"
    cfg.bmpose_threads = threads
    return cfg


def recipe_of(cfg) -> dict:
    """The settings that define a run, as recorded in the summary and the checkpoint's meta."""
    dl = cfg.train_dataloader
    return {
        "epochs": cfg.train_cfg.max_epochs, "val_interval": cfg.train_cfg.get("val_interval"),
        "optimizer": dict(cfg.optim_wrapper.optimizer), "param_scheduler": [dict(s) for s in cfg.param_scheduler],
        "batch_size": dl.batch_size, "seed": cfg.randomness.get("seed"),
        "dataset": dl.dataset.ann_file,
        "augmentation": [t["type"] for t in dl.dataset.pipeline],
        "threads": cfg.get("bmpose_threads", THREADS),
    }


# ---- the run ----------------------------------------------------------------------------------------------

def _curve_hook():
    """A Hook recording mean loss per epoch and every validation's COCO metrics (for the summary)."""
    from mmengine.hooks import Hook

    class CurveHook(Hook):
        priority = "LOW"

        def __init__(self):
            self.epochs, self.val, self._losses, self._t0 = [], [], [], None

        def before_train_epoch(self, runner):
            self._losses, self._t0 = [], time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._losses.append({k: float(v.detach() if hasattr(v, "detach") else v)
                                 for k, v in (outputs or {}).items()})

        def after_train_epoch(self, runner):
            mean = {k: sum(x[k] for x in self._losses) / len(self._losses) for k in self._losses[0]}
            self.epochs.append({"epoch": runner.epoch + 1, **mean, "lr": runner.optim_wrapper.get_lr()["lr"][0],
                                "seconds": round(time.perf_counter() - self._t0, 3)})

        def after_val_epoch(self, runner, metrics=None):
            self.val.append({"epoch": runner.epoch, **{k.split("/")[-1]: float(v) for k, v in
                                                       (metrics or {}).items()}})

    return CurveHook()


def run_training(cfg, *, quiet: bool = False) -> tuple[object, dict]:
    """Train with mmengine's Runner; returns (model, curve) with curve = {"epochs": [...], "val": [...]}."""
    import torch

    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmengine.runner import Runner

    torch.set_num_threads(cfg.get("bmpose_threads", THREADS))
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    if quiet:
        cfg.log_level = "WARNING"
    hook = _curve_hook()
    # mmengine/xtcocotools print to stdout; keep it for bmpose's own result lines (quiet: into a file).
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(Path(cfg.work_dir) / "stdout.log", "w")) if quiet else sys.stderr
        stack.enter_context(contextlib.redirect_stdout(sink))
        runner = Runner.from_cfg(cfg)
        runner.register_hook(hook)
        model = runner.train()
    return model, {"epochs": hook.epochs, "val": hook.val}


def stripped_state_dict(model) -> dict:
    """Weights only, on the CPU, without a DataParallel prefix (what mmpose's init_model loads)."""
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def checkpoint_meta(cfg, curve: dict, model: str = DEFAULT_MODEL) -> dict:
    """Plain types only, so the file loads with torch.load(weights_only=True). No dataset_meta: mmpose's
    init_model then takes it from the model config (COCO), with its numpy arrays intact."""
    from importlib import metadata

    last = curve["val"][-1] if curve["val"] else {}
    return {
        "bmpose": f"trained fixture: {model} fitted to the 51 bundled COCO val2017 persons (not a real model)",
        "epoch": cfg.train_cfg.max_epochs, "seed": cfg.randomness.get("seed"),
        "recipe": json.loads(json.dumps(recipe_of(cfg), default=str)),
        "coco_ap_training_persons": last.get("AP"),
        "versions": {p: metadata.version(p) for p in ("mmpose", "mmengine", "torch")},
    }


def plot_curve(curve: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ep = [e["epoch"] for e in curve["epochs"]]
    ax.semilogy(ep, [e["loss"] for e in curve["epochs"]], color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([v["epoch"] for v in curve["val"]], [v["AP"] for v in curve["val"]], "o-", color="tab:red",
             label="COCO AP (training persons, GT boxes)")
    ax2.set_ylabel("COCO keypoint AP", color="tab:red")
    ax2.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def train(cfg, out_dir: Path, *, quiet: bool = False, model_name: str = DEFAULT_MODEL) -> dict:
    """Train, then write the stripped checkpoint, summary json and curve PNG into out_dir. Returns the summary."""
    from bmpose.weights.model import save_checkpoint

    t0 = time.perf_counter()
    model, curve = run_training(cfg, quiet=quiet)
    seconds = time.perf_counter() - t0
    ckpt = out_dir / checkpoint_name(model_name)
    save_checkpoint(stripped_state_dict(model), ckpt, checkpoint_meta(cfg, curve, model_name))
    summary = {
        "what": f"bmpose trained fixture: {model_name} fitted to the 51 bundled COCO val2017 persons; "
                "AP is measured on those same training persons with ground-truth boxes (mmpose CocoMetric)",
        "train_config": str(Path(cfg.filename).relative_to(bmconfig.ROOT))
        if cfg.filename and Path(cfg.filename).is_relative_to(bmconfig.ROOT) else cfg.filename,
        "recipe": json.loads(json.dumps(recipe_of(cfg), default=str)),
        "train_seconds": round(seconds, 1),
        "final": curve["val"][-1] if curve["val"] else None,
        "checkpoint_sha256": sha256_file(ckpt),
        **curve,
    }
    with atomic_file(out_dir / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    if curve["val"]:
        final = summary["final"]["AP"]
        plot_curve(curve, out_dir / CURVE, f"{model_name} fixture: 51 COCO persons, {cfg.train_cfg.max_epochs} "
                                           f"epochs, final AP {final:.3f}")
    return summary


# ---- scoring a checkpoint on its training persons ---------------------------------------------------------

def score_checkpoint(cfg, checkpoint=None, ann_file: Path = BUNDLED_PERSONS) -> dict:
    """COCO keypoint AP of a checkpoint on the bundled persons with ground-truth boxes, through mmpose's
    own `inference_topdown` (flip test as the model config says) and bmpose.runtime.results' CocoMetric scoring.
    An independent check of the CocoMetric numbers the training log records."""
    import numpy as np

    from bmpose.weights.checkpoint import build_model
    from bmpose.evaluate.coco import coco_keypoint_ap
    from bmpose.evaluate.sets import eval_boxes
    from bmpose.runtime.results import dataset_sigmas, metric_options, to_coco_results
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.apis import inference_topdown

    model = build_model(cfg, checkpoint)
    # mmpose's dataset boxes (clipped to the image, as CocoMetric's training run crops them), grouped by image
    by_image: dict[Path, list] = {}
    for box in eval_boxes(Path(ann_file), Path(ann_file).parent):
        by_image.setdefault(box.file, []).append(box)
    instances = []
    with bar(len(by_image), "fixture AP", "img") as b:
        for image, boxes in by_image.items():
            b.update(1)
            xyxy = np.stack([box.xyxy for box in boxes])
            for box, sample in zip(boxes, inference_topdown(model, str(image), xyxy, bbox_format="xyxy")):
                pred = sample.pred_instances
                instances.append({"image_id": box.image_id, "keypoints": pred.keypoints[0],
                                  "keypoint_scores": pred.keypoint_scores[0], "bbox_score": 1.0,
                                  "area": float(np.prod(sample.gt_instances.bbox_scales[0])), "bbox": box.bbox})
    sigmas = dataset_sigmas(cfg)
    return coco_keypoint_ap(ann_file, to_coco_results(instances, sigmas, **metric_options(cfg)), sigmas=sigmas)


# ---- command line -----------------------------------------------------------------------------------------
