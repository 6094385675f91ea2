"""A video (a file, a camera index, an RTSP address: whatever OpenCV's VideoCapture opens) -> person detector
-> pose, frame by frame -> an annotated video of the same size and fps, and the predictions with the frame
index as image id. Ctrl-C stops between frames and keeps what is done: the video is closed, the results of
the frames done are returned."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bmpose.device.inputs import Ahead, FrameWriter, capture_frames, open_capture, open_writer, video_facts
from bmpose.errors import BmposeError
from bmpose.pose import frames as loop
from bmpose.progress import bar
from bmpose.runtime.boxes import PersonBox
from bmpose.runtime.predict import Prediction
from bmpose.runtime.results import model_spec


def run_video(cfg, backend, detector, spec: str, out_video: Path, *, flip: bool = False, limit: int | None = None,
              kpt_thr: float = 0.3, progress: bool = True, decode_ahead: int = 2,
              encode_ahead: int = 2) -> dict:
    """-> {"predictions", "frames", "interrupted", "fps", "size", "seconds", "decode_seconds"}; out_video is
    written (mp4v). Frames are decoded `decode_ahead` in advance by a thread (Ahead) and encoded by
    another, `encode_ahead` frames behind (FrameWriter); each goes through the core's frame loop and estimate
    (bmpose.pose.frames), the bundle's."""
    cap = open_capture(spec)
    fps, size, total = video_facts(cap, limit)
    try:
        writer = FrameWriter(open_writer(out_video, fps, size), encode_ahead)
    except BmposeError:
        cap.release()
        raise
    model, clock = model_spec(cfg), loop.Clock()
    done = {"predictions": [], "fps": fps, "size": list(size)}

    def sink(i, frame, persons):
        writer.write(loop.drawn(frame, persons, kpt_thr, model))
        done["predictions"] += [Prediction(PersonBox(i, Path(spec), tuple(bbox), float(score), None,
                                                     f"{spec}: frame {i}"), k, s, float(np.prod(c.scale)))
                                for bbox, score, c, k, s in persons]
        b.update(1)

    t0 = time.perf_counter()
    try:
        with bar(total, "video", "frame", show=progress) as b, Ahead(capture_frames(cap, limit), decode_ahead) as it:
            done["interrupted"] = loop.run(it, lambda frame, i, c: loop.person_boxes(detector(frame)),
                                           loop.pose_step(backend, model, flip), sink, clock, spec)
    except KeyboardInterrupt:
        done["interrupted"] = True   # between or inside a frame: the frames before it are complete
    finally:
        writer.close()
        cap.release()
    return {**done, "frames": clock.frames, "seconds": time.perf_counter() - t0,
            "decode_seconds": clock.seconds["decode"]}
