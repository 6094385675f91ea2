"""Quantization error as agreement with the float model, no labels needed: the OKS of a build's keypoints against
ONNX FP32's keypoints on the same crops (COCO's formula, every keypoint counted, the person box's area as the
object area), per person. Its mean and the share of persons above OKS 0.9 say how much of the float model a
build keeps, on any frames, labelled or not (measure on frames never used for calibration)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bmpose import manifest

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


class PoseFidelity:
    """Mean OKS of a build's keypoints against ONNX FP32's on the same crops (COCO view, the person box's area),
    with the labelled AP beside it."""

    def __init__(self, cfg, onnx: Path, ann: Path, img: Path):
        from bmpose.evaluate.sets import eval_boxes
        from bmpose.runtime.results import dataset_sigmas

        self.cfg, self.ann = cfg, ann
        self.boxes = eval_boxes(ann, img)
        self.sigmas = dataset_sigmas(cfg)
        self.flip = bool(cfg.flip_test)
        self.areas = np.array([b.bbox[2] * b.bbox[3] for b in self.boxes], np.float64)
        self.onnx = onnx

    @functools.cached_property
    def reference(self) -> np.ndarray:
        """ONNX FP32's keypoints, run on the first measurement (a reused choice measures nothing)."""
        return self.keypoints(self.onnx, None)[0]

    def keypoints(self, artifact: Path, chip: str | None) -> tuple[np.ndarray, float]:
        from bmpose.evaluate import coco as evaluate
        from bmpose.runtime import predict as infer
        from bmpose.runtime.backends import open_backend
        from bmpose.runtime.results import coco_view, metric_options

        backend = open_backend(artifact, chip, kind="onnx" if chip is None else "mlir")
        run = infer.predict(self.cfg, backend, self.boxes, self.flip, progress=False, allow_slow=True)
        results = infer.coco_results(self.cfg, run.predictions, self.sigmas, metric_options(self.cfg))
        ap = evaluate.coco_keypoint_ap(self.ann, results, sigmas=self.sigmas)["AP"]
        return np.stack([coco_view(self.cfg, p.keypoints) for p in run.predictions]), ap

    def __call__(self, build_dir: Path) -> tuple[float, dict]:
        m = manifest.read_manifest(build_dir)
        kp, ap = self.keypoints(build_dir / m["tpu_mlir"], m["options"]["chip"])
        s = summary(oks_vs_float(kp, self.reference, self.areas, self.sigmas))
        return s["oks_vs_float"], {**s, "AP": ap}
