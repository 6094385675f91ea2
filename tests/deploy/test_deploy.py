"""The device bundle (`bmpose deploy`): what it contains, that its `bmodel.py` gives the keypoints `bmpose infer`
gives on the same bmodel, images and boxes, under the build venv (cmodel-backed sail stand-in) and under a
Python 3.8 venv with numpy + OpenCV only (+ onnxruntime behind the stand-in), and its one-line errors.

The sail stand-in (tests/sail_standin) proves the bundle's own code paths: argument handling, reading
deploy.json, the crop/normalise/decode/OKS-NMS core, batching and padding, the sail calls with the documented
signatures, the bmodel's I/O shapes and dtypes (cmodel engine). Only a device can show sail's own behaviour,
device memory and real timings. One `bmpose deploy` of the small model (both chips, INT8 + FP32, batch 1 + 4)
of the run's shared builds (conftest's `small` and `detector`) serves every test.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bmpose import config
from helpers import ROOT, SAIL_STANDIN, pyenv_python

pytestmark = pytest.mark.slow

STANDIN = SAIL_STANDIN
MODEL = "hrnet_small_128x96"
KPT_TOL = 1e-3   # px: the same bmodel and code on both sides, so equal but for JSON float round trips
FORBIDDEN = ("yaml", "mmengine", "mmpose", "torch", "tpu_mlir", "onnx", "onnxruntime", "jinja2", "lmdb", "tqdm")


def _bmpose(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "bmpose", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


@pytest.fixture(scope="module")
def bundles(small, detector, tmp_path_factory):
    """{chip: unpacked bundle folder} from a real `bmpose deploy` of the run's shared builds (the small model's
    and the detector's: conftest.py), its archives unpacked elsewhere."""
    out = _bmpose("deploy", "--model", MODEL, "--artifacts-dir", small.root)
    assert out.returncode == 0, out.stderr
    cfg = small
    where = tmp_path_factory.mktemp("unpacked")
    found = {}
    for chip in ("bm1684", "bm1684x"):
        archive = cfg.artifacts / "deploy" / f"{MODEL}_{chip}.tar.gz"
        with tarfile.open(archive) as tar:
            tar.extractall(where)
        found[chip] = where / f"{MODEL}_{chip}"
    return found


def _run_bundle(bundle: Path, *args, python=sys.executable, engine="cmodel", target="BM1684X", cwd=None):
    env = {**os.environ, "PYTHONPATH": str(STANDIN), "SAIL_STANDIN_ENGINE": engine,
           "SAIL_STANDIN_TARGET": target}
    return subprocess.run([str(python), str(bundle / "bmodel.py"), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd or bundle)


def _keypoints(results_json: Path) -> dict:
    """{image_id: keypoint rows sorted} of a COCO results file (order within an image is NMS order)."""
    by_image = {}
    for r in json.loads(results_json.read_text()):
        by_image.setdefault(r["image_id"], []).append(r["keypoints"])
    return {k: np.array(sorted(v)) for k, v in by_image.items()}


def _assert_same(a: Path, b: Path):
    ka, kb = _keypoints(a), _keypoints(b)
    assert ka.keys() == kb.keys() and ka
    for k in ka:
        assert ka[k].shape == kb[k].shape
        np.testing.assert_allclose(ka[k], kb[k], atol=KPT_TOL, rtol=0)


def test_bundle_holds_the_chips_bmodels_the_core_and_resolved_facts(bundles):
    from bmpose.deploy.bundle import runtime_files, PACKAGE
    from bmpose.device.bmodel_file import bmodel_chip
    from bmpose.tpu_mlir.installed import bmodel_chip as tool_chip

    for chip, bundle in bundles.items():
        meta = json.loads((bundle / "deploy.json").read_text())
        assert meta["chip"] == chip and meta["default_bmodel"].endswith(f"{chip}_int8_b1.bmodel")
        assert {(b["precision"], b["batch"]) for b in meta["bmodels"]} >= {("int8", 1), ("int8", 4), ("fp32", 1),
                                                                           ("fp32", 4)}
        for b in meta["bmodels"]:
            path = bundle / b["file"]
            assert bmodel_chip(path) == tool_chip(path) == chip.upper()   # our header reader vs model_tool
            import hashlib
            assert hashlib.sha256(path.read_bytes()).hexdigest() == b["sha256"]
        pose = meta["pose"]
        assert pose["input_size"] == [96, 128] and len(pose["keypoint_names"]) == len(pose["sigmas"]) == 17
        assert pose["flip_indices"][1:3] == [2, 1] and meta["metric"]["nms_thr"] == 0.9
        for f in runtime_files():   # copied, not re-written: one implementation
            assert (bundle / "bmpose" / f.relative_to(PACKAGE)).read_bytes() == f.read_bytes()
        boxes = json.loads((bundle / "images" / "boxes.json").read_text())
        assert len(boxes) == 10 and all(b["score"] == 1.0 for b in boxes)
        det = meta["detector"]   # the config's precision per chip, its boxes measured against ONNX's
        assert det["name"] == "yolox_nano_416" and det["precision"] == {"bm1684": "fp32", "bm1684x": "fp16"}[chip]
        assert bmodel_chip(bundle / det["bmodel"]) == chip.upper() and det["decoder"] == "yolox"
        m = det["measured"]
        assert m["recall_iou50"]["found"] >= m["recall_iou50"]["persons"] - 2 and m["box_ap"] > 0.45
        assert "yolox_nano_416" in (bundle / "README.md").read_text()


def test_second_deploy_reuses_and_archive_is_reproducible(small, bundles, tmp_path):
    from bmpose.deploy.bundle import write_archive

    out = _bmpose("deploy", "--model", MODEL, "--artifacts-dir", small.root)
    assert out.returncode == 0 and out.stdout.count("; up to date, ") == 2, out.stdout   # both bundles reused
    bundle = bundles["bm1684x"]
    write_archive(bundle, bundle.name, tmp_path / "a.tar.gz")
    os.utime(bundle / "deploy.json", (0, 12345))   # times must not reach the archive
    write_archive(bundle, bundle.name, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


@pytest.mark.parametrize("batch", [1, 4])
def test_bundle_equals_bmpose_infer_on_the_cmodel(small, bundles, tmp_path, batch):
    """The bundle's bmodel.py on the cmodel equals `bmpose infer --backend bmodel` (the host's cmodel runner) and,
    at batch 4, `bmpose infer --backend sail` (the stand-in on PYTHONPATH, cmodel engine: the bundle's runner)."""
    bundle = bundles["bm1684x"]
    bmodel = bundle / "models" / f"{MODEL}_bm1684x_int8_b{batch}.bmodel"
    run = _run_bundle(bundle, "--bmodel", bmodel, "--out", tmp_path / "device", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"batch {batch}" in run.stdout and "pose inference" in run.stdout and "per person" in run.stdout
    pictures = sorted(p.name for p in (tmp_path / "device").glob("*.jpg"))
    assert pictures == sorted(p.name for p in (bundle / "images").glob("*.jpg"))
    hosts = {"bmodel": ({**os.environ, "BMPOSE_NO_SAIL": "1"}, "cmodel bm1684x")}
    if batch == 4:
        hosts["sail"] = ({**os.environ, "PYTHONPATH": f"{STANDIN}{os.pathsep}{ROOT}", "SAIL_STANDIN_ENGINE": "cmodel"},
                         "sail bm1684x b4")
    for backend, (env, says) in hosts.items():
        ref = _bmpose("infer", "--model", MODEL, "--artifacts-dir", small.root,
                      "--backend", backend, bmodel, "--images", bundle / "images",
                      "--boxes", f"dets:{bundle / 'images' / 'boxes.json'}", "--allow-slow", "--no-vis",
                      "--out", tmp_path / backend, env=env)
        assert ref.returncode == 0, ref.stderr
        assert says in ref.stdout
        _assert_same(tmp_path / "device" / "results.json", tmp_path / backend / "results.json")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, coco_mini):
    """An mp4 of three bundled val images, 640x480 at 5 fps."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 480))
    for f in sorted(coco_mini[1].glob("*.jpg"))[:3]:
        w.write(cv2.resize(cv2.imread(str(f)), (640, 480)))
    w.release()
    return path


def _frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_bundle_detects_then_poses_a_video_as_bmpose_infer_does(small, bundles, clip, tmp_path):
    """Detector -> pose bmodel on every frame behind the stand-in (the pose bmodel on the cmodel, the detector
    through its deployed tpu.mlir: the simulator holds one bmodel per process), against `bmpose infer` with the
    same pose bmodel on the cmodel backend and the same detector build (its tpu.mlir, the default without sail)."""
    from bmpose.detector_config import load_detector_spec

    bundle = bundles["bm1684x"]
    meta = json.loads((bundle / "deploy.json").read_text())
    pose = bundle / "models" / f"{MODEL}_bm1684x_int8_b4.bmodel"
    build = f"bm1684x_{meta['detector']['precision']}"
    tpu_mlir = load_detector_spec(f"detector:yolox_nano_416@{build}", artifacts=small.root).model_path("mlir")
    engine = f"cmodel:{Path(meta['detector']['bmodel']).name}={tpu_mlir}"
    run = _run_bundle(bundle, "--bmodel", pose, "--input", clip, "--out", tmp_path / "device", engine=engine,
                      cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "3 frames" in run.stdout and "detector inference" in run.stdout and "per frame" in run.stdout
    assert _frame_count(tmp_path / "device" / "annotated.mp4") == 3
    ref = _bmpose("infer", "--model", MODEL, "--artifacts-dir", small.root,
                  "--backend", "bmodel", pose, "--images", clip,
                  "--boxes", f"detector:yolox_nano_416@{build}",
                  "--allow-slow", "--out", tmp_path / "host", env={**os.environ, "BMPOSE_NO_SAIL": "1"})
    assert ref.returncode == 0, ref.stderr
    host = json.loads((tmp_path / "host" / "results.json").read_text())
    assert {r["image_id"] for r in host} <= {0, 1, 2} and len(host) >= 3
    _assert_same(tmp_path / "device" / "results.json", tmp_path / "host" / "results.json")


def test_bundle_under_python38_equals_bmpose_infer_onnx(small, bundles, bundle_py38, tmp_path):
    bundle = bundles["bm1684"]
    cfg = small
    onnx = cfg.artifacts / "onnx" / f"{MODEL}_b1.onnx"
    assert onnx.is_file()
    run = _run_bundle(bundle, "--no-vis", "--out", tmp_path / "device", python=bundle_py38, engine=f"onnx:{onnx}",
                      target="BM1684", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ref = _bmpose("infer", "--model", MODEL, "--artifacts-dir", small.root,
                  "--backend", "onnx", onnx, "--images", bundle / "images",
                  "--boxes", f"dets:{bundle / 'images' / 'boxes.json'}", "--no-vis", "--out", tmp_path / "host")
    assert ref.returncode == 0, ref.stderr
    _assert_same(tmp_path / "device" / "results.json", tmp_path / "host" / "results.json")
    # what the bundle imports: numpy, cv2, the stand-in's sophon, nothing of the build stack
    probe = subprocess.run([str(bundle_py38), "-c", "import sys; sys.path.insert(0, sys.argv[1]); import bmpose.device.app, "
                            "bmpose.device.sail_runner; print(' '.join(sorted(sys.modules)))", str(bundle)],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    loaded = {m.split(".")[0] for m in probe.stdout.split()}
    assert "numpy" in loaded and "cv2" in loaded and not loaded & set(FORBIDDEN)


def test_bundle_video_under_python38_equals_bmpose_infer_onnx(small, bundles, bundle_py38, clip, tmp_path):
    """The bm1684 bundle's detect -> pose on a video under Python 3.8, ONNX Runtime behind the stand-in for both
    bmodels, against `bmpose infer` with the same two ONNX files."""
    from bmpose.detector_config import load_detector

    bundle = bundles["bm1684"]
    meta = json.loads((bundle / "deploy.json").read_text())
    pose = small.artifacts / "onnx" / f"{MODEL}_b1.onnx"
    yolox = load_detector(artifacts=small.root).onnx
    engine = f"onnx:{pose}{os.pathsep}{Path(meta['detector']['bmodel']).name}={yolox}"
    run = _run_bundle(bundle, "--input", clip, "--out", tmp_path / "device", python=bundle_py38, engine=engine,
                      target="BM1684", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ref = _bmpose("infer", "--model", MODEL, "--artifacts-dir", small.root, "--backend", "onnx", pose, "--images", clip,
                  "--boxes", "detector:yolox_nano_416", "--no-vis", "--out", tmp_path / "host")
    assert ref.returncode == 0, ref.stderr
    _assert_same(tmp_path / "device" / "results.json", tmp_path / "host" / "results.json")


def test_bundle_byte_compiles_under_python37(bundles):
    python37 = pyenv_python("3.7")
    bundle = bundles["bm1684"]
    files = [str(p) for p in bundle.rglob("*.py")]
    out = subprocess.run([str(python37), "-c", "import sys\nfor f in sys.argv[1:]: "
                          "compile(open(f, encoding='utf-8').read(), f, 'exec')", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(files) >= 12


@pytest.mark.parametrize("version", ["2.7", "3.6"])
def test_an_older_python_gets_one_line_naming_the_version_needed(bundles, tmp_path, version):
    """An SE5 on its first image has Python 3.5: bmodel.py says what it needs instead of a SyntaxError."""
    run = _run_bundle(bundles["bm1684"], "--out", tmp_path / "vis", python=pyenv_python(version), cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"bmodel.py: error: Python 3.7 or newer is needed, this is Python {version} (")
    assert not (tmp_path / "vis").exists()


def test_the_bm1684_bundle_names_the_runtime_its_bmodels_need(bundles):
    meta = json.loads((bundles["bm1684"] / "deploy.json").read_text())
    assert meta["runtime"]["python"] == ">=3.7"
    assert (meta["runtime"]["libsophon"], meta["runtime"]["sophonsdk"]) == ("0.4.6", "v23.07.01")
    readme = (bundles["bm1684"] / "README.md").read_text()
    assert "libsophon 0.4.6 /\nSophonSDK v23.07.01 or newer" in readme and "make nntc" in readme
    assert json.loads((bundles["bm1684x"] / "deploy.json").read_text())["runtime"] == {"python": ">=3.7",
                                                                                     "sdk": "libsophon"}


def test_device_side_errors_are_one_line(small, bundles, tmp_path):
    cfg = small
    onnx = f"onnx:{cfg.artifacts / 'onnx' / f'{MODEL}_b1.onnx'}"
    bundle = bundles["bm1684x"]
    other = bundles["bm1684"] / "models" / f"{MODEL}_bm1684_int8_b1.bmodel"
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"GIF89a but not really an image")
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 999, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    bad_box = tmp_path / "bad_box.json"
    bad_box.write_text(json.dumps([{"image_id": 139, "bbox": [1, 2, -3, "x"], "score": 0.9}]))
    far, huge = tmp_path / "far.json", tmp_path / "huge.json"   # both ran before: keypoints near (4964, 4975), NaN
    far.write_text(json.dumps([{"image_id": 139, "bbox": [5000, 5000, 40, 50], "score": 0.9}]))
    huge.write_text(json.dumps([{"image_id": 139, "bbox": [0, 0, 1e12, 1e12], "score": 0.9}]))
    cases = [
        (("--bmodel", other), "built for bm1684"),
        (("--input", tmp_path / "missing.jpg"), "missing.jpg: no such image file or folder"),
        (("--input", corrupt), "corrupt.jpg: not a decodable image"),
        (("--boxes", dets), "image_id 999 is not one of the 4 images"),
        (("--boxes", bad_box), "entry 0 (image 139): bbox must be 4 finite numbers"),
        (("--boxes", far), "box [5000.0, 5000.0, 40.0, 50.0] lies outside its image"),
        (("--boxes", huge), "is over 100 times the size of its image"),
        (("--bmodel", tmp_path / "corrupt.jpg"), "not a bmodel"),
        (("--input", tmp_path / "missing.mp4"), "missing.mp4: no such video file"),
        (("--input", corrupt.with_suffix(".mp4")), "corrupt.mp4: OpenCV cannot open this video"),
        (("--input", tmp_path / "missing.mp4", "--boxes", dets), "a video takes --boxes detector or image"),
    ]
    corrupt.with_suffix(".mp4").write_bytes(b"not a video at all")
    for args, message in cases:
        out = tmp_path / "vis"
        run = _run_bundle(bundle, *args, "--out", out, engine=onnx, cwd=tmp_path)
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert lines[-1].startswith("bmodel.py: error: ") and message in lines[-1], (args, run.stderr)
        assert "Traceback" not in run.stderr and not out.exists()
    # --out naming the input folder would replace the user's pictures: refused, the folder byte-identical
    photos = tmp_path / "photos"
    shutil.copytree(bundle / "images", photos)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    run = _run_bundle(bundle, "--input", photos, "--out", photos, engine=onnx, cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "--out holds the input" in run.stderr
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    # a bmodel for the chip, on a device of the other chip
    run = _run_bundle(bundle, "--out", tmp_path / "vis", engine=onnx, target="BM1684", cwd=tmp_path)
    assert run.returncode == 1 and "but device 0 is a bm1684" in run.stderr
