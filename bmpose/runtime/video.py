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
from bmpose.pose import draw, pipeline
from bmpose.progress import bar
from bmpose.runtime.boxes import PersonBox
from bmpose.runtime.predict import Prediction, heatmaps_for, look

def pose_frame(cfg, backend, frame: np.ndarray, boxes: list[PersonBox], flip: bool) -> list[Prediction]:
    """The persons of one in-memory frame: the same crop, batches and decode as bmpose.runtime.predict."""
    if not boxes:
        return []
    crops = pipeline.crop_boxes(frame, [b.bbox for b in boxes], cfg)
    hm = heatmaps_for(cfg, backend, pipeline.to_input(crops, cfg), flip, progress=False)
    kpts, scores = pipeline.keypoints(hm, crops, cfg)
    return [Prediction(b, k, s, float(np.prod(c.scale))) for b, c, k, s in zip(boxes, crops, kpts, scores)]


def run_video(cfg, backend, detector, spec: str, out_video: Path, *, flip: bool = False, limit: int | None = None,
              kpt_thr: float = 0.3, progress: bool = True, decode_ahead: int = 2,
              encode_ahead: int = 2) -> dict:
    """-> {"predictions", "frames", "interrupted", "fps", "size", "seconds", "decode_seconds"}; out_video is
    written (mp4v). Frames are decoded `decode_ahead` in advance by a thread (Ahead) and encoded by
    another, `encode_ahead` frames behind (FrameWriter)."""
    cap = open_capture(spec)
    fps, size, total = video_facts(cap, limit)
    try:
        writer = FrameWriter(open_writer(out_video, fps, size), encode_ahead)
    except BmposeError:
        cap.release()
        raise
    done = {"predictions": [], "frames": 0, "interrupted": False, "fps": fps, "size": list(size),
            "decode_seconds": 0.0}
    t0 = time.perf_counter()
    style = look(cfg)
    try:
        with bar(total, "video", "frame", show=progress) as b, Ahead(capture_frames(cap, limit), decode_ahead) as frames:
            for frame, seconds in frames:
                i = done["frames"]
                d = detector(frame)
                boxes = [PersonBox(i, Path(spec), (x1, y1, x2 - x1, y2 - y1), float(s), None, f"{spec}: frame {i}")
                         for (x1, y1, x2, y2), s in zip(d.boxes.tolist(), d.scores.tolist())]
                preds = pose_frame(cfg, backend, frame, boxes, flip)
                writer.write(draw.draw_persons(frame, ((p.keypoints, p.scores, p.box.bbox, p.box.score)
                                                       for p in preds), kpt_thr, style))
                done["predictions"] += preds
                done["frames"] = i + 1
                done["decode_seconds"] += seconds
                b.update(1)
    except KeyboardInterrupt:
        done["interrupted"] = True   # between or inside a frame: the frames before it are complete
    finally:
        writer.close()
        cap.release()
    done["seconds"] = time.perf_counter() - t0
    return done
