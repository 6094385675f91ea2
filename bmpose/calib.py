"""Calibration set: COCO person crops -> LMDB, made by the same `crop_person` call inference uses.

`ensure_calib(cfg, spec)` builds (or reuses) `artifacts/<model>/calib/` holding
- `calib.lmdb/`: one record per crop, key `%08d` (selection order), value = 4-byte little-endian header length,
  a JSON header (shape, image/ann id, file, bbox, center, scale, keypoints) and the uint8 HWC RGB pixels; plus a
  `__meta__` record (format version, preprocessing, selection parameters, count, source json sha256) written
  last, so an LMDB without it is incomplete and readers refuse it;
- `contact_sheet.png`: a grid of sampled crops with their ground-truth keypoints;
- `manifest.json`.
Readers: `iter_records`, `iter_batches` (normalised float NCHW), `write_tpu_inputs` (npz for TPU-MLIR's
run_calibration / model_transform --test_input; the bmodel's own mean/scale are 0/1, see the contracts).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import bench, config as config_mod, manifest
from .cocodata import check_images_exist, eligible_persons, load_coco_keypoints, select_persons
from .errors import BmposeError
from .pose import crop_person, image_to_input, normalize, read_image

FORMAT_VERSION = 1
META_KEY = b"__meta__"
LMDB_NAME = "calib.lmdb"
SHEET_NAME = "contact_sheet.png"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_MIN_KEYPOINTS = 4
DEFAULT_MIN_BOX = 32.0
PARALLEL_MIN_IMAGES = 64   # below this, worker start-up costs more than it saves
COMMIT_EVERY = 256


class CalibWarning(UserWarning):
    pass


@dataclass(frozen=True)
class CalibRecord:
    key: str
    image: np.ndarray           # uint8 HxWx3 RGB
    image_id: int | None
    ann_id: int | None
    file: str
    bbox: list                  # as passed to crop_person (xyxy for COCO ground truth, xywh for dir:)
    bbox_format: str
    center: np.ndarray          # float32 (2,)
    scale: np.ndarray           # float32 (2,)
    keypoints: np.ndarray | None  # float32 (K, 3) in image pixels, COCO only


def preprocess_facts(cfg) -> dict:
    """What the stored crops depend on, plus the normalisation readers apply (a change = a different config)."""
    return {"model": cfg.name, "input_size": list(cfg.input_size), "padding": cfg.padding,
            "mean": list(cfg.mean), "std": list(cfg.std), "bgr_to_rgb": cfg.bgr_to_rgb,
            "crop_channels": "RGB", "layout": "HWC"}


def calib_dir(cfg) -> Path:
    return cfg.artifacts / "calib"


# ---------------------------------------------------------------------------------------------------- sources

def parse_spec(spec: str) -> tuple[str, Path | None]:
    if spec == "coco":
        return "coco", None
    kind, sep, path = spec.partition(":")
    if sep and kind in ("dir", "lmdb") and path:
        return kind, Path(path).expanduser()
    raise BmposeError(f"--calib {spec!r}: expected coco, dir:PATH or lmdb:PATH")


def _coco_jobs(ann, img, num, seed, min_keypoints, min_box):
    """Selected persons grouped by image (one decode per image): (jobs, selection info, source files)."""
    coco = load_coco_keypoints(ann, img)
    eligible = eligible_persons(coco, min_keypoints, min_box)
    if not eligible:
        raise BmposeError(f"{coco.path}: no eligible persons (not crowd, >= {min_keypoints} labelled keypoints, "
                          f"box side >= {min_box:g} px) among {len(coco.annotations)} annotations")
    if num > len(eligible):
        warnings.warn(f"{coco.path}: --num {num} but only {len(eligible)} eligible persons: using all "
                      f"{len(eligible)}", CalibWarning, stacklevel=3)
    chosen = select_persons(eligible, num, seed)
    check_images_exist(chosen)
    jobs: dict[str, list] = {}
    for idx, p in enumerate(chosen):
        jobs.setdefault(str(p.file), []).append({
            "idx": idx, "file": os.path.relpath(p.file, img), "box": p.bbox_xyxy.tolist(), "bbox_format": "xyxy",
            "image_id": p.image_id, "ann_id": p.ann_id, "keypoints": p.keypoints.tolist()})
    info = {"source": "coco", "annotations": str(coco.path), "images": str(coco.img_dir), "eligible": len(eligible),
            "annotations_total": len(coco.annotations)}
    return list(jobs.items()), info, coco.path, sorted({p.file for p in chosen})


def _dir_jobs(folder: Path, num, seed):
    """A plain folder of person images: each whole image is the person box."""
    if not folder.is_dir():
        raise BmposeError(f"{folder}: calibration image folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise BmposeError(f"{folder}: no images ({', '.join(IMAGE_EXTS)}) in the calibration folder")
    if num > len(files):
        warnings.warn(f"{folder}: --num {num} but only {len(files)} images: using all {len(files)}",
                      CalibWarning, stacklevel=3)
    import random
    chosen = sorted(random.Random(seed).sample(files, min(num, len(files))))
    jobs = [(str(f), [{"idx": i, "file": os.path.relpath(f, folder), "box": None, "bbox_format": "xywh",
                       "image_id": None, "ann_id": None, "keypoints": None}]) for i, f in enumerate(chosen)]
    return jobs, {"source": "dir", "folder": str(folder), "eligible": len(files)}, None, chosen


# ---------------------------------------------------------------------------------------------------- building

def _crop_job(args) -> list[tuple[int, dict, bytes]]:
    """Worker: one image file -> its persons' crops (header, pixels). Module-level so it pickles."""
    file, persons, input_size, padding = args
    img = read_image(file)
    out = []
    for p in persons:
        box = p["box"] if p["box"] is not None else [0.0, 0.0, float(img.shape[1]), float(img.shape[0])]
        c = crop_person(img, box, input_size, padding, xyxy=p["bbox_format"] == "xyxy")
        header = {"shape": list(c.image.shape), "dtype": "uint8", "image_id": p["image_id"], "ann_id": p["ann_id"],
                  "file": p["file"], "bbox": [float(v) for v in box], "bbox_format": p["bbox_format"],
                  "center": c.center.tolist(), "scale": c.scale.tolist(), "keypoints": p["keypoints"]}
        out.append((p["idx"], header, c.image.tobytes()))
    return out


def _encode(header: dict, pixels: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(h)) + h + pixels


def _init_worker():
    import cv2
    cv2.setNumThreads(1)  # one process per core already


def build_lmdb(jobs, lmdb_path: Path, input_size, padding: float, meta: dict, workers: int | None = None,
               progress: bool = True) -> int:
    """Crop every job (image file, persons) into a new LMDB at lmdb_path; returns the record count.

    Images are cropped in a process pool when there are enough of them (forked, or spawned once torch is
    imported: forking its thread pools is unsafe); results arrive in job order, so the file is the same for
    any worker count.
    """
    import lmdb
    from tqdm import tqdm

    args = [(file, persons, tuple(input_size), padding) for file, persons in jobs]
    total = sum(len(p) for _, p in jobs)
    w, h = input_size
    map_size = max(64 << 20, int(total * (w * h * 3 + 4096) * 2))
    workers = workers or os.cpu_count() or 1
    env = lmdb.open(str(lmdb_path), map_size=map_size, subdir=True, lock=False, meminit=True)
    pool = None
    try:
        if workers > 1 and len(args) >= PARALLEL_MIN_IMAGES:
            import multiprocessing as mp
            method = "spawn" if "torch" in sys.modules else "fork"
            pool = mp.get_context(method).Pool(workers, initializer=_init_worker)
            results = pool.imap(_crop_job, args, chunksize=max(1, min(16, len(args) // (workers * 8))))
        else:
            results = map(_crop_job, args)
        count = 0
        bar = tqdm(total=total, desc="calib crops", unit="crop", disable=not progress, leave=False)
        txn = env.begin(write=True)
        for crops in results:
            for idx, header, pixels in crops:
                txn.put(f"{idx:08d}".encode(), _encode(header, pixels))
                count += 1
            bar.update(len(crops))
            if count % COMMIT_EVERY < len(crops):
                txn.commit()
                txn = env.begin(write=True)
        bar.close()
        txn.put(META_KEY, json.dumps({**meta, "count": count}, sort_keys=True).encode())
        txn.commit()
    finally:
        if pool is not None:
            pool.terminate()
        env.close()
    return count


def ensure_calib(cfg, spec: str = "coco", *, coco_ann=None, coco_img=None, num: int | None = None,
                 seed: int | None = None, min_keypoints: int | None = None, min_box: float | None = None,
                 force: bool = False, workers: int | None = None, progress: bool = True,
                 out_dir: Path | None = None) -> Path:
    """Build or reuse the calibration LMDB for cfg and return its path (`lmdb:PATH` is validated and returned)."""
    kind, path = parse_spec(spec)
    if kind == "lmdb":
        check_lmdb(path, cfg)
        return path
    calcfg = cfg.calibration
    num = int(num if num is not None else calcfg.get("num", 100))
    seed = int(seed if seed is not None else calcfg.get("seed", 0))
    if num <= 0:
        raise BmposeError(f"--num {num}: must be positive")
    out_dir = Path(out_dir or calib_dir(cfg))
    if kind == "coco":
        min_keypoints = int(min_keypoints if min_keypoints is not None
                            else calcfg.get("min_keypoints", DEFAULT_MIN_KEYPOINTS))
        min_box = float(min_box if min_box is not None else calcfg.get("min_box", DEFAULT_MIN_BOX))
        ann = Path(coco_ann or config_mod.DATA_DIR / "coco_val_mini" / "person_keypoints_val2017_subset.json")
        img = Path(coco_img or (config_mod.DATA_DIR / "coco_val_mini" / "images" if coco_ann is None
                                else Path(ann).parent))
        jobs, info, source_json, files = _coco_jobs(ann, img, num, seed, min_keypoints, min_box)
        selection = {"num": num, "seed": seed, "min_keypoints": min_keypoints, "min_box": min_box,
                     "balanced": "round-robin over images"}
    else:
        jobs, info, source_json, files = _dir_jobs(path, num, seed)
        selection = {"num": num, "seed": seed}
    facts = preprocess_facts(cfg)
    base = path if kind == "dir" else img
    inputs = {f"image/{os.path.relpath(f, base)}": f for f in files}
    if source_json is not None:
        inputs["annotations"] = source_json
    options = {"format_version": FORMAT_VERSION, "preprocess": facts, "selection": selection, "spec": spec}
    with manifest.locked(out_dir):
        if manifest.up_to_date(out_dir, inputs, options):
            return out_dir / LMDB_NAME
        _refuse_foreign(out_dir / LMDB_NAME, facts, force)
        meta = {"format": "bmpose-calib", "version": FORMAT_VERSION, "preprocess": facts, "selection": selection,
                "source": info, "source_sha256": manifest.sha256_file(source_json) if source_json else None}
        t0 = time.perf_counter()
        with manifest.atomic_dir(out_dir) as tmp:
            count = build_lmdb(jobs, tmp / LMDB_NAME, cfg.input_size, cfg.padding, meta, workers, progress)
            seconds = time.perf_counter() - t0
            write_contact_sheet(tmp / LMDB_NAME, tmp / SHEET_NAME)
            size = sum(f.stat().st_size for f in (tmp / LMDB_NAME).iterdir())
            manifest.write_manifest(tmp, stage="calib", inputs=inputs, options=options,
                                    outputs=[LMDB_NAME, SHEET_NAME],
                                    checks={"count": count, "eligible": info["eligible"],
                                            "lmdb_bytes": size, "bytes_per_100_crops": round(size * 100 / count),
                                            "crops_per_s": round(count / seconds, 1)})
    return out_dir / LMDB_NAME


def _refuse_foreign(lmdb_path: Path, facts: dict, force: bool) -> None:
    """An existing set built for other preprocessing is not replaced silently: it may be someone's real set."""
    if force or not lmdb_path.exists():
        return
    try:
        old = read_meta(lmdb_path).get("preprocess")
    except BmposeError:
        return  # incomplete or unreadable: nothing worth keeping
    if old != facts:
        diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in facts.items() if old.get(k) != v)
        raise BmposeError(f"{lmdb_path}: existing calibration LMDB was built for a different config ({diff}); "
                          f"rerun with --force to replace it")


# ---------------------------------------------------------------------------------------------------- reading

def _open_ro(lmdb_path: Path):
    import lmdb

    lmdb_path = Path(lmdb_path)
    if not (lmdb_path / "data.mdb").is_file():
        raise BmposeError(f"{lmdb_path}: not a calibration LMDB (no data.mdb)")
    try:
        return lmdb.open(str(lmdb_path), readonly=True, lock=False, subdir=True)
    except lmdb.Error as e:
        raise BmposeError(f"{lmdb_path}: cannot open LMDB ({e})") from None


def read_meta(lmdb_path) -> dict:
    env = _open_ro(lmdb_path)
    try:
        with env.begin() as txn:
            raw = txn.get(META_KEY)
    finally:
        env.close()
    if raw is None:
        raise BmposeError(f"{lmdb_path}: incomplete calibration LMDB (no __meta__ record); rebuild it")
    meta = json.loads(raw)
    if meta.get("format") != "bmpose-calib" or meta.get("version") != FORMAT_VERSION:
        raise BmposeError(f"{lmdb_path}: calibration LMDB format {meta.get('format')} v{meta.get('version')}, "
                          f"this bmpose reads bmpose-calib v{FORMAT_VERSION}; rebuild it")
    return meta


def check_lmdb(lmdb_path, cfg) -> dict:
    """Meta of an existing LMDB, or BmposeError if its crops do not fit cfg (size, padding, colour order)."""
    meta = read_meta(lmdb_path)
    pre, want = meta["preprocess"], preprocess_facts(cfg)
    for k in ("input_size", "padding", "crop_channels", "layout"):
        if pre.get(k) != want[k]:
            raise BmposeError(f"{lmdb_path}: calibration LMDB has {k} {pre.get(k)!r}, model {cfg.name} needs "
                              f"{want[k]!r}; rebuild it with `bmpose calib --model {cfg.name}`")
    return meta


def _decode(key: bytes, value: bytes) -> CalibRecord:
    (n,) = struct.unpack_from("<I", value)
    h = json.loads(value[4:4 + n])
    img = np.frombuffer(value, dtype=np.uint8, offset=4 + n).reshape(h["shape"])
    kp = h.get("keypoints")
    return CalibRecord(key=key.decode(), image=img, image_id=h["image_id"], ann_id=h["ann_id"], file=h["file"],
                       bbox=h["bbox"], bbox_format=h["bbox_format"],
                       center=np.array(h["center"], dtype=np.float32), scale=np.array(h["scale"], dtype=np.float32),
                       keypoints=np.array(kp, dtype=np.float32) if kp is not None else None)


def iter_records(lmdb_path, limit: int | None = None) -> Iterator[CalibRecord]:
    """Crops in selection order (uint8 HWC RGB, read-only views of the stored bytes)."""
    read_meta(lmdb_path)
    env = _open_ro(lmdb_path)
    try:
        with env.begin() as txn:
            for i, (key, value) in enumerate(txn.cursor()):
                if key == META_KEY:
                    continue
                if limit is not None and i >= limit:
                    break
                yield _decode(key, bytes(value))
    finally:
        env.close()


def iter_batches(lmdb_path, cfg, batch: int = 1, drop_last: bool = True) -> Iterator[np.ndarray]:
    """Normalised float32 NCHW batches of `batch` crops (the last, short one only with drop_last=False)."""
    check_lmdb(lmdb_path, cfg)
    buf = []
    for rec in iter_records(lmdb_path):
        buf.append(rec.image)
        if len(buf) == batch:
            yield normalize(np.stack(buf), cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)
            buf = []
    if buf and not drop_last:
        yield normalize(np.stack(buf), cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)


def write_tpu_inputs(lmdb_path, cfg, out_dir, num: int | None = None) -> list[Path]:
    """One npz per crop (key "input", normalised float32 [1,3,H,W]) in out_dir, plus `data_list.txt`.

    That is what run_calibration (--dataset DIR or --data_list FILE; it stacks batch-1 npz to the model's batch)
    and model_transform --test_input take. out_dir belongs to this function: it is replaced on a rebuild and
    reused (manifest) when the LMDB, num and normalisation are unchanged.
    """
    lmdb_path, out_dir = Path(lmdb_path), Path(out_dir)
    meta = check_lmdb(lmdb_path, cfg)
    n = meta["count"] if num is None else min(int(num), meta["count"])
    inputs = {"lmdb": lmdb_path}
    options = {"num": n, "mean": list(cfg.mean), "std": list(cfg.std), "network_rgb": cfg.bgr_to_rgb}
    with manifest.locked(out_dir):
        if manifest.up_to_date(out_dir, inputs, options):
            return [Path(p) for p in (out_dir / "data_list.txt").read_text().split()]
        names = []
        with manifest.atomic_dir(out_dir, keep_failed=False) as tmp:
            for i, rec in enumerate(iter_records(lmdb_path, limit=n)):
                x = normalize(rec.image, cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)
                name = f"calib_{i:05d}.npz"
                np.savez(tmp / name, input=x)
                names.append(name)
            (tmp / "data_list.txt").write_text("".join(f"{(out_dir / nm).resolve()}\n" for nm in names))
            manifest.write_manifest(tmp, stage="tpu_inputs", inputs=inputs, options=options,
                                    outputs=["data_list.txt"], checks={"count": len(names)})
    return [out_dir.resolve() / nm for nm in names]


# ---------------------------------------------------------------------------------------------------- picture

def write_contact_sheet(lmdb_path, png_path, max_crops: int = 48, columns: int = 8) -> Path:
    """A grid of up to max_crops crops (evenly sampled) with their ground-truth keypoints mapped into the crop."""
    import cv2

    from .pose.draw import draw_pose

    meta = read_meta(lmdb_path)
    count = meta["count"]
    picks = set(np.linspace(0, count - 1, min(max_crops, count)).round().astype(int).tolist())
    tiles = []
    for i, rec in enumerate(iter_records(lmdb_path)):
        if i not in picks:
            continue
        tile = np.ascontiguousarray(rec.image[..., ::-1])  # RGB -> BGR for cv2
        w, h = tile.shape[1], tile.shape[0]
        if rec.keypoints is not None:
            kp = image_to_input(rec.keypoints[:, :2], rec.center, rec.scale, (w, h))
            draw_pose(tile, kp, (rec.keypoints[:, 2] > 0).astype(np.float32), kpt_thr=0.5)
        label = str(rec.ann_id if rec.ann_id is not None else rec.file)
        cv2.putText(tile, label, (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(40, 40, 40)))
    rows = []
    blank = np.zeros_like(tiles[0])
    for r in range(0, len(tiles), columns):
        row = tiles[r:r + columns]
        rows.append(np.hstack(row + [blank] * (columns - len(row))))
    sheet = np.vstack(rows)
    if sheet.shape[1] < 1024:  # small models (96 px crops) are unreadable at 1:1
        f = 1024 // sheet.shape[1] + 1
        sheet = cv2.resize(sheet, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    png_path = Path(png_path)
    if not cv2.imwrite(str(png_path), sheet):
        raise BmposeError(f"{png_path}: cannot write contact sheet")
    return png_path


# ---------------------------------------------------------------------------------------------------- benchmark

@bench.register("calib")
def bench_calib(cfg, args) -> list[dict]:
    """crops/s building an LMDB from the bundled COCO sample (repeated to a few hundred crops), 1 worker vs all
    cores, and LMDB bytes per 100 crops."""
    import tempfile

    ann = config_mod.DATA_DIR / "coco_val_mini" / "person_keypoints_val2017_subset.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibWarning)
        jobs, _, _, _ = _coco_jobs(ann, ann.parent / "images", 10 ** 6, 0, 1, 1)
    repeat = max(1, 640 // sum(len(p) for _, p in jobs))
    many, idx = [], 0
    for _ in range(repeat):
        for file, persons in jobs:
            many.append((file, [{**p, "idx": (idx := idx + 1)} for p in persons]))
    n = sum(len(p) for _, p in many)
    rows = []
    cores = os.cpu_count() or 1
    for workers in sorted({1, cores}):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            count = build_lmdb(many, Path(tmp) / LMDB_NAME, cfg.input_size, cfg.padding, {"bench": True},
                               workers=workers, progress=False)
            dt = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (Path(tmp) / LMDB_NAME).iterdir())
        rows.append({"benchmark": "calib", "case": f"build LMDB, {workers} worker(s), {len(many)} images",
                     "crops": count, "seconds": round(dt, 3), "crops_per_s": round(count / dt, 1),
                     "lmdb_bytes_per_100_crops": round(size * 100 / count)})
    return rows


# ---------------------------------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bmpose calib", description="COCO person crops -> calibration LMDB")
    p.add_argument("--model", default=None, help="deploy config name or yaml (default %(default)s)")
    p.add_argument("--checkpoint", default=None, help="accepted for the Makefile's COMMON options; unused")
    p.add_argument("--calib", default="coco", help="coco | dir:PATH | lmdb:PATH (default coco)")
    p.add_argument("--coco-ann", default=None, help="COCO person-keypoints json (default: bundled val sample)")
    p.add_argument("--coco-img", default=None, help="its image folder (default: beside the json)")
    p.add_argument("--num", type=int, default=None, help="crops to select (default: config's calibration.num)")
    p.add_argument("--seed", type=int, default=None, help="selection seed (default: config's calibration.seed)")
    p.add_argument("--min-keypoints", type=int, default=None,
                   help=f"least labelled keypoints per person (default {DEFAULT_MIN_KEYPOINTS})")
    p.add_argument("--min-box", type=float, default=None,
                   help=f"least box side in pixels (default {DEFAULT_MIN_BOX:g})")
    p.add_argument("--workers", type=int, default=None, help="crop processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace an LMDB built for a different config")
    a = p.parse_args(argv)
    cfg = config_mod.load(a.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibWarning)
        path = ensure_calib(cfg, a.calib, coco_ann=a.coco_ann, coco_img=a.coco_img, num=a.num, seed=a.seed,
                            min_keypoints=a.min_keypoints, min_box=a.min_box, force=a.force, workers=a.workers,
                            progress=sys.stderr.isatty())
    for w in caught:
        print(f"bmpose calib: warning: {w.message}", file=sys.stderr)
    meta = read_meta(path)
    sheet = path.parent / SHEET_NAME
    m = manifest.read_manifest(path.parent) or {}
    checks = m.get("checks", {})
    print(f"{path}: {meta['count']} crops {meta['preprocess']['input_size']} (w, h) from {meta['source']['source']}"
          + (f", {checks['crops_per_s']} crops/s" if "crops_per_s" in checks else ""))
    if sheet.is_file():
        print(f"contact sheet: {sheet}")
    return 0
