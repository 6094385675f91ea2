"""Calibration LMDB: contents, identity with the inference crop, bad inputs, readers and TPU-MLIR's loader."""
import json
import shutil
import subprocess
import warnings

import cv2
import numpy as np
import pytest

from bmpose.calib import calibset, select, sheet, store, tpu_inputs
from bmpose import cocodata, config, manifest
from bmpose.errors import BmposeError
from bmpose.pose import crop_person, read_image, normalize


@pytest.fixture(scope="module")
def cfg():
    return config.load("hrnet_small_128x96")


def _build(cfg, out_dir, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", select.CalibWarning)  # bundled sample: fewer persons than the default num
        return calibset.ensure_calib(cfg, out_dir=out_dir, progress=False, **kw)


@pytest.fixture(scope="module")
def built(cfg, tmp_path_factory):
    return _build(cfg, tmp_path_factory.mktemp("calib") / "calib")


@pytest.fixture()
def mini_copy(tmp_path, coco_mini):
    ann, img = coco_mini
    shutil.copytree(img, tmp_path / "images")
    shutil.copy(ann, tmp_path / "ann.json")
    return tmp_path / "ann.json", tmp_path / "images"


def test_lmdb_contents(cfg, built, coco_train):
    """The default set: the bundled COCO train2017 persons (never the val persons the evaluation scores)."""
    ann, _ = coco_train
    meta = store.read_meta(built)
    coco = cocodata.load_coco_keypoints(*coco_train)
    eligible = cocodata.eligible_persons(coco, select.DEFAULT_MIN_KEYPOINTS, select.DEFAULT_MIN_BOX)
    assert meta["version"] == store.FORMAT_VERSION and meta["count"] == len(eligible) > 20
    assert meta["preprocess"]["input_size"] == [96, 128] and meta["preprocess"]["mean"] == list(cfg.mean)
    assert meta["preprocess"]["std"] == list(cfg.std)
    assert meta["selection"] == {"num": 100, "seed": 0, "min_keypoints": select.DEFAULT_MIN_KEYPOINTS,
                                 "min_box": select.DEFAULT_MIN_BOX, "balanced": "round-robin over images"}
    assert meta["source_sha256"] == manifest.sha256_file(ann)
    recs = list(store.iter_records(built))
    assert len(recs) == meta["count"]
    assert len({r.ann_id for r in recs}) == len(recs)
    for r in recs:
        assert r.image.dtype == np.uint8 and r.image.shape == (128, 96, 3) and r.keypoints.shape == (17, 3)
        assert r.scale[0] / r.scale[1] == pytest.approx(96 / 128)
    # balanced: the first records come from as many different images as possible
    n_images = len({p.image_id for p in eligible})
    assert len({r.image_id for r in recs[:n_images]}) == n_images
    m = manifest.read_manifest(built.parent)
    assert m["status"] == "ok" and m["checks"]["count"] == len(recs)
    picture = cv2.imread(str(built.parent / sheet.SHEET_NAME))
    assert picture is not None and picture.shape[1] >= 1024 and picture.std() > 20


def test_calib_crop_is_byte_identical_to_inference_crop(cfg, built, coco_train):
    persons = {p.ann_id: p for p in cocodata.load_coco_keypoints(*coco_train).persons()}
    for r in store.iter_records(built):
        p = persons[r.ann_id]
        c = crop_person(read_image(p.file), p.bbox_xyxy, cfg.input_size, cfg.padding, xyxy=True)
        assert c.image.tobytes() == r.image.tobytes()
        assert np.array_equal(c.center, r.center) and np.array_equal(c.scale, r.scale)


def test_skip_when_unchanged_and_rebuild_on_new_selection(cfg, tmp_path):
    out = tmp_path / "calib"
    lm = _build(cfg, out, num=10)
    stamp = (lm / "data.mdb").stat().st_mtime_ns
    assert _build(cfg, out, num=10) == lm and (lm / "data.mdb").stat().st_mtime_ns == stamp
    _build(cfg, out, num=5)
    assert store.read_meta(lm)["count"] == 5


def test_parallel_build_is_identical(cfg, tmp_path, monkeypatch, coco_mini):
    serial = _build(cfg, tmp_path / "a", workers=1)
    monkeypatch.setattr(store, "PARALLEL_MIN_IMAGES", 1)
    parallel = _build(cfg, tmp_path / "b", workers=2)
    assert (serial / "data.mdb").read_bytes() == (parallel / "data.mdb").read_bytes()


def test_num_too_large_warns_and_uses_all(cfg, tmp_path):
    with pytest.warns(select.CalibWarning, match=r"--num 1000 but only \d+ eligible persons: using all"):
        lm = calibset.ensure_calib(cfg, num=1000, out_dir=tmp_path / "calib", progress=False)
    assert store.read_meta(lm)["count"] == store.read_meta(lm)["source"]["eligible"]


def test_truncated_image(cfg, tmp_path, mini_copy):
    ann, img = mini_copy
    victim = img / "000000350679.jpg"  # six eligible persons: always selected
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(BmposeError, match=r"000000350679\.jpg: truncated JPEG"):
        _build(cfg, tmp_path / "calib", coco_ann=ann, coco_img=img)
    assert not (tmp_path / "calib").exists()


def test_missing_image(cfg, tmp_path, mini_copy):
    ann, img = mini_copy
    (img / "000000350679.jpg").unlink()
    with pytest.raises(BmposeError, match=r"000000350679\.jpg: image file not found"):
        _build(cfg, tmp_path / "calib", coco_ann=ann, coco_img=img)


def test_not_a_keypoints_json(cfg, tmp_path, mmpose_coco):
    det = mmpose_coco / "test_coco_det_AP_H_56.json"  # a detection results list
    with pytest.raises(BmposeError, match="test_coco_det_AP_H_56.json: not a COCO annotation json"):
        _build(cfg, tmp_path / "c", coco_ann=det)
    boxes_only = tmp_path / "instances.json"
    boxes_only.write_text(json.dumps({"images": [], "annotations": [],
                                      "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(BmposeError, match="instances.json: not a COCO person-keypoints json"):
        _build(cfg, tmp_path / "c", coco_ann=boxes_only)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(BmposeError, match="broken.json: not valid JSON"):
        _build(cfg, tmp_path / "c", coco_ann=broken)


def test_zero_eligible_persons(cfg, tmp_path, coco_mini):
    ann, img = coco_mini
    with pytest.raises(BmposeError, match="subset.json: no eligible persons"):
        _build(cfg, tmp_path / "c", coco_ann=ann, coco_img=img, min_keypoints=18)


def test_foreign_config_lmdb_refused(cfg, tmp_path):
    out = tmp_path / "calib"
    lm = _build(cfg, out, num=4)
    w32 = config.load("hrnet_w32_256x192")
    with pytest.raises(BmposeError, match=r"calib\.lmdb: existing calibration LMDB was built for a different "
                                          r"config .*input_size \[96, 128\] -> \[192, 256\].*--force"):
        _build(w32, out, num=4)
    assert store.read_meta(lm)["preprocess"]["input_size"] == [96, 128]  # untouched
    with pytest.raises(BmposeError, match=r"calib\.lmdb: calibration LMDB has input_size \[96, 128\]"):
        calibset.ensure_calib(w32, f"lmdb:{lm}")
    _build(w32, out, num=4, force=True)
    assert store.read_meta(lm)["preprocess"]["input_size"] == [192, 256]
    assert calibset.ensure_calib(w32, f"lmdb:{lm}") == lm


def test_crashed_build_leaves_no_complete_lmdb(cfg, tmp_path, monkeypatch):
    out = tmp_path / "calib"
    real, calls = store._crop_job, []

    def flaky(args):
        calls.append(args[0])
        if len(calls) == 6:
            raise RuntimeError("simulated crash")
        return real(args)

    monkeypatch.setattr(store, "_crop_job", flaky)
    monkeypatch.setattr(store, "COMMIT_EVERY", 2)  # records already committed when the crash comes
    with pytest.raises(RuntimeError, match="simulated crash"):
        _build(cfg, out, workers=1)  # in-process, so the patched cropper is used
    assert not out.exists()
    failed = out.with_name("calib.failed") / store.LMDB_NAME
    assert (failed / "data.mdb").is_file()
    with pytest.raises(BmposeError, match="incomplete calibration LMDB"):
        list(store.iter_records(failed))
    with pytest.raises(BmposeError, match="incomplete"):
        calibset.ensure_calib(cfg, f"lmdb:{failed}")


def test_dir_source_uses_whole_images(cfg, tmp_path, coco_mini):
    _, img = coco_mini
    folder = tmp_path / "people"
    folder.mkdir()
    for f in sorted(img.glob("*.jpg"))[:3]:
        shutil.copy(f, folder)
    with pytest.warns(select.CalibWarning, match="only 3 images"):
        lm = calibset.ensure_calib(cfg, f"dir:{folder}", out_dir=tmp_path / "calib", progress=False)
    recs = list(store.iter_records(lm))
    assert len(recs) == 3
    for r in recs:
        image = read_image(folder / r.file)
        want = crop_person(image, [0, 0, image.shape[1], image.shape[0]], cfg.input_size)
        assert want.image.tobytes() == r.image.tobytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BmposeError, match="empty: no images"):
        calibset.ensure_calib(cfg, f"dir:{tmp_path / 'empty'}", out_dir=tmp_path / "x")


def test_readers_and_tpu_inputs(cfg, built, tmp_path):
    recs = list(store.iter_records(built))
    b4 = list(store.iter_batches(built, cfg, 4))
    assert len(b4) == len(recs) // 4 and b4[0].shape == (4, 3, 128, 96) and b4[0].dtype == np.float32
    np.testing.assert_array_equal(b4[1][2], normalize(recs[6].image, cfg.mean, cfg.std)[0])
    assert sum(len(b) for b in store.iter_batches(built, cfg, 4, drop_last=False)) == len(recs)
    paths = tpu_inputs.write_tpu_inputs(built, cfg, tmp_path / "tpu", num=10)
    assert len(paths) == 10 and (tmp_path / "tpu" / "data_list.txt").read_text().split() == [str(p) for p in paths]
    for p, r in zip(paths, recs):
        with np.load(p) as z:
            assert z.files == ["input"] and z["input"].dtype == np.float32 and z["input"].shape == (1, 3, 128, 96)
            np.testing.assert_array_equal(z["input"], normalize(r.image, cfg.mean, cfg.std))
    stamp = paths[0].stat().st_mtime_ns
    assert tpu_inputs.write_tpu_inputs(built, cfg, tmp_path / "tpu", num=10) == paths  # reused
    assert paths[0].stat().st_mtime_ns == stamp


def _identity_onnx(path, hw):
    """A 1x1 conv with identity weights: the network's output is exactly the tensor TPU-MLIR fed it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 3, *hw]
    g = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["heatmaps"])], "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "w"),
         numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.mark.slow  # two TPU-MLIR tool runs: ~20 s on a busy 2-core machine
def test_tpu_mlir_feeds_the_network_our_tensor(cfg, built, tmp_path):
    """model_transform --test_input and run_calibration load our npz with mean 0 / scale 1 (the bmodel's
    preprocessing, per the contracts) and feed the network exactly our normalised tensor."""
    paths = tpu_inputs.write_tpu_inputs(built, cfg, tmp_path / "tpu")
    ours = np.concatenate([np.load(p)["input"] for p in paths])
    _identity_onnx(tmp_path / "ident.onnx", cfg.input_hw)
    h, w = cfg.input_hw
    run = lambda *cmd: subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    r = run("model_transform", "--model_name", "ident", "--model_def", "ident.onnx",
            "--input_shapes", f"[[1,3,{h},{w}]]", "--mean", "0,0,0", "--scale", "1,1,1",
            "--test_input", str(paths[0]), "--test_result", "top_out.npz", "--mlir", "ident.mlir")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    fed = np.load(tmp_path / "ident_in_f32.npz")["input"]
    np.testing.assert_allclose(fed, ours[:1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "top_out.npz")["heatmaps_Conv"], ours[:1], rtol=0, atol=1e-5)
    # run_calibration over the whole folder: its per-tensor min/max of the input are those of our tensors
    r = run("run_calibration", "ident.mlir", "--data_list", str(tmp_path / "tpu" / "data_list.txt"),
            "--input_num", str(len(paths)), "--cali_method", "use_max", "-o", "cali_table")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    row = next(line.split() for line in (tmp_path / "cali_table").read_text().splitlines()
               if line.startswith("input "))
    np.testing.assert_allclose([float(row[2]), float(row[3])], [ours.min(), ours.max()], rtol=1e-6)
    assert f"sample number: {len(paths)}" in (tmp_path / "cali_table").read_text()


def test_cli_writes_lmdb_and_reports_errors(tmp_path, capsys):
    from bmpose import cli

    assert cli.main(["calib", "--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path), "--num", "6"]) == 0
    assert store.read_meta(tmp_path / "hrnet_small_128x96" / "calib" / store.LMDB_NAME)["count"] == 6
    assert cli.main(["calib", "--model", "hrnet_small_128x96", "--calib", "nonsense"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bmpose calib: error: --calib 'nonsense'")


def test_detection_boxes(mmpose_coco, coco_mini, tmp_path):
    coco = cocodata.load_coco_keypoints(mmpose_coco / "test_coco.json", mmpose_coco)
    dets = cocodata.load_detections(mmpose_coco / "test_coco_det_AP_H_56.json", coco, score_thr=0.5)
    raw = json.loads((mmpose_coco / "test_coco_det_AP_H_56.json").read_text())
    assert len(dets) == sum(d["score"] >= 0.5 and d["category_id"] == 1 for d in raw) > 0
    assert all(d.file.is_file() for d in dets)
    with pytest.raises(BmposeError, match=r"test_coco\.json: not a COCO detection results json"):
        cocodata.load_detections(mmpose_coco / "test_coco.json")
    mini = cocodata.load_coco_keypoints(*coco_mini)
    with pytest.raises(BmposeError, match="is not in"):
        cocodata.load_detections(mmpose_coco / "test_coco_det_AP_H_56.json", mini)
