"""Person boxes -> keypoints on any backend (what `bmpose infer`, `bmpose eval` and the study run).

Pipeline (the same for every backend, and the device bundle's): read each image once, then the core's loop
(`pose.pipeline`): crop every person, normalise once, batches of the model's batch size (the last one padded,
the padding dropped), optionally the flip test (the flipped crops in the same batches as the plain ones),
decode as the config's mmpose codec, map back through the inverse affine; then rescore + OKS-NMS as mmpose's
CocoMetric (`pose.results`).

"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError
from bmpose.pose import crop, draw, frames, pipeline
from bmpose.pose.image_io import read_image
from bmpose.progress import bar
from bmpose.runtime.boxes import PersonBox, check_box
from bmpose.runtime.results import model_spec

SLOW_LIMIT = 8  # persons a slow backend (the cmodel) runs without --allow-slow


@dataclass
class Prediction:
    box: PersonBox
    keypoints: np.ndarray        # (K, 2) image pixels
    scores: np.ndarray           # (K,)
    area: float                  # mmpose's bbox_scales product (for OKS-NMS)


@dataclass
class RunReport:
    predictions: list = field(default_factory=list)
    skipped: list = field(default_factory=list)   # (file, reason)
    seconds: float = 0.0
    heatmaps: np.ndarray | None = None             # (N, K, h, w), only with predict(keep_heatmaps=True)


# ---- the pose loop ----------------------------------------------------------------------------------------

def prepare(cfg, boxes: list[PersonBox], skipped: list) -> tuple[list[PersonBox], list[crop.PersonCrop]]:
    """Crop every box, reading each image once. Bad images are skipped (with all their boxes) and reported."""
    by_file: dict[Path, list[PersonBox]] = {}
    for b in boxes:
        by_file.setdefault(b.file, []).append(b)
    kept, crops = [], []
    for file, group in by_file.items():
        try:
            image = read_image(file)
        except BmposeError as e:
            warnings.warn(f"skipping {file}: {e}", stacklevel=2)
            skipped.append((str(file), str(e)))
            continue
        h, w = image.shape[:2]
        for b in group:
            check_box(b, w, h)
            if b.xyxy is not None:
                crops += pipeline.crop_boxes(image, [b.xyxy], cfg, xyxy=True)
            else:
                crops += pipeline.crop_boxes(image, [b.bbox], cfg)
            kept.append(b)
    return kept, crops


def run_batches(backend, inputs: np.ndarray, progress: bool = True, desc: str = "infer") -> np.ndarray:
    """Run (N, 3, H, W) through the backend in batches of its size (the core's batching: the last batch is
    padded with copies of its last crop and the padding dropped); the backend may spread them over processes."""
    chunks, sizes = pipeline.batches(inputs, backend.batch_size)
    outs = []
    with bar(len(inputs), desc, "crop", show=progress) as b:
        for n, y in zip(sizes, backend.run_many(chunks)):
            outs.append(y[:n])
            b.update(n)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def predict(cfg, backend, boxes: list[PersonBox], flip: bool = False, progress: bool = True,
            allow_slow: bool = False, keep_heatmaps: bool = False) -> RunReport:
    report = RunReport()
    if backend.slow and len(boxes) * (2 if flip else 1) > SLOW_LIMIT and not allow_slow:
        raise BmposeError(f"{backend.name}: the {backend.kind} simulator is slow (HRNet-W32: 9-15 s per crop) "
                          f"and this run has {len(boxes)} persons{' x2 (flip)' if flip else ''}; use --limit N, the "
                          f"mlir backend on the deployed *_tpu.mlir, or --allow-slow")
    t0 = time.perf_counter()
    kept, crops = prepare(cfg, boxes, report.skipped)
    if not crops:
        report.seconds = time.perf_counter() - t0
        return report
    # the core's one pose step (the bundle's too), over all crops in the backend's batches
    kpts, scores, hm = frames.estimate(crops, lambda x: run_batches(backend, x, progress), model_spec(cfg), flip,
                                       name=str(backend.path))
    if keep_heatmaps:  # e.g. the calibration study's heatmap cosine vs ONNX on the same crops
        report.heatmaps = hm
    for b, c, k, s in zip(kept, crops, kpts, scores):
        report.predictions.append(Prediction(b, k, s, float(np.prod(c.scale))))
    report.seconds = time.perf_counter() - t0
    return report


def coco_results(cfg, predictions: list[Prediction], sigmas=None, options: dict | None = None) -> list[dict]:
    """COCO results of the predictions; OKS-NMS with the model's own sigmas unless `sigmas` says otherwise
    (COCO's 17 would not fit another keypoint set)."""
    from bmpose.runtime.results import dataset_sigmas, to_coco_results

    sigmas = dataset_sigmas(cfg) if sigmas is None else sigmas
    instances = [{"image_id": p.box.image_id, "keypoints": p.keypoints, "keypoint_scores": p.scores,
                  "bbox_score": p.box.score, "area": p.area, "bbox": p.box.bbox} for p in predictions]
    return to_coco_results(instances, sigmas, **(options or {}))


def look(cfg) -> tuple:
    """How the model's keypoint set is drawn (draw.style): its own links and left/right colours."""
    return model_spec(cfg).look


def draw_results(predictions: list[Prediction], out_dir: Path, kpt_thr: float = 0.3,
                 style: tuple = draw.COCO_STYLE) -> list[str]:
    by_file: dict[Path, list[Prediction]] = {}
    for p in predictions:
        by_file.setdefault(p.box.file, []).append(p)
    written = []
    for file, preds in by_file.items():
        image = draw.draw_persons(read_image(file), ((p.keypoints, p.scores, p.box.bbox, p.box.score)
                                                     for p in preds), kpt_thr, style)
        name = Path(file).stem + ".jpg"
        draw.write_jpg(out_dir / name, image)
        written.append(name)
    return written


# ---- model selection --------------------------------------------------------------------------------------

def check_outputs(cfg, backend):
    """A user's ONNX file against the config's codec: a SimCC model has two outputs, a heatmap model one."""
    n = len(backend.output_names)
    if n != len(cfg.outputs):
        raise BmposeError(f"{backend.path}: {n} output(s) ({', '.join(backend.output_names)}), but {cfg.path.name}'s "
                          f"{cfg.codec.get('type')} codec needs {len(cfg.outputs)} ({', '.join(cfg.outputs)}): "
                          f"a SimCC model outputs simcc_x and simcc_y, a heatmap model one heatmap tensor")
    return backend


def open_model(cfg, backend_spec: list[str] | None, batch: int, checkpoint=None, chip: str | None = None):
    """--backend onnx (our export at --batch) | bmodel PATH | mlir PATH -> an opened backend."""
    from bmpose.runtime.backends import open_backend

    spec = backend_spec or ["onnx"]
    kind = spec[0]
    if kind == "onnx":
        if len(spec) > 1:
            return check_outputs(cfg, open_backend(spec[1], chip, kind="onnx"))
        from bmpose.convert.export import ensure_onnx

        path = ensure_onnx(cfg, checkpoint, batches=(batch,), verbose=False)[batch]
        return open_backend(path, kind="onnx")
    if kind in ("bmodel", "mlir", "cmodel", "sail"):
        if len(spec) < 2:
            raise BmposeError(f"--backend {kind} needs a path: --backend {kind} PATH")
        b = open_backend(spec[1], chip, kind=None if kind == "bmodel" else kind)
        return b
    raise BmposeError(f"--backend {kind!r}: expected onnx, bmodel PATH or mlir PATH")
