"""The device side's own readers (bmpose.device): bmodel headers and detection files, one-line errors."""
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bmpose.device.bmodel_file import bmodel_chip
from bmpose.device.inputs import Ahead, FrameWriter, image_id_of, list_images, load_detections
from bmpose.pose.errors import PoseError
from helpers import SAIL_STANDIN


def _fake_bmodel(path, chip=b"BM1684X", magic=0xFF55AAEE):
    """A bmodel header + the smallest flatbuffer whose Model table has type, version, time, chip."""
    strings = [b"B", b"v", b"t", chip]
    table_at, vt_at = 28, 16
    fb = bytearray(struct.pack("<I", table_at) + b"\0" * 12)                 # root offset, padding
    fb += struct.pack("<HH4H", 12, 20, 4, 8, 12, 16)                           # vtable: 4 fields
    assert len(fb) == table_at
    fb += struct.pack("<i", table_at - vt_at) + b"\0" * 16                     # table: vtable offset + 4 slots
    for i, s in enumerate(strings):
        pos = len(fb)
        fb += struct.pack("<I", len(s)) + s + b"\0" * (4 - len(s) % 4)
        slot = table_at + 4 + 4 * i
        fb[slot:slot + 4] = struct.pack("<I", pos - slot)
    header = struct.pack("<IIII", magic, 64, len(fb), 0) + b"\0" * 48
    path.write_bytes(header + bytes(fb))
    return path


def test_bmodel_chip_reads_the_header(tmp_path):
    assert bmodel_chip(_fake_bmodel(tmp_path / "a.bmodel")) == "BM1684X"
    assert bmodel_chip(_fake_bmodel(tmp_path / "b.bmodel", b"bm1684")) == "BM1684"


@pytest.mark.parametrize("content, message", [
    (None, "bmodel file not found"),
    (b"", "not a bmodel"),
    (b"\x00" * 100, "not a bmodel"),
    (struct.pack("<IIII", 0xFF55AAEE, 64, 1000, 0) + b"\0" * 48 + b"\xff" * 8, "corrupt bmodel header"),
])
def test_bmodel_chip_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "m.bmodel"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PoseError, match=message) as e:
        bmodel_chip(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def _images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("000000000139.jpg", "000000000785.jpg", "street.png"):
        (d / name).write_bytes(b"x")
    (d / "notes.txt").write_text("not an image")
    return list_images(d)


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_read_ahead_keeps_order_and_raises_in_the_caller(ahead):
    assert list(Ahead(range(20), ahead)) == list(range(20))

    def broken():
        yield 1
        raise PoseError("clip.mp4: broken")

    with pytest.raises(PoseError, match="clip.mp4: broken"), Ahead(broken(), ahead) as items:
        assert list(items) == [1]


def test_read_ahead_overlaps_and_stops_when_left():
    def slow(n):
        for i in range(n):
            time.sleep(0.05)
            yield i

    t = time.perf_counter()
    with Ahead(slow(8), 2) as items:
        for _ in items:
            time.sleep(0.05)      # the caller's work while the next item is read
    # in turn: 16 x 50 ms = 0.8 s; overlapped: ~0.45 s (gate 0.65 s: 0.2 s for a loaded machine)
    assert time.perf_counter() - t < 0.65
    before = threading.active_count()
    with Ahead(slow(1000), 2) as items:
        next(iter(items))
    assert threading.active_count() <= before   # the reader stopped, it did not read the other 999


class _Writer:
    def __init__(self, fail_at=None):
        self.frames, self.released, self.fail_at = [], False, fail_at

    def write(self, frame):
        time.sleep(0.002)
        if len(self.frames) == self.fail_at:
            raise OSError("disk full")
        self.frames.append(frame)

    def release(self):
        self.released = True


@pytest.mark.parametrize("ahead", [0, 2])
def test_frame_writer_writes_every_frame_in_order(ahead):
    sink = _Writer()
    writer = FrameWriter(sink, ahead)
    for i in range(30):
        writer.write(i)
    writer.close()
    assert sink.frames == list(range(30)) and sink.released
    failing = FrameWriter(_Writer(fail_at=3), ahead)
    with pytest.raises(OSError, match="disk full"):
        for i in range(30):
            failing.write(i)
        failing.close()


def test_images_and_ids(tmp_path):
    files = _images(tmp_path)
    assert [f.name for f in files] == ["000000000139.jpg", "000000000785.jpg", "street.png"]
    assert [image_id_of(f, i) for i, f in enumerate(files)] == [139, 785, 2]
    with pytest.raises(PoseError, match="no such image file or folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoseError, match="no images"):
        list_images(tmp_path / "empty")


def test_detections_are_matched_filtered_and_checked(tmp_path):
    files = _images(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([
        {"image_id": 139, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_id": 139, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.1},
        {"image_id": 785, "category_id": 3, "bbox": [1, 2, 30, 40], "score": 0.9},   # not a person
        {"image_id": 2, "bbox": [0.5, 1.5, 2, 3]}]))
    out = load_detections(dets, files, score_thr=0.3)
    assert out[files[0]] == [([1.0, 2.0, 30.0, 40.0], 0.9)]
    assert out[files[1]] == [] and out[files[2]] == [([0.5, 1.5, 2.0, 3.0], 1.0)]


@pytest.mark.parametrize("entries, message", [
    ("{not json", "not a readable JSON file"),
    ({"image_id": 139}, "expected a list"),
    ([3], "entry 0: expected an object"),
    ([{"image_id": "139", "bbox": [1, 2, 3, 4]}], "entry 0: image_id must be an integer"),
    ([{"image_id": True, "bbox": [1, 2, 3, 4]}], "image_id must be an integer"),
    ([{"image_id": 5, "bbox": [1, 2, 3, 4]}], "image_id 5 is not one of the 3 images"),
    ([{"image_id": 139, "bbox": [1, 2, 3]}], "entry 0 \\(image 139\\): bbox must be 4 finite numbers"),
    ([{"image_id": 139, "bbox": [1, 2, "x", 4]}], "bbox must be 4 finite numbers"),
    ([{"image_id": 139, "bbox": [1, 2, float("nan"), 4]}], "bbox must be 4 finite numbers"),
    ([{"image_id": 139, "bbox": [1, 2, 0, 4]}], "zero or negative size"),
    ([{"image_id": 139, "bbox": [1, 2, 3, -4]}], "zero or negative size"),
    ([{"image_id": 139, "bbox": [1, 2, 3, 4], "score": None}], "score must be a finite number"),
    ([{"image_id": 139, "bbox": [1, 2, 3, 4], "score": float("inf")}], "score must be a finite number"),
])
def test_bad_detections_are_one_line_errors(tmp_path, entries, message):
    files = _images(tmp_path)
    dets = tmp_path / "dets.json"
    dets.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    with pytest.raises(PoseError, match=message) as e:
        load_detections(dets, files)
    assert str(dets) in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------ the sail runner on the stand-in
# The stand-in (tests/sail_standin) follows sail's documented semantics (docs/device.md); its ONNX engine can
# pretend to be a bmodel with INT8/UINT8 I/O (SAIL_STANDIN_INPUT/OUTPUT), and its get_target() answers what
# SAIL_STANDIN_TARGET says, aliases included.

STANDIN = SAIL_STANDIN


def _tiny_onnx(path):
    """input [1,3,8,6] -> heatmaps [1,2,8,6]: a 1x1 conv with fixed weights (values around +-10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) - 2.5
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["heatmaps"], name="conv")], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 6])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 2, 8, 6])],
        [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """A fake bmodel per chip, an ONNX engine behind the stand-in, and `run(chip, x, **env)` -> (runner, y)."""
    import sys

    from bmpose.device.sail_runner import SailRunner

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setenv("SAIL_STANDIN_ENGINE", f"onnx:{onnx_path}")
    for var in ("SAIL_STANDIN_INPUT", "SAIL_STANDIN_OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SAIL_STANDIN_TARGET", "BM1684X")

    def runner(chip="BM1684X", **env):
        for k, v in env.items():
            monkeypatch.setenv(f"SAIL_STANDIN_{k.upper()}", v)
        return SailRunner(_fake_bmodel(tmp_path / f"{chip}.bmodel", chip.encode()))

    yield runner
    for name in [m for m in sys.modules if m == "sophon" or m.startswith("sophon.")]:
        del sys.modules[name]


def _reference(x):
    w = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    return np.einsum("oc,nchw->nohw", w, x.astype(np.float32))


@pytest.mark.parametrize("answer", ["CV186AH", "cv186x", " CV186AH\n"])
def test_a_cv186x_bmodel_loads_on_a_device_that_answers_its_soc_name(standin, answer):
    r = standin("CV186X", target=answer)
    assert r.chip == "CV186X" and r.device_chip == "CV186X"


# sail's Handle::get_target() answers BM1684, BM1684X, BM1688, CV186AH, "NOT 1684, 1684X, BM1688, or CV186AH !"
# for another board and "Error" when the board name cannot be read (sophon-sail src/tensor.cpp)
@pytest.mark.parametrize("answer", ["Error", "NOT 1684, 1684X, BM1688, or CV186AH !", "", "None"])
def test_an_unknown_target_answer_is_cannot_tell_not_a_mismatch(standin, answer):
    r = standin("BM1684X", target=answer)
    assert r.device_chip is None and r.batch_size == 1


@pytest.mark.parametrize("bmodel_chip, answer", [("BM1684X", "BM1684"), ("CV186X", "BM1688"), ("BM1684", "CV186AH")])
def test_a_bmodel_for_another_chip_is_refused_in_one_line(standin, bmodel_chip, answer):
    with pytest.raises(PoseError, match=f"built for {bmodel_chip.lower()}, but device 0 is a ") as e:
        standin(bmodel_chip, target=answer)
    assert "\n" not in str(e.value)


def test_an_int8_output_comes_back_dequantised_once(standin):
    """process() returns an INT8 output already dequantised (sail's documented semantics): the runner must not
    multiply it by the output scale again."""
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 8, 6)).astype(np.float32)
    r = standin(output="int8:0.25")
    assert r.output_dtype == "INT8"
    y = r.run(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _reference(x), atol=0.125 + 1e-6, rtol=0)   # half a quantisation step


def test_a_raw_integer_output_is_dequantised_by_the_output_scale(standin, monkeypatch):
    """A path that hands back the device's raw integer tensor is dequantised with get_output_scale()."""
    r = standin(output="int8:0.25")
    q = np.arange(-48, 48, dtype=np.int8).reshape(1, 2, 8, 6)
    monkeypatch.setattr(r.engine, "process", lambda graph, tensors: {r.output_names[0]: q})
    np.testing.assert_array_equal(r.run(np.zeros((1, 3, 8, 6), np.float32)), q.astype(np.float32) * 0.25)


def test_integer_inputs_are_accepted(standin):
    """A UINT8-input bmodel (normalisation fused in, input scale 1) gets the pixels unchanged; an INT8 input is
    quantised by sail from float32 with its input scale."""
    pixels = np.random.RandomState(1).randint(0, 256, (1, 3, 8, 6)).astype(np.uint8)
    r = standin(input="uint8:1")
    assert r.input_dtype == "UINT8"
    y = r.run(pixels)
    assert r.engine._impl.fed.dtype == np.uint8 and np.array_equal(r.engine._impl.fed, pixels)
    np.testing.assert_allclose(y, _reference(pixels), rtol=1e-6)
    r = standin(input="int8:0.5")
    x = np.random.RandomState(2).uniform(-20, 20, (1, 3, 8, 6)).astype(np.float32)
    y = r.run(x)
    assert r.engine._impl.fed.dtype == np.int8
    np.testing.assert_allclose(y, _reference(np.round(x / 0.5) * 0.5), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ --out: replaced whole, so never the user's data

def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ["same", "parent", "file", "cwd", "foreign"])
def test_an_out_folder_that_holds_user_data_is_refused_and_left_alone(tmp_path, monkeypatch, case):
    from bmpose.device.inputs import check_out_dir

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.jpg").write_bytes(b"jpeg bytes")
    (photos / "sub" / "keep.txt").write_text("mine")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(photos if case == "cwd" else tmp_path / "work")
    out, message = {"same": (photos, "holds the input"), "parent": (tmp_path, "holds the input"),
                    "file": (photos / "a.jpg", "names an existing file"),
                    "cwd": (Path("."), "would replace this whole folder"),
                    "foreign": (photos / "sub", "not an earlier output")}[case]
    before = _tree(tmp_path)
    with pytest.raises(PoseError, match=message) as e:
        check_out_dir(out, photos)
    assert str(out) in str(e.value) and "\n" not in str(e.value)
    assert _tree(tmp_path) == before


def test_a_new_empty_or_earlier_out_folder_is_taken(tmp_path):
    from bmpose.device.inputs import check_out_dir

    photos = tmp_path / "photos"
    photos.mkdir()
    assert check_out_dir(photos / "vis", photos) == (photos / "vis").resolve()   # inside the input: fine
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", photos) == (tmp_path / "empty").resolve()
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "results.json").write_text("[]")
    assert check_out_dir(tmp_path / "earlier", photos, "rtsp://camera/1", "0") == (tmp_path / "earlier").resolve()


def test_an_mjpeg_stream_is_a_video_of_all_its_frames(tmp_path, coco_mini):
    """A camera's raw .mjpeg dump (JPEG frames back to back) was read as one picture, its first frame."""
    from bmpose.device.inputs import capture_frames, is_video, open_capture

    frames = sorted(coco_mini[1].glob("*.jpg"))[:3]
    clip = tmp_path / "camera.mjpeg"
    clip.write_bytes(b"".join(f.read_bytes() for f in frames))
    assert is_video(clip)
    assert sum(1 for _ in capture_frames(open_capture(clip))) == 3


@pytest.mark.parametrize("codec, out_shape, names", [
    ({"type": "MSRAHeatmap", "input_size": [48, 64], "heatmap_size": [12, 16]}, (1, 21, 16, 12), 17),
    ({"type": "RegressionLabel", "input_size": [64, 64], "num_keypoints": 33, "values_per_keypoint": 5,
      "coordinates": "pixels"}, (1, 20 * 5), 33),
])
def test_a_bmodel_of_another_keypoint_set_is_one_line(codec, out_shape, names):
    """A bmodel whose keypoints are not deploy.json's: draw.py indexed past them (IndexError); now one line
    naming the bmodel, for heatmap and regression outputs alike."""
    from types import SimpleNamespace

    import numpy as np

    from bmpose.pose import frames
    from bmpose.pose.errors import PoseError

    w, h = codec["input_size"]
    spec = SimpleNamespace(input_size=(w, h), padding=1.25, mean=(0, 0, 0), std=(1, 1, 1), bgr_to_rgb=True,
                           codec=codec, keypoint_names=[f"k{i}" for i in range(names)])
    runner = SimpleNamespace(path="other.bmodel", batch_size=1, run=lambda x: np.zeros(out_shape, np.float32))
    image = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(PoseError, match=rf"^other.bmodel: gives \d+ keypoints, the model.s keypoint set has {names}:"):
        frames.estimate_frame(image, [([10, 10, 40, 80], 1.0)], runner, spec, False, frames.Clock())
