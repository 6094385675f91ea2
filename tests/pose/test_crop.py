"""The shared preprocessing core against mmpose 1.3.2's own top-down pipeline, on real COCO images."""
from types import SimpleNamespace

import numpy as np
import pytest

from bmpose import config
from bmpose.errors import BmposeError
from bmpose.pose import crop_people, crop_person, image_to_input, input_to_image, read_image, normalize, skeleton
from bmpose.pose.crop import inputs_to_image


@pytest.fixture(scope="module")
def mm():
    from bmpose.weights.mmpose_shim import import_mmpose

    import_mmpose()
    from mmpose.utils import register_all_modules

    register_all_modules()
    import mmpose
    return mmpose


@pytest.fixture(scope="module")
def cfg():
    return config.load("hrnet_small_128x96")


def _dataset(mm, cfg, ann, img_dir, **kw):
    """mmpose's CocoDataset with the config's test pipeline steps, minus PackPoseInputs (kept separately)."""
    from mmpose.datasets import CocoDataset

    return CocoDataset(ann_file=str(ann), data_root="", data_prefix=dict(img=f"{img_dir}/"), test_mode=True,
                       pipeline=[dict(type="LoadImage"), dict(type="GetBBoxCenterScale"),
                                 dict(type="TopdownAffine", input_size=cfg.input_size)], **kw)


def _preprocessor(cfg):
    from mmengine.config import Config
    from mmpose.registry import MODELS

    return MODELS.build(Config.fromfile(str(cfg.mmpose_config)).model.data_preprocessor)


def _mm_tensor(pre, results):
    from mmcv.transforms import Compose

    packed = Compose([dict(type="PackPoseInputs")])(dict(results))
    return pre(dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]]))["inputs"].numpy()


def _check_parity(ds, pre, cfg, xyxy):
    assert len(ds) > 10
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        ref = ds[i]
        box = info["bbox"][0] if xyxy else info["bbox"][0].copy()
        if not xyxy:  # detections: give crop_person the xywh box from the results file, as inference will
            box[2:] -= box[:2]
        ours = crop_person(read_image(info["img_path"]), box, cfg.input_size, cfg.padding, xyxy=xyxy)
        assert ours.image.dtype == np.uint8 and ours.image.shape == (cfg.input_hw + (3,))
        # mmpose keeps BGR until its data preprocessor swaps channels; ours is RGB already
        assert np.array_equal(ours.image, ref["img"][..., ::-1]), f"crop differs for {info['img_path']}"
        assert np.array_equal(ours.center, ref["input_center"]) and np.array_equal(ours.scale, ref["input_scale"])
        want = _mm_tensor(pre, ref)
        got = normalize(ours.image, cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)
        assert got.dtype == np.float32 and got.shape == want.shape == (1, 3) + cfg.input_hw
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_ground_truth_boxes_match_mmpose(mm, cfg, coco_mini):
    ann, img = coco_mini
    _check_parity(_dataset(mm, cfg, ann, img), _preprocessor(cfg), cfg, xyxy=True)


def test_detection_boxes_match_mmpose(mm, cfg, mmpose_coco):
    ds = _dataset(mm, cfg, mmpose_coco / "test_coco.json", mmpose_coco,
                  bbox_file=str(mmpose_coco / "test_coco_det_AP_H_56.json"))
    _check_parity(ds, _preprocessor(cfg), cfg, xyxy=False)


def test_batched_crops_match_mmpose(mm, cfg, mmpose_coco):
    """crop_people does the box arithmetic for all boxes of an image at once (inference's call): every crop,
    center and scale still equals mmpose's for that box alone, and so does the batched inverse mapping."""
    ds = _dataset(mm, cfg, mmpose_coco / "test_coco.json", mmpose_coco,
                  bbox_file=str(mmpose_coco / "test_coco_det_AP_H_56.json"))
    by_image = {}
    for i in range(len(ds)):
        by_image.setdefault(ds.get_data_info(i)["img_path"], []).append(i)
    assert max(len(v) for v in by_image.values()) >= 5
    for path, idx in by_image.items():
        refs = [ds[i] for i in idx]
        boxes = [ds.get_data_info(i)["bbox"][0].copy() for i in idx]
        for b in boxes:
            b[2:] -= b[:2]
        ours = crop_people(read_image(path), boxes, cfg.input_size, cfg.padding)
        for c, ref in zip(ours, refs):
            assert np.array_equal(c.image, ref["img"][..., ::-1])
            assert np.array_equal(c.center, ref["input_center"]) and np.array_equal(c.scale, ref["input_scale"])
        pts = np.random.default_rng(0).uniform(0, 96, (len(ours), 17, 2)).astype(np.float32)
        one_by_one = np.stack([input_to_image(p, c.center, c.scale, cfg.input_size) for p, c in zip(pts, ours)])
        assert np.array_equal(inputs_to_image(pts, [c.center for c in ours], [c.scale for c in ours],
                                              cfg.input_size), one_by_one)


def test_w32_input_size_matches_mmpose(mm, coco_mini):
    cfg = config.load("hrnet_w32_256x192")
    ann, img = coco_mini
    ds = _dataset(mm, cfg, ann, img)
    for i in range(0, len(ds), 5):
        ours = crop_person(read_image(ds.get_data_info(i)["img_path"]), ds.get_data_info(i)["bbox"][0],
                           cfg.input_size, xyxy=True)
        assert np.array_equal(ours.image, ds[i]["img"][..., ::-1])


def test_keypoint_mappings_match_mmpose(mm, cfg, coco_mini):
    from mmengine.structures import InstanceData
    from mmpose.models.pose_estimators import TopdownPoseEstimator
    from mmpose.structures import PoseDataSample

    ann, img = coco_mini
    ds = _dataset(mm, cfg, ann, img)
    for i in range(0, len(ds), 3):
        ref = ds[i]
        kpts = ref["keypoints"][0]
        # forward: TopdownAffine's transformed_keypoints
        np.testing.assert_allclose(image_to_input(kpts, ref["input_center"], ref["input_scale"], cfg.input_size),
                                   ref["transformed_keypoints"][0], atol=1e-3)
        # inverse: what TopdownPoseEstimator does with decoded keypoints (input space -> image)
        pred = InstanceData(keypoints=ref["transformed_keypoints"].astype(np.float32).copy(),
                            keypoint_scores=np.ones((1, len(kpts)), np.float32))
        sample = PoseDataSample(metainfo=dict(input_center=ref["input_center"], input_scale=ref["input_scale"],
                                              input_size=ref["input_size"]),
                                gt_instances=InstanceData(bboxes=ref["bbox"], bbox_scores=ref["bbox_score"]))
        TopdownPoseEstimator.add_pred_to_datasample(SimpleNamespace(test_cfg={}), [pred], [], [sample])
        ours = input_to_image(ref["transformed_keypoints"][0], ref["input_center"], ref["input_scale"],
                              cfg.input_size)
        np.testing.assert_array_equal(ours, sample.pred_instances.keypoints[0])
        labelled = ref["keypoints_visible"][0] > 0
        np.testing.assert_allclose(ours[labelled], kpts[labelled], atol=1e-2)  # and back where we started


def test_skeleton_equals_mmpose_coco_metainfo(mm):
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    meta = parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))
    assert tuple(meta["keypoint_id2name"][i] for i in range(meta["num_keypoints"])) == skeleton.KEYPOINT_NAMES
    assert list(skeleton.FLIP_INDICES) == meta["flip_indices"]
    assert [tuple(x) for x in skeleton.SKELETON_LINKS] == [tuple(x) for x in meta["skeleton_links"]]
    np.testing.assert_array_equal(skeleton.SIGMAS, meta["sigmas"])
    np.testing.assert_array_equal(skeleton.KEYPOINT_COLORS_RGB, meta["keypoint_colors"])
    np.testing.assert_array_equal(skeleton.LINK_COLORS_RGB, meta["skeleton_link_colors"])


def test_normalize_layout_and_bgr_network():
    crop = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3)
    x = normalize([crop, crop], (1, 2, 3), (2, 4, 8))
    assert x.shape == (2, 3, 4, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[1, 2], (crop[..., 2].astype(np.float32) - 3) / 8)
    x_bgr = normalize(crop, (1, 2, 3), (2, 4, 8), network_rgb=False)  # channel 0 is then blue
    np.testing.assert_array_equal(x_bgr[0, 0], (crop[..., 2].astype(np.float32) - 1) / 2)
    with pytest.raises(BmposeError):
        normalize(np.zeros((4, 4), np.uint8), (0, 0, 0), (1, 1, 1))


def test_read_image_errors(tmp_path, coco_mini):
    _, img_dir = coco_mini
    good = sorted(img_dir.glob("*.jpg"))[0]
    assert read_image(good).shape[2] == 3
    with pytest.raises(BmposeError, match="not found"):
        read_image(tmp_path / "missing.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BmposeError, match=r"cut\.jpg: truncated JPEG"):
        read_image(cut)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(BmposeError, match=r"junk\.png: not a decodable image"):
        read_image(junk)
