"""Who goes into the calibration set: persons of a COCO file (not crowd, enough labelled keypoints, a box
large enough; then one person per image in turn, seeded) or the images of a plain folder, grouped by image
file so each image is decoded once."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from bmpose.cocodata import check_images_exist, eligible_persons, load_coco_keypoints, select_persons
from bmpose.errors import BmposeError
from bmpose.pose.image_io import IMAGE_SUFFIXES


DEFAULT_MIN_KEYPOINTS = 4


DEFAULT_MIN_BOX = 32.0

# `--calib coco` without --coco-ann: COCO train2017 persons, so that no bundled evaluation set (val2017) is
# ever scored by a model calibrated on it (bmpose.calib.provenance checks that at evaluation).
TRAIN_MINI = ("coco_train_mini/person_keypoints_train2017_subset.json", "coco_train_mini/images")


def default_coco() -> tuple[Path, Path]:
    """The bundled calibration persons: (annotation json, image folder)."""
    from bmpose.config import DATA_DIR

    return DATA_DIR / TRAIN_MINI[0], DATA_DIR / TRAIN_MINI[1]


class CalibWarning(UserWarning):
    pass


def parse_spec(spec: str) -> tuple[str, Path | None]:
    if spec == "coco":
        return "coco", None
    kind, sep, path = spec.partition(":")
    if sep and kind in ("dir", "lmdb") and path:
        return kind, Path(path).expanduser()
    raise BmposeError(f"--calib {spec!r}: expected coco, dir:PATH or lmdb:PATH")


def _coco_jobs(ann, img, num, seed, min_keypoints, min_box, warn_short: bool = True):
    """Selected persons grouped by image (one decode per image): (jobs, selection info, source files).
    `warn_short`: say when fewer than `num` persons are eligible (not for the bundled set at the config's
    own num, an upper bound every default build would otherwise warn about)."""
    coco = load_coco_keypoints(ann, img)
    eligible = eligible_persons(coco, min_keypoints, min_box)
    if not eligible:
        raise BmposeError(f"{coco.path}: no eligible persons (not crowd, >= {min_keypoints} labelled keypoints, "
                          f"box side >= {min_box:g} px) among {len(coco.annotations)} annotations")
    if num > len(eligible) and warn_short:
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
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BmposeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the calibration folder")
    if num > len(files):
        warnings.warn(f"{folder}: --num {num} but only {len(files)} images: using all {len(files)}",
                      CalibWarning, stacklevel=3)
    import random
    chosen = sorted(random.Random(seed).sample(files, min(num, len(files))))
    jobs = [(str(f), [{"idx": i, "file": os.path.relpath(f, folder), "box": None, "bbox_format": "xywh",
                       "image_id": None, "ann_id": None, "keypoints": None}]) for i, f in enumerate(chosen)]
    return jobs, {"source": "dir", "folder": str(folder), "eligible": len(files)}, None, chosen
