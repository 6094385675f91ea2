"""Detect -> pose on real scenes: `bmpose infer --boxes detector:NAME` on a folder and on a video made here from
the bundled images (same frame count, one result per detected person per frame, each with bbox and score),
Ctrl-C keeping the frames done, and the one-line errors."""
import json

import cv2
import numpy as np
import pytest

from bmpose.cli import infer as infer_cli
from bmpose.detector_config import load_detector
from bmpose.errors import BmposeError
from bmpose.runtime import detector as detector_mod
from bmpose.runtime.detector import PersonDetector

FRAMES = 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory, coco_mini):
    """An mp4 of the first bundled images, 640x480 at 5 fps."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 480))
    for f in sorted(coco_mini[1].glob("*.jpg"))[:FRAMES]:
        w.write(cv2.resize(cv2.imread(str(f)), (640, 480)))
    w.release()
    return path


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


def test_folder_with_the_bundled_detector(tmp_path, coco_mini):
    out = tmp_path / "vis"
    assert infer_cli.main(["--images", str(coco_mini[1]), "--boxes", "detector:yolox_nano_416", "--out", str(out),
                           "--coco-ann", str(coco_mini[0])]) == 0
    results = json.loads((out / "results.json").read_text())
    ids = {im["id"] for im in json.loads(coco_mini[0].read_text())["images"]}
    assert len(results) > 30 and {r["image_id"] for r in results} <= ids   # the annotation file's image ids
    assert all(len(r["bbox"]) == 4 and 0.3 <= r["bbox_score"] <= 1 for r in results)
    assert len(list(out.glob("*.jpg"))) >= 15
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["boxes"] == "detector:yolox_nano_416" and "detector" in m["inputs"]


def test_video_same_frames_one_result_per_detected_person(tmp_path, clip):
    out = tmp_path / "vid"
    assert infer_cli.main(["--images", str(clip), "--boxes", "detector:", "--out", str(out)]) == 0
    frames_in, frames_out = _frames(clip), _frames(out / "annotated.mp4")
    assert len(frames_out) == len(frames_in) == FRAMES and frames_out[0].shape == frames_in[0].shape
    assert cv2.VideoCapture(str(out / "annotated.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    det = PersonDetector(load_detector())
    per_frame = [len(det(f).scores) for f in frames_in]
    results = json.loads((out / "results.json").read_text())
    assert sum(per_frame) > 0
    assert [sum(r["image_id"] == i for r in results) for i in range(FRAMES)] == per_frame
    assert all(len(r["bbox"]) == 4 and r["bbox_score"] >= 0.3 and 0 <= r["score"] <= 1 for r in results)
    assert not np.array_equal(frames_out[0], frames_in[0])   # drawn on
    assert json.loads((out / "manifest.json").read_text())["checks"]["frames"] == FRAMES


def test_ctrl_c_keeps_the_frames_done(tmp_path, clip, monkeypatch, capsys):
    calls = {"n": 0}
    real = PersonDetector.__call__

    def interrupted_at_frame_3(self, frame, score_thr=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, frame, score_thr)

    monkeypatch.setattr(detector_mod.PersonDetector, "__call__", interrupted_at_frame_3)
    out = tmp_path / "vid"
    assert infer_cli.main(["--images", str(clip), "--boxes", "detector:", "--out", str(out)]) == 130
    assert "interrupted after 3 frames" in capsys.readouterr().err
    assert len(_frames(out / "annotated.mp4")) == 3
    assert {r["image_id"] for r in json.loads((out / "results.json").read_text())} <= {0, 1, 2}
    assert json.loads((out / "manifest.json").read_text())["checks"]["interrupted"] is True


def test_video_errors(tmp_path, clip):
    with pytest.raises(BmposeError, match=r"clip\.mp4: a video has no boxes of its own: name a person detector"):
        infer_cli.main(["--images", str(clip), "--out", str(tmp_path / "x")])
    with pytest.raises(BmposeError, match=r"nothing\.mp4: no such video file"):
        infer_cli.main(["--images", str(tmp_path / "nothing.mp4"), "--boxes", "detector:",
                        "--out", str(tmp_path / "x")])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(BmposeError, match=r"bad\.mp4: OpenCV cannot open this video"):
        infer_cli.main(["--images", str(bad), "--boxes", "detector:", "--out", str(tmp_path / "x")])
    with pytest.raises(BmposeError, match="no such detector config"):
        infer_cli.main(["--images", str(clip), "--boxes", "detector:nope", "--out", str(tmp_path / "x")])
    empty = tmp_path / "empty.mp4"   # a video container with no frame in it
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    w.release()
    with pytest.raises(BmposeError, match=r"empty\.mp4: (no frames could be read|OpenCV cannot open)"):
        infer_cli.main(["--images", str(empty), "--boxes", "detector:", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_video(tmp_path, coco_mini, monkeypatch):
    """600 frames through detector -> pose -> annotated video: resident memory after the first 100 frames (caches,
    arenas warmed up) grows by less than RSS_GROWTH_MB by the last."""
    path = tmp_path / "long.mp4"
    images = [cv2.resize(cv2.imread(str(f)), (320, 240)) for f in sorted(coco_mini[1].glob("*.jpg"))[:10]]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    for i in range(600):
        w.write(images[i % len(images)])
    w.release()
    rss = {}
    real = detector_mod.PersonDetector.__call__

    def sampled(self, frame, score_thr=None):
        n = len(rss.setdefault("calls", []))
        rss["calls"].append(1)
        if n in (100, 599):
            rss[n] = _rss_mb()
        return real(self, frame, score_thr)

    monkeypatch.setattr(detector_mod.PersonDetector, "__call__", sampled)
    assert infer_cli.main(["--images", str(path), "--boxes", "detector:", "--out", str(tmp_path / "out")]) == 0
    assert len(rss["calls"]) == 600
    growth = rss[599] - rss[100]
    print(f"RSS at frame 100 {rss[100]:.0f} MB, at frame 599 {rss[599]:.0f} MB: {growth:+.1f} MB")
    assert growth < RSS_GROWTH_MB, growth


RSS_GROWTH_MB = 30   # measured +1.0 MB (134 -> 135 MB) (see the test's print); a leak of 50 KB per frame would show as 25 MB
