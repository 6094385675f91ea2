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

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from bmpose import procs
from bmpose.errors import BmposeError
from bmpose.pose import crop_person, read_image, normalize
from bmpose.progress import bar

FORMAT_VERSION = 1
META_KEY = b"__meta__"
LMDB_NAME = "calib.lmdb"
PARALLEL_MIN_IMAGES = 64   # below this, worker start-up costs more than it saves
COMMIT_EVERY = 256




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




# ---------------------------------------------------------------------------------------------------- sources







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

    Images are cropped in a pool of spawned processes when there are enough of them; results arrive in job
    order, so the file is the same for any worker count.
    """
    import lmdb

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
            # spawned, never forked: a fork after OpenCV (or torch) started its thread pool in this process can
            # deadlock the child in cv2.setNumThreads (seen: 2 runs in 4 of test_parallel_build_is_identical)
            with procs.quiet_sigint():   # Ctrl-C is this process's to answer: it terminates the pool
                pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker)
            results = pool.imap(_crop_job, args, chunksize=max(1, min(16, len(args) // (workers * 8))))
        else:
            results = map(_crop_job, args)
        count = 0
        txn = env.begin(write=True)
        with bar(total, "calib crops", "crop", show=progress) as b:
            for crops in results:
                for idx, header, pixels in crops:
                    txn.put(f"{idx:08d}".encode(), _encode(header, pixels))
                    count += 1
                b.update(len(crops))
                if count % COMMIT_EVERY < len(crops):
                    txn.commit()
                    txn = env.begin(write=True)
        txn.put(META_KEY, json.dumps({**meta, "count": count}, sort_keys=True).encode())
        txn.commit()
    finally:
        if pool is not None:
            pool.terminate()
        env.close()
    return count






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




# ---------------------------------------------------------------------------------------------------- picture



# ---------------------------------------------------------------------------------------------------- benchmark



# ---------------------------------------------------------------------------------------------------- CLI
