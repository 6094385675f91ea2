"""The device side's own readers (bmpose.device): bmodel headers and detection files, one-line errors."""
import json
import struct

import pytest

from bmpose.device.bmodel_file import bmodel_chip
from bmpose.device.inputs import image_id_of, list_images, load_detections
from bmpose.pose.errors import PoseError


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
