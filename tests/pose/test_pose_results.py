"""The core's CocoMetric results (bmpose.pose.results, numpy only, also run on the device) against mmpose's
own oks_nms, on random crowds with near-duplicates (where NMS has work to do)."""
import numpy as np
import pytest

from bmpose.pose import results


def _crowd(seed: int, n: int = 12, k: int = 17):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 400, (n // 2, k, 2))
    kpts = np.concatenate([base, base + rng.normal(0, rng.choice([0.5, 5, 40]), base.shape)])   # near-duplicates
    scores = rng.uniform(0, 1, (n, k))
    areas = rng.uniform(500, 40000, n)
    return [{"image_id": int(rng.integers(0, 3)), "keypoints": kpts[i], "keypoint_scores": scores[i],
             "bbox_score": float(rng.uniform(0.3, 1)), "area": float(areas[i]), "bbox": [1.0, 2.0, 3.0, 4.0]}
            for i in range(n)]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sigmas", [None, "coco"])
def test_oks_nms_keeps_what_mmpose_keeps(seed, sigmas):
    from bmpose.weights.mmpose_shim import install

    install()
    from mmpose.evaluation.functional import oks_nms

    sig = None if sigmas is None else results.COCO_SIGMAS * 1.1
    insts = [{"keypoints": np.concatenate([i["keypoints"], i["keypoint_scores"][:, None]], 1),
              "score": i["bbox_score"], "area": i["area"]} for i in _crowd(seed)]
    for thr in (0.3, 0.9):
        assert results.oks_nms(insts, thr, sig) == [int(k) for k in oks_nms(insts, thr, sigmas=sig)]


def test_results_rescore_group_by_image_and_drop_overlaps():
    crowd = _crowd(3)
    out = results.to_coco_results(crowd, None)
    kept = results.to_coco_results(crowd, None, nms_mode="none")
    assert len(kept) == len(crowd) and 0 < len(out) < len(crowd)
    first = kept[0]
    inst = crowd[0]
    s = inst["keypoint_scores"]
    assert first["score"] == pytest.approx(inst["bbox_score"] * s[s > 0.2].mean())
    assert len(first["keypoints"]) == 17 * 3 and first["bbox"] == [1.0, 2.0, 3.0, 4.0]
    ids = [r["image_id"] for r in out]
    assert ids == sorted(ids, key=ids.index)   # grouped per image, in order of first appearance


def test_unsupported_options_are_one_line_errors():
    with pytest.raises(results.PoseError, match="nms_mode 'soft_oks_nms' is not supported"):
        results.to_coco_results([], None, nms_mode="soft_oks_nms")
    with pytest.raises(results.PoseError, match="score_mode 'x'"):
        results.to_coco_results(_crowd(0)[:1], None, score_mode="x")
