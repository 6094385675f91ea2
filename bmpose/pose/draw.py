"""Pose pictures: person box, skeleton links and keypoint circles in mmpose's COCO colours (cv2 only).

Keypoints below `kpt_thr` (mmpose's visualiser default 0.3) and links touching them are not drawn; line
widths scale with the image so small and large pictures both read. Another keypoint set (BlazePose's 33) is
drawn with its own links (`style`), coloured as mmpose colours COCO's: left green, right orange, the rest blue.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import skeleton
from .errors import PoseError

BOX_BGR = (0, 255, 0)
COCO_STYLE = (skeleton.SKELETON_LINKS, skeleton.LINK_COLORS_RGB, skeleton.KEYPOINT_COLORS_RGB)


def style(keypoint_names=None, skeleton_links=None) -> tuple:
    """(links, link colours, keypoint colours) for a keypoint set; COCO's own colours for COCO's 17."""
    if keypoint_names is None or tuple(keypoint_names) == skeleton.KEYPOINT_NAMES:
        return COCO_STYLE

    def side(name: str):
        return skeleton.GREEN if name.startswith("left") else skeleton.ORANGE if name.startswith("right") \
            else skeleton.BLUE

    names = [str(n) for n in keypoint_names]
    links = [(int(a), int(b)) for a, b in skeleton_links]
    link_colours = [side(names[a]) if side(names[a]) == side(names[b]) else skeleton.BLUE for a, b in links]
    return links, link_colours, [side(n) for n in names]


def _bgr(rgb) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def draw_pose(image_bgr: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, bbox_xywh=None,
              kpt_thr: float = 0.3, label: str | None = None, look: tuple = COCO_STYLE) -> np.ndarray:
    """Draw one person on `image_bgr` in place (and return it). keypoints (K, 2) in image pixels; `look` from
    `style` (COCO's by default)."""
    h, w = image_bgr.shape[:2]
    thick = max(1, round(max(h, w) / 300))
    radius = max(2, thick + 1)
    if bbox_xywh is not None:
        x, y, bw, bh = (float(v) for v in bbox_xywh)
        cv2.rectangle(image_bgr, (round(x), round(y)), (round(x + bw), round(y + bh)), BOX_BGR, thick)
        if label:
            cv2.putText(image_bgr, label, (round(x), max(0, round(y) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, BOX_BGR, thick, cv2.LINE_AA)
    pts = np.round(np.asarray(keypoints, dtype=np.float64)).astype(int)
    visible = np.asarray(scores) >= kpt_thr
    links, link_colours, keypoint_colours = look
    for (a, b), colour in zip(links, link_colours):
        if visible[a] and visible[b]:
            cv2.line(image_bgr, tuple(map(int, pts[a])), tuple(map(int, pts[b])), _bgr(colour), thick, cv2.LINE_AA)
    for k, colour in enumerate(keypoint_colours):
        if visible[k]:
            cv2.circle(image_bgr, tuple(map(int, pts[k])), radius, _bgr(colour), -1, cv2.LINE_AA)
    return image_bgr


def draw_persons(image_bgr: np.ndarray, persons, kpt_thr: float = 0.3, look: tuple = COCO_STYLE) -> np.ndarray:
    """Draw every (keypoints, scores, bbox_xywh, box_score) of one image; detector scores below 1 label the
    box (ground-truth and whole-image boxes carry 1 and no label)."""
    for keypoints, scores, bbox, box_score in persons:
        draw_pose(image_bgr, keypoints, scores, bbox, kpt_thr=kpt_thr,
                  label=f"{box_score:.2f}" if box_score < 1 else None, look=look)
    return image_bgr


def write_jpg(path: Path, image_bgr: np.ndarray) -> None:
    """Encode in memory and write the bytes: cv2.imwrite silently fails on some paths (non-ASCII names)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise PoseError(f"{path}: cannot encode the picture")
    Path(path).write_bytes(buf.tobytes())
