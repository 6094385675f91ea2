"""`ensure_calib`: a model's calibration set (artifacts/<model>/calib/: LMDB, contact sheet, manifest),
selected (calib.select), cropped by the shared core and stored (calib.store), built only when its inputs
changed; `lmdb:PATH` names an existing set, checked against the model."""
from __future__ import annotations

import os
import time
from pathlib import Path

from bmpose import manifest
from bmpose.calib.select import (DEFAULT_MIN_BOX, DEFAULT_MIN_KEYPOINTS, _coco_jobs, _dir_jobs, default_coco,
                                 parse_spec)
from bmpose.calib.sheet import SHEET_NAME, write_contact_sheet
from bmpose.calib.store import (FORMAT_VERSION, LMDB_NAME, build_lmdb, check_lmdb, preprocess_facts,
                                 read_meta)
from bmpose.errors import BmposeError


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
    out_dir = Path(out_dir or cfg.layout.calib())
    if kind == "coco":
        min_keypoints = int(min_keypoints if min_keypoints is not None
                            else calcfg.get("min_keypoints", DEFAULT_MIN_KEYPOINTS))
        min_box = float(min_box if min_box is not None else calcfg.get("min_box", DEFAULT_MIN_BOX))
        ann_default, img_default = default_coco()
        ann = Path(coco_ann or ann_default)
        img = Path(coco_img or (img_default if coco_ann is None else Path(ann).parent))
        default_size = coco_ann is None and num == int(calcfg.get("num", 100))
        jobs, info, source_json, files = _coco_jobs(ann, img, num, seed, min_keypoints, min_box,
                                                    warn_short=not default_size)
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
