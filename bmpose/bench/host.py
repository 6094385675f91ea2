"""Host-side benchmarks: persons/s of inference (ONNX Runtime against mmpose), the bundle's pre/post per
person, detect -> pose per frame beside the vendor's steps (bmpose.bench.vendor)."""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from bmpose.pose import decode, pipeline
from bmpose.runtime.boxes import bundled_sample, gt_boxes
from bmpose.runtime.predict import predict, run_batches
from bmpose.bench.common import bench_persons, network_input, random_outputs, scene_tpu_ms, timed
from bmpose.bench import vendor


def bench_infer(cfg, req) -> list[dict]:
    """End-to-end persons/s (read, crop, normalise, network, decode; the config's flip test) on ONNX Runtime
    at batch 1 and 4 vs mmpose's `inference_topdown`, same checkpoint and boxes, in this one run; plus the
    preprocessing and decode cost per person."""
    from bmpose.runtime.backends import open_backend
    from bmpose.weights.checkpoint import build_model
    from bmpose.convert.export import ensure_onnx
    from bmpose.weights.mmpose_shim import import_mmpose

    boxes = bench_persons(cfg)
    onnx = ensure_onnx(cfg, req.checkpoint, batches=(1, 4), verbose=False)
    flip = cfg.flip_test
    rows = []

    import_mmpose()
    from mmpose.apis import inference_topdown

    model = build_model(cfg, req.checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_image: dict = {}
        for b in boxes:  # one call per image with all its boxes: mmpose's fastest use of its API
            by_image.setdefault(str(b.file), []).append(b.xyxy)
        t_mm = timed(lambda: [inference_topdown(model, f, np.stack(xyxy), "xyxy") for f, xyxy in by_image.items()],
                     2)
    mm_pps = len(boxes) / t_mm
    rows.append({"benchmark": "infer", "case": "mmpose inference_topdown (PyTorch CPU)", "persons": len(boxes),
                 "persons_per_s": round(mm_pps, 1), "x_vs_mmpose": 1.0})
    for batch in (1, 4):
        backend = open_backend(onnx[batch], kind="onnx")
        t = timed(lambda: predict(cfg, backend, boxes, flip, progress=False))
        rows.append({"benchmark": "infer", "case": f"bmpose ONNX Runtime b{batch}", "persons": len(boxes),
                     "persons_per_s": round(len(boxes) / t, 1), "x_vs_mmpose": round(len(boxes) / t / mm_pps, 2)})
    # stage costs per person
    t_pre = timed(lambda: network_input(cfg, boxes))
    hm = run_batches(open_backend(onnx[4], kind="onnx"), network_input(cfg, boxes), progress=False)
    t_dec = timed(lambda: decode.decode(hm, cfg.codec))
    rows.append({"benchmark": "infer", "case": "preprocess (read+crop+normalise) per person",
                 "ms_per_person": round(1e3 * t_pre / len(boxes), 3)})
    rows.append({"benchmark": "infer", "case": f"decode ({cfg.codec['type']}) per person",
                 "ms_per_person": round(1e3 * t_dec / len(boxes), 3)})
    return rows


def bench_host(cfg, req) -> list[dict]:
    """Host CPU time per person of the device bundle's own stages (bmpose.pose.pipeline: crop, normalise,
    heatmap decode + mapping back; image decoding excluded), on the bundled COCO persons, at the config's
    input size and at HRNet-W32's 256x192; beside the vendor sample's documented steps (warp, /255,
    per-channel normalise, transpose) and the core's previous numpy colour swap + transposed normalise, all
    in this run. Goal: <= 0.6 ms per person at 256x192 (the box's CPU is several times slower than this one)."""
    from types import SimpleNamespace

    from bmpose.pose import crop as crop_mod
    from bmpose.pose.image_io import read_image

    boxes = gt_boxes(*bundled_sample())
    images = {b.file: read_image(b.file) for b in boxes}
    rows = []
    for w, h in dict.fromkeys([tuple(cfg.input_size), (192, 256)]):
        n = len(boxes)
        hm, codec = random_outputs(cfg, n, (w, h))
        spec = SimpleNamespace(input_size=(w, h), padding=cfg.padding, mean=cfg.mean, std=cfg.std,
                               bgr_to_rgb=cfg.bgr_to_rgb, codec=codec)
        crops = [pipeline.crop_boxes(images[b.file], [b.bbox], spec)[0] for b in boxes]
        t_crop = timed(lambda: [pipeline.crop_boxes(images[b.file], [b.bbox], spec) for b in boxes], 5)
        t_norm = timed(lambda: pipeline.to_input(crops, spec), 5)
        t_dec = timed(lambda: pipeline.keypoints(hm, crops, spec), 5)
        mean = np.asarray(cfg.mean, np.float32) / 255
        std = np.asarray(cfg.std, np.float32) / 255
        mats = [crop_mod.affine_matrix(c.center, c.scale, (w, h)) for c in crops]

        def vendor():  # sophon-demo's HRNet python preprocessing, as documented: warp, RGB, /255, normalise, CHW
            for b, m in zip(boxes, mats):
                x = cv2.warpAffine(images[b.file], m, (w, h), flags=cv2.INTER_LINEAR)[..., ::-1] / 255.0
                np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1), dtype=np.float32)

        def previous():  # the core before: numpy colour swap, float normalise over a transposed view
            out = [np.ascontiguousarray(cv2.warpAffine(images[b.file], m, (w, h))[..., ::-1]) for b, m in zip(boxes, mats)]
            x = np.stack(out).transpose(0, 3, 1, 2).astype(np.float32)
            np.ascontiguousarray((x - np.float32(cfg.mean).reshape(1, 3, 1, 1)) / np.float32(cfg.std).reshape(1, 3, 1, 1))

        t_vendor, t_prev = timed(vendor, 5), timed(previous, 5)
        total = t_crop + t_norm + t_dec
        ms = lambda t: round(1e3 * t / n, 3)  # noqa: E731
        rows.append({"benchmark": "host", "case": f"bundle pre/post per person, {w}x{h}, {n} persons",
                     "crop_ms": ms(t_crop), "normalise_ms": ms(t_norm), "decode_ms": ms(t_dec),
                     "total_ms": ms(total), "vendor_preprocess_ms": ms(t_vendor),
                     "previous_preprocess_ms": ms(t_prev), "x_vs_vendor_preprocess": round(t_vendor / (t_crop + t_norm), 2)})
    return rows


def _scene_frame(images, size, persons, seed=0):
    """A frame of `size` (w, h) from a bundled image, with `persons` plausible person boxes (xywh)."""
    frame = cv2.resize(images[persons % len(images)], size)
    rng = np.random.default_rng(seed + persons)
    w, h = size
    bh = rng.uniform(0.2, 0.6, persons) * h
    bw = bh * rng.uniform(0.3, 0.6, persons)
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return frame, [tuple(map(float, b)) for b in np.stack([x, y, bw, bh], 1)]


def bench_scene(cfg, req, repeat: int = 5) -> list[dict]:
    """Detect -> pose host time per frame, stage by stage (the device bundle's calls: the core's frame_input,
    detect, crop_boxes + to_input, keypoints), at 1920x1080 and 640x480 with 1, 5 and 20 persons, beside a
    re-implementation of the vendor sample's documented Python steps on the same frames, in this run; and the
    simulated TPU ms per frame of the detector bmodel (the detector config's precision) plus the model's INT8
    batch-1 bmodel per person, where built. Image decoding is the same call for both and is reported on its
    own. Pose at the config's input size (MODEL=hrnet_w32_256x192 for sophon-demo's 256x192)."""
    from bmpose.detector_config import load_detector
    from bmpose.pose import detect as detect_mod
    from bmpose.pose.image_io import read_image
    from bmpose.runtime.backends import open_backend

    dcfg = load_detector()
    det = open_backend(dcfg.onnx, kind="onnx")
    files = sorted(bundled_sample()[1].glob("*.jpg"))[:8]
    images = [read_image(f) for f in files]
    w, h = cfg.input_size
    spec = cfg
    mean, std = np.asarray(cfg.mean, np.float32) / 255, np.asarray(cfg.std, np.float32) / 255
    tpu, det_tpu = scene_tpu_ms(cfg, dcfg)
    rows = []
    for size in ((1920, 1080), (640, 480)):
        ok, jpg = cv2.imencode(".jpg", cv2.resize(images[0], size))
        t_decode = timed(lambda: cv2.imdecode(jpg, cv2.IMREAD_COLOR), repeat)
        for persons in (1, 5, 20):
            frame, boxes = _scene_frame(images, size, persons)
            box, x = detect_mod.frame_input(frame, dcfg)
            raw = np.asarray(det.run(x))[0]
            hm, _ = random_outputs(cfg, persons, cfg.input_size, seed=persons)
            crops = pipeline.crop_boxes(frame, boxes, spec)
            t = {"det_pre": timed(lambda: detect_mod.frame_input(frame, dcfg), repeat),
                 "det_post": timed(lambda: detect_mod.detect(raw, dcfg.decoder, box, frame.shape,
                                                             classes=dcfg.classes, score_thr=dcfg.score_thr,
                                                             iou_thr=dcfg.nms_iou, strides=dcfg.strides), repeat),
                 "pose_pre": timed(lambda: pipeline.to_input(pipeline.crop_boxes(frame, boxes, spec), spec), repeat),
                 "pose_post": timed(lambda: pipeline.keypoints(hm, crops, spec), repeat)}
            v = {"det_pre": timed(lambda: vendor.letterbox(frame, dcfg.input_size), repeat),
                 "det_post": timed(lambda: vendor.detect_post(raw, x.shape[2:], dcfg.strides, dcfg.score_thr,
                                                               dcfg.nms_iou), repeat),
                 "pose_pre": timed(lambda: vendor.pose_pre(frame, boxes, w, h, mean, std), repeat),
                 "pose_post": timed(lambda: vendor.pose_post(hm, boxes, w, h), repeat)}
            ms = lambda s: round(1e3 * s, 3)  # noqa: E731
            row = {"benchmark": "scene", "case": f"{size[0]}x{size[1]}, {persons} persons", "decode_ms": ms(t_decode)}
            row.update({f"{k}_ms": ms(t[k]) for k in t})
            row["host_ms"] = ms(sum(t.values()))
            row["vendor_host_ms"] = ms(sum(v.values()))
            row.update({f"vendor_{k}_ms": ms(v[k]) for k in v})
            row["x_vs_vendor"] = round(sum(v.values()) / sum(t.values()), 2)
            for chip in sorted(set(tpu) | set(det_tpu)):
                d, p = det_tpu.get(chip), tpu.get(chip)
                row[f"{chip}_tpu_ms"] = round((d or 0) + (p or 0) * persons, 3) if (d or p) else None
            rows.append(row)
    return rows
