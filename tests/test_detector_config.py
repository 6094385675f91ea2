"""Detector configs: the bundled one, and one-line errors naming the yaml."""
import shutil

import pytest

from bmpose.detector_config import DETECTOR_DIR, load_detector
from bmpose.errors import BmposeError


def test_bundled_yolox_nano():
    d = load_detector("yolox_nano_416")
    assert d.onnx.is_file() and (d.onnx.parent / "LICENSE").is_file() and (d.onnx.parent / "README.md").is_file()
    assert d.input_size == (416, 416) and d.decoder == "yolox" and d.classes == (0,) and not d.center
    assert (d.score_thr, d.nms_iou, d.eval_score_thr) == (0.3, 0.65, 0.01)
    assert load_detector(DETECTOR_DIR / "yolox_nano_416.yaml") == d   # by path too


@pytest.mark.parametrize("text,match", [
    ("input_size: [416, 416]\ndecoder: yolox\n", "missing key 'onnx'"),
    ("onnx: nowhere.onnx\ninput_size: [416, 416]\ndecoder: yolox\n", "onnx: nowhere.onnx: no such file"),
    ("onnx: m.onnx\ninput_size: 416\ndecoder: yolox\n", r"input_size must be \[width, height\]"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: ssd\n", "decoder 'ssd': expected one of yolox, yolov5, yolov8"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolov8\nscore_thr: 2\n",
     r"score_thr must be a number in \[0, 1\]"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolov8\nletterbox: {align: left}\n", "letterbox align 'left'"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolov8\npreprocess: {mean: [1, 2]}\n", "mean must be three"),
    ("onnx: [", "not valid YAML"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolox\nscore_thresh: 0.5\n",
     "unknown key 'score_thresh'; did you mean 'score_thr'?"),
    ("onnx: m.onnx\ninput_size: [416, 416]\ndecoder: yolox\npreprocess: {bgr2rgb: true}\n",
     "unknown key 'bgr2rgb' in preprocess; did you mean 'bgr_to_rgb'?"),
])
def test_bad_yaml_one_line(tmp_path, text, match):
    shutil.copy(load_detector().onnx, tmp_path / "m.onnx")
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(BmposeError, match=match) as e:
        load_detector(tmp_path / "d.yaml")
    assert str(e.value).startswith(str(tmp_path / "d.yaml")) and "\n" not in str(e.value)


def test_unknown_name():
    with pytest.raises(BmposeError, match=r"no such detector config \(bundled: yolox_nano_416\)"):
        load_detector("yolo_tiny")
