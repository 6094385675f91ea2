"""Person box -> model input crop, exactly as mmpose 1.3.2's top-down pipeline does it
(GetBBoxCenterScale -> TopdownAffine -> PoseDataPreprocessor's BGR->RGB), and the inverse mapping of decoded
keypoints back to the image (TopdownPoseEstimator.add_pred_to_datasample).

The arithmetic deliberately repeats mmpose's dtypes step by step (float32 boxes, float64 direction vector,
cv2.getAffineTransform on float32 points): cv2.warpAffine rounds the matrix to 1/32 pixel, so a last-bit
difference in the centre could flip an interpolation weight and break byte-identical crops.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PersonCrop:
    image: np.ndarray    # uint8 HxWx3, RGB (the network's colour order for mmpose's COCO models)
    center: np.ndarray   # float32 (2,), box centre in image pixels
    scale: np.ndarray    # float32 (2,), padded box size (w, h) in image pixels, at the input's aspect ratio
    bbox: np.ndarray     # float32 (4,), the box as given (xywh, or xyxy when crop_person(..., xyxy=True))


MAX_BOX_TIMES_IMAGE = 100   # a box side beyond this many image sides is a broken box, not a person: its crop's
                            # scale underflows and the keypoints come back NaN (seen with w, h = 1e12)


def box_problem(bbox_xywh, width: int, height: int):
    """Why a person box cannot be cropped from a width x height image, or None: the host's box checks and the
    device bundle's share this one rule."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    if not (w > 0 and h > 0):
        return "has zero size"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"lies outside its image ({width}x{height})"
    if max(w, h) > MAX_BOX_TIMES_IMAGE * max(width, height):
        return f"is over {MAX_BOX_TIMES_IMAGE} times the size of its image ({width}x{height})"
    return None


def center_scale(bbox_xywh, aspect_ratio: float, padding: float = 1.25, *,
                 xyxy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Box -> (center, scale) float32, padded and widened/heightened to `aspect_ratio` (= w / h).

    Boxes are xywh as in COCO detection results; mmpose turns them into xyxy in float32 (bbox_xywh2xyxy).
    Pass `xyxy=True` with a box already in mmpose's xyxy form: that is how mmpose stores ground-truth boxes
    (clipped to the image in float64 first, see `bmpose.cocodata.Person.bbox_xyxy`).
    A list of boxes (N, 4) gives centers and scales (N, 2), each equal to its box's alone.
    """
    box = np.array(bbox_xywh, dtype=np.float32)
    one = box.ndim == 1
    box = box.reshape(-1, box.shape[-1])[:, :4].copy()
    if not xyxy:
        box[:, 2] = box[:, 2] + box[:, 0]
        box[:, 3] = box[:, 3] + box[:, 1]
    # GetBBoxCenterScale (bbox_xyxy2cs)
    scale = (box[:, 2:] - box[:, :2]) * padding
    center = (box[:, 2:] + box[:, :2]) * 0.5
    # TopdownAffine._fix_aspect_ratio
    w, h = scale[:, :1], scale[:, 1:]
    scale = np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))
    return (center[0], scale[0]) if one else (center, scale)


def _src_points(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 2) centers and scales -> (N, 3, 2) float32 source points of mmpose's get_warp_matrix (rot 0)."""
    n = len(center)
    src = np.zeros((n, 3, 2), dtype=np.float32)
    src[:, 0] = center
    # center + (src_w * -0.5, 0): mmpose adds a float64 direction vector, then stores float32
    src[:, 1] = center.astype(np.float64) + np.stack([scale[:, 0] * -0.5, np.zeros(n)], 1)
    src[:, 2] = _third_point(src[:, 0], src[:, 1])
    return src


_DST = {}


def _dst_points(output_size) -> np.ndarray:
    """The (3, 2) float32 destination points of output_size (w, h), cached (a handful of sizes per process)."""
    key = (float(output_size[0]), float(output_size[1]))
    if key not in _DST:
        dst_w, dst_h = key
        dst = np.zeros((3, 2), dtype=np.float32)
        dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
        dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.])
        dst[2, :] = _third_point(dst[0:1], dst[1:2])[0]
        _DST[key] = dst
    return _DST[key]


def affine_matrix(center, scale, output_size, inv: bool = False) -> np.ndarray:
    """2x3 matrix mapping the (center, scale) box onto output_size (w, h); inv=True maps back.

    mmpose's get_warp_matrix with rot=0 and shift=0 (the only values its test pipeline uses).
    """
    src = _src_points(np.asarray(center, np.float32).reshape(1, 2), np.asarray(scale, np.float32).reshape(1, 2))[0]
    dst = _dst_points(output_size)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # a - b rotated by 90 degrees about b (rows of (N, 2)): fixes the aspect ratio of the mapping
    direction = a - b
    return b + np.stack([-direction[:, 1], direction[:, 0]], 1)


def crop_people(image_bgr: np.ndarray, boxes, input_size, padding: float = 1.25, *, xyxy: bool = False) -> list:
    """Crop persons for the network: one PersonCrop (uint8 RGB crop of input_size (w, h) + the center/scale
    used) per box of `boxes` (N, 4).

    This is the single preprocessing call shared by calibration, inference and evaluation. The box arithmetic
    runs once for all boxes (numpy per person cost more than the warp); its values are those of one box alone.
    """
    w, h = int(input_size[0]), int(input_size[1])
    given = np.array(boxes, dtype=np.float32).reshape(-1, 4) if len(boxes) else np.zeros((0, 4), np.float32)
    centers, scales = center_scale(given, w / h, padding, xyxy=xyxy)
    dst = _dst_points((w, h))
    out = []
    for bbox, center, scale, src in zip(given, centers, scales, _src_points(centers, scales)):
        crop = cv2.warpAffine(image_bgr, cv2.getAffineTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR)
        # warpAffine treats channels independently, so swapping after the (smaller) crop equals mmpose's
        # swap in PoseDataPreprocessor; cvtColor gives the same bytes as crop[..., ::-1] at 1/40 of its time
        out.append(PersonCrop(image=cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), center=center, scale=scale, bbox=bbox))
    return out


def crop_person(image_bgr: np.ndarray, bbox_xywh, input_size, padding: float = 1.25, *,
                xyxy: bool = False) -> PersonCrop:
    """One person's PersonCrop (see crop_people)."""
    return crop_people(image_bgr, [np.asarray(bbox_xywh, np.float32).reshape(-1)[:4]], input_size, padding,
                       xyxy=xyxy)[0]


def inputs_to_image(points_xy, centers, scales, input_size) -> np.ndarray:
    """input_to_image for a batch: points (N, K, 2+) of crops with centers and scales (N, 2)."""
    out = np.array(points_xy, dtype=np.float32, copy=True)
    centers = np.asarray(centers, dtype=np.float32)[:, None]
    scales = np.asarray(scales, dtype=np.float32)[:, None]
    out[..., :2] = out[..., :2] / np.asarray(input_size[:2]) * scales + centers - 0.5 * scales
    return out


def input_to_image(points_xy, center, scale, input_size) -> np.ndarray:
    """Keypoints in input-crop pixels (..., 2+) -> image pixels, as mmpose's add_pred_to_datasample does.

    Columns beyond x, y (e.g. scores) are passed through. Heatmap-space points must first be scaled by
    input_size / heatmap_size (what mmpose's codecs do in decode).
    """
    out = np.array(points_xy, dtype=np.float32, copy=True)
    center = np.asarray(center, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    out[..., :2] = out[..., :2] / np.asarray(input_size[:2]) * scale + center - 0.5 * scale
    return out


def image_to_input(points_xy, center, scale, input_size) -> np.ndarray:
    """Image pixels -> input-crop pixels (..., 2+) with the forward affine matrix (mmpose's cv2.transform of
    keypoints in TopdownAffine); used to draw ground truth on crops."""
    out = np.array(points_xy, dtype=np.float32, copy=True)
    mat = affine_matrix(center, scale, input_size)
    xy = out[..., :2].reshape(-1, 1, 2)
    out[..., :2] = cv2.transform(xy, mat).reshape(out[..., :2].shape)
    return out
