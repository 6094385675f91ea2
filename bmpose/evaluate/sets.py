"""The evaluation sets bmpose's own accuracy figures are measured on."""
from __future__ import annotations

from pathlib import Path

from bmpose import config as config_mod


def eval_set() -> tuple[Path, Path]:
    """The trained fixture's 51 persons (all bundled COCO persons): annotation json, image root."""
    return config_mod.DATA_DIR / "person_keypoints_bundled.json", config_mod.DATA_DIR


def eval_boxes(ann: Path, img: Path) -> list:
    """Ground-truth boxes of the persons mmpose's top-down COCO dataset keeps (not crowd, >= 1 keypoint): the
    fixture's 51 training persons for the bundled file."""
    from bmpose.cocodata import load_coco_keypoints
    from bmpose.runtime.boxes import PersonBox

    coco = load_coco_keypoints(ann, img)
    return [PersonBox(p.image_id, Path(p.file), p.bbox, 1.0, p.bbox_xyxy, f"{ann}: annotation {p.ann_id}")
            for p in coco.persons() if p.num_keypoints > 0 and not p.iscrowd]
