"""`python3 bmodel.py` in a deploy bundle: person boxes on images -> keypoints on the Sophon device ->
vis_results/ pictures + a COCO results json, with host time per person for each stage.

Everything the model needs (input size, mean/std, colour order, codec, flip pairs, sigmas, CocoMetric's
options) comes from the bundle's deploy.json, written by `bmpose deploy` from the mmpose config; the crop,
normalisation, decode and OKS-NMS are bmpose's own core (bmpose/pose), the same code `bmpose infer` runs.
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

from ..pose import draw, pipeline
from ..pose.errors import PoseError
from ..pose.image_io import read_image
from ..pose.results import to_coco_results
from .inputs import image_id_of, list_images, load_detections

STAGES = ("decode", "preprocess", "inference", "postprocess")


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
    p = dict(meta["pose"])
    p["input_size"] = tuple(p["input_size"])
    return SimpleNamespace(**p)


def parse_args(argv, meta: dict, bundle_dir: Path):
    default_bmodel = meta["default_bmodel"]
    ap = argparse.ArgumentParser(
        prog="bmodel.py", description=f"{meta['model']} on a {meta['chip'].upper()} Sophon device: images -> "
        f"keypoints, pictures in vis_results/ and a COCO results json")
    ap.add_argument("--bmodel", default=str(bundle_dir / default_bmodel),
                    help=f"bmodel to run (default: {default_bmodel}; the batch size comes from the bmodel)")
    ap.add_argument("--input", default=None,
                    help="image file or folder (default: the bundled sample images with their boxes)")
    ap.add_argument("--boxes", default=None,
                    help="person boxes as COCO detection results json, matched to images by COCO file name "
                         "(default: the bundled boxes for the bundled images, else the whole image as the box)")
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
    return args


class Clock:
    """Seconds per stage."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        return now


def run(args, meta: dict, runner, spec, out_dir: Path) -> tuple[list, list, Clock, list]:
    """Every image through the model; returns (COCO results, pictures written, clock, skipped files)."""
    files = list_images(args.input)
    boxes = load_detections(args.boxes, files, meta.get("det_score_thr", 0.0)) if args.boxes else None
    flip_indices = spec.flip_indices
    clock = Clock()
    instances, pictures, skipped, persons = [], [], [], []
    for index, file in enumerate(files):
        t = time.perf_counter()
        try:
            image = read_image(file)
        except PoseError as e:
            if len(files) == 1:
                raise
            print(f"bmodel.py: warning: skipped {e}", file=sys.stderr)
            skipped.append(str(file))
            continue
        t = clock.add("decode", t)
        h, w = image.shape[:2]
        dets = boxes[file] if boxes is not None else [([0.0, 0.0, float(w), float(h)], 1.0)]
        if not dets:
            continue
        crops = pipeline.crop_boxes(image, [b for b, _ in dets], spec)
        x = pipeline.to_input(crops, spec)
        if args.flip:
            x = pipeline.with_flipped(x)
        t = clock.add("preprocess", t)
        hm = pipeline.run_model(runner.run, x, runner.batch_size)
        t = clock.add("inference", t)
        if args.flip:
            hm = pipeline.merge_flipped(hm, flip_indices, spec.shift_heatmap, spec.codec)
        kpts, scores = pipeline.keypoints(hm, crops, spec)
        image_id = image_id_of(file, index)
        for (bbox, score), c, k, s in zip(dets, crops, kpts, scores):
            instances.append({"image_id": image_id, "keypoints": k, "keypoint_scores": s, "bbox_score": score,
                              "area": float(np.prod(c.scale)), "bbox": bbox})
        clock.add("postprocess", t)
        persons.append(len(dets))
        if not args.no_vis:
            draw.draw_persons(image, ((k, s, bbox, score) for (bbox, score), k, s in zip(dets, kpts, scores)),
                              args.kpt_thr)
            name = file.stem + ".jpg"
            draw.write_jpg(out_dir / name, image)
            pictures.append(name)
    if len(skipped) == len(files):
        raise PoseError(f"{args.input}: none of its {len(files)} images could be read")
    t = time.perf_counter()
    results = to_coco_results(instances, np.asarray(spec.sigmas), **meta.get("metric", {}))
    clock.add("postprocess", t)
    clock.persons = sum(persons)
    return results, pictures, clock, skipped


def main(argv=None, bundle_dir=None) -> int:
    bundle_dir = Path(bundle_dir or Path(sys.argv[0]).resolve().parent)
    out_dir = tmp = None
    try:
        meta = load_bundle(bundle_dir)
        args = parse_args(sys.argv[1:] if argv is None else argv, meta, bundle_dir)
        spec = pose_spec(meta)
        from .sail_runner import SailRunner

        t0 = time.perf_counter()
        runner = SailRunner(args.bmodel, args.dev_id, chip=meta["chip"])
        want = (3, spec.input_size[1], spec.input_size[0])
        if tuple(runner.input_shape[1:]) != want:
            raise PoseError(f"{args.bmodel}: takes input {runner.input_shape}, this bundle's model needs "
                            f"(N, {', '.join(map(str, want))})")
        print(f"bmodel.py: {Path(args.bmodel).name} on device {args.dev_id} ({runner.chip.lower()}, batch "
              f"{runner.batch_size}), loaded in {time.perf_counter() - t0:.2f} s")
        out_dir = Path(args.out)
        tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        results, pictures, clock, skipped = run(args, meta, runner, spec, tmp)
        (tmp / "results.json").write_text(json.dumps(results))
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
    n = clock.persons
    print(f"bmodel.py: {n} persons{' x2 (flip test)' if args.flip else ''}, {len(pictures)} pictures and "
          f"results.json ({len(results)} after OKS-NMS) in {out_dir}/")
    per = {k: 1000 * v / max(n, 1) for k, v in clock.seconds.items()}
    print("bmodel.py: host ms per person: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
          + f" (total {sum(per.values()):.2f}; inference = sail process incl. host<->device copies)")
    if skipped:
        print(f"bmodel.py: {len(skipped)} image(s) skipped", file=sys.stderr)
    return 0
