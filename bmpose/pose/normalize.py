"""uint8 RGB crops -> the network's float32 NCHW tensor, as mmpose's PoseDataPreprocessor computes it:
(x - mean) / std per channel, mean/std in the network's channel order."""
from __future__ import annotations

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
    if not network_rgb:
        x = x[..., ::-1]
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x.transpose(0, 3, 1, 2).astype(np.float32) - mean) / std)
