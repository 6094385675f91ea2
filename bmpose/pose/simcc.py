"""SimCC vectors (RTMPose's RTMCCHead: `simcc_x` [B, K, W*ratio], `simcc_y` [B, K, H*ratio]) -> keypoints in the
model's input space, as mmpose's `SimCCLabel.decode` does it: argmax per axis, divided by the split ratio; the
score of a keypoint is the smaller of its two maxima; a keypoint whose score is <= 0 gets location -1 (before
the division, so -1 / ratio, as mmpose). Flip test as RTMCCHead: the vectors of the mirrored crop have their
keypoints swapped left/right and the x vectors reversed, then both passes are averaged.

numpy only, Python 3.7+ (shipped to the device); tests/pose/test_simcc.py checks it against mmpose's own codec.
"""
from __future__ import annotations

import numpy as np

from .errors import PoseError


def simcc_maximum(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, Wx), (B, K, Wy) -> integer locations (B, K, 2) float32 x, y (-1 where the score <= 0), scores."""
    if simcc_x.ndim != 3 or simcc_y.ndim != 3 or simcc_x.shape[:2] != simcc_y.shape[:2]:
        raise PoseError(f"SimCC decode: expected simcc_x (B, K, Wx) and simcc_y (B, K, Wy) with the same B and K, "
                        f"got {simcc_x.shape} and {simcc_y.shape}")
    locs = np.stack((np.argmax(simcc_x, axis=2), np.argmax(simcc_y, axis=2)), axis=-1).astype(np.float32)
    scores = np.minimum(np.amax(simcc_x, axis=2), np.amax(simcc_y, axis=2))
    locs[scores <= 0.0] = -1
    return locs, scores


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """-> keypoints (B, K, 2) in input pixels, scores (B, K) (mmpose's SimCCLabel.decode, no DARK)."""
    locs, scores = simcc_maximum(np.asarray(simcc_x), np.asarray(simcc_y))
    return locs / np.float32(split_ratio), scores


def flip_back_simcc(x_of_flipped: np.ndarray, y_of_flipped: np.ndarray, flip_indices) -> tuple:
    """The mirrored crop's vectors in the original crop's frame: keypoints swapped, x reversed."""
    idx = list(flip_indices)
    return x_of_flipped[:, idx, ::-1], y_of_flipped[:, idx]


def merge_flip_simcc(simcc_x, simcc_y, x_of_flipped, y_of_flipped, flip_indices) -> tuple:
    """RTMCCHead's flip test: the average of the two passes, per axis."""
    fx, fy = flip_back_simcc(x_of_flipped, y_of_flipped, flip_indices)
    return (simcc_x + fx) * 0.5, (simcc_y + fy) * 0.5
