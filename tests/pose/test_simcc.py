"""The core's SimCC decode and flip against mmpose's own (SimCCLabel.decode, RTMCCHead's flip_vectors) on fixed
and random arrays, with and without the flip test."""
import numpy as np
import pytest

from bmpose.pose import simcc, skeleton
from bmpose.pose.errors import PoseError

RATIO = 2.0
K, W, H = 17, 192, 256   # RTMPose 256x192: simcc_x 384 long, simcc_y 512


def _vectors(seed, b=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, K, int(W * RATIO))).astype(np.float32)
    y = rng.normal(size=(b, K, int(H * RATIO))).astype(np.float32)
    x[0, 3] = -np.abs(x[0, 3])   # a keypoint with no positive response: location -1 in both
    return x, y


def _mmpose_codec():
    from mmpose.codecs import SimCCLabel

    return SimCCLabel(input_size=(W, H), sigma=(4.9, 5.66), simcc_split_ratio=RATIO, normalize=False,
                      use_dark=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_equals_mmpose(seed):
    x, y = _vectors(seed)
    ours, our_scores = simcc.decode_simcc(x, y, RATIO)
    ref, ref_scores = _mmpose_codec().decode(x, y)
    np.testing.assert_allclose(ours, ref, atol=0.01)   # the bound; equal in practice
    np.testing.assert_array_equal(our_scores, ref_scores)
    assert (ours[0, 3] == -1 / RATIO).all()


def test_fixed_arrays():
    """A known peak per axis: x at 101 -> 50.5 px, y at 300 -> 150 px, score the smaller maximum."""
    x = np.zeros((1, K, int(W * RATIO)), np.float32)
    y = np.zeros((1, K, int(H * RATIO)), np.float32)
    x[0, :, 101], y[0, :, 300] = 0.9, 0.6
    kpts, scores = simcc.decode_simcc(x, y, RATIO)
    assert kpts[0, 0].tolist() == [50.5, 150.0] and scores[0, 0] == pytest.approx(0.6)


def test_flip_equals_mmpose_flip_vectors():
    import torch
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()   # mmpose.models needs mmcv's compiled ops, which the shim stands in for
    from mmpose.models.utils.tta import flip_vectors

    x, y = _vectors(2)
    fx, fy = _vectors(3)
    flip = skeleton.FLIP_INDICES
    rx, ry = flip_vectors(torch.from_numpy(fx), torch.from_numpy(fy), flip_indices=list(flip))
    mx, my = simcc.merge_flip_simcc(x, y, fx, fy, flip)
    np.testing.assert_allclose(mx, (x + rx.numpy()) * 0.5, atol=0)
    np.testing.assert_allclose(my, (y + ry.numpy()) * 0.5, atol=0)
    ours = simcc.decode_simcc(mx, my, RATIO)
    ref = _mmpose_codec().decode((x + rx.numpy()) * 0.5, (y + ry.numpy()) * 0.5)
    np.testing.assert_allclose(ours[0], ref[0], atol=0.01)


def test_bad_shapes_one_line():
    with pytest.raises(PoseError, match=r"SimCC decode: expected simcc_x \(B, K, Wx\)"):
        simcc.decode_simcc(np.zeros((1, 17, 8)), np.zeros((1, 16, 8)), 2.0)
