"""The user-data loaders under systematic corruption: the bundled COCO keypoint file and a detection results
file, each field given wrong types, non-finite numbers, bad sizes and lengths, or taken away (bmpose.cocodata,
bmpose.runtime.boxes and the device's detection loader behind it). Every case either loads cleanly (what
mmpose accepts too: extra keys, optional keys missing, zero-size ground-truth boxes) or is a one-line BmposeError naming the
file and the record; another exception fails the test. No model runs: the loaders read no pixels."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bmpose import cli, cocodata
from bmpose.device.inputs import list_images
from bmpose.errors import BmposeError
from bmpose.runtime import boxes

DATA = Path(__file__).resolve().parent.parent / "data" / "coco_val_mini"
ANN, IMG = DATA / "person_keypoints_val2017_subset.json", DATA / "images"
BASE = json.loads(ANN.read_text())
A0 = BASE["annotations"][0]                      # the record every annotation case corrupts
IMG_I = next(i for i, im in enumerate(BASE["images"]) if im["id"] == A0["image_id"])
I0, I1 = (im["id"] for im in BASE["images"][:2])
DETS = [{"image_id": I0, "category_id": 1, "bbox": [10.0, 20.0, 50.0, 80.0], "score": 0.9},
        {"image_id": I1, "category_id": 1, "bbox": [5, 5, 40, 60], "score": 0.8},      # the corrupted entry
        {"image_id": I1, "category_id": 1, "bbox": [30, 10, 40, 90], "score": 0.2}]

WRONG_TYPES = {"str": "x", "list": [], "dict": {}, "None": None, "bool": True}
NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 10 ** 400}
BAD = {**WRONG_TYPES, **NON_FINITE}
DEL = object()   # the key is removed
OK = "ok"        # expected: a clean load; any other expectation is text the one-line error must contain


def _apply(data, keys: tuple, value):
    if not keys:
        return value
    box = data
    for k in keys[:-1]:
        box = box[k]
    if value is DEL:
        del box[keys[-1]]
    else:
        box[keys[-1]] = value
    return data


def _case(keys, value, expect, name):
    return pytest.param(keys, value, expect, id=name)


def _annotation_cases():
    ann, a = ("annotations", 0), f"annotation {A0['id']}"
    ok_values = {("iscrowd", "bool"),                       # JSON true is COCO's crowd flag 1
                 ("id", "huge"), ("num_keypoints", "huge"),  # big but whole numbers
                 ("category_id", "huge")}                    # another category: not a person, left out
    for field in ("bbox", "keypoints", "num_keypoints", "image_id", "id", "category_id", "iscrowd", "area"):
        where = "annotations[0]" if field == "id" else a
        for name, value in BAD.items():
            yield _case(ann + (field,), value, OK if (field, name) in ok_values else where, f"{field}={name}")
        required = field in ("bbox", "keypoints", "image_id", "id", "category_id")
        yield _case(ann + (field,), DEL, where if required else OK, f"{field}-missing")
    for j in range(4):
        for name, value in BAD.items():
            yield _case(ann + ("bbox", j), value, a, f"bbox.{j}={name}")
    for name, bbox, expect in (("neg-w", [10, 10, -5, 20], a), ("neg-h", [10, 10, 20, -1], a),
                               ("zero-w", [10, 10, 0, 20], OK), ("zero-h", [10, 10, 20, 0], OK),
                               ("outside-image", [-50, -50, 5000, 5000], OK),   # mmpose clips it
                               ("len3", [10, 10, 20], a), ("len5", [10, 10, 20, 20, 1], a),
                               ("issue-15", [10, 10, -5, "x"], a)):
        yield _case(ann + ("bbox",), bbox, expect, f"bbox-{name}")
    for n in (0, 50, 52):
        yield _case(ann + ("keypoints",), [0] * n, a, f"keypoints-len{n}")
    for j in (0, 2):   # an x and a visibility flag
        for name in ("str", "None", "nan", "inf", "bool"):
            yield _case(ann + ("keypoints", j), BAD[name], a, f"keypoints.{j}={name}")
    for field, value, expect in (("num_keypoints", -1, a), ("num_keypoints", 0, OK), ("area", -1.0, a),
                                 ("area", 0, OK), ("iscrowd", 2, a), ("iscrowd", 1, OK),
                                 ("image_id", 123456789, a), ("category_id", 2, OK), ("segmentation", DEL, OK),
                                 ("extra", {"any": "thing"}, OK)):
        yield _case(ann + (field,), value, expect, f"{field}={value if value is not DEL else 'missing'}")
    for name in ("str", "list", "None"):
        yield _case(ann, WRONG_TYPES[name], "annotations[0]", f"annotation-is-{name}")


def _image_cases():
    im, where = ("images", IMG_I), f"image {A0['image_id']}"
    for field in ("id", "file_name", "width", "height"):
        at = f"images[{IMG_I}]" if field == "id" else where
        for name, value in BAD.items():
            # a huge id is a whole number: the image loads, and the annotations on it lose their image
            expect = f"annotation {A0['id']}: image_id" if (field, name) == ("id", "huge") else at
            if (field, name) == ("file_name", "str"):
                expect = OK   # a name; whether the file exists is asked when its pixels are read
            yield _case(im + (field,), value, expect, f"image-{field}={name}")
        yield _case(im + (field,), DEL, at, f"image-{field}-missing")
    for field, value, expect in (("width", 0, where), ("height", -480, where), ("width", 640.5, where),
                                 ("width", 640.0, OK), ("file_name", "", where), ("extra", [1], OK)):
        yield _case(im + (field,), value, expect, f"image-{field}={value!r}")
    yield _case(("images", (IMG_I + 1) % len(BASE["images"]), "id"), A0["image_id"], where, "image-id-twice")
    yield _case(im, "x", f"images[{IMG_I}]", "image-is-str")


def _file_cases():
    for name, value in {"list": [], "str": "x", "None": None, "number": 3, "empty": {}}.items():
        yield _case((), value, "not a COCO annotation json", f"top-level-{name}")
    for key in ("images", "annotations", "categories"):
        yield _case((key,), {}, "not a COCO annotation json", f"{key}-is-dict")
    cat = ("categories", 0)
    for field, value, expect in (("keypoints", "nose", "'keypoints' must be a list of names"),
                                 ("keypoints", [1, 2], "'keypoints' must be a list of names"),
                                 ("keypoints", [], "not a COCO person-keypoints json"),
                                 ("keypoints", ["nose"] * 16, "'keypoints' must be 16 x (x, y, v)"),
                                 ("id", "1", "category '1'"), ("id", None, "category None"),
                                 ("skeleton", DEL, OK)):
        yield _case(cat + (field,), value, expect, f"category-{field}={value!r}")
    yield _case(cat, "person", "categories[0]", "category-is-str")


def _check(load, path: Path, expect: str, *more: str) -> None:
    """The one outcome allowed: a clean load when expect is OK, else a one-line BmposeError naming the file
    and containing expect (and more). Any other exception propagates and fails the test."""
    if expect == OK:
        load()
        return
    with pytest.raises(BmposeError) as e:
        load()
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and all(t in msg for t in (expect, *more)), msg


def _load_annotations(path: Path):
    """Every consumer of the annotation file that reads values: persons, calibration eligibility, gt boxes."""
    coco = cocodata.load_coco_keypoints(path, IMG)
    cocodata.eligible_persons(coco)
    return boxes.gt_boxes(path, IMG)


@pytest.mark.parametrize("keys, value, expect", [*_annotation_cases(), *_image_cases(), *_file_cases()])
def test_annotation_file(tmp_path, keys, value, expect):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_apply(copy.deepcopy(BASE), keys, value)))
    _check(lambda: _load_annotations(path), path, expect)


def test_the_unchanged_files_load(tmp_path):
    """The baseline of every case: the bundled file and the detections as written here are clean."""
    assert len(_load_annotations(ANN)) == len(BASE["annotations"])
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(DETS))
    assert len(boxes.det_boxes(path, ANN, IMG, 0.0)) == 3
    assert len(boxes.image_dets_boxes(path, list_images(IMG), 0.0)) == 3


def _detection_cases():
    e, where = (1,), "entry 1"
    for field in ("image_id", "bbox", "score", "category_id"):
        for name, value in BAD.items():
            ok = (field, name) == ("category_id", "huge")   # another category: left out
            yield _case(e + (field,), value, OK if ok else where, f"{field}={name}")
    for j in range(4):
        for name, value in BAD.items():
            yield _case(e + ("bbox", j), value, where, f"bbox.{j}={name}")
    for name, bbox in (("zero-w", [5, 5, 0, 60]), ("neg-h", [5, 5, 40, -60]), ("len3", [5, 5, 40])):
        yield _case(e + ("bbox",), bbox, where, f"bbox-{name}")
    # the two loaders differ on purpose: cocodata follows mmpose (bbox[:4] counts, score required), the
    # device's loader its own documented format (exactly 4 numbers, score 1 when missing)
    yield _case(e + ("bbox",), [5, 5, 40, 60, 0.5], {"cocodata": OK, "device": where}, "bbox-len5")
    yield _case(e + ("score",), DEL, {"cocodata": where, "device": OK}, "score-missing")
    for field, value, expect in (("image_id", 123456789, "123456789"), ("image_id", DEL, where),
                                 ("bbox", DEL, where), ("category_id", DEL, OK), ("category_id", 3, OK),
                                 ("score", 0.0, OK), ("extra", "x", OK)):
        yield _case(e + (field,), value, expect, f"{field}={value if value is not DEL else 'missing'}")
    for name in ("str", "list", "None"):
        yield _case(e, WRONG_TYPES[name], where, f"entry-is-{name}")
    for name, value in {"dict": {"x": DETS}, "str": "x", "None": None}.items():
        yield _case((), value, "", f"top-level-{name}")


@pytest.mark.parametrize("keys, value, expect", list(_detection_cases()))
@pytest.mark.parametrize("loader", ["cocodata", "device"])
def test_detection_file(tmp_path, keys, value, expect, loader):
    """`--boxes dets:JSON` with an annotation file (cocodata) or matched to images by name (the device's)."""
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(_apply(copy.deepcopy(DETS), keys, value)))
    expect = expect[loader] if isinstance(expect, dict) else expect
    if loader == "cocodata":
        load = lambda: boxes.det_boxes(path, ANN, IMG, 0.0)   # noqa: E731
    else:
        load = lambda: boxes.image_dets_boxes(path, list_images(IMG), 0.0)   # noqa: E731
    keeps_image = len(keys) > 1 and keys[1] != "image_id"   # then the message names the entry's image too
    _check(load, path, expect, *([str(I1)] if keeps_image else []))


def test_a_bad_box_ends_bmpose_calib_with_one_line(tmp_path, capsys):
    """Issue 15's report: a bbox [10, 10, -5, "x"] ended `bmpose calib` with a traceback."""
    data = copy.deepcopy(BASE)
    data["annotations"][0]["bbox"] = [10, 10, -5, "x"]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    assert cli.main(["calib", "--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path / "artifacts"),
                     "--coco-ann", str(path), "--coco-img", str(IMG)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("bmpose calib: warning:")]
    assert err == [f"bmpose calib: error: {path}: annotation {A0['id']}: 'bbox' must be 4 finite numbers "
                   f"[x, y, w, h], got [10, 10, -5, 'x']"]
    assert not (tmp_path / "artifacts" / "hrnet_small_128x96" / "calib").exists()
