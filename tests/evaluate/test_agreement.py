"""Agreement with float (bmpose.evaluate.agreement): COCO's OKS of a build's keypoints against the float model's
on the same crops, with no labels; checked against the formula on known shifts."""
import numpy as np

from bmpose.evaluate import agreement
from bmpose.pose.results import COCO_SIGMAS


def test_same_keypoints_agree_fully_and_known_shifts_score_the_formula():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 200, size=(3, 17, 2))
    areas = np.array([1000.0, 4000.0, 9000.0])
    np.testing.assert_allclose(agreement.oks_vs_float(ref, ref, areas, COCO_SIGMAS), 1.0)
    shifted = ref + np.array([3.0, 4.0])   # 5 px for every keypoint
    k2 = (2 * COCO_SIGMAS) ** 2
    want = [np.exp(-25.0 / (k2 * a * 2)).mean() for a in areas]
    got = agreement.oks_vs_float(shifted, ref, areas, COCO_SIGMAS)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] < got[1] < got[2] < 1   # the same shift matters less on a larger person


def test_summary_is_the_mean_and_the_share_above_agree():
    s = agreement.summary(np.array([1.0, 0.95, 0.89, 0.5]))
    assert s == {"oks_vs_float": (1.0 + 0.95 + 0.89 + 0.5) / 4, "agree90": 0.5}
    assert agreement.summary(np.array([])) == {"oks_vs_float": None, "agree90": None}
