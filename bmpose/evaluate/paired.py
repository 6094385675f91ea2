"""The INT8 cost as a statistic fit to gate: paired per-person OKS on a larger, deterministic set of crops.

COCO AP over 51 persons moves in steps of a few persons' OKS thresholds: too coarse to gate a 0.005 drop. Here
every ground-truth person gets JITTERS seeded boxes (the annotated one, then shifted by up to SHIFT of its size
and scaled by SCALE), each crop runs through every backend (the same crops, the model's flip test), and each
prediction is scored by its OKS against the person's ground truth (COCO's formula, the dataset's sigmas, the
annotation's area). A person's score is the mean over its crops; the INT8 cost is the mean over persons of
(reference OKS - test OKS), with a paired bootstrap confidence interval over persons.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError

JITTERS = 8          # crops per person: the annotated box + 7 jittered ones
SHIFT = 0.05         # centre shift, fraction of the box's width / height
SCALE = (0.9, 1.1)   # box size factor range
SEED = 0
BOOTSTRAP = 4000


def jittered_boxes(ann: Path, img: Path, jitters: int = JITTERS, seed: int = SEED):
    """(boxes, person index per box, ground truth per person: (keypoints (K, 3), area)). The persons are those
    mmpose's top-down COCO dataset keeps (not crowd, >= 1 labelled keypoint), in annotation order."""
    from bmpose.cocodata import load_coco_keypoints
    from bmpose.runtime.boxes import PersonBox

    coco = load_coco_keypoints(ann, img)
    areas = {a["id"]: float(a.get("area") or 0.0) for a in json.loads(Path(ann).read_text())["annotations"]}
    rng = np.random.default_rng(seed)
    boxes, owner, truth = [], [], []
    for p in (p for p in coco.persons() if p.num_keypoints > 0 and not p.iscrowd):
        x, y, w, h = (float(v) for v in p.bbox)
        area = areas.get(p.ann_id) or w * h
        truth.append((np.asarray(p.keypoints, np.float64), area))
        for j in range(jitters):
            if j == 0:
                xyxy = p.bbox_xyxy
            else:
                dx, dy = rng.uniform(-SHIFT, SHIFT, 2) * (w, h)
                s = rng.uniform(*SCALE)
                cx, cy, nw, nh = x + w / 2 + dx, y + h / 2 + dy, w * s, h * s
                xyxy = np.array([np.clip(cx - nw / 2, 0, p.width - 1), np.clip(cy - nh / 2, 0, p.height - 1),
                                 np.clip(cx + nw / 2, 0, p.width - 1), np.clip(cy + nh / 2, 0, p.height - 1)],
                                dtype=np.float32)
            bw, bh = float(xyxy[2] - xyxy[0]), float(xyxy[3] - xyxy[1])
            boxes.append(PersonBox(p.image_id, Path(p.file), (float(xyxy[0]), float(xyxy[1]), bw, bh), 1.0, xyxy,
                                   f"{ann}: annotation {p.ann_id}, jitter {j}"))
            owner.append(len(truth) - 1)
    if not truth:
        raise BmposeError(f"{ann}: no persons with keypoints to evaluate")
    return boxes, np.asarray(owner), truth


def oks(pred: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO's object keypoint similarity of one prediction (K, 2) against ground truth (K, 3), over the
    labelled keypoints (v > 0)."""
    labelled = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    k2 = (2 * np.asarray(sigmas, np.float64)) ** 2
    e = d2 / (k2 * (area + np.spacing(1)) * 2)
    return float(np.exp(-e[labelled]).mean()) if labelled.any() else 0.0


def person_oks(boxes, predictions, owner: np.ndarray, truth, sigmas) -> np.ndarray:
    """Mean OKS per person over its crops. `predict` returns predictions grouped by image, not in box order:
    each is matched to its box by identity."""
    if len(predictions) != len(owner):
        raise BmposeError(f"{len(predictions)} predictions for {len(owner)} crops (an image was skipped)")
    index = {id(b): i for i, b in enumerate(boxes)}
    return oks_per_person([index[id(p.box)] for p in predictions], [p.keypoints for p in predictions], owner,
                          truth, sigmas)


def oks_per_person(order, keypoints, owner: np.ndarray, truth, sigmas) -> np.ndarray:
    """Mean OKS per person over its crops, from each crop's keypoints (COCO view) and its index in the boxes."""
    if len(order) != len(owner):
        raise BmposeError(f"{len(order)} predictions for {len(owner)} crops (an image was skipped)")
    scores = np.zeros(len(owner))
    for i, k in zip(order, keypoints):
        scores[i] = oks(np.asarray(k), *truth[owner[i]], sigmas)
    return np.bincount(owner, scores, minlength=len(truth)) / np.bincount(owner, minlength=len(truth))


def paired_drop(reference: np.ndarray, test: np.ndarray, boot: int = BOOTSTRAP, seed: int = SEED) -> dict:
    """Mean over persons of reference - test, with a 95% paired bootstrap interval (persons resampled)."""
    diff = np.asarray(reference, np.float64) - np.asarray(test, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(diff), (boot, len(diff)))
    means = diff[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"drop": float(diff.mean()), "ci95": [float(lo), float(hi)], "persons": int(len(diff)),
            "reference_oks": float(np.mean(reference)), "test_oks": float(np.mean(test))}


def score_backend(cfg, backend, boxes, owner, truth, sigmas, flip: bool) -> np.ndarray:
    """Per-person mean OKS of one backend on the jittered set."""
    import dataclasses

    from bmpose.runtime.predict import predict
    from bmpose.runtime.results import coco_view

    run = predict(cfg, backend, boxes, flip, progress=False, allow_slow=True)
    preds = [dataclasses.replace(p, keypoints=coco_view(cfg, p.keypoints)) for p in run.predictions]
    return person_oks(boxes, preds, owner, truth, sigmas)


def cached_person_oks(cache: Path, artifact: Path, crops: int, score) -> np.ndarray:
    """`score()` (per-person OKS of an artifact), cached in `cache` keyed on the artifact's content hash."""
    values = read_cached(cache, artifact, crops)
    if values is None:
        values = score()
        write_cached(cache, artifact, crops, values)
    return values


def _cache_key(artifact: Path, crops: int) -> dict:
    from bmpose.manifest import result_key

    return result_key({"artifact": artifact}, {"crops": crops, "jitters": JITTERS, "seed": SEED, "version": 2})


def read_cached(cache: Path, artifact: Path, crops: int) -> np.ndarray | None:
    from bmpose.manifest import cached_result

    doc = cached_result(cache, _cache_key(artifact, crops))
    return None if doc is None else np.asarray(doc["person_oks"])


def write_cached(cache: Path, artifact: Path, crops: int, values) -> None:
    from bmpose.manifest import write_result

    write_result(cache, _cache_key(artifact, crops), {"person_oks": [float(v) for v in values]})


def versus_best(per_person: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each entry against the one with the highest mean OKS, paired over persons: the difference with its 95%
    interval, and whether the interval holds 0 (within the noise)."""
    best = max(per_person, key=lambda k: float(np.mean(per_person[k])))
    out = {}
    for k, v in per_person.items():
        d = paired_drop(per_person[best], v)
        out[k] = {"vs": best, "diff": d["drop"], "ci95": d["ci95"], "within_noise": d["ci95"][0] <= 0.0}
    return out

