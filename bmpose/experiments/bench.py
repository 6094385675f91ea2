"""Benchmarks for `bmpose bench`, each measured within one run so its ratios are comparable.

`BENCHMARKS` (at the bottom) names them: `calib` (LMDB crops/s), `infer` (persons/s on ONNX Runtime vs mmpose,
stage costs per person), `host` (the device bundle's pre/post-processing per person), `device` (simulated
device time per bmodel beside the host's ms per person), `simulators` (cmodel vs pymlir seconds per crop),
`deploy` (bmpose's deploy vs the raw model_deploy.py on the same inputs), `fused` (normalisation inside the
bmodel, an option measured), `estimate` (compile-only device time of variants not built), `scene` (detect ->
pose host time per frame beside the vendor's steps), `video` (a video through the frame loop, decode ahead and
encode behind as levers), `scale` (sharded evaluation at val2017 scale, memory, a local Ray cluster's
scale-out: bmpose.experiments.bench_scale). Each is
`fn(cfg, req: BenchRequest) -> rows`, a row being {"case": ..., then any numbers}.

Long: a registry of independent benchmarks, each a function that stands alone; they share only `timed` and
the bundled persons.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from bmpose import config as config_mod
from bmpose.calib.select import CalibWarning, _coco_jobs
from bmpose.calib.store import LMDB_NAME, build_lmdb
from bmpose.errors import BmposeError
from bmpose.pose import decode, pipeline
from bmpose.runtime.boxes import PersonBox, bundled_sample, gt_boxes
from bmpose.runtime.predict import predict, prepare, run_batches


@dataclasses.dataclass(frozen=True)
class BenchRequest:
    """What `bmpose bench` passes every benchmark (the estimate's axes; None: the config's)."""
    checkpoint: str | None = None
    chips: tuple | None = None
    precisions: tuple | None = None
    batches: tuple | None = None


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def bench_calib(cfg, req) -> list[dict]:
    """crops/s building an LMDB from the bundled COCO sample (repeated to a few hundred crops), 1 worker vs all
    cores, and LMDB bytes per 100 crops."""
    import tempfile

    ann = config_mod.DATA_DIR / "coco_val_mini" / "person_keypoints_val2017_subset.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibWarning)
        jobs, _, _, _ = _coco_jobs(ann, ann.parent / "images", 10 ** 6, 0, 1, 1)
    repeat = max(1, 640 // sum(len(p) for _, p in jobs))
    many, idx = [], 0
    for _ in range(repeat):
        for file, persons in jobs:
            many.append((file, [{**p, "idx": (idx := idx + 1)} for p in persons]))
    rows = []
    cores = os.cpu_count() or 1
    for workers in sorted({1, cores}):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            count = build_lmdb(many, Path(tmp) / LMDB_NAME, cfg.input_size, cfg.padding, {"bench": True},
                               workers=workers, progress=False)
            dt = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (Path(tmp) / LMDB_NAME).iterdir())
        rows.append({"benchmark": "calib", "case": f"build LMDB, {workers} worker(s), {len(many)} images",
                     "crops": count, "seconds": round(dt, 3), "crops_per_s": round(count / dt, 1),
                     "lmdb_bytes_per_100_crops": round(size * 100 / count)})
    return rows


def _bench_persons(cfg, n: int = 24) -> list[PersonBox]:
    boxes = gt_boxes(*bundled_sample())
    return [b for b in boxes if b.bbox[2] * b.bbox[3] > 0][:n]


def bench_infer(cfg, req) -> list[dict]:
    """End-to-end persons/s (read, crop, normalise, network, decode; the config's flip test) on ONNX Runtime
    at batch 1 and 4 vs mmpose's `inference_topdown`, same checkpoint and boxes, in this one run; plus the
    preprocessing and decode cost per person."""
    from bmpose.runtime.backends import open_backend
    from bmpose.weights.checkpoint import build_model
    from bmpose.convert.export import ensure_onnx
    from bmpose.weights.mmpose_shim import import_mmpose

    boxes = _bench_persons(cfg)
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
    t_pre = timed(lambda: _network_input(cfg, boxes))
    hm = run_batches(open_backend(onnx[4], kind="onnx"), _network_input(cfg, boxes), progress=False)
    t_dec = timed(lambda: decode.decode(hm, cfg.codec))
    rows.append({"benchmark": "infer", "case": "preprocess (read+crop+normalise) per person",
                 "ms_per_person": round(1e3 * t_pre / len(boxes), 3)})
    rows.append({"benchmark": "infer", "case": f"decode ({cfg.codec['type']}) per person",
                 "ms_per_person": round(1e3 * t_dec / len(boxes), 3)})
    return rows


def cmodel_seconds_per_crop(path: str, chip: str, x: np.ndarray) -> tuple[float, np.ndarray]:
    """One bmodel on the cmodel -> (seconds per crop, heatmaps). Call it in a process of the chip's own
    (TPU-MLIR's runtime: one chip per process), e.g. a spawned multiprocessing pool."""
    from bmpose.runtime.backends import open_backend

    cm = open_backend(path, chip, kind="cmodel")
    t0 = time.perf_counter()
    y = cm.run(x)
    return (time.perf_counter() - t0) / len(x), y


def bench_simulators(cfg, req) -> list[dict]:
    """Seconds per crop of each built bmodel on the cmodel and of its deployed tpu.mlir on pymlir, same crops,
    with their agreement. Every chip's cmodel runs in a fresh process of its own (spawned), so one run covers
    both chips."""
    import multiprocessing

    from bmpose.runtime.backends import open_backend
    from bmpose.layout import list_bmodels

    bmodels = list_bmodels(cfg)
    if not bmodels:
        return [{"benchmark": "simulators", "case": "no bmodel built (make fp32 / make int8)"}]
    boxes = _bench_persons(cfg, 4)
    x = _network_input(cfg, boxes)
    # pymlir first, with no simulator process alive: a busy or spinning neighbour on a 2-core machine slows
    # pymlir's many short parallel ops tenfold (measured), which would make the ratio meaningless.
    mlir = {}
    for b in bmodels:
        xb = x[:b["batch"]]
        ml = open_backend(b["tpu_mlir"], b["chip"], kind="mlir")
        ml.run(xb)  # first call reads the weights
        mlir[b["dir"]] = timed(lambda: ml.run(xb), 3) / len(xb), ml.run(xb)
    rows = []
    for chip in dict.fromkeys(b["chip"] for b in bmodels):
        with multiprocessing.get_context("spawn").Pool(1) as cmodel_process:
            for b in (b for b in bmodels if b["chip"] == chip):
                t_ml, y_ml = mlir[b["dir"]]
                t_cm, y_cm = cmodel_process.apply(cmodel_seconds_per_crop, (str(b["path"]), chip, x[:b["batch"]]))
                rows.append({"benchmark": "simulators", "case": b["dir"].name, "mlir_s_per_crop": round(t_ml, 3),
                             "cmodel_s_per_crop": round(t_cm, 3), "x_mlir_vs_cmodel": round(t_cm / t_ml, 1),
                             "max_abs_cmodel_vs_mlir": float(np.abs(y_cm - y_ml).max())})
    rows += _bench_mlir_pool(bmodels, x)
    return rows


def _bench_mlir_pool(bmodels, x) -> list[dict]:
    """What eval gets from spreading pymlir over all cores (MlirBackend.run_many): INT8 batch-1 bmodels, a run
    of 4 crops per core, one process vs a pool of one per core (its start-up included)."""
    from bmpose.runtime.backends.mlir import MlirBackend

    cores = os.cpu_count() or 1
    crops = np.concatenate([x] * cores)[:4 * cores]
    rows = []
    for b in (b for b in bmodels if b["precision"] == "int8" and b["batch"] == 1):
        seconds = {}
        for workers in (1, cores):
            ml = MlirBackend(b["tpu_mlir"], b["chip"], workers=workers)
            ml.pool_worth_s = 0.0
            seconds[workers] = timed(lambda: run_batches(ml, crops, progress=False), 1) / len(crops)
        rows.append({"benchmark": "simulators", "case": f"{b['dir'].name} eval run, {len(crops)} crops",
                     "mlir_s_per_crop": round(seconds[1], 3), f"mlir_{cores}proc_s_per_crop": round(seconds[cores], 3),
                     "x_pool_vs_one": round(seconds[1] / seconds[cores], 2)})
    return rows


def random_outputs(cfg, n: int, input_size, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Random network outputs for `n` crops at `input_size` (w, h) in the model's codec, and that codec: what the
    decode stage is timed on, for heatmaps (the model's keypoints, its stride), SimCC vectors and a regression
    model's coordinates alike."""
    from bmpose.runtime.results import keypoint_set

    w, h = input_size
    k = len(keypoint_set(cfg)["keypoint_names"])
    codec = {**cfg.codec, "input_size": (w, h)}
    if codec.get("type") == "RegressionLabel":
        shape = (n, int(codec["num_keypoints"]) * int(codec.get("values_per_keypoint", 2)))
    elif pipeline.is_simcc(codec):
        ratio = codec["simcc_split_ratio"]
        shape = (n, k, int(round(w * ratio)) + int(round(h * ratio)))
    else:   # the model's own stride, at this input size
        hw, hh = (int(round(d * cfg.heatmap_size[i] / cfg.input_size[i])) for i, d in enumerate((w, h)))
        codec["heatmap_size"] = (hw, hh)
        shape = (n, k, hh, hw)
    return np.random.default_rng(seed).random(shape).astype(np.float32), codec


def timed(fn, repeat=3) -> float:
    """Best wall time of `repeat` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best



def bench_deploy(cfg, req, rounds: int = 5) -> list[dict]:
    """bmpose's deploy against TPU-MLIR's own: the first chip's INT8 batch-1 bmodel, redeployed `rounds` times
    each way on the same inputs, alternating: `bmpose build --no-report` (a fresh process, in a private copy
    of the artifacts where only that bmodel is missing) vs the raw `model_deploy.py` command bmpose ran (read
    from its log) in a scratch folder. Both under the same kernel pin; the raw tool's own spread (min..max)
    is reported beside the ratio of medians, which is what the 1.05x goal is about."""
    import shlex
    import shutil
    import statistics
    import subprocess
    import sys
    import tempfile

    from bmpose.layout import list_bmodels
    from bmpose.tpu_mlir.runner import tpu_env
    from bmpose.convert.steps import link

    target = next((b for b in list_bmodels(cfg) if b["precision"] == "int8" and b["batch"] == 1), None)
    if target is None:
        return [{"benchmark": "deploy", "case": "no INT8 batch-1 bmodel built (make int8)"}]
    head = (target["dir"] / "model_deploy.log").read_text().splitlines()[0]
    raw_args = shlex.split(head.split(" && ", 1)[1])
    mlir_dir = cfg.layout.mlir(1)
    times: dict[str, list[float]] = {"raw": [], "bmpose": []}
    with tempfile.TemporaryDirectory(prefix="bench_deploy_") as tmp:
        art = Path(tmp) / "artifacts"
        keep = {"onnx", "calib", "cali_inputs", "cali_table", "mlir", "checkpoint"}
        shutil.copytree(cfg.artifacts, art / cfg.name, symlinks=True,
                        ignore=lambda d, names: [n for n in names if Path(d) == cfg.artifacts and n not in keep])
        env = tpu_env()
        cmd = [sys.executable, "-m", "bmpose", "build", "--precision", "int8", "--model", str(cfg.path),
               "--artifacts-dir", str(art), "--chips", target["chip"], "--batches", "1", "--no-report"]
        for _ in range(rounds):
            raw = Path(tempfile.mkdtemp(dir=tmp))
            for f in [*mlir_dir.iterdir(), target["dir"] / "qtable"]:
                if f.is_file():
                    link(f, raw)   # hard link, or a copy across file systems
            t0 = time.perf_counter()
            subprocess.run([shutil.which(raw_args[0], path=env["PATH"]), *raw_args[1:]], cwd=raw, env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times["raw"].append(time.perf_counter() - t0)
            shutil.rmtree(art / cfg.name / target["dir"].name, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times["bmpose"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [{"benchmark": "deploy", "case": f"{target['dir'].name}: bmpose build vs raw model_deploy.py, "
                                            f"{rounds} rounds each",
             "raw_s_median": round(med["raw"], 2),
             "raw_s_spread": f"{min(times['raw']):.2f}..{max(times['raw']):.2f}",
             "bmpose_s_median": round(med["bmpose"], 2),
             "bmpose_s_spread": f"{min(times['bmpose']):.2f}..{max(times['bmpose']):.2f}",
             "x_bmpose_vs_raw": round(med["bmpose"] / med["raw"], 3)}]


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


def bench_device(cfg, req) -> list[dict]:
    """Per built bmodel (chip x precision x batch): simulated device ms per batch and per person (the compiler's
    cycle estimate, bmpose.tpu_mlir.devtime), persons/s on the TPU alone, beside the host's own
    pre/post-processing ms per person (bench_host's stages at the model's input size, in this run)."""
    from bmpose.layout import list_bmodels

    bmodels = list_bmodels(cfg)
    if not bmodels:
        return [{"benchmark": "device", "case": "no bmodel built (make fp32 / make int8)"}]
    host = next(r for r in bench_host(cfg, req) if r["case"].split(", ")[1] == "{}x{}".format(*cfg.input_size))
    rows = []
    for b in bmodels:
        t = b["manifest"].get("checks", {}).get("device_time") or {}
        rows.append({"benchmark": "device", "case": b["dir"].name, "chip": b["chip"], "precision": b["precision"],
                     "batch": b["batch"], **_device_columns(t.get("runtime_ms"), b["batch"]),
                     "host_pre_post_ms_per_person": host["total_ms"], "source": t.get("source") or t.get("why")})
    return rows


def _device_columns(ms: float | None, batch: int) -> dict:
    """Simulated ms per batch and per person, persons/s on the TPU alone (None where no time is known)."""
    return {"device_ms_per_batch": round(ms, 4) if ms else None,
            "device_ms_per_person": round(ms / batch, 4) if ms else None,
            "tpu_persons_per_s": round(1e3 * batch / ms) if ms else None}


def _network_input(cfg, boxes) -> np.ndarray:
    """Read, crop and normalise the persons as inference does (the config's colour order included)."""
    return pipeline.to_input(prepare(cfg, boxes, [])[1], cfg)


def bench_estimate(cfg, req) -> list[dict]:
    """Compile-only simulated device time (bmpose.convert.estimate: model_deploy without verification, the
    compiler's embedded estimate) for --chips x --precisions x --batches (default: the config's chips and
    batches, every precision a chip has), beside the verified build's own figure where that bmodel is built."""
    from bmpose.chips import CHIPS, PRECISIONS, check_chip_precision, chip_supports
    from bmpose.layout import list_bmodels
    from bmpose.convert.estimate import ensure_estimate
    from bmpose.convert.pipeline import Pipeline
    from bmpose.progress import say

    chips, precisions = req.chips or cfg.chips, req.precisions or PRECISIONS
    for chip in chips:
        if chip not in CHIPS:
            raise BmposeError(f"--chips {chip}: unknown chip (known: {', '.join(CHIPS)})")
        for p in req.precisions or ():
            check_chip_precision(chip, p)   # asked for by name: refuse clearly, as build does
    targets = [(c, p, b) for c in chips for p in precisions for b in (req.batches or cfg.batches)
               if chip_supports(c, p)]
    num, method = int(cfg.calibration.get("num", 100)), cfg.calibration.get("method", "kl")
    int8 = any(p == "int8" for _, p, _ in targets)
    # calibration crops: the transform's test input, and INT8's calibration table
    pipe = Pipeline(cfg, req.checkpoint, num=num)
    need = sorted({b for _, _, b in targets} | ({1} if int8 else set()))
    pipe.onnx(*need)
    mlir = {b: pipe.mlir(b) for b in need}
    table = pipe.cali_table(method) if int8 else None
    built = {(b["chip"], b["precision"], b["batch"]): b for b in list_bmodels(cfg)}
    rows = []
    for i, (chip, precision, batch) in enumerate(targets, 1):
        checks, fresh = ensure_estimate(cfg, chip, precision, batch, mlir=mlir[batch],
                                        cali_table=table if precision == "int8" else None)
        ms = checks["device_time"]["runtime_ms"]   # always there: ensure_estimate refuses a bmodel without one
        say(f"estimate {i}/{len(targets)}: {chip} {precision} b{batch}: {ms:.3f} ms"
            + (f" (compiled in {checks['deploy_seconds']:.0f} s)" if fresh else " (up to date)"), file=sys.stderr)
        b = built.get((chip, precision, batch))
        verified = ((b["manifest"].get("checks", {}).get("device_time") or {}).get("runtime_ms") if b else None)
        rows.append({"case": f"{chip} {precision} b{batch}", "chip": chip, "precision": precision, "batch": batch,
                     **_device_columns(ms, batch),
                     "verified_build_ms_per_batch": round(verified, 4) if verified else None,
                     "compile_s": checks["deploy_seconds"]})
    return rows


def _fused_worker(float_bmodel: str, fused_bmodel: str, x_float, x_uint8):
    """In a process of its own (the cmodel binds one chip per process): both bmodels on the same crops."""
    from bmpose.runtime.backends.cmodel import CmodelBackend

    runs = []
    for path, x in ((float_bmodel, x_float), (fused_bmodel, x_uint8)):
        backend = CmodelBackend(path)
        runs.append(np.concatenate([backend.run(x[i:i + 1]) for i in range(len(x))]))
    return runs


def _fused_bmodel(cfg, target: dict, tmp: Path) -> Path:
    """The default build's BM1684X INT8 b1 bmodel again (same calibration table and qtable), with the
    normalisation inside: its input is the uint8 BGR crop."""
    import shutil

    from bmpose.tpu_mlir.runner import run_tool

    w, h = cfg.input_size
    shutil.copyfile(target["dir"] / "qtable", tmp / "qtable")
    scale = ",".join(f"{1 / s:.10g}" for s in cfg.std)
    run_tool("model_transform.py", ["--model_name", cfg.name, "--model_def", cfg.layout.onnx_file(1),
                                    "--input_shapes", f"[[1,3,{h},{w}]]", "--mean", ",".join(map(str, cfg.mean)),
                                    "--scale", scale, "--pixel_format", "rgb" if cfg.bgr_to_rgb else "bgr",
                                    "--channel_format", "nchw", "--mlir", "fused.mlir"], tmp, "transform.log")
    run_tool("model_deploy.py", ["--mlir", "fused.mlir", "--quantize", "INT8", "--calibration_table",
                                 target["manifest"]["inputs"]["cali_table"]["path"], "--quantize_table", "qtable",
                                 "--chip", "bm1684x", "--fuse_preprocess", "--customization_format", "BGR_PACKED",
                                 "--model", "fused.bmodel", "--debug"], tmp, "deploy.log")
    return tmp / "fused.bmodel"


def bench_fused(cfg, req, persons: int = 16) -> list[dict]:
    """An option measured, not the default: the normalisation inside the bmodel. TPU-MLIR's model_transform
    --mean/--scale/--pixel_format rgb and model_deploy --fuse_preprocess --customization_format BGR_PACKED make
    a BM1684X INT8 batch-1 bmodel (same calibration table and qtable as the default build) whose input is the
    uint8 BGR crop as cv2.warpAffine returns it: the host then only warps, and sends a quarter of the bytes.
    Measured against the default float-input bmodel on the same persons (both on the cmodel): heatmap cosine,
    keypoint differences, host ms per person, simulated device ms."""
    import multiprocessing
    import tempfile
    from types import SimpleNamespace

    from bmpose.layout import list_bmodels
    from bmpose.pose import crop as crop_mod
    from bmpose.pose.image_io import read_image
    from bmpose.tpu_mlir.devtime import device_time

    target = next((b for b in list_bmodels(cfg) if (b["chip"], b["precision"], b["batch"]) == ("bm1684x", "int8", 1)),
                  None)
    if target is None:
        return [{"benchmark": "fused", "case": "no BM1684X INT8 batch-1 bmodel built (make int8)"}]
    w, h = cfg.input_size
    with tempfile.TemporaryDirectory(prefix="bench_fused_") as tmp:
        fused = _fused_bmodel(cfg, target, Path(tmp))
        boxes = gt_boxes(*bundled_sample())[:persons]
        images = {b.file: read_image(b.file) for b in boxes}
        spec = SimpleNamespace(input_size=(w, h), padding=cfg.padding, mean=cfg.mean, std=cfg.std,
                               bgr_to_rgb=cfg.bgr_to_rgb, codec=cfg.codec)
        crops = [pipeline.crop_boxes(images[b.file], [b.bbox], spec)[0] for b in boxes]
        mats = [crop_mod.affine_matrix(c.center, c.scale, (w, h)) for c in crops]
        warped = lambda: np.stack([cv2.warpAffine(images[b.file], m, (w, h), flags=cv2.INTER_LINEAR)  # noqa: E731
                                   for b, m in zip(boxes, mats)])
        t_float = timed(lambda: pipeline.to_input([pipeline.crop_boxes(images[b.file], [b.bbox], spec)[0]
                                                   for b in boxes], spec), 5)
        t_warp = timed(warped, 5)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            hm_float, hm_fused = pool.apply(_fused_worker, (str(target["path"]), str(fused),
                                                            pipeline.to_input(crops, spec),
                                                            warped().astype(np.float32)))
        t_dev = {k: device_time(p, "bm1684x", 1)["ms_per_person"]
                 for k, p in (("float", target["path"]), ("fused", fused))}
    a, b = hm_float.reshape(len(hm_float), -1), hm_fused.reshape(len(hm_fused), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    k_float, _ = pipeline.keypoints(hm_float, crops, spec)
    k_fused, _ = pipeline.keypoints(hm_fused, crops, spec)
    dist = np.linalg.norm(k_float - k_fused, axis=-1)
    return [{"benchmark": "fused", "case": f"BM1684X INT8 b1, normalisation in the bmodel (uint8 BGR input) vs "
                                           f"float input, {len(boxes)} persons on the cmodel",
             "heatmap_cos_mean": round(float(cos.mean()), 6), "heatmap_cos_min": round(float(cos.min()), 6),
             "heatmap_max_abs_diff": float(np.abs(hm_float - hm_fused).max()),
             "heatmap_max": float(np.abs(hm_float).max()),
             "keypoints_moved_px_median": round(float(np.median(dist)), 3),
             "keypoints_moved_px_max": round(float(dist.max()), 3),
             "host_ms_float_input": round(1e3 * t_float / len(boxes), 3),
             "host_ms_fused_input": round(1e3 * t_warp / len(boxes), 3),
             "device_ms_float": round(t_dev["float"], 4), "device_ms_fused": round(t_dev["fused"], 4),
             "input_bytes_float": int(4 * 3 * w * h), "input_bytes_fused": int(3 * w * h)}]



def _vendor_letterbox(frame, size):
    """sophon-demo's YOLO Python preprocessing, as documented: centred letterbox (resize + copyMakeBorder 114),
    BGR->RGB, HWC->CHW, /255 as float32. Re-implemented here for the comparison only."""
    h, w = frame.shape[:2]
    r = min(size[0] / w, size[1] / h)
    nw, nh = int(round(w * r)), int(round(h * r))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size[1] - nh) // 2, (size[0] - nw) // 2
    img = cv2.copyMakeBorder(img, top, size[1] - nh - top, left, size[0] - nw - left, cv2.BORDER_CONSTANT,
                             value=(114, 114, 114))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.expand_dims(np.ascontiguousarray(img), 0)


def _vendor_nms(boxes, scores, thr):
    """The classic numpy NMS loop the vendor's Python samples use."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        order = order[1:][inter / (areas[i] + areas[order[1:]] - inter) <= thr]
    return keep


def _vendor_detect_post(raw, input_hw, strides, score_thr, iou):
    """Per-anchor decode of the YOLOX output in numpy, score filter, NMS (the vendor sample's shape of it)."""
    grids, expanded = [], []
    for s in strides:
        hs, ws = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        expanded.append(np.full((hs * ws, 1), s))
    grids, expanded = np.concatenate(grids), np.concatenate(expanded)
    out = raw.copy()
    out[:, :2] = (out[:, :2] + grids) * expanded
    out[:, 2:4] = np.exp(out[:, 2:4]) * expanded
    scores = out[:, 4] * out[:, 5]
    m = scores > score_thr
    b = out[m, :4]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    return xyxy[_vendor_nms(xyxy, scores[m], iou)] if len(xyxy) else xyxy


def _vendor_pose_pre(frame, boxes, w, h, mean, std):
    """sophon-demo's HRNet Python preprocessing per person: affine warp of the padded box, RGB, /255,
    normalise, CHW."""
    out = []
    for x, y, bw, bh in boxes:
        c = np.array([x + bw / 2, y + bh / 2], np.float32)
        if bw > bh * w / h:
            bh = bw * h / w
        else:
            bw = bh * w / h
        sw, sh = bw * 1.25, bh * 1.25
        src = np.float32([c, c + [0, -sh / 2], c + [-sw / 2, -sh / 2]])
        dst = np.float32([[w / 2, h / 2], [w / 2, 0], [0, 0]])
        m = cv2.getAffineTransform(src, dst)
        img = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR)[..., ::-1] / 255.0
        out.append(((img - mean) / std).transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def _vendor_pose_post(heatmaps, boxes, w, h):
    """Per person: argmax, quarter-pixel shift toward the higher neighbour, back through the inverse affine."""
    n, k, hh, hw = heatmaps.shape
    res = []
    for i in range(n):
        flat = heatmaps[i].reshape(k, -1)
        idx, maxv = flat.argmax(1), flat.max(1)
        preds = np.stack([idx % hw, idx // hw], 1).astype(np.float32)
        for j in range(k):
            px, py = int(preds[j, 0]), int(preds[j, 1])
            if 1 < px < hw - 1 and 1 < py < hh - 1:
                hm = heatmaps[i, j]
                preds[j] += np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]]) * 0.25
        x, y, bw, bh = boxes[i]
        scale = np.array([bw, bh]) * 1.25 / [hw, hh]
        res.append((preds * scale + [x - bw * 0.125, y - bh * 0.125], maxv))
    return res


def _scene_frame(images, size, persons, seed=0):
    """A frame of `size` (w, h) from a bundled image, with `persons` plausible person boxes (xywh)."""
    frame = cv2.resize(images[persons % len(images)], size)
    rng = np.random.default_rng(seed + persons)
    w, h = size
    bh = rng.uniform(0.2, 0.6, persons) * h
    bw = bh * rng.uniform(0.3, 0.6, persons)
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return frame, [tuple(map(float, b)) for b in np.stack([x, y, bw, bh], 1)]


def _scene_tpu_ms(cfg, dcfg) -> tuple[dict, dict]:
    """Simulated ms of the model's INT8 batch-1 bmodel and of the detector's build at its config's precision,
    per chip, where built."""
    from bmpose.layout import list_bmodels

    def ms(b):
        return (b["manifest"]["checks"].get("device_time") or {}).get("runtime_ms")

    tpu = {b["chip"]: ms(b) for b in list_bmodels(cfg) if b["precision"] == "int8" and b["batch"] == 1}
    det_tpu = {b["chip"]: ms(b) for b in list_bmodels(dcfg) if dcfg.precisions.get(b["chip"]) == b["precision"]}
    return tpu, det_tpu


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
    tpu, det_tpu = _scene_tpu_ms(cfg, dcfg)
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
            v = {"det_pre": timed(lambda: _vendor_letterbox(frame, dcfg.input_size), repeat),
                 "det_post": timed(lambda: _vendor_detect_post(raw, x.shape[2:], dcfg.strides, dcfg.score_thr,
                                                               dcfg.nms_iou), repeat),
                 "pose_pre": timed(lambda: _vendor_pose_pre(frame, boxes, w, h, mean, std), repeat),
                 "pose_post": timed(lambda: _vendor_pose_post(hm, boxes, w, h), repeat)}
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
    tpu, det_tpu = _scene_tpu_ms(cfg, dcfg)
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


def bench_scale(cfg, req) -> list[dict]:
    """Sharded evaluation at val2017 scale on a set made from the bundled persons: persons/s on ONNX Runtime and
    through the INT8 build's tpu.mlir with flip, memory after the first and last shard, the projected val2017
    time, and a local Ray cluster of 1 and 2 nodes (bmpose.experiments.bench_scale)."""
    from bmpose.experiments import bench_scale as scale   # imports Ray: only when asked

    return scale.bench_scale(cfg, req)


BENCHMARKS = {"calib": bench_calib, "infer": bench_infer, "host": bench_host, "device": bench_device,
              "simulators": bench_simulators, "deploy": bench_deploy, "fused": bench_fused, "estimate": bench_estimate,
              "scene": bench_scene, "video": bench_video, "scale": bench_scale}
