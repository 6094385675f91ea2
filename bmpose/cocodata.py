"""COCO person-keypoint annotations and detection boxes: loading with validation, and person selection.

Calibration selects ground-truth persons from here; inference/evaluation read detector boxes from here. Boxes
follow mmpose's conventions so crops match mmpose exactly: ground-truth boxes are clipped to the image and
kept as float32 xyxy (`Person.bbox_xyxy`, crop with `crop_person(..., xyxy=True)`), detection boxes stay xywh.
"""
from __future__ import annotations

import json
import os
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError
from bmpose.manifest import sha256_file


@dataclass(frozen=True)
class Person:
    image_id: int
    ann_id: int
    file: Path              # image path (image folder / file_name)
    width: int              # image size from the json
    height: int
    bbox: tuple             # xywh as annotated
    keypoints: np.ndarray   # float32 (K, 3): x, y, v (0 not labelled, 1 labelled but hidden, 2 visible)
    num_keypoints: int      # labelled keypoints (v > 0), COCO's num_keypoints
    iscrowd: bool

    @property
    def bbox_xyxy(self) -> np.ndarray:
        """mmpose's ground-truth box (BaseCocoStyleDataset.parse_data_info): clipped in float64, then float32."""
        x, y, w, h = self.bbox
        return np.array([np.clip(x, 0, self.width - 1), np.clip(y, 0, self.height - 1),
                         np.clip(x + w, 0, self.width - 1), np.clip(y + h, 0, self.height - 1)], dtype=np.float32)


@dataclass(frozen=True)
class Detection:
    image_id: int
    bbox: tuple             # xywh
    score: float
    file: Path | None = None


class CocoKeypoints:
    """A validated COCO person-keypoints json and its image folder."""

    def __init__(self, ann_path: str | os.PathLike, img_dir: str | os.PathLike | None = None):
        self.path = Path(ann_path)
        self.img_dir = Path(img_dir) if img_dir is not None else self.path.parent
        data = _read_json(self.path)
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                                 for k in ("images", "annotations", "categories")):
            raise BmposeError(f"{self.path}: not a COCO annotation json (needs lists 'images', 'annotations', "
                              f"'categories')")
        cats = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
        if not cats:
            raise BmposeError(f"{self.path}: not a COCO person-keypoints json (no category with 'keypoints')")
        self.category = next((c for c in cats if c.get("name") == "person"), cats[0])
        self.keypoint_names = list(self.category["keypoints"])
        self.num_keypoints = len(self.keypoint_names)
        try:
            self.images = {int(im["id"]): im for im in data["images"]}
        except (KeyError, TypeError, ValueError):
            raise BmposeError(f"{self.path}: an entry of 'images' has no integer 'id'") from None
        self.annotations = [a for a in data["annotations"]
                            if isinstance(a, dict) and a.get("category_id") == self.category.get("id")]
        for a in self.annotations:
            self._check_annotation(a)

    def _check_annotation(self, a: dict) -> None:
        where = f"{self.path}: annotation {a.get('id')!r}"
        if not isinstance(a.get("bbox"), list) or len(a["bbox"]) != 4:
            raise BmposeError(f"{where}: 'bbox' is not [x, y, w, h]")
        if not isinstance(a.get("keypoints"), list) or len(a["keypoints"]) != 3 * self.num_keypoints:
            raise BmposeError(f"{where}: 'keypoints' is not {self.num_keypoints} x (x, y, v)")
        if a.get("image_id") not in self.images:
            raise BmposeError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        im = self.images[a["image_id"]]
        if "file_name" not in im or "width" not in im or "height" not in im:
            raise BmposeError(f"{self.path}: image {im['id']} lacks file_name/width/height")

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def image_path(self, image_id: int) -> Path:
        return self.img_dir / self.images[image_id]["file_name"]

    def persons(self) -> list[Person]:
        out = []
        for a in self.annotations:
            im = self.images[a["image_id"]]
            kpts = np.array(a["keypoints"], dtype=np.float32).reshape(-1, 3)
            out.append(Person(image_id=int(a["image_id"]), ann_id=int(a["id"]), file=self.image_path(a["image_id"]),
                              width=int(im["width"]), height=int(im["height"]),
                              bbox=tuple(float(v) for v in a["bbox"]), keypoints=kpts,
                              num_keypoints=int(np.count_nonzero(kpts[:, 2] > 0)),
                              iscrowd=bool(a.get("iscrowd", 0))))
        return out


def load_coco_keypoints(ann_path, img_dir=None) -> CocoKeypoints:
    return CocoKeypoints(ann_path, img_dir)


def eligible_persons(coco: CocoKeypoints, min_keypoints: int = 4, min_box: float = 32) -> list[Person]:
    """Persons fit to calibrate on: not a crowd region, >= min_keypoints labelled keypoints, and a box whose
    shorter side (clipped to the image) is >= min_box pixels (tiny people are upscaled blur)."""
    out = []
    for p in coco.persons():
        x1, y1, x2, y2 = p.bbox_xyxy
        if p.iscrowd or p.num_keypoints < min_keypoints or min(x2 - x1, y2 - y1) < min_box:
            continue
        out.append(p)
    return out


def select_persons(persons: list[Person], num: int, seed: int = 0) -> list[Person]:
    """Deterministic, image-balanced sample: shuffle images and the persons within each image (seeded), then
    take one person per image in turn, so a crowded picture cannot dominate the set."""
    by_image: dict[int, list[Person]] = OrderedDict()
    for p in sorted(persons, key=lambda p: (p.image_id, p.ann_id)):
        by_image.setdefault(p.image_id, []).append(p)
    rng = random.Random(seed)
    groups = list(by_image.values())
    rng.shuffle(groups)
    for g in groups:
        rng.shuffle(g)
    out: list[Person] = []
    depth = 0
    while len(out) < num and any(depth < len(g) for g in groups):
        out += [g[depth] for g in groups if depth < len(g)][:num - len(out)]
        depth += 1
    return out


def check_images_exist(persons) -> None:
    for p in persons:
        if not Path(p.file).is_file():
            raise BmposeError(f"{p.file}: image file not found (image {p.image_id} of the annotations)")


def load_detections(path: str | os.PathLike, coco: CocoKeypoints | None = None, score_thr: float = 0.0,
                    category_id: int = 1) -> list[Detection]:
    """COCO detection results json (list of {image_id, category_id, bbox xywh, score}) -> person boxes with
    score >= score_thr (mmpose's bbox_score_thr), in file order. With `coco`, image ids must exist in it and
    each Detection gets its image file."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise BmposeError(f"{path}: not a COCO detection results json (expected a list of boxes)")
    out = []
    for i, d in enumerate(data):
        if not (isinstance(d, dict) and isinstance(d.get("bbox"), list) and len(d["bbox"]) >= 4
                and "image_id" in d and "score" in d):
            raise BmposeError(f"{path}: entry {i} is not a detection {{image_id, bbox, score, category_id}}")
        if d.get("category_id", category_id) != category_id or float(d["score"]) < score_thr:
            continue
        file = None
        if coco is not None:
            if d["image_id"] not in coco.images:
                raise BmposeError(f"{path}: entry {i}: image_id {d['image_id']} is not in {coco.path}")
            file = coco.image_path(d["image_id"])
        out.append(Detection(image_id=int(d["image_id"]), bbox=tuple(float(v) for v in d["bbox"][:4]),
                             score=float(d["score"]), file=file))
    return out


def _read_json(path: Path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise BmposeError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BmposeError(f"{path}: not valid JSON ({e})") from None
