"""Device-side benchmarks without a device: simulated device time per bmodel beside the host's ms per
person, and the cmodel against pymlir seconds per crop (each chip's cmodel in its own process)."""
from __future__ import annotations

import os
import time

import numpy as np

from bmpose.runtime.predict import run_batches
from bmpose.bench.common import bench_persons, device_columns, network_input, timed
from bmpose.bench.host import bench_host


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
    boxes = bench_persons(cfg, 4)
    x = network_input(cfg, boxes)
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
                     "batch": b["batch"], **device_columns(t.get("runtime_ms"), b["batch"]),
                     "host_pre_post_ms_per_person": host["total_ms"], "source": t.get("source") or t.get("why")})
    return rows
