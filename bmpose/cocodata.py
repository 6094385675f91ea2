"""COCO person-keypoint annotations and detection boxes: loading with validation, and person selection.

Calibration selects ground-truth persons from here; inference/evaluation read detector boxes from here. Boxes
follow mmpose's conventions so crops match mmpose exactly: ground-truth boxes are clipped to the image and
kept as float32 xyxy (`Person.bbox_xyxy`, crop with `crop_person(..., xyxy=True)`), detection boxes stay xywh.
"""
from __future__ import annotations

import json
import os
import random
import reprlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmpose.device.inputs import finite_number as _number
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
    index: int = -1         # the entry's place in its json list, for messages


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
        cats = [c for i, c in enumerate(data["categories"]) if self._is_keypoint_category(i, c)]
        if not cats:
            raise BmposeError(f"{self.path}: not a COCO person-keypoints json (no category with 'keypoints')")
        self.category = next((c for c in cats if c.get("name") == "person"), cats[0])
        self.keypoint_names = list(self.category["keypoints"])
        self.num_keypoints = len(self.keypoint_names)
        self.images: dict[int, dict] = {}
        for i, im in enumerate(data["images"]):
            self._check_image(i, im)
            self.images[im["id"]] = im
        self.annotations = [a for i, a in enumerate(data["annotations"]) if self._is_person(i, a)]

    # One check per record, each error one line naming the file and the record. What mmpose's CocoDataset
    # accepts stays accepted: extra keys, crowd and unlabelled persons, boxes reaching out of the image (clipped),
    # zero-size boxes (too small to calibrate on; `infer` names them); what it would crash on or silently
    # misread is refused.

    def _is_keypoint_category(self, i: int, c) -> bool:
        if not isinstance(c, dict):
            raise BmposeError(f"{self.path}: categories[{i}] is not an object: {_show(c)}")
        if not c.get("keypoints"):
            return False   # a box-only category
        where = f"{self.path}: category {_show(c.get('id'))}"
        if not _int(c.get("id")):
            raise BmposeError(f"{where}: 'id' must be an integer")
        if not (isinstance(c["keypoints"], list) and all(isinstance(k, str) for k in c["keypoints"])):
            raise BmposeError(f"{where}: 'keypoints' must be a list of names, got {_show(c['keypoints'])}")
        return True

    def _entry(self, section: str, i: int, entry, noun: str) -> str:
        """An entry of `section` must be an object with an integer id; -> how messages name it from then on."""
        if not isinstance(entry, dict):
            raise BmposeError(f"{self.path}: {section}[{i}] is not an object: {_show(entry)}")
        if not _int(entry.get("id")):
            raise BmposeError(f"{self.path}: {section}[{i}]: 'id' must be an integer, got {_show(entry.get('id'))}")
        return f"{self.path}: {noun} {entry['id']}"

    def _check_image(self, i: int, im) -> None:
        where = self._entry("images", i, im, "image")
        if im["id"] in self.images:
            raise BmposeError(f"{where}: the id appears twice in 'images'")
        if not (isinstance(im.get("file_name"), str) and im["file_name"]):
            raise BmposeError(f"{where}: 'file_name' must be a non-empty string, got {_show(im.get('file_name'))}")
        for key in ("width", "height"):
            if not (_number(im.get(key)) and im[key] > 0 and float(im[key]).is_integer()):
                raise BmposeError(f"{where}: '{key}' must be a positive whole number, got {_show(im.get(key))}")

    def _is_person(self, i: int, a) -> bool:
        """Whether annotation i is one of the keypoint category's persons (then fully checked)."""
        where = self._entry("annotations", i, a, "annotation")
        if not _int(a.get("category_id")):
            raise BmposeError(f"{where}: 'category_id' must be an integer, got {_show(a.get('category_id'))}")
        if a["category_id"] != self.category["id"]:
            return False
        if not (_int(a.get("image_id")) and a["image_id"] in self.images):
            raise BmposeError(f"{where}: image_id {_show(a.get('image_id'))} is not in 'images'")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise BmposeError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {_show(bbox)}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise BmposeError(f"{where}: bbox {bbox} has a negative size")
        kpts, n = a.get("keypoints"), self.num_keypoints
        if not (isinstance(kpts, list) and len(kpts) == 3 * n and all(_number(v) for v in kpts)):
            raise BmposeError(f"{where}: 'keypoints' must be {n} x (x, y, v), {3 * n} finite numbers, "
                              f"got {_show(kpts)}")
        optional = {"num_keypoints": (lambda v: _int(v) and v >= 0, "a non-negative integer"),
                    "iscrowd": (lambda v: v in (0, 1), "0 or 1"),
                    "area": (lambda v: _number(v) and v >= 0, "a non-negative number")}
        for key, (ok, what) in optional.items():
            if key in a and not ok(a[key]):
                raise BmposeError(f"{where}: '{key}' must be {what}, got {_show(a[key])}")
        return True

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def image_ids_by_name(self) -> dict[str, int]:
        """file name (no folder) -> image id, for results matched to image files."""
        return {Path(im["file_name"]).name: im["id"] for im in self.images.values()}

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
        _check_detection(path, i, d)
        if d.get("category_id", category_id) != category_id:
            continue
        file = None
        if coco is not None:   # as mmpose: every person box's image must be known, whatever its score
            if d["image_id"] not in coco.images:
                raise BmposeError(f"{path}: entry {i}: image_id {d['image_id']} is not in {coco.path}")
            file = coco.image_path(d["image_id"])
        if d["score"] >= score_thr:
            out.append(Detection(image_id=d["image_id"], bbox=tuple(float(v) for v in d["bbox"][:4]),
                                 score=float(d["score"]), file=file, index=i))
    return out


def _check_detection(path: Path, i: int, d) -> None:
    """Entry i of a detection results list: {image_id, bbox [x, y, w, h, ...], score, category_id (optional)};
    as mmpose, only the bbox's first four numbers count. Same rules as the device's loader."""
    if not isinstance(d, dict):
        raise BmposeError(f"{path}: entry {i} is not a detection {{image_id, bbox, score, category_id}}: {_show(d)}")
    where = f"{path}: entry {i} (image_id {_show(d.get('image_id'))})"
    if not _int(d.get("image_id")):
        raise BmposeError(f"{where}: 'image_id' must be an integer")
    bbox = d.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) >= 4 and all(_number(v) for v in bbox[:4])):
        raise BmposeError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {_show(bbox)}")
    if not (bbox[2] > 0 and bbox[3] > 0):
        raise BmposeError(f"{where}: bbox {bbox[:4]} has zero or negative size")
    if not _number(d.get("score")):
        raise BmposeError(f"{where}: 'score' must be a finite number, got {_show(d.get('score'))}")
    if "category_id" in d and not _int(d["category_id"]):
        raise BmposeError(f"{where}: 'category_id' must be an integer, got {_show(d['category_id'])}")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)   # json's true/false are Python ints


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
_short.maxlist = _short.maxdict = 6


def _show(v) -> str:
    """A value for a one-line message: short, and any newline in a string escaped by repr."""
    return _short.repr(v)


def _read_json(path: Path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise BmposeError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BmposeError(f"{path}: not valid JSON ({e})") from None
