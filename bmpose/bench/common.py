"""Shared by the benchmarks: the request, the table, the timer, the bundled persons, random outputs in
the model's codec and the device columns."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from bmpose.pose import pipeline
from bmpose.runtime.boxes import PersonBox, bundled_sample, gt_boxes
from bmpose.runtime.predict import prepare


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


def timed(fn, repeat=3) -> float:
    """Best wall time of `repeat` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_persons(cfg, n: int = 24) -> list[PersonBox]:
    boxes = gt_boxes(*bundled_sample())
    return [b for b in boxes if b.bbox[2] * b.bbox[3] > 0][:n]


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


def network_input(cfg, boxes) -> np.ndarray:
    """Read, crop and normalise the persons as inference does (the config's colour order included)."""
    return pipeline.to_input(prepare(cfg, boxes, [])[1], cfg)


def device_columns(ms: float | None, batch: int) -> dict:
    """Simulated ms per batch and per person, persons/s on the TPU alone (None where no time is known)."""
    return {"device_ms_per_batch": round(ms, 4) if ms else None,
            "device_ms_per_person": round(ms / batch, 4) if ms else None,
            "tpu_persons_per_s": round(1e3 * batch / ms) if ms else None}


def scene_tpu_ms(cfg, dcfg) -> tuple[dict, dict]:
    """Simulated ms of the model's INT8 batch-1 bmodel and of the detector's build at its config's precision,
    per chip, where built."""
    from bmpose.layout import list_bmodels

    def ms(b):
        return (b["manifest"]["checks"].get("device_time") or {}).get("runtime_ms")

    tpu = {b["chip"]: ms(b) for b in list_bmodels(cfg) if b["precision"] == "int8" and b["batch"] == 1}
    det_tpu = {b["chip"]: ms(b) for b in list_bmodels(dcfg) if dcfg.precisions.get(b["chip"]) == b["precision"]}
    return tpu, det_tpu
