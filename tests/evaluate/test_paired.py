"""The paired INT8 statistic's pieces (bmpose.evaluate.paired): OKS as COCO computes it, the jittered box set,
the paired bootstrap."""
from __future__ import annotations

import contextlib
import io

import numpy as np

from bmpose.evaluate import paired
from bmpose.evaluate import sets


def test_oks_equals_xtcocotools():
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gt = np.c_[rng.uniform(10, 90, (17, 2)), rng.integers(0, 3, 17)].astype(np.float64)
    pred = gt[:, :2] + rng.normal(0, 3, (17, 2))
    sigmas = np.full(17, 0.05) + np.arange(17) * 0.003
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "person"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 2500.0, "iscrowd": 0,
                                     "bbox": [10, 10, 80, 80], "num_keypoints": int((gt[:, 2] > 0).sum()),
                                     "keypoints": gt.reshape(-1).tolist()}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dt = coco.loadRes([{"image_id": 1, "category_id": 1, "score": 1.0,
                            "keypoints": np.c_[pred, np.ones(17)].reshape(-1).tolist()}])
        ev = COCOeval(coco, dt, "keypoints", sigmas, True)
        ev.params.useSegm = None
        ev.evaluate()
    assert paired.oks(pred, gt, 2500.0, sigmas) == __import__("pytest").approx(float(ev.ious[(1, 1)][0, 0]), abs=1e-9)


def test_jittered_boxes_are_deterministic_and_start_with_the_annotated_box():
    ann, img = sets.eval_set()
    a, owner, truth = paired.jittered_boxes(ann, img)
    b, _, _ = paired.jittered_boxes(ann, img)
    assert len(truth) == 51 and len(a) == 51 * paired.JITTERS
    assert [x.bbox for x in a] == [y.bbox for y in b]
    assert np.bincount(owner).tolist() == [paired.JITTERS] * 51
    annotated = sets.eval_boxes(ann, img)
    assert all(np.array_equal(a[i * paired.JITTERS].xyxy, p.xyxy) for i, p in enumerate(annotated))
    assert all(a[i * paired.JITTERS + 1].bbox != p.bbox for i, p in enumerate(annotated))


def test_paired_drop_and_interval():
    ref = np.linspace(0.5, 1.0, 40)
    same = paired.paired_drop(ref, ref)
    assert same["drop"] == 0 and same["ci95"] == [0.0, 0.0]
    worse = paired.paired_drop(ref, ref - 0.01 + np.random.default_rng(1).normal(0, 0.002, 40))
    assert abs(worse["drop"] - 0.01) < 0.002 and worse["ci95"][0] < worse["drop"] < worse["ci95"][1]
