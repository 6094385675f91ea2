"""bmpose infer on the small model: parity with mmpose's inference_topdown, batching, outputs, bad input."""
import json
import shutil

import numpy as np
import pytest

from bmpose import config
from bmpose.cli import infer as infer_cli
from bmpose.runtime import boxes
from bmpose.runtime import predict as infer
from bmpose.runtime.backends import open_backend
from bmpose.errors import BmposeError


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The small model in a root of this module's own: its ONNX below is exported from the random-init fixture
    weights, which must not replace the trained export that `bmpose infer` makes in the default root."""
    return config.load("hrnet_small_128x96", artifacts=tmp_path_factory.mktemp("infer_artifacts"))


@pytest.fixture(scope="module")
def onnx_files(cfg):
    from bmpose.convert.export import ensure_onnx

    return ensure_onnx(cfg, "fixture", batches=(1, 4), verbose=False)


@pytest.fixture(scope="module")
def gt(cfg, coco_mini):
    return boxes.gt_boxes(*coco_mini)


def test_parity_with_mmpose_inference_topdown(cfg, onnx_files, gt):
    """Same checkpoint, same boxes, the config's flip test: keypoints within 0.01 px of mmpose's own API."""
    from bmpose.weights.checkpoint import build_model
    from mmpose.apis import inference_topdown

    model = build_model(cfg, "fixture")
    boxes = gt[:12]
    ours = infer.predict(cfg, open_backend(onnx_files[1]), boxes, flip=cfg.flip_test, progress=False)
    assert len(ours.predictions) == len(boxes)
    for p in ours.predictions:
        ref = inference_topdown(model, str(p.box.file), bboxes=p.box.xyxy[None], bbox_format="xyxy")[0]
        np.testing.assert_allclose(p.keypoints, ref.pred_instances.keypoints[0], rtol=0, atol=0.01)
        np.testing.assert_allclose(p.scores, ref.pred_instances.keypoint_scores[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("flip", [False, True])
def test_batch4_equals_batch1(cfg, onnx_files, gt, flip):
    """7 persons at batch 4 (one padded batch; 14 crops with flip): the padding is dropped, results equal."""
    boxes = gt[:7]
    one = infer.predict(cfg, open_backend(onnx_files[1]), boxes, flip=flip, progress=False).predictions
    four = infer.predict(cfg, open_backend(onnx_files[4]), boxes, flip=flip, progress=False).predictions
    assert len(one) == len(four) == 7
    for a, b in zip(one, four):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_cli_default_writes_pictures_and_results(tmp_path, coco_mini):
    out = tmp_path / "vis"
    assert infer_cli.main(["--out", str(out), "--batch", "4"]) == 0
    pictures = sorted(out.glob("*.jpg"))
    assert len(pictures) == len(list(coco_mini[1].glob("*.jpg")))
    results = json.loads((out / "results.json").read_text())
    assert results and {"image_id", "category_id", "keypoints", "score"} <= set(results[0])
    assert len(results[0]["keypoints"]) == 51
    assert json.loads((out / "manifest.json").read_text())["checks"]["persons"] > 0
    from bmpose.evaluate import coco as evaluate  # the results file is valid input for the scorer

    stats = evaluate.coco_keypoint_ap(coco_mini[0], out / "results.json")
    assert 0.0 <= stats["AP"] <= 1.0


def test_folder_with_bad_image_is_skipped_and_reported(tmp_path, coco_mini, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted(coco_mini[1].glob("*.jpg"))[:2]:
        shutil.copy(f, folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "vis"
    assert infer_cli.main(["--images", str(folder), "--out", str(out)]) == 0
    assert len(list(out.glob("*.jpg"))) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "1 image(s) skipped" in err


def test_dets_for_unknown_image(tmp_path, cfg, coco_mini):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 999999, "category_id": 1, "bbox": [1, 1, 50, 80], "score": 0.9}]))
    with pytest.raises(BmposeError, match="999999 is not in"):
        boxes.det_boxes(dets, coco_mini[0], coco_mini[1], 0.0)


@pytest.mark.parametrize("bbox,match", [((10, 10, 0, 50), "zero size"), ((5000, 10, 40, 50), "outside"),
                                        ((0, 0, 1e12, 1e12), "over 100 times the size"),
                                        ((0, 0, 1e300, 1e300), "over 100 times the size")])
def test_bad_box(cfg, coco_mini, onnx_files, bbox, match):
    f = sorted(coco_mini[1].glob("*.jpg"))[0]
    box = boxes.PersonBox(1, f, bbox, 1.0, None, "test.json: box 0")
    with pytest.raises(BmposeError, match=f"test.json: box 0: .*{match}"):
        infer.predict(cfg, open_backend(onnx_files[1]), [box], progress=False)


def test_batch_mismatch(onnx_files, cfg):
    b = open_backend(onnx_files[4])
    with pytest.raises(BmposeError, match="batch size mismatch: the model takes batch 4, got 3"):
        b.run(np.zeros((3, 3, *cfg.input_hw), np.float32))


def test_unknown_artifact(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    with pytest.raises(BmposeError, match="unknown artifact type"):
        open_backend(p)


@pytest.fixture(scope="module")
def rtmpose(rtmpose_onnx):
    """The run's shared RTMPose-t export (conftest's `rtmpose_onnx`)."""
    return rtmpose_onnx, rtmpose_onnx.layout.onnx_file(1)


@pytest.mark.parametrize("flip", [False, True])
def test_rtmpose_simcc_parity_with_mmpose_inference_topdown(rtmpose, gt, flip):
    """RTMPose-t (SimCC, the trained fixture) through ONNX Runtime and the core's SimCC decode and flip: the
    keypoints of mmpose's own API (issue 24)."""
    from bmpose.weights.checkpoint import build_model
    from mmpose.apis import inference_topdown

    cfg, onnx = rtmpose
    model = build_model(cfg, None)
    model.test_cfg["flip_test"] = flip
    ours = infer.predict(cfg, open_backend(onnx), gt[:6], flip=flip, progress=False)
    assert len(ours.predictions) == 6
    for p in ours.predictions:
        ref = inference_topdown(model, str(p.box.file), bboxes=p.box.xyxy[None], bbox_format="xyxy")[0]
        np.testing.assert_allclose(p.keypoints, ref.pred_instances.keypoints[0], rtol=0, atol=0.01)
        np.testing.assert_allclose(p.scores, ref.pred_instances.keypoint_scores[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("model,outputs", [("rtmpose-t_256x192", 1), ("hrnet_small_128x96", 2)])
def test_a_codec_and_an_onnx_that_disagree_are_refused_in_one_line(tmp_path, model, outputs):
    """A SimCC config with a one-output (heatmap) ONNX, or a heatmap config with a two-output one."""
    import onnx
    from onnx import TensorProto, helper

    from bmpose.runtime.predict import open_model

    outs = ["a", "b"][:outputs]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], [o]) for o in outs], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 3, 8, 8]) for o in outs])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(BmposeError, match=rf"m.onnx: {outputs} output\(s\) .* codec needs {3 - outputs}") as e:
        open_model(config.load(model), ["onnx", str(path)], 1)
    assert "\n" not in str(e.value)


def test_out_equal_to_the_image_folder_is_refused_and_the_folder_left_byte_identical(tmp_path, coco_mini, capsys):
    """`bmpose infer --images D --out D` would replace D, the user's pictures with it: one line, exit 1."""
    from bmpose import cli

    folder = tmp_path / "photos"
    shutil.copytree(coco_mini[1], folder)
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli.main(["infer", "--images", str(folder), "--out", str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bmpose infer: error: ") and "--out holds the input" in err[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
