"""A video through `bmpose infer --images clip.mp4` (the core's frame loop, bmodel.py's too) with the TPU
time slept by a stand-in: decode ahead and encode behind as levers."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from bmpose.bench.common import scene_tpu_ms
from bmpose.runtime.boxes import bundled_sample


class _TpuStandIn:
    """A pose 'device' for bench_video: sleeps the simulated TPU time of each batch (the host is free meanwhile,
    as it is while a real TPU runs) and returns heatmaps of the right shape."""

    batch_size, path = 1, "TPU stand-in"

    def __init__(self, cfg, ms_per_person: float):
        from bmpose.runtime.results import keypoint_set

        keypoints = len(keypoint_set(cfg)["keypoint_names"])
        self.ms, self.shape = ms_per_person, (keypoints, cfg.heatmap_size[1], cfg.heatmap_size[0])

    def run(self, x):
        time.sleep(self.ms * len(x) / 1e3)
        return np.random.default_rng(0).random((len(x),) + self.shape, dtype=np.float32)


def bench_video(cfg, req, frames: int = 48, repeat: int = 2) -> list[dict]:
    """Decoding ahead (inputs.Ahead's thread) and encoding behind (FrameWriter's) against both in turn, on a
    1080p mp4 made from the bundled images, through `bmpose infer --images clip.mp4`, i.e. the core's frame loop and
    pose step (bmpose.pose.frames), the ones the bundle's bmodel.py runs:
    the detector and pose networks are stand-ins that sleep their simulated BM1684X time and give the ONNX
    detector's real boxes, so the host stages and the TPU waits are those of the box. Wall ms per frame."""
    import tempfile

    from bmpose.detector_config import load_detector
    from bmpose.pose import detect as detect_mod
    from bmpose.pose.image_io import read_image
    from bmpose.runtime.backends import open_backend
    from bmpose.runtime.video import run_video

    dcfg = load_detector()
    tpu, det_tpu = scene_tpu_ms(cfg, dcfg)
    if not tpu.get("bm1684x") or not det_tpu.get("bm1684x"):
        return [{"benchmark": "video", "case": "needs the BM1684X builds: make int8 and make detector"}]
    det = open_backend(dcfg.onnx, kind="onnx")
    images = [cv2.resize(read_image(f), (1920, 1080)) for f in sorted(bundled_sample()[1].glob("*.jpg"))[:8]]
    raws = [np.asarray(det.run(detect_mod.frame_input(im, dcfg)[1])) for im in images]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        clip = Path(tmp) / "clip.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1920, 1080))
        for i in range(frames):
            writer.write(images[i % len(images)])
        writer.release()
        seen = []

        def detector_tpu(x):
            time.sleep(det_tpu["bm1684x"] / 1e3)
            return raws[len(seen) % len(raws)]

        def detector(frame):
            dets = detect_mod.detect_frame(detector_tpu, frame, dcfg)
            seen.append(len(dets.boxes))
            return dets

        # (decode ahead, encode ahead): all in turn, decoding ahead only, both (the default)
        wall = {(0, 0): [], (2, 0): [], (2, 2): []}
        for _ in range(repeat):
            for ahead in wall:
                seen.clear()
                done = run_video(cfg, _TpuStandIn(cfg, tpu["bm1684x"]), detector, str(clip), Path(tmp) / "out.mp4",
                                 progress=False, decode_ahead=ahead[0], encode_ahead=ahead[1])
                wall[ahead].append((done["seconds"] / done["frames"], done["decode_seconds"] / done["frames"]))
        persons = sum(seen) / len(seen)
        best = {k: min(v) for k, v in wall.items()}
        rows.append({"benchmark": "video", "case": f"1920x1080 mp4, {frames} frames, {persons:.1f} persons/frame, "
                                                  f"BM1684X TPU time slept",
                     "decode_ms": round(1e3 * best[0, 0][1], 2),
                     "wall_ms_in_turn": round(1e3 * best[0, 0][0], 2),
                     "wall_ms_decode_ahead": round(1e3 * best[2, 0][0], 2),
                     "wall_ms_decode_and_encode_ahead": round(1e3 * best[2, 2][0], 2),
                     "x_faster": round(best[0, 0][0] / best[2, 2][0], 2)})
    return rows
