"""`bmpose infer`: images + person boxes -> keypoints on any backend -> vis_results/ pictures + COCO results json.

Pipeline (the same for every backend): read each image once, crop every person with the shared core
(`pose.crop.crop_person`), normalise once (`pose.normalize`), group crops into batches of the model's batch
size (the last one padded with copies, the padding dropped), run the backend, optionally the flip test (the
flipped crops go through in the same batches as the plain ones), decode as the config's mmpose codec, map
back through the inverse affine, then rescore + OKS-NMS as mmpose's CocoMetric (`evaluate.to_coco_results`).

Boxes: `gt` (the annotation file's persons, mmpose's clipped xyxy boxes, score 1), `dets:JSON` (COCO detection
results, score threshold from the config's filter_cfg), `image` (the whole image; default for --images).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import config as config_mod
from .errors import BmposeError
from .manifest import atomic_dir, write_manifest
from .pose import crop, decode, draw, skeleton
from .pose.normalize import normalize
from .pose.image_io import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SLOW_LIMIT = 8  # persons a slow backend (the cmodel) runs without --allow-slow


def bundled_sample() -> tuple[Path, Path]:
    d = config_mod.DATA_DIR / "coco_val_mini"
    return d / "person_keypoints_val2017_subset.json", d / "images"


@dataclass
class PersonBox:
    image_id: int
    file: Path
    bbox: tuple                  # xywh as given (drawn, written to the results)
    score: float = 1.0           # box score (1 for ground truth)
    xyxy: np.ndarray | None = None  # mmpose's clipped float32 xyxy for ground-truth boxes (crop from this)
    source: str = ""             # where the box came from, for error messages


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


# ---- boxes ------------------------------------------------------------------------------------------------

def list_images(images: str | Path) -> list[Path]:
    p = Path(images)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise BmposeError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return files
    raise BmposeError(f"{p}: no such image file or folder")


def image_id_of(path: Path, index: int) -> int:
    """COCO file names carry the image id (000000000139.jpg -> 139); other names get their list index."""
    return int(path.stem) if path.stem.isdigit() else index


def gt_boxes(ann: Path, img_dir: Path, only_files: set[str] | None = None) -> list[PersonBox]:
    from .cocodata import load_coco_keypoints

    coco = load_coco_keypoints(ann, img_dir)
    out = []
    for p in coco.persons():
        if only_files is not None and Path(p.file).name not in only_files:
            continue
        out.append(PersonBox(p.image_id, Path(p.file), p.bbox, 1.0, p.bbox_xyxy, f"{ann}: annotation {p.ann_id}"))
    return out


def det_boxes(dets: Path, ann: Path, img_dir: Path, score_thr: float) -> list[PersonBox]:
    from .cocodata import load_coco_keypoints, load_detections

    coco = load_coco_keypoints(ann, img_dir)
    return [PersonBox(d.image_id, Path(d.file), d.bbox, d.score, None, f"{dets}: box {i}")
            for i, d in enumerate(load_detections(dets, coco, score_thr))]


def image_boxes(files: list[Path]) -> tuple[list[PersonBox], list[tuple[str, str]]]:
    """The whole image as one person box; unreadable images are skipped (reported by the caller)."""
    out, skipped = [], []
    for i, f in enumerate(files):
        try:
            h, w = read_image(f).shape[:2]
        except BmposeError as e:
            skipped.append((str(f), str(e)))
            continue
        out.append(PersonBox(image_id_of(f, i), f, (0.0, 0.0, float(w), float(h)), 1.0, None, str(f)))
    return out, skipped


def det_score_thr(cfg) -> float:
    """mmpose's filter_cfg.bbox_score_thr of the config's test set (0 when unset)."""
    from mmengine.config import Config

    mm = Config.fromfile(str(cfg.mmpose_config))
    ds = mm.get("test_dataloader", {}).get("dataset", {})
    return float((ds.get("filter_cfg") or {}).get("bbox_score_thr", 0.0))


def check_box(box: PersonBox, width: int, height: int) -> None:
    x, y, w, h = box.bbox
    if not (w > 0 and h > 0):
        raise BmposeError(f"{box.source}: box {list(box.bbox)} has zero size")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise BmposeError(f"{box.source}: box {list(box.bbox)} lies outside its image ({width}x{height}, "
                          f"{box.file})")


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
                c = crop.crop_person(image, b.xyxy, cfg.input_size, cfg.padding, xyxy=True)
            else:
                c = crop.crop_person(image, b.bbox, cfg.input_size, cfg.padding)
            kept.append(b)
            crops.append(c)
    return kept, crops


def run_batches(backend, inputs: np.ndarray, progress: bool = True, desc: str = "infer") -> np.ndarray:
    """Run (N, 3, H, W) through the backend in batches of its size; the last batch is padded with copies of
    its last crop and the padding dropped."""
    from tqdm import tqdm

    bs = backend.batch_size
    chunks, sizes = [], []
    for i in range(0, len(inputs), bs):
        chunk = inputs[i:i + bs]
        sizes.append(len(chunk))
        if len(chunk) < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - len(chunk), axis=0)])
        chunks.append(chunk)
    outs = []
    with tqdm(total=len(inputs), desc=desc, unit="crop", disable=not progress, leave=False) as bar:
        for n, y in zip(sizes, backend.run_many(chunks)):
            outs.append(y[:n])
            bar.update(n)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def heatmaps_for(cfg, backend, inputs: np.ndarray, flip: bool, progress: bool = True) -> np.ndarray:
    """Heatmaps of the crops; with flip, each crop's mirror runs right after it in the same batches."""
    if not flip:
        return run_batches(backend, inputs, progress)
    both = np.stack([inputs, decode.flip_inputs(inputs)], axis=1).reshape(-1, *inputs.shape[1:])
    hm = run_batches(backend, both, progress)
    hm = hm.reshape(len(inputs), 2, *hm.shape[1:])
    return decode.merge_flip(hm[:, 0], hm[:, 1], skeleton.FLIP_INDICES, cfg.shift_heatmap)


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
    x = normalize(np.stack([c.image for c in crops]), cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)
    hm = heatmaps_for(cfg, backend, x, flip, progress)
    if keep_heatmaps:  # e.g. the calibration study's heatmap cosine vs ONNX on the same crops
        report.heatmaps = hm
    kpts, scores = decode.decode(hm, cfg.codec)
    for b, c, k, s in zip(kept, crops, kpts, scores):
        report.predictions.append(Prediction(b, crop.input_to_image(k, c.center, c.scale, cfg.input_size), s,
                                             float(np.prod(c.scale))))
    report.seconds = time.perf_counter() - t0
    return report


def coco_results(cfg, predictions: list[Prediction], sigmas=None, options: dict | None = None) -> list[dict]:
    from . import evaluate

    instances = [{"image_id": p.box.image_id, "keypoints": p.keypoints, "keypoint_scores": p.scores,
                  "bbox_score": p.box.score, "area": p.area, "bbox": p.box.bbox} for p in predictions]
    return evaluate.to_coco_results(instances, sigmas, **(options or {}))


def draw_results(predictions: list[Prediction], out_dir: Path, kpt_thr: float = 0.3) -> list[str]:
    by_file: dict[Path, list[Prediction]] = {}
    for p in predictions:
        by_file.setdefault(p.box.file, []).append(p)
    written = []
    for file, preds in by_file.items():
        image = read_image(file)
        for p in preds:
            draw.draw_pose(image, p.keypoints, p.scores, p.box.bbox, kpt_thr=kpt_thr,
                           label=f"{p.box.score:.2f}" if p.box.score < 1 else None)
        name = Path(file).stem + ".jpg"
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise BmposeError(f"{out_dir / name}: cannot encode the picture")
        (out_dir / name).write_bytes(buf.tobytes())
        written.append(name)
    return written


# ---- model selection --------------------------------------------------------------------------------------

def open_model(cfg, backend_spec: list[str] | None, batch: int, checkpoint=None, chip: str | None = None):
    """--backend onnx (our export at --batch) | bmodel PATH | mlir PATH -> an opened backend."""
    from .backends import open_backend

    spec = backend_spec or ["onnx"]
    kind = spec[0]
    if kind == "onnx":
        if len(spec) > 1:
            return open_backend(spec[1], chip, kind="onnx")
        from .export import ensure_onnx

        path = ensure_onnx(cfg, checkpoint, batches=(batch,), verbose=False)[batch]
        return open_backend(path, kind="onnx")
    if kind in ("bmodel", "mlir", "cmodel", "sail"):
        if len(spec) < 2:
            raise BmposeError(f"--backend {kind} needs a path: --backend {kind} PATH")
        b = open_backend(spec[1], chip, kind=None if kind == "bmodel" else kind)
        return b
    raise BmposeError(f"--backend {kind!r}: expected onnx, bmodel PATH or mlir PATH")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bmpose infer", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="deploy config name or yaml (default: the small model)")
    p.add_argument("--checkpoint", default=None, help="for the onnx backend's export (default: the config's)")
    p.add_argument("--images", default=None, help="image file or folder (default: the bundled COCO sample)")
    p.add_argument("--boxes", default=None,
                   help="gt (annotation boxes; default without --images) | dets:JSON (COCO detection results) | "
                        "image (whole image; default with --images)")
    p.add_argument("--coco-ann", default=None, help="annotations for gt/dets boxes (default: the bundled sample)")
    p.add_argument("--coco-img", default=None, help="image folder of --coco-ann")
    p.add_argument("--backend", nargs="+", default=None, metavar="KIND [PATH]",
                   help="onnx (default, our export) | bmodel PATH (device if sophon.sail, else cmodel) | mlir PATH")
    p.add_argument("--chip", default=None, help="refuse a bmodel/tpu.mlir built for another chip")
    p.add_argument("--batch", type=int, choices=(1, 4), default=1, help="ONNX batch size (bmodels: their own)")
    p.add_argument("--flip", action="store_true", help="flip test (the config's shift_heatmap)")
    p.add_argument("--limit", type=int, default=None, help="first N persons only")
    p.add_argument("--allow-slow", action="store_true", help="let the cmodel run more than %d crops" % SLOW_LIMIT)
    p.add_argument("--out", default="vis_results", help="pictures + results.json folder (replaced)")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="keypoints drawn above this score")
    p.add_argument("--no-vis", action="store_true", help="results json only")
    return p.parse_args(argv)


def collect_boxes(cfg, args) -> tuple[list[PersonBox], list, dict]:
    ann_default, img_default = bundled_sample()
    ann = Path(args.coco_ann) if args.coco_ann else ann_default
    img_dir = Path(args.coco_img) if args.coco_img else (img_default if not args.coco_ann else ann.parent)
    boxes_spec = args.boxes or ("image" if args.images else "gt")
    inputs = {}
    skipped: list = []
    only = None
    if args.images and boxes_spec != "image":
        files = list_images(args.images)
        only = {f.name for f in files}
        img_dir = files[0].parent
    if boxes_spec == "gt":
        boxes = gt_boxes(ann, img_dir, only)
        inputs["annotations"] = ann
    elif boxes_spec.startswith("dets:"):
        dets = Path(boxes_spec[5:])
        boxes = det_boxes(dets, ann, img_dir, det_score_thr(cfg))
        if only is not None:
            boxes = [b for b in boxes if b.file.name in only]
        inputs.update(annotations=ann, detections=dets)
    elif boxes_spec == "image":
        boxes, skipped = image_boxes(list_images(args.images or img_default))
    else:
        raise BmposeError(f"--boxes {boxes_spec!r}: expected gt, dets:JSON or image")
    if args.limit:
        boxes = boxes[:args.limit]
    if not boxes:
        raise BmposeError("no person boxes to run (check --images / --boxes / --coco-ann)")
    return boxes, skipped, inputs


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    cfg = config_mod.load(args.model)
    boxes, skipped, inputs = collect_boxes(cfg, args)
    backend = open_model(cfg, args.backend, args.batch, args.checkpoint, args.chip)
    print(f"infer: {len(boxes)} persons on {backend.describe()}{' with flip test' if args.flip else ''}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped images are reported below, once each
        report = predict(cfg, backend, boxes, args.flip, allow_slow=args.allow_slow)
    report.skipped = skipped + report.skipped
    from .evaluate import metric_options

    results = coco_results(cfg, report.predictions, options=metric_options(cfg))
    out = Path(args.out)
    with atomic_dir(out, keep_failed=False) as tmp:
        (tmp / "results.json").write_text(__import__("json").dumps(results))
        pictures = [] if args.no_vis else draw_results(report.predictions, tmp, args.kpt_thr)
        write_manifest(tmp, stage="infer", inputs={**inputs, "model": backend.path},
                       options={"backend": backend.kind, "chip": backend.chip, "batch": backend.batch_size,
                                "flip": args.flip, "boxes": args.boxes or ("image" if args.images else "gt"),
                                "limit": args.limit, "config": cfg.summary()},
                       outputs=["results.json"] + pictures,
                       checks={"persons": len(report.predictions), "results": len(results),
                               "skipped": [f for f, _ in report.skipped], "seconds": round(report.seconds, 3)})
    n = len(report.predictions)
    print(f"infer: {n} persons in {report.seconds:.2f} s ({n / max(report.seconds, 1e-9):.1f} persons/s), "
          f"{len(pictures)} pictures and results.json ({len(results)} after OKS-NMS) in {out}/")
    for f, why in report.skipped:
        print(f"infer: warning: skipped {f}: {why.split(': ', 1)[-1]}", file=sys.stderr)
    if report.skipped:
        print(f"infer: {len(report.skipped)} image(s) skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---- benchmarks (bmpose bench) ----------------------------------------------------------------------------

def _bench_persons(cfg, n: int = 24) -> list[PersonBox]:
    boxes = gt_boxes(*bundled_sample())
    return [b for b in boxes if b.bbox[2] * b.bbox[3] > 0][:n]


def bench_infer(cfg, args) -> list[dict]:
    """End-to-end persons/s (read, crop, normalise, network, decode; the config's flip test) on ONNX Runtime
    at batch 1 and 4 vs mmpose's `inference_topdown`, same checkpoint and boxes, in this one run; plus the
    preprocessing and decode cost per person."""
    from .backends import open_backend
    from .checkpoint import build_model
    from .export import ensure_onnx
    from .mmpose_shim import import_mmpose

    boxes = _bench_persons(cfg)
    onnx = ensure_onnx(cfg, args.checkpoint, batches=(1, 4), verbose=False)
    flip = cfg.flip_test
    rows = []

    import_mmpose()
    from mmpose.apis import inference_topdown

    model = build_model(cfg, args.checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_image: dict = {}
        for b in boxes:  # one call per image with all its boxes: mmpose's fastest use of its API
            by_image.setdefault(str(b.file), []).append(b.xyxy)
        t_mm = timed(lambda: [inference_topdown(model, f, np.stack(xyxy), "xyxy") for f, xyxy in by_image.items()],
                     2)
    mm_pps = len(boxes) / t_mm
    rows.append({"benchmark": "infer", "case": "mmpose inference_topdown (PyTorch CPU)", "persons": len(boxes),
                 "persons_per_s": round(mm_pps, 1), "x_vs_mmpose": 1.0})
    for batch in (1, 4):
        backend = open_backend(onnx[batch], kind="onnx")
        t = timed(lambda: predict(cfg, backend, boxes, flip, progress=False))
        rows.append({"benchmark": "infer", "case": f"bmpose ONNX Runtime b{batch}", "persons": len(boxes),
                     "persons_per_s": round(len(boxes) / t, 1), "x_vs_mmpose": round(len(boxes) / t / mm_pps, 2)})
    # stage costs per person
    skipped: list = []
    t_pre = timed(lambda: normalize(np.stack([c.image for c in prepare(cfg, boxes, skipped)[1]]), cfg.mean,
                                    cfg.std, network_rgb=cfg.bgr_to_rgb))
    hm = run_batches(open_backend(onnx[4], kind="onnx"),
                     normalize(np.stack([c.image for c in prepare(cfg, boxes, skipped)[1]]), cfg.mean, cfg.std),
                     progress=False)
    t_dec = timed(lambda: decode.decode(hm, cfg.codec))
    rows.append({"benchmark": "infer", "case": "preprocess (read+crop+normalise) per person",
                 "ms_per_person": round(1e3 * t_pre / len(boxes), 3)})
    rows.append({"benchmark": "infer", "case": f"decode ({cfg.codec['type']}) per person",
                 "ms_per_person": round(1e3 * t_dec / len(boxes), 3)})
    return rows


def cmodel_seconds_per_crop(path: str, chip: str, x: np.ndarray) -> tuple[float, np.ndarray]:
    """One bmodel on the cmodel -> (seconds per crop, heatmaps). Call it in a process of the chip's own
    (TPU-MLIR's runtime: one chip per process), e.g. a spawned multiprocessing pool."""
    from .backends import open_backend

    cm = open_backend(path, chip, kind="cmodel")
    t0 = time.perf_counter()
    y = cm.run(x)
    return (time.perf_counter() - t0) / len(x), y


def bench_simulators(cfg, args) -> list[dict]:
    """Seconds per crop of each built bmodel on the cmodel and of its deployed tpu.mlir on pymlir, same crops,
    with their agreement. Every chip's cmodel runs in a fresh process of its own (spawned), so one run covers
    both chips."""
    import multiprocessing

    from .backends import open_backend
    from .build import list_bmodels

    bmodels = list_bmodels(cfg)
    if not bmodels:
        return [{"benchmark": "simulators", "case": "no bmodel built (make fp32 / make int8)"}]
    boxes = _bench_persons(cfg, 4)
    skipped: list = []
    x = normalize(np.stack([c.image for c in prepare(cfg, boxes, skipped)[1]]), cfg.mean, cfg.std)
    # pymlir first, with no simulator process alive: a busy or spinning neighbour on a 2-core machine slows
    # pymlir's many short parallel ops tenfold (measured), which would make the ratio meaningless.
    mlir = {}
    for b in bmodels:
        xb = x[:b["batch"]]
        ml = open_backend(b["tpu_mlir"], b["chip"], kind="mlir")
        ml.run(xb)  # first call reads the weights
        mlir[b["dir"]] = timed(lambda: ml.run(xb), 3) / len(xb), ml.run(xb)
    rows = []
    for chip in dict.fromkeys(b["chip"] for b in bmodels):
        with multiprocessing.get_context("spawn").Pool(1) as cmodel_process:
            for b in (b for b in bmodels if b["chip"] == chip):
                t_ml, y_ml = mlir[b["dir"]]
                t_cm, y_cm = cmodel_process.apply(cmodel_seconds_per_crop, (str(b["path"]), chip, x[:b["batch"]]))
                rows.append({"benchmark": "simulators", "case": b["dir"].name, "mlir_s_per_crop": round(t_ml, 3),
                             "cmodel_s_per_crop": round(t_cm, 3), "x_mlir_vs_cmodel": round(t_cm / t_ml, 1),
                             "max_abs_cmodel_vs_mlir": float(np.abs(y_cm - y_ml).max())})
    rows += _bench_mlir_pool(bmodels, x)
    return rows


def _bench_mlir_pool(bmodels, x) -> list[dict]:
    """What eval gets from spreading pymlir over all cores (MlirBackend.run_many): INT8 batch-1 bmodels, a run
    of 4 crops per core, one process vs a pool of one per core (its start-up included)."""
    from .backends.mlir import MlirBackend

    cores = os.cpu_count() or 1
    crops = np.concatenate([x] * cores)[:4 * cores]
    rows = []
    for b in (b for b in bmodels if b["precision"] == "int8" and b["batch"] == 1):
        seconds = {}
        for workers in (1, cores):
            ml = MlirBackend(b["tpu_mlir"], b["chip"], workers=workers)
            ml.pool_worth_s = 0.0
            seconds[workers] = timed(lambda: run_batches(ml, crops, progress=False), 1) / len(crops)
        rows.append({"benchmark": "simulators", "case": f"{b['dir'].name} eval run, {len(crops)} crops",
                     "mlir_s_per_crop": round(seconds[1], 3), f"mlir_{cores}proc_s_per_crop": round(seconds[cores], 3),
                     "x_pool_vs_one": round(seconds[1] / seconds[cores], 2)})
    return rows


def timed(fn, repeat=3) -> float:
    """Best wall time of `repeat` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _register():
    from . import bench

    bench.register("infer")(bench_infer)
    bench.register("simulators")(bench_simulators)


_register()
