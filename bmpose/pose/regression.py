"""Coordinate outputs (mmpose's RegressionLabel) -> keypoints in the model's input space.

mmpose's RegressionLabel decodes [B, K, 2] coordinates normalised to the input (0-1) by multiplying by the input
size, each keypoint's score 1. Networks trained elsewhere give more per landmark: MediaPipe BlazePose's landmark
model outputs [B, 39 * 5], x, y in input pixels, z, then the logits of visibility and presence, its first 33
landmarks the body. The codec says which (bmpose.onnx_config): `num_keypoints` (the first K landmarks are the
keypoint set's), `values_per_keypoint`, `coordinates` (normalized | pixels), `visibility_index` (score =
sigmoid of that value, as MediaPipe's own landmark post-processing does; without it, 1).

Flip test as mmpose's RegressionHead (`flip_coordinates`): the mirrored crop's keypoints swapped left/right and
x mirrored (x' = W - x, minus one pixel with `shift_coords`), then the two passes averaged; scores averaged too.

numpy only, Python 3.7+ (shipped to the device).
"""
from __future__ import annotations

import numpy as np

from .errors import PoseError


def landmarks(outputs: np.ndarray, codec: dict) -> np.ndarray:
    """[B, L * V] or [B, L, V] -> [B, K, V] float32: the keypoint set's first K landmarks, every value."""
    out = np.asarray(outputs, dtype=np.float32)
    k, v = int(codec["num_keypoints"]), int(codec.get("values_per_keypoint", 2))
    if out.ndim < 2 or out[0].size % v or out[0].size // v < k:
        raise PoseError(f"regression output of shape {out.shape}: expected [B, L x {v}] with L >= {k} landmarks "
                        f"(codec num_keypoints {k}, values_per_keypoint {v})")
    return out.reshape(len(out), -1, v)[:, :k]


def decode_regression(outputs: np.ndarray, codec: dict) -> tuple[np.ndarray, np.ndarray]:
    """-> keypoints (B, K, 2) in input pixels, scores (B, K)."""
    lm = landmarks(outputs, codec)
    xy = lm[..., :2].copy()
    if codec.get("coordinates", "normalized") == "normalized":
        xy *= np.asarray(codec["input_size"], dtype=np.float32)
    vis = codec.get("visibility_index")
    if vis is None:
        scores = np.ones(lm.shape[:2], np.float32)
    else:   # the logit's sigmoid, written so that large logits of either sign neither overflow nor warn
        z = lm[..., int(vis)]
        e = np.exp(-np.abs(z))
        scores = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)
    return xy, scores


def flip_back_regression(outputs_of_flipped: np.ndarray, codec: dict, flip_indices, shift_coords: bool) -> np.ndarray:
    """The mirrored crop's landmarks [B, K, V] in the original crop's frame: swapped left/right, x mirrored."""
    lm = landmarks(outputs_of_flipped, codec)[:, list(flip_indices)].copy()
    width = 1.0 if codec.get("coordinates", "normalized") == "normalized" else float(codec["input_size"][0])
    lm[..., 0] = width - lm[..., 0]
    if shift_coords:
        lm[..., 0] -= width / float(codec["input_size"][0])   # one input pixel
    return lm


def merge_flip_regression(outputs: np.ndarray, outputs_of_flipped: np.ndarray, codec: dict, flip_indices,
                          shift_coords: bool) -> np.ndarray:
    """The flip test's [B, K * V] landmarks: the mean of the plain pass and the flipped-back one (every value,
    so the visibility logits are averaged as well)."""
    merged = (landmarks(outputs, codec) + flip_back_regression(outputs_of_flipped, codec, flip_indices,
                                                               shift_coords)) * np.float32(0.5)
    return merged.reshape(len(merged), -1)
