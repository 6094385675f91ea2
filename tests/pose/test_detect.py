"""The shared core's detector half (bmpose.pose.detect): letterbox, the three decoders on small ONNX files with
known boxes (run by ONNX Runtime, as a real export would be), class-wise NMS, boxes back to the frame."""
import math
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bmpose.pose import detect
from bmpose.pose.errors import PoseError

SIZE = 64                 # the toy detectors' input (w = h)
FRAME = (128, 96)         # (w, h) of the frame: letterboxed at ratio 0.5
# known persons in input pixels (cx, cy, w, h), their score; one car (class 1) on top of the first person
PERSONS = [((20.0, 28.0, 16.0, 30.0), 0.72), ((44.0, 20.0, 10.0, 20.0), 0.45)]
CAR = ((21.0, 28.0, 16.0, 30.0), 0.9)


def _constant_net(raw: np.ndarray, path):
    """An ONNX 'detector' whose output is `raw` whatever the frame (the input only sets the shape)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(raw[None].shape))
    graph = helper.make_graph([helper.make_node("Constant", [], ["output"],
                                                value=numpy_helper.from_array(raw[None].astype(np.float32)))],
                              "toy_detector", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _run(path):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"images": np.zeros((1, 3, SIZE, SIZE), np.float32)})[0][0]


def _yolox_raw():
    grids = [(s, SIZE // s) for s in (8, 16, 32)]
    raw = np.zeros((sum(n * n for _, n in grids), 7), np.float32)   # 2 classes
    raw[:, 2:4] = -5.0   # unused anchors: tiny boxes, zero score

    def put(cx, cy, w, h, obj, cls, stride=8, dx=0):
        base = 0
        for s, n in grids:
            if s == stride:
                break
            base += n * n
        n = SIZE // stride
        gx, gy = int(cx // stride) + dx, int(cy // stride)
        raw[base + gy * n + gx] = [cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride),
                                   obj, *cls]

    (p0, s0), (p1, s1) = PERSONS
    put(*p0, 0.9, [s0 / 0.9, 0.0])
    put(*p0[:2], p0[2] + 2, p0[3], 0.5, [0.9, 0.0], dx=1)   # a duplicate of person 0, lower score: NMS drops it
    put(*p1, 1.0, [s1, 0.0], stride=16)
    put(*CAR[0], 1.0, [0.0, CAR[1]], stride=16)   # not in person 0's cell
    return raw


def _rows(with_obj: bool):
    rows = []
    for (cx, cy, w, h), s in PERSONS:
        rows.append([cx, cy, w, h, *([1.0] if with_obj else []), s, 0.0])
    (cx, cy, w, h), s = PERSONS[0]
    rows.append([cx, cy, w + 2, h, *([1.0] if with_obj else []), 0.4, 0.0])   # duplicate
    rows.append([*CAR[0], *([1.0] if with_obj else []), 0.0, CAR[1]])
    rows.append([5.0, 5.0, 4.0, 4.0, *([1.0] if with_obj else []), 0.01, 0.0])   # below the threshold
    return np.asarray(rows, np.float32)


@pytest.mark.parametrize("decoder", detect.DECODERS)
def test_decoders_find_the_known_persons(decoder, tmp_path):
    raw = {"yolox": _yolox_raw, "yolov5": lambda: _rows(True), "yolov8": lambda: _rows(False).T}[decoder]()
    out = _run(_constant_net(np.ascontiguousarray(raw), tmp_path / f"{decoder}.onnx"))
    frame = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
    box = detect.letterbox(frame, (SIZE, SIZE))
    assert box.ratio == 0.5 and box.pad == (0, 0)
    d = detect.detect(out, decoder, box, frame.shape, classes=(0,), score_thr=0.3, iou_thr=0.65)
    want = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for (cx, cy, w, h), _ in PERSONS]) * 2
    assert d.classes.tolist() == [0, 0]
    np.testing.assert_allclose(d.scores, [s for _, s in PERSONS], atol=1e-5)
    np.testing.assert_allclose(d.boxes, want, atol=1e-3)


def test_nms_is_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert detect.nms(boxes, scores, np.array([0, 0, 1]), 0.3, 0.5).tolist() == [0, 2]
    assert detect.nms(boxes, scores, np.array([0, 0, 0]), 0.3, 0.5).tolist() == [0]
    assert detect.nms(boxes, scores, np.array([0, 0, 0]), 0.95, 0.5).tolist() == []


@pytest.mark.parametrize("center", [False, True])
def test_letterbox_and_back(center):
    frame = np.full((100, 200, 3), 7, np.uint8)
    box = detect.letterbox(frame, (64, 64), pad_value=114, center=center)
    assert box.canvas.shape == (64, 64, 3) and box.ratio == pytest.approx(0.32)
    py = (64 - 32) // 2 if center else 0
    assert box.pad == (0, py)
    assert (box.canvas[py:py + 32] == 7).all()
    assert (box.canvas[py + 32:] == 114).all() and (box.canvas[:py] == 114).all()
    x = detect.detector_input(box.canvas, bgr_to_rgb=True, scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25,) * 3)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert x[0, 0, py, 0] == pytest.approx((7 / 255 - 0.5) / 0.25, rel=1e-5)


def test_bad_outputs_are_one_line_errors():
    with pytest.raises(PoseError, match="decoder 'yolov9': expected one of yolox, yolov5, yolov8"):
        detect.decode(np.zeros((10, 6)), "yolov9", (64, 64))
    with pytest.raises(PoseError, match=r"yolox decode: 10 anchors, but an input of 64x64 at strides \[8, 16, 32\] "
                                        r"has 84"):
        detect.decode(np.zeros((10, 7)), "yolox", (64, 64))
    box = detect.letterbox(np.zeros((64, 64, 3), np.uint8), (64, 64))
    with pytest.raises(PoseError, match="class 3 asked, the output has 2 classes"):
        detect.detect(np.zeros((5, 7)), "yolov5", box, (64, 64), classes=(3,))
    spec = SimpleNamespace(input_size=(64, 64), pad_value=114, center=False, bgr_to_rgb=False, scale=1.0, mean=None,
                           std=None)
    with pytest.raises(PoseError, match=r"a frame of shape \(0, 0, 3\): not an image with pixels"):
        detect.frame_input(np.zeros((0, 0, 3), np.uint8), spec)
