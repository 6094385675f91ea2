"""Images and person boxes on the device: an image file or folder, and optional COCO detection results
(`[{"image_id", "bbox": [x, y, w, h], "score", "category_id"}]`) matched to the images by COCO's file naming
(000000000139.jpg is image 139). Every bad entry is a one-line PoseError naming the file and the entry."""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from pathlib import Path

from ..pose.errors import PoseError
from ..pose.image_io import IMAGE_SUFFIXES


def list_images(images) -> list:
    p = Path(images)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise PoseError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return files
    raise PoseError(f"{p}: no such image file or folder")


def image_id_of(path: Path, index: int) -> int:
    """COCO file names carry the image id (000000000139.jpg -> 139); other names get their list index."""
    return int(path.stem) if path.stem.isdigit() else index


def load_detections(path, files: list, score_thr: float = 0.0, category_id: int = 1) -> dict:
    """COCO detection results -> {image file: [(bbox xywh, score), ...]} for `files`, person boxes (category
    `category_id` when entries name one) with score >= score_thr. Entries naming an image that is not among
    `files` are an error: a results file for another image set would silently draw nothing."""
    try:
        with open(path, encoding="utf-8") as fh:
            dets = json.load(fh)
    except FileNotFoundError:
        raise PoseError(f"{path}: detection file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PoseError(f"{path}: not a readable JSON file ({str(e).splitlines()[0]})") from None
    if not isinstance(dets, list):
        raise PoseError(f"{path}: expected a list of COCO detection results, got a {type(dets).__name__}")
    by_id = {image_id_of(f, i): f for i, f in enumerate(files)}
    out = {f: [] for f in files}
    for i, d in enumerate(dets):
        where = f"{path}: entry {i}"
        if not isinstance(d, dict):
            raise PoseError(f"{where}: expected an object, got {type(d).__name__}")
        image_id = d.get("image_id")
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise PoseError(f"{where}: image_id must be an integer, got {image_id!r}")
        if image_id not in by_id:
            raise PoseError(f"{where}: image_id {image_id} is not one of the {len(files)} images given "
                            f"(COCO names: {image_id:012d}.jpg)")
        bbox = d.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(finite_number(v) for v in bbox)):
            raise PoseError(f"{where} (image {image_id}): bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        if not (bbox[2] > 0 and bbox[3] > 0):
            raise PoseError(f"{where} (image {image_id}): bbox {bbox} has zero or negative size")
        score = d.get("score", 1.0)
        if not finite_number(score):
            raise PoseError(f"{where} (image {image_id}): score must be a finite number, got {score!r}")
        category = d.get("category_id", category_id)
        if isinstance(category, bool) or not isinstance(category, int):
            raise PoseError(f"{where} (image {image_id}): category_id must be an integer, got {category!r}")
        if category != category_id or score < score_thr:
            continue
        out[by_id[image_id]].append(([float(v) for v in bbox], float(score)))
    return out


def check_out_dir(out, *inputs) -> Path:
    """The --out folder is replaced whole when a run ends: refuse, before any work, every folder whose
    replacement would take the user's data with it (the host's `bmpose infer` and the bundle's bmodel.py share
    this). -> the folder, resolved."""
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise PoseError(f"{out}: --out names an existing file; it takes a folder (replaced whole by each run)")
    if path == Path.cwd().resolve() or path.parent == path or path == _home():
        raise PoseError(f"{out}: --out would replace this whole folder; name a folder of its own (default "
                        f"vis_results)")
    for given in inputs:
        if given is None or "://" in str(given) or str(given).isdigit():   # a stream or a camera index
            continue
        src = Path(given).expanduser().resolve()
        if src == path or path in src.parents:
            raise PoseError(f"{out}: --out holds the input {given}, which replacing it would delete; name "
                            f"another folder")
    if path.is_dir() and any(path.iterdir()) and not (path / "results.json").is_file():
        raise PoseError(f"{out}: --out is a folder with other files (not an earlier output: no results.json); "
                        f"it is replaced whole, so name a new or empty folder")
    return path


def positive_int(text: str) -> int:
    """argparse type of a count (--limit, --subset): 0 or a negative number would silently mean all or nothing."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be 1 or more")
    return n


def _home():
    try:
        return Path.home().resolve()
    except (KeyError, RuntimeError):   # no HOME and no passwd entry (a service on the box)
        return None


def finite_number(v) -> bool:
    """A finite JSON number (Python's json reads NaN and Infinity; a huge int does not fit a float). The host's
    COCO loader (bmpose.cocodata) uses this one too."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:   # an int too large for a float
        return False


# .mjpeg: a stream of JPEG frames (a camera's raw dump), not one picture
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".mjpeg", ".mjpg")


def is_video(spec) -> bool:
    """A camera index, a stream address or a file with a video suffix."""
    spec = str(spec)
    return spec.isdigit() or "://" in spec or Path(spec).suffix.lower() in VIDEO_SUFFIXES


def open_capture(spec):
    """OpenCV's VideoCapture on a file, a camera index or a stream; one-line errors naming it."""
    import cv2

    spec = str(spec)
    if not (spec.isdigit() or "://" in spec or Path(spec).is_file()):
        raise PoseError(f"{spec}: no such video file")
    cap = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    if not cap.isOpened():
        raise PoseError(f"{spec}: OpenCV cannot open this video (not a video, or no codec for it)")
    return cap


def open_writer(path, fps: float, size):
    """An mp4v writer of `size` (w, h) at `fps`; one line when OpenCV cannot write one there."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), tuple(int(v) for v in size))
    if not writer.isOpened():
        raise PoseError(f"{path}: OpenCV cannot write an mp4v video here")
    return writer


def video_facts(cap, limit=None):
    """-> (fps, (w, h), frames to expect or None)."""
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    total = min(total, limit) if total and limit else (limit or total)
    return fps, size, total


def capture_frames(cap, limit=None):
    """The frames of an open VideoCapture, up to `limit`, as (index, frame, seconds its decode took): what
    bmpose.pose.frames.run takes."""
    n = 0
    while limit is None or n < limit:
        t = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            return
        yield n, frame, time.perf_counter() - t
        n += 1


class Ahead:
    """The items of an iterator, produced up to `ahead` in advance by a thread of its own (ahead=0: in the
    caller's thread), in order; an error of the iterator is raised in the caller's thread.

    Decoding is the largest host cost of a JPEG folder (26 ms a 1080p frame here): reading the next image or
    video frame while the TPU and the host work on this one hides it (OpenCV releases the GIL while it decodes).
    Use it as a context manager: leaving it (end, error, Ctrl-C) stops the thread, then the source may close.
    """

    def __init__(self, items, ahead: int = 2):
        self._items, self._thread = iter(items), None
        if ahead > 0:
            self._stop = threading.Event()
            self._queue = queue.Queue(maxsize=ahead)
            self._thread = threading.Thread(target=self._produce, name="read-ahead", daemon=True)
            self._thread.start()

    def _produce(self):
        try:
            for item in self._items:
                if not self._put((item,)) or self._stop.is_set():
                    return
        except Exception as e:  # handed over: the caller raises it in its own thread
            self._put(e)
        self._put(None)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        if self._thread is None:
            yield from self._items
            return
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item[0]

    def close(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FrameWriter:
    """An open VideoWriter fed through a thread of its own: encoding (mp4v at 1080p: ~20 ms a frame here, the
    largest cost of a video run) overlaps the next frames' work; OpenCV releases the GIL while it encodes.
    At most `ahead` frames wait (ahead=0: write in the caller's thread). close() writes every frame handed over
    (also after Ctrl-C), then releases the writer."""

    def __init__(self, writer, ahead: int = 2):
        self._writer, self._error, self._thread = writer, None, None
        if ahead > 0:
            self._queue = queue.Queue(maxsize=ahead)
            self._thread = threading.Thread(target=self._encode, name="frame-writer", daemon=True)
            self._thread.start()

    def _encode(self):
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._writer.write(frame)
                except Exception as e:  # handed over: write() and close() raise it in the caller's thread
                    self._error = e

    def write(self, frame):
        if self._thread is None:
            self._writer.write(frame)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._writer.release()
        if self._error is not None:
            raise self._error
