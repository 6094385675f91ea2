"""The core's regression decode and flip (bmpose.pose.regression) against mmpose's own RegressionLabel.decode and
flip_coordinates, and on BlazePose's layout (39 landmarks x 5 values, pixels, sigmoid visibility)."""
import numpy as np
import pytest

from bmpose.pose import pipeline, regression, skeleton
from bmpose.pose.errors import PoseError

W, H = 192, 256
MMPOSE = {"type": "RegressionLabel", "input_size": [W, H], "num_keypoints": 17, "values_per_keypoint": 2,
          "coordinates": "normalized"}
BLAZE = {"type": "RegressionLabel", "input_size": [256, 256], "num_keypoints": 33, "values_per_keypoint": 5,
         "coordinates": "pixels", "visibility_index": 3}


def test_normalized_decode_equals_mmpose():
    from mmpose.codecs import RegressionLabel

    coords = np.random.default_rng(0).uniform(size=(3, 17, 2)).astype(np.float32)
    ours, our_scores = regression.decode_regression(coords.reshape(3, -1), MMPOSE)
    ref, ref_scores = RegressionLabel(input_size=(W, H)).decode(coords)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_array_equal(our_scores, ref_scores)


def test_flip_equals_mmpose_flip_coordinates():
    import torch

    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()   # mmpose.models needs mmcv's compiled ops, which the shim stands in for
    from mmpose.models.utils.tta import flip_coordinates

    flipped = np.random.default_rng(1).uniform(size=(2, 17, 2)).astype(np.float32)
    for shift in (True, False):
        ref = flip_coordinates(torch.from_numpy(flipped.copy()), skeleton.FLIP_INDICES, shift, (W, H)).numpy()
        ours = regression.flip_back_regression(flipped.reshape(2, -1), MMPOSE, skeleton.FLIP_INDICES, shift)
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def _blaze(seed=2, b=2):
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(b, 39, 5)).astype(np.float32) * 4
    out[..., :2] = rng.uniform(0, 256, size=(b, 39, 2))
    return out


def test_blazepose_layout():
    """The first 33 of 39 landmarks, x/y in input pixels as they are, score = sigmoid(visibility)."""
    out = _blaze()
    out[0, 0, 3] = 800.0     # logits far out on both sides: no overflow, no warning
    out[0, 1, 3] = -800.0
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        kpts, scores = regression.decode_regression(out.reshape(2, -1), BLAZE)
    assert kpts.shape == (2, 33, 2) and scores.shape == (2, 33)
    np.testing.assert_array_equal(kpts, out[:, :33, :2])
    np.testing.assert_allclose(scores[1], 1 / (1 + np.exp(-out[1, :33, 3].astype(np.float64))), rtol=1e-6)
    assert scores[0, 0] == 1.0 and scores[0, 1] == 0.0
    assert pipeline.keypoint_count(out.reshape(2, -1), BLAZE) == 33


def test_flip_of_a_mirrored_crop_is_the_crop():
    """A crop and its mirror image, each decoded as the network would see it: the flip test gives the crop's
    keypoints back (pixels: x' = W - x, then one pixel left with shift_coords, as mmpose)."""
    out = _blaze()
    flip = list(range(33))
    for a, b in ((1, 4), (2, 5), (11, 12), (23, 24)):
        flip[a], flip[b] = b, a
    mirrored = out[:, :33].copy()[:, flip]
    mirrored[..., 0] = 256 - mirrored[..., 0] - 1
    merged = regression.merge_flip_regression(out.reshape(2, -1), mirrored.reshape(2, -1), BLAZE, flip, True)
    np.testing.assert_allclose(merged.reshape(2, 33, 5), out[:, :33], atol=1e-4)


def test_too_few_landmarks_is_one_line():
    with pytest.raises(PoseError, match=r"expected \[B, L x 5\] with L >= 33"):
        regression.decode_regression(np.zeros((1, 30 * 5), np.float32), BLAZE)
