"""Heatmaps -> keypoints in the model's input space, exactly as mmpose's codecs decode them.

- MSRAHeatmap: argmax, then a quarter-pixel shift towards the higher neighbour (`refine_keypoints`), or DARK
  (`unbiased=True`: Taylor expansion on the blurred log-heatmap, `refine_keypoints_dark`).
- UDPHeatmap (gaussian): argmax + DARK-UDP refinement, then x / (heatmap-1) * input as mmpose's decode.
- Flip test: `flip_back` undoes a horizontal flip of the input on its heatmaps (mirror, swap left/right,
  shift one pixel when the config says `shift_heatmap`), `merge_flip` averages, as mmpose's `flip_heatmaps`.

Batched over persons (B, K, H, W); equal to mmpose's per-person code (tests/pose/test_decode.py checks it on random
heatmaps). Imports numpy and cv2 only, like the rest of the core. Map the result to image pixels with
`crop.input_to_image`.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import PoseError


def heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) -> integer peak locations (B, K, 2) as float32 x, y (-1 where the peak is <= 0), peaks."""
    B, K, H, W = heatmaps.shape
    flat = heatmaps.reshape(B * K, -1)
    # INT8 heatmaps are quantised: a few maps in a hundred have tied peaks (measured: 2-4 of 136). np.argmax
    # takes the first in row-major order, on every machine, as mmpose's get_heatmap_maximum does.
    idx = np.argmax(flat, axis=1)
    locs = np.stack((idx % W, idx // W), axis=-1).astype(np.float32)
    vals = flat[np.arange(B * K), idx]
    locs[vals <= 0.0] = -1
    return locs.reshape(B, K, 2), vals.reshape(B, K)


def _at(heatmaps: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """heatmaps[b, k, y, x] for index arrays y, x of shape (B, K), clipped inside (masked by the caller)."""
    B, K, H, W = heatmaps.shape
    # a flat gather (no (B, K) index grids); minimum/maximum: np.clip's checks cost more than the work here
    idx = np.minimum(np.maximum(y, 0), H - 1) * W + np.minimum(np.maximum(x, 0), W - 1)
    return heatmaps.reshape(B * K, H * W)[np.arange(B * K), idx.reshape(-1)].reshape(B, K)


def refine_msra(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Quarter-pixel shift towards the higher neighbour (mmpose `refine_keypoints`, its bounds included)."""
    B, K, H, W = heatmaps.shape
    x, y = locs[..., 0].astype(int).reshape(-1), locs[..., 1].astype(int).reshape(-1)
    # the four neighbours in one gather (right, left, below, above); out-of-map ones are clipped to a valid
    # index and masked below, as mmpose only looks at them inside its bounds
    at = (y * W + x)[:, None] + np.array([1, -1, W, -W])
    v = heatmaps.reshape(B * K, H * W)[np.arange(B * K)[:, None], np.minimum(np.maximum(at, 0), H * W - 1)]
    dx = np.where((1 < x) & (x < W - 1) & (0 < y) & (y < H), v[:, 0] - v[:, 1], 0)
    dy = np.where((1 < y) & (y < H - 1) & (0 < x) & (x < W), v[:, 2] - v[:, 3], 0)
    return locs + np.sign(np.stack([dx, dy], axis=-1)).reshape(B, K, 2).astype(np.float32) * np.float32(0.25)


def gaussian_blur(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """mmpose's `gaussian_blur` (zero border, max preserved), on (B, K, H, W); returns a new array."""
    border = (kernel - 1) // 2
    out = np.empty_like(heatmaps)
    B, K, H, W = heatmaps.shape
    for b in range(B):
        for k in range(K):
            origin_max = np.max(heatmaps[b, k])
            dr = np.zeros((H + 2 * border, W + 2 * border), dtype=np.float32)
            dr[border:-border, border:-border] = heatmaps[b, k]
            dr = cv2.GaussianBlur(dr, (kernel, kernel), 0)[border:-border, border:-border]
            out[b, k] = dr * (origin_max / np.max(dr))
    return out


def refine_dark(locs: np.ndarray, heatmaps: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    """DARK (mmpose `refine_keypoints_dark`): Newton step on the blurred log-heatmap at the integer peak."""
    H, W = heatmaps.shape[2:]
    hm = np.log(np.maximum(gaussian_blur(heatmaps, blur_kernel_size), 1e-10))
    x, y = locs[..., 0].astype(int), locs[..., 1].astype(int)
    inside = (1 < x) & (x < W - 2) & (1 < y) & (y < H - 2)
    at = lambda dy_, dx_: _at(hm, y + dy_, x + dx_)  # noqa: E731
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    ok = inside & (dxx * dyy - dxy ** 2 != 0)
    out = locs.copy()
    if ok.any():
        hessian = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2)[ok]
        derivative = np.stack([dx, dy], -1)[ok][..., None]
        out[ok] += (-np.linalg.inv(hessian) @ derivative)[..., 0]
    return out


def refine_dark_udp(locs: np.ndarray, heatmaps: np.ndarray, blur_kernel_size: int) -> np.ndarray:
    """DARK for UDP (mmpose `refine_keypoints_dark_udp`): edge-padded log-heatmap, regularised Hessian."""
    B, K, H, W = heatmaps.shape
    hm = np.log(np.clip(gaussian_blur(heatmaps, blur_kernel_size), 1e-3, 50.0))
    out = locs.copy()
    for n in range(B):
        pad = np.pad(hm[n], ((0, 0), (1, 1), (1, 1)), mode="edge").flatten()
        index = locs[n, :, 0] + 1 + (locs[n, :, 1] + 1) * (W + 2)
        index += (W + 2) * (H + 2) * np.arange(0, K)
        index = index.astype(int).reshape(-1, 1)
        i_, ix1, iy1 = pad[index], pad[index + 1], pad[index + W + 2]
        ix1y1, ix1_y1_ = pad[index + W + 3], pad[index - W - 3]
        ix1_, iy1_ = pad[index - 1], pad[index - 2 - W]
        derivative = np.concatenate([0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)], axis=1).reshape(K, 2, 1)
        dxx, dyy = ix1 - 2 * i_ + ix1_, iy1 - 2 * i_ + iy1_
        dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
        hessian = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(K, 2, 2)
        hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
        out[n] -= np.einsum("imn,ink->imk", hessian, derivative).squeeze()
    return out


def decode(heatmaps: np.ndarray, codec: dict) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) heatmaps -> keypoints (B, K, 2) in input-image pixels, scores (B, K), per the codec.

    `codec` is the mmpose codec config (type MSRAHeatmap or UDPHeatmap, input_size, heatmap_size, ...).
    """
    heatmaps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise PoseError(f"heatmaps must be (B, K, H, W), got shape {heatmaps.shape}")
    kind = codec.get("type")
    input_size, heatmap_size = np.array(codec["input_size"]), np.array(codec["heatmap_size"])
    if tuple(heatmap_size) != (heatmaps.shape[3], heatmaps.shape[2]):
        raise PoseError(f"heatmaps are {heatmaps.shape[3]}x{heatmaps.shape[2]}, the codec expects "
                          f"{heatmap_size[0]}x{heatmap_size[1]}")
    locs, scores = heatmap_maximum(heatmaps)
    if kind == "MSRAHeatmap":
        if codec.get("unbiased", False):
            locs = refine_dark(locs, heatmaps, int(codec.get("blur_kernel_size", 11)))
        else:
            locs = refine_msra(locs, heatmaps)
        scale = input_size / heatmap_size
    elif kind == "UDPHeatmap":
        if codec.get("heatmap_type", "gaussian") != "gaussian":
            raise PoseError(f"UDPHeatmap heatmap_type {codec.get('heatmap_type')!r} is not supported "
                              f"(gaussian only)")
        locs = refine_dark_udp(locs, heatmaps, int(codec.get("blur_kernel_size", 11)))
        return locs / (heatmap_size - 1) * input_size, scores  # mmpose's UDP decode: input_size, not -1
    else:
        raise PoseError(f"codec {kind!r} is not supported (MSRAHeatmap, UDPHeatmap)")
    return locs * scale, scores


def flip_back(heatmaps_of_flipped: np.ndarray, flip_indices, shift_heatmap: bool) -> np.ndarray:
    """Heatmaps of horizontally flipped inputs -> heatmaps in the unflipped frame (mmpose `flip_heatmaps`,
    flip_mode 'heatmap')."""
    hm = heatmaps_of_flipped[..., ::-1][:, list(flip_indices)].copy()
    if shift_heatmap:
        hm[..., 1:] = hm[..., :-1].copy()
    return hm


def merge_flip(heatmaps: np.ndarray, heatmaps_of_flipped: np.ndarray, flip_indices,
               shift_heatmap: bool) -> np.ndarray:
    """Flip-test heatmaps: the mean of the plain ones and the flipped-back ones, as mmpose's head does."""
    return (heatmaps + flip_back(heatmaps_of_flipped, flip_indices, shift_heatmap)) * np.float32(0.5)


def flip_inputs(batch: np.ndarray) -> np.ndarray:
    """Horizontally flipped copy of a normalised NCHW batch (mmpose flips the normalised input tensor)."""
    return np.ascontiguousarray(batch[..., ::-1])
