"""The one frame loop and the one pose step, for `bmpose infer` on the host and `bmodel.py` on the box.

  estimate(crops, run_all, spec, flip)      crops -> network input (+ mirror) -> outputs -> keypoints in pixels
  estimate_frame(image, boxes, model, ...)  one frame's person boxes through estimate() on a model (a backend,
                                            the bundle's sail runner: run, batch_size, path); pose_step binds it
  run(frames, boxes_for, pose, sink, ...)   frames in -> boxes -> pose -> sinks out, with the clock and Ctrl-C

`spec` is the model's resolved facts (`model_spec`): input size, mean/std, codec, and its own keypoint set
(names, flip indices, skeleton, sigmas); the host resolves it from the config exactly as the bundle's
deploy.json carries it, so both flip and draw a model's own keypoints alike. numpy + cv2 only, Python 3.7+.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from . import draw, pipeline
from .errors import PoseError

# sophon-demo's per-stage table, with the detector's stages beside the pose model's
STAGES = (("decode", "decode"), ("det_pre", "detector preprocess"), ("det_infer", "detector inference"),
          ("det_post", "detector postprocess"), ("preprocess", "pose preprocess"),
          ("inference", "pose inference"), ("postprocess", "pose postprocess"))


def model_spec(facts: dict) -> SimpleNamespace:
    """deploy.json's "pose" facts (bmpose.deploy.bundle.pose_facts) as the spec the core reads, with the
    keypoint set's drawing style resolved once."""
    p = dict(facts)
    p["input_size"] = tuple(p["input_size"])
    p["look"] = draw.style(p["keypoint_names"], p["skeleton_links"])
    return SimpleNamespace(**p)


class Clock:
    """Seconds per stage, frames and persons."""

    def __init__(self):
        self.seconds = dict.fromkeys((k for k, _ in STAGES), 0.0)
        self.frames = self.persons = 0
        self.wall = None   # wall-clock seconds of the loop: less than the stages' sum when decoding runs ahead

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        return now

    def table(self) -> str:
        """Host ms per frame and per person for each stage (sophon-demo's table)."""
        lines = [f"{'stage (host ms)':<22} {'per frame':>10} {'per person':>11}"]
        for key, label in STAGES + (("total", "total"),):
            s = sum(self.seconds.values()) if key == "total" else self.seconds[key]
            lines.append(f"{label:<22} {1000 * s / max(self.frames, 1):10.2f} {1000 * s / max(self.persons, 1):11.2f}")
        if self.wall is not None:
            lines.append(f"{'wall clock':<22} {1000 * self.wall / max(self.frames, 1):10.2f} "
                         f"{1000 * self.wall / max(self.persons, 1):11.2f}")
        return "\n".join(lines)


def person_boxes(dets) -> list:
    """A detector's Detections (xyxy) -> [(xywh, score)], what the pose step takes."""
    return [([x1, y1, x2 - x1, y2 - y1], s) for (x1, y1, x2, y2), s in zip(dets.boxes.tolist(), dets.scores.tolist())]


def estimate(crops, run_all, spec, flip: bool, clock: Clock | None = None, name: str = "the model"):
    """PersonCrops -> (keypoints (N, K, 2) in image pixels, scores (N, K), the network's outputs); `run_all(x)`
    runs a whole (N, 3, H, W) input (batching is the caller's). With `flip`, each crop's mirror runs beside it
    and the two merge with the spec's own flip indices."""
    t = time.perf_counter()
    x = pipeline.to_input(crops, spec)
    if flip:
        x = pipeline.with_flipped(x)
    t = clock.add("preprocess", t) if clock else t
    out = run_all(x)
    t = clock.add("inference", t) if clock else t
    got = pipeline.keypoint_count(out, spec.codec)
    if got != len(spec.keypoint_names):   # another model's outputs: flip and draw would index past them
        raise PoseError(f"{name}: gives {got} keypoints, the model's keypoint set has {len(spec.keypoint_names)}: "
                        f"outputs of another model")
    if flip:
        out = pipeline.merge_flipped(out, spec.flip_indices, spec.shift_heatmap, spec.codec,
                                     getattr(spec, "shift_coords", True))
    kpts, scores = pipeline.keypoints(out, crops, spec)
    if clock:
        clock.add("postprocess", t)
    return kpts, scores, out


def estimate_frame(image, boxes: list, model, spec, flip: bool, clock: Clock | None = None) -> list:
    """One frame's [(xywh, score)] -> [(xywh, score, crop, keypoints, scores)], through `model.run(batch)` in
    batches of `model.batch_size` (errors name `model.path`)."""
    if not boxes:
        return []
    t = time.perf_counter()
    crops = pipeline.crop_boxes(image, [b for b, _ in boxes], spec)
    if clock:
        clock.add("preprocess", t)
    kpts, scores, _ = estimate(crops, lambda x: pipeline.run_model(model.run, x, model.batch_size), spec, flip, clock,
                               str(model.path))
    if clock:
        clock.persons += len(boxes)
    return [(bbox, score, c, k, s) for (bbox, score), c, k, s in zip(boxes, crops, kpts, scores)]


def pose_step(model, spec, flip: bool):
    """estimate_frame bound to a model, a spec and the flip test: the `pose(image, boxes, clock)` run() takes."""
    return lambda image, boxes, clock: estimate_frame(image, boxes, model, spec, flip, clock)


def instance(image_id, person) -> dict:
    """One estimate_frame person as a results instance (bmpose.pose.results.to_coco_results)."""
    bbox, score, crop, k, s = person
    return {"image_id": image_id, "keypoints": k, "keypoint_scores": s, "bbox_score": score,
            "area": float(np.prod(crop.scale)), "bbox": bbox}


def drawn(image, persons, kpt_thr: float, spec):
    """The frame with its persons drawn in the keypoint set's own style."""
    return draw.draw_persons(image, ((k, s, bbox, score) for bbox, score, _, k, s in persons), kpt_thr, spec.look)


def run(frames, boxes_for, pose, sink, clock: Clock, source: str, skip=None, keep_on_interrupt: bool = True) -> bool:
    """frames: (key, image or the PoseError that says why not, decode seconds); for each: boxes_for(image, key,
    clock) -> pose(image, boxes, clock) -> sink(key, image, persons). An unreadable image goes to `skip(key,
    error)` (without one it is the error); an empty frame is an error. -> True when Ctrl-C stopped the loop
    (with keep_on_interrupt; the frames before it are complete), else False."""
    t0 = time.perf_counter()
    try:
        for key, image, seconds in frames:
            if isinstance(image, PoseError):
                if skip is None:
                    raise image
                skip(key, image)
                continue
            if image is None or 0 in image.shape[:2]:
                raise PoseError(f"{source}: frame {clock.frames} is empty (0x0)")
            clock.seconds["decode"] += seconds
            sink(key, image, pose(image, boxes_for(image, key, clock), clock))
            clock.frames += 1
            clock.wall = time.perf_counter() - t0
    except KeyboardInterrupt:
        if not keep_on_interrupt:
            raise
        return True
    return False
