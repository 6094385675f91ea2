"""Quantization error as agreement with the float model, no labels needed: the OKS of a build's keypoints against
ONNX FP32's keypoints on the same crops (COCO's formula, every keypoint counted, the person box's area as the
object area), per person. Its mean and the share of persons above OKS 0.9 say how much of the float model a
build keeps, on any frames, labelled or not (measure on frames never used for calibration)."""
from __future__ import annotations

import numpy as np

AGREE = 0.9   # a person whose keypoints agree with float this well is "the same pose" at a glance


def oks_vs_float(keypoints: np.ndarray, reference: np.ndarray, areas: np.ndarray, sigmas) -> np.ndarray:
    """(N, K, 2+) keypoints against the float model's (N, K, 2+) on the same crops -> OKS per person (N,): the
    paired statistic's OKS (bmpose.evaluate.paired.oks), every reference keypoint counted as labelled."""
    from bmpose.evaluate.paired import oks

    ref = np.asarray(reference, np.float64)[..., :2]
    labelled = np.ones(ref.shape[:-1] + (1,))
    return np.array([oks(np.asarray(k, np.float64)[:, :2], np.concatenate([r, v], -1), float(a), sigmas)
                     for k, r, v, a in zip(keypoints, ref, labelled, areas)])


def summary(oks: np.ndarray) -> dict:
    """{"oks_vs_float": mean OKS, "agree90": share of persons >= AGREE}."""
    oks = np.asarray(oks, np.float64)
    return {"oks_vs_float": float(oks.mean()) if oks.size else None,
            "agree90": float((oks >= AGREE).mean()) if oks.size else None}
