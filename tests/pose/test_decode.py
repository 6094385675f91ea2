"""Our batched decode equals mmpose's codecs, person by person, on random and peaked heatmaps."""
import numpy as np
import pytest
import torch

from bmpose.errors import BmposeError
from bmpose.pose import decode

K, H, W = 17, 32, 24
INPUT, HEATMAP = (96, 128), (24, 32)
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def _heatmaps(seed, b=5):
    """Gaussian blobs at random places (some on the border, one all-negative map) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    cx, cy = rng.uniform(-1, W, (b, K)), rng.uniform(-1, H, (b, K))
    hm = np.exp(-((xx - cx[..., None, None]) ** 2 + (yy - cy[..., None, None]) ** 2) / 4.0)
    hm = hm * rng.uniform(0.1, 1.0, (b, K, 1, 1)) + rng.normal(0, 0.02, hm.shape)
    hm[0, 3] = -np.abs(hm[0, 3]) - 0.01   # no positive peak: mmpose returns -1 locations
    return hm.astype(np.float32)


def _mmpose_codec(cfg):
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.registry import KEYPOINT_CODECS

    return KEYPOINT_CODECS.build(dict(cfg))


@pytest.mark.parametrize("cfg", [
    dict(type="MSRAHeatmap", input_size=INPUT, heatmap_size=HEATMAP, sigma=2),
    dict(type="MSRAHeatmap", input_size=INPUT, heatmap_size=HEATMAP, sigma=2, unbiased=True,
         blur_kernel_size=11),
    dict(type="UDPHeatmap", input_size=INPUT, heatmap_size=HEATMAP, sigma=2),
], ids=["msra", "dark", "udp"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_equals_mmpose(cfg, seed):
    hm = _heatmaps(seed)
    ours, our_scores = decode.decode(hm, cfg)
    codec = _mmpose_codec(cfg)
    for b in range(len(hm)):
        ref, ref_scores = codec.decode(hm[b].copy())
        np.testing.assert_allclose(ours[b], ref[0], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(our_scores[b], ref_scores[0])
    if cfg["type"] == "MSRAHeatmap" and not cfg.get("unbiased"):
        # the quarter-pixel rule is discrete: it must be exact, not merely close
        assert all(np.array_equal(ours[b], codec.decode(hm[b].copy())[0][0]) for b in range(len(hm)))


def test_flip_back_equals_mmpose_flip_heatmaps():
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.models.utils.tta import flip_heatmaps

    hm, hm_f = _heatmaps(3), _heatmaps(4)
    for shift in (True, False):
        ref = flip_heatmaps(torch.from_numpy(hm_f.copy()), flip_indices=FLIP, shift_heatmap=shift).numpy()
        np.testing.assert_array_equal(decode.flip_back(hm_f, FLIP, shift), ref)
        merged = (torch.from_numpy(hm) + torch.from_numpy(ref)) * 0.5
        np.testing.assert_array_equal(decode.merge_flip(hm, hm_f, FLIP, shift), merged.numpy())


def test_flip_inputs_mirrors_width():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(decode.flip_inputs(x), torch.from_numpy(x).flip(-1).numpy())


def test_wrong_heatmap_size():
    with pytest.raises(BmposeError, match="codec expects"):
        decode.decode(np.zeros((1, K, 16, 16), np.float32), dict(type="MSRAHeatmap", input_size=INPUT,
                                                                 heatmap_size=HEATMAP))


def test_unknown_codec():
    with pytest.raises(BmposeError, match="not supported"):
        decode.decode(np.zeros((1, K, H, W), np.float32), dict(type="SimCCLabel", input_size=INPUT,
                                                               heatmap_size=HEATMAP))


def test_tied_peaks_take_the_first_in_row_major_order():
    """Quantised (INT8) heatmaps have tied maxima; the rule must not depend on the machine."""
    h = np.zeros((1, 2, 4, 6), np.float32)
    h[0, 0, 3, 0] = h[0, 0, 1, 5] = 0.5          # row 1 comes first
    h[0, 1, 2, 4] = h[0, 1, 2, 1] = 0.25         # same row: column 1 first
    locs, vals = decode.heatmap_maximum(h)
    assert locs[0].tolist() == [[5.0, 1.0], [1.0, 2.0]] and vals[0].tolist() == [0.5, 0.25]
