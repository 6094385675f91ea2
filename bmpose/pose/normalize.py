"""uint8 RGB crops -> the network's float32 NCHW tensor, as mmpose's PoseDataPreprocessor computes it:
(x - mean) / std per channel, mean/std in the network's channel order."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import PoseError


def normalize(crops_uint8_rgb, mean, std, *, network_rgb: bool = True) -> np.ndarray:
    """One HxWx3 crop or a stack NxHxWx3 (or a list) -> float32 Nx3xHxW.

    Crops are RGB (see crop.crop_person). network_rgb=False is for a config without bgr_to_rgb: its network
    takes BGR, so channels are swapped back before normalising.
    """
    x = np.asarray(crops_uint8_rgb)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise PoseError(f"normalize: expected HxWx3 or NxHxWx3 crops, got shape {x.shape}")
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    order = (0, 1, 2) if network_rgb else (2, 1, 0)
    out = np.empty((x.shape[0], 3, x.shape[1], x.shape[2]), dtype=np.float32)
    for n, crop in enumerate(x):
        # (x - mean) / std in float32, plane by plane: the same values as the broadcast over a transposed view,
        # ten times faster (measured 0.09 vs 0.9 ms per 256x192 crop), which matters on the box's CPU
        planes = cv2.split(np.ascontiguousarray(crop))
        for ch, src in enumerate(order):
            np.subtract(planes[src], mean[ch], out=out[n, ch], dtype=np.float32)
            np.divide(out[n, ch], std[ch], out=out[n, ch])
    return out
