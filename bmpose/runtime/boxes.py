"""Person boxes, where they come from: a COCO annotation file (`gt`), COCO detection results (`dets:JSON`),
or whole images (`image`); each box knows its image file and its source for error messages."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmpose import config as config_mod
from bmpose.device.inputs import image_id_of
from bmpose.errors import BmposeError
from bmpose.pose.crop import box_problem
from bmpose.pose.image_io import read_image


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


def gt_boxes(ann: Path, img_dir: Path, only_files: set[str] | None = None) -> list[PersonBox]:
    from bmpose.cocodata import load_coco_keypoints

    coco = load_coco_keypoints(ann, img_dir)
    out = []
    for p in coco.persons():
        if only_files is not None and Path(p.file).name not in only_files:
            continue
        out.append(PersonBox(p.image_id, Path(p.file), p.bbox, 1.0, p.bbox_xyxy, f"{ann}: annotation {p.ann_id}"))
    return out


def det_boxes(dets: Path, ann: Path, img_dir: Path, score_thr: float) -> list[PersonBox]:
    from bmpose.cocodata import load_coco_keypoints, load_detections

    coco = load_coco_keypoints(ann, img_dir)
    return [PersonBox(d.image_id, Path(d.file), d.bbox, d.score, None,
                      f"{dets}: entry {d.index} (image_id {d.image_id})")   # as the loader's messages name it
            for d in load_detections(dets, coco, score_thr)]


def image_dets_boxes(dets: Path, files: list[Path], score_thr: float) -> list[PersonBox]:
    """COCO detection results matched to image files by COCO file naming (no annotation file), with the
    device bundle's own loader, so `bmpose infer --images DIR --boxes dets:JSON` and bmodel.py agree."""
    from bmpose.device.inputs import load_detections

    by_file = load_detections(dets, files, score_thr)
    return [PersonBox(image_id_of(f, i), f, tuple(b), s, None, f"{dets}: image {f.name}")
            for i, f in enumerate(files) for b, s in by_file[f]]


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
    """mmpose's filter_cfg.bbox_score_thr of the config's test set (0 when unset); an `onnx:` config's own."""
    from mmengine.config import Config

    if cfg.mmpose_config is None:
        return float(cfg.bbox_score_thr)
    mm = Config.fromfile(str(cfg.mmpose_config))
    ds = mm.get("test_dataloader", {}).get("dataset", {})
    return float((ds.get("filter_cfg") or {}).get("bbox_score_thr", 0.0))


def check_box(box: PersonBox, width: int, height: int) -> None:
    problem = box_problem(box.bbox, width, height)
    if problem:
        raise BmposeError(f"{box.source}: box {list(box.bbox)} {problem} ({box.file})")
