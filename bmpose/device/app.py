"""`python3 bmodel.py` in a deploy bundle: images, a folder or a video -> person boxes (the bundle's detector
bmodel, a COCO detection file, or the whole image) -> keypoints on the Sophon device -> vis_results/ pictures
(or annotated.mp4) + a COCO results json, with host time per frame and per person for each stage.

Everything the models need (input sizes, mean/std, colour order, codec, flip pairs, sigmas, CocoMetric's
options; the detector's letterbox, scaling and decoder) comes from the bundle's deploy.json, written by
`bmpose deploy`; the crop, normalisation, decode, detection and OKS-NMS are bmpose's own core (bmpose/pose),
the same code `bmpose infer` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..pose import draw, frames
from ..pose.crop import box_problem
from ..pose.detect import detect_frame
from ..pose.errors import PoseError
from ..pose.image_io import read_image
from ..pose.results import to_coco_results
from .inputs import (Ahead, FrameWriter, capture_frames, check_out_dir, image_id_of, is_video, list_images,
                     load_detections, open_capture, open_writer, positive_int, video_facts)

def load_bundle(bundle_dir: Path) -> dict:
    path = bundle_dir / "deploy.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PoseError(f"{path}: not found (run bmodel.py from an unpacked bmpose bundle)") from None
    except ValueError as e:
        raise PoseError(f"{path}: not valid JSON ({e})") from None
    if not str(meta.get("format", "")).startswith("bmpose-deploy"):
        raise PoseError(f"{path}: not a bmpose deploy.json (format {meta.get('format')!r})")
    return meta


def pose_spec(meta: dict) -> SimpleNamespace:
    return frames.model_spec(meta["pose"])


def detector_spec(meta: dict):
    d = meta.get("detector")
    if not d:
        return None
    d = dict(d)
    d["input_size"] = tuple(d["input_size"])
    return SimpleNamespace(**d)


def parse_args(argv, meta: dict, bundle_dir: Path):
    default_bmodel = meta["default_bmodel"]
    det = meta.get("detector")
    ap = argparse.ArgumentParser(
        prog="bmodel.py", description=f"{meta['model']} on a {meta['chip'].upper()} Sophon device: images or a "
        f"video -> {'person detector -> ' if det else ''}keypoints, pictures (or annotated.mp4) in vis_results/ "
        f"and a COCO results json")
    ap.add_argument("--bmodel", default=str(bundle_dir / default_bmodel),
                    help=f"pose bmodel to run (default: {default_bmodel}; the batch size comes from the bmodel)")
    ap.add_argument("--input", default=None,
                    help="image file, folder or video (.mp4 ..., a camera index, rtsp://...) (default: the bundled "
                         "sample images with their annotated boxes)")
    ap.add_argument("--boxes", default=None,
                    help="detector (the bundle's person detector" + (f", {det['name']}" if det else ": none in this "
                         "bundle") + ") | image (the whole image is one person) | a COCO detection results json, "
                         "matched to images by COCO file name (default: the bundled boxes for the bundled images, "
                         "else " + ("detector" if det else "image") + ")")
    if det:
        ap.add_argument("--det-bmodel", default=str(bundle_dir / det["bmodel"]),
                        help=f"detector bmodel (default: {det['bmodel']})")
        ap.add_argument("--det-score-thr", type=float, default=det["score_thr"],
                        help=f"person score threshold (default: {det['score_thr']})")
    ap.add_argument("--limit", type=positive_int, default=None, help="stop after this many frames of a video")
    ap.add_argument("--decode-ahead", type=int, default=2, metavar="N",
                    help="images or video frames decoded in advance by a thread of their own (0: in turn)")
    ap.add_argument("--dev-id", type=int, default=0, help="TPU device id (bm-smi lists them)")
    ap.add_argument("--flip", action="store_true", help="flip test (the mmpose config's test setting: "
                    f"{'on' if meta['pose'].get('flip_test') else 'off'})")
    ap.add_argument("--kpt-thr", type=float, default=0.3, help="keypoints drawn above this score")
    ap.add_argument("--out", default="vis_results", help="pictures + results.json folder (replaced)")
    ap.add_argument("--no-vis", action="store_true", help="results json only")
    args = ap.parse_args(argv)
    if args.input is None:
        samples = meta.get("samples") or {}
        args.input = str(bundle_dir / samples.get("images", "images"))
        if args.boxes is None and samples.get("boxes"):
            args.boxes = str(bundle_dir / samples["boxes"])
    if args.boxes is None:
        args.boxes = "detector" if det else "image"
    if args.boxes == "detector" and not det:
        raise PoseError("--boxes detector: this bundle has no person detector (bmpose deploy --detector NAME adds one)")
    if is_video(args.input) and args.boxes not in ("detector", "image"):
        raise PoseError(f"--boxes {args.boxes}: a video takes --boxes detector or image, not a detection file")
    return args


class Detector:
    """The bundle's person detector bmodel on sail, through the core's detect_frame."""

    def __init__(self, meta: dict, args):
        from .sail_runner import SailRunner

        self.spec = detector_spec(meta)
        self.runner = SailRunner(args.det_bmodel, args.dev_id, chip=meta["chip"])
        self.score_thr = args.det_score_thr
        self.seconds = {}

    def __call__(self, frame, clock: frames.Clock):
        before = dict(self.seconds)
        dets = detect_frame(self.runner.run, frame, self.spec, self.score_thr, self.seconds)
        for key in ("pre", "infer", "post"):
            clock.seconds["det_" + key] += self.seconds[key] - before.get(key, 0.0)
        return frames.person_boxes(dets)


def run(args, meta: dict, runner, spec, out_dir: Path, detector=None) -> dict:
    """Every image (or video frame) through boxes -> pose (bmpose.pose.frames, the loop `bmpose infer` runs).
    -> {"results", "pictures", "clock", "skipped", "interrupted"} (a video stopped by Ctrl-C keeps the frames
    done)."""
    clock = frames.Clock()
    done = {"instances": [], "pictures": [], "clock": clock, "skipped": [], "interrupted": False}
    pose = frames.pose_step(runner, spec, args.flip)

    if is_video(args.input):
        _run_video(args, pose, spec, out_dir, detector, done)
    else:
        _run_images(args, meta, pose, spec, out_dir, detector, done)
    t = time.perf_counter()
    done["results"] = to_coco_results(done.pop("instances"), np.asarray(spec.sigmas), **meta.get("metric", {}))
    clock.add("postprocess", t)
    return done


def _boxes_for(args, image, file, boxes, detector, clock):
    if detector is not None:
        return detector(image, clock)
    h, w = image.shape[:2]
    if boxes is not None:
        for bbox, _ in boxes[file]:
            problem = box_problem(bbox, w, h)
            if problem:
                raise PoseError(f"{args.boxes}: {file.name}: box {bbox} {problem}")
        return boxes[file]
    return [([0.0, 0.0, float(w), float(h)], 1.0)]


def _read_images(files):
    """((index, file), image or the PoseError that names why not, seconds) per file: what Ahead reads in
    advance."""
    for index, file in enumerate(files):
        t = time.perf_counter()
        try:
            image = read_image(file)
        except PoseError as e:
            image = e
        yield (index, file), image, time.perf_counter() - t


def _run_images(args, meta, pose, spec, out_dir, detector, done):
    files = list_images(args.input)
    boxes = None
    if args.boxes not in ("detector", "image"):
        boxes = load_detections(args.boxes, files, meta.get("det_score_thr", 0.0))

    def skip(key, error):
        if len(files) == 1:
            raise error
        print(f"bmodel.py: warning: skipped {error}", file=sys.stderr)
        done["skipped"].append(str(key[1]))

    def sink(key, image, persons):
        index, file = key
        done["instances"] += [frames.instance(image_id_of(file, index), p) for p in persons]
        if persons and not args.no_vis:
            draw.write_jpg(out_dir / (file.stem + ".jpg"), frames.drawn(image, persons, args.kpt_thr, spec))
            done["pictures"].append(file.stem + ".jpg")

    with Ahead(_read_images(files), args.decode_ahead) as images:
        frames.run(images, lambda image, key, clock: _boxes_for(args, image, key[1], boxes, detector, clock), pose,
                   sink, done["clock"], args.input, skip=skip, keep_on_interrupt=False)
    if len(done["skipped"]) == len(files):
        raise PoseError(f"{args.input}: none of its {len(files)} images could be read")


def _run_video(args, pose, spec, out_dir, detector, done):
    cap = open_capture(args.input)
    fps, size, _ = video_facts(cap, args.limit)
    writer = None
    clock = done["clock"]

    def sink(key, frame, persons):
        done["instances"] += [frames.instance(key, p) for p in persons]
        if writer is not None:
            writer.write(frames.drawn(frame, persons, args.kpt_thr, spec))

    try:
        if not args.no_vis:
            writer = FrameWriter(open_writer(out_dir / "annotated.mp4", fps, size))
        t0 = time.perf_counter()
        with Ahead(capture_frames(cap, args.limit), args.decode_ahead) as frame_iter:
            done["interrupted"] = frames.run(frame_iter, lambda f, key, c: _boxes_for(args, f, None, None, detector, c),
                                             pose, sink, clock, args.input)
    except KeyboardInterrupt:
        done["interrupted"] = True   # while opening: nothing was done
    finally:
        if writer is not None:
            writer.close()
            clock.wall = time.perf_counter() - t0   # the last frames' encoding included
        cap.release()
    if clock.frames == 0 and not done["interrupted"]:
        raise PoseError(f"{args.input}: no frames could be read from this video")
    if writer is not None:
        done["pictures"].append("annotated.mp4")


def main(argv=None, bundle_dir=None) -> int:
    bundle_dir = Path(bundle_dir or Path(sys.argv[0]).resolve().parent)
    out_dir = tmp = None
    try:
        meta = load_bundle(bundle_dir)
        args = parse_args(sys.argv[1:] if argv is None else argv, meta, bundle_dir)
        check_out_dir(args.out, args.input, args.boxes if args.boxes not in ("detector", "image") else None,
                      args.bmodel, getattr(args, "det_bmodel", None), bundle_dir / "bmodel.py")
        spec = pose_spec(meta)
        from .sail_runner import SailRunner

        t0 = time.perf_counter()
        runner = SailRunner(args.bmodel, args.dev_id, chip=meta["chip"])
        want = (3, spec.input_size[1], spec.input_size[0])
        if tuple(runner.input_shape[1:]) != want:
            raise PoseError(f"{args.bmodel}: takes input {runner.input_shape}, this bundle's model needs "
                            f"(N, {', '.join(map(str, want))})")
        detector = Detector(meta, args) if args.boxes == "detector" else None
        print(f"bmodel.py: {Path(args.bmodel).name} on device {args.dev_id} ({runner.chip.lower()}, batch "
              f"{runner.batch_size})" + (f", person detector {Path(args.det_bmodel).name}" if detector else "")
              + f", loaded in {time.perf_counter() - t0:.2f} s")
        out_dir = Path(args.out)
        tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        done = run(args, meta, runner, spec, tmp, detector)
        (tmp / "results.json").write_text(json.dumps(done["results"]))
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
        tmp = None
    except PoseError as e:
        print(f"bmodel.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bmodel.py: interrupted", file=sys.stderr)
        return 130
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    clock = done["clock"]
    what = "annotated.mp4" if "annotated.mp4" in done["pictures"] else f"{len(done['pictures'])} pictures"
    print(f"bmodel.py: {clock.frames} frames, {clock.persons} persons{' x2 (flip test)' if args.flip else ''}, "
          f"{what} and results.json ({len(done['results'])} after OKS-NMS) in {out_dir}/")
    print(clock.table())
    print("(inference = sail process incl. host<->device copies)")
    if done["skipped"]:
        print(f"bmodel.py: {len(done['skipped'])} image(s) skipped", file=sys.stderr)
    if done["interrupted"]:
        print(f"bmodel.py: interrupted after {clock.frames} frames; their results are kept", file=sys.stderr)
        return 130
    return 0
