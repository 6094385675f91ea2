"""`make bench ONLY=scale`: evaluation at val2017 scale, measured in one run on a set made from the bundled
persons (bmpose.evaluate.scale_set: the same images under new ids).

Rows: persons/s of the sharded evaluation (bmpose.evaluate.shards) on ONNX Runtime and through the default INT8
build's deployed tpu.mlir (the bmodel's arithmetic on pymlir) with the config's flip test, the process's
resident memory after the first and the last shard (flat: crops live one shard at a time), the projected time
for COCO val2017's 6352 persons on this machine, and the same shards as tasks of a local Ray cluster of one and
of two nodes (Ray's own multi-node test cluster on this machine, one CPU per node): the scale-out ratio.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

VAL2017_PERSONS = 6352   # COCO val2017 person instances with keypoints (mmpose's top-down set)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def _set(tmp: Path, copies: int):
    from bmpose.evaluate.scale_set import replicate
    from bmpose.evaluate.sets import eval_set
    from bmpose.runtime.boxes import gt_boxes

    ann = replicate(*eval_set(), copies, tmp / f"scale_x{copies}.json")
    return gt_boxes(ann, ann.parent)


def _sharded(cfg, open_backend, boxes, flip: bool, folder: Path, runner=None, size: int = 64) -> dict:
    """One sharded run from nothing: seconds, persons/s, resident memory after the first and the last shard."""
    from bmpose.evaluate import shards

    rss = []
    t0 = time.perf_counter()
    out = shards.run(cfg, open_backend, boxes, flip, folder, {"bench": str(folder)}, size=size, runner=runner,
                     after_shard=lambda: rss.append(_rss_mb()))
    wall = time.perf_counter() - t0
    n = len(out["instances"])
    return {"persons": n, "shards": out["shards"], "wall_s": round(wall, 2), "persons_per_s": round(n / wall, 2),
            "s_per_person": round(wall / n, 4), "rss_first_mb": round(rss[0]) if rss else None,
            "rss_last_mb": round(rss[-1]) if rss else None,
            "val2017_projected_h": round(wall / n * VAL2017_PERSONS / 3600, 2)}


ROW_BUDGET_S = 120   # wall seconds a timed row aims at: the set is sized from a measured cost per person


def _sized(boxes: list, s_per_person: float, workers: int, lo: int, hi: int) -> list:
    """The first whole images of `boxes` holding about ROW_BUDGET_S of work on `workers` cores (lo..hi persons)."""
    from bmpose.evaluate.run import subset_boxes

    want = int(ROW_BUDGET_S * workers / max(s_per_person, 1e-6))
    return subset_boxes(boxes, max(lo, min(hi, want)))


def _cost(cfg, open_backend, boxes: list, flip: bool) -> float:
    """Seconds per person of one process on a few persons, the model loaded and run once before: what sizes the
    timed rows of a slow model (HRNet-W32 INT8: about 2 s a person with flip)."""
    from bmpose.runtime import predict as infer

    backend = open_backend()
    few = boxes[:4]
    infer.predict(cfg, backend, few[:1], flip, progress=False, allow_slow=True)
    t0 = time.perf_counter()
    infer.predict(cfg, backend, few, flip, progress=False, allow_slow=True)
    return (time.perf_counter() - t0) / len(few)


def bench_scale(cfg, req) -> list[dict]:
    from bmpose.convert.export import ensure_onnx
    from bmpose.layout import list_bmodels
    from bmpose.runtime.backends import open_backend

    rows = []
    onnx = ensure_onnx(cfg, req.checkpoint, batches=(4,), verbose=False)[4]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        many = _set(tmp, 40)   # ~2000 persons: memory over many shards
        open_onnx = lambda: open_backend(onnx, kind="onnx")   # noqa: E731
        boxes = _sized(many, _cost(cfg, open_onnx, many, cfg.flip_test), 1, 256, len(many))
        rows.append({"case": "onnx, sharded, one process", **_sharded(cfg, open_onnx, boxes, cfg.flip_test,
                                                                      tmp / "onnx")})
        int8 = next((b for b in list_bmodels(cfg) if b["precision"] == "int8" and b["batch"] == 1), None)
        if int8 is None:   # scale-out on ONNX: its milliseconds per person measure Ray's per-task overhead
            return rows + _scale_out(cfg, (onnx, None, "onnx", cfg.flip_test, _set(tmp, 8)), tmp, 32)
        # the bmodel's arithmetic, flip on: what a val2017 number costs here
        open_int8 = lambda: open_backend(int8["tpu_mlir"], int8["chip"], kind="mlir")   # noqa: E731
        cost = _cost(cfg, open_int8, many, True)
        few = _sized(many, cost, os.cpu_count() or 1, 16, 140)
        rows.append({"case": f"{int8['name']} tpu.mlir, flip, all cores", "s_per_person_one_process": round(cost, 3),
                     **_sharded(cfg, open_int8, few, True, tmp / "int8", size=max(4, len(few) // 8))})
        ray_set = _sized(many, cost, 1, 16, 420)
        rows += _scale_out(cfg, (int8["tpu_mlir"], int8["chip"], "mlir", True, ray_set), tmp,
                           max(4, len(ray_set) // 12))
    return rows


def _scale_out(cfg, art: tuple, tmp: Path, size: int) -> list[dict]:
    """The same shards on a local Ray cluster of 1 and of 2 one-CPU nodes -> a row each, the ratio on the second."""
    import ray
    from ray.cluster_utils import Cluster

    from bmpose.evaluate import cluster as ray_eval

    path, chip, kind, flip, boxes = art
    rows = []
    for nodes in (1, 2):
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(nodes - 1):
            c.add_node(num_cpus=1)
        try:
            ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
            runner = ray_eval.runner(cfg, path, chip, kind, flip)
            rows.append({"case": f"{kind}, Ray, {nodes} node(s) x 1 CPU", "nodes": nodes,
                         **_sharded(cfg, None, boxes, flip, tmp / f"ray{nodes}", runner=runner, size=size)})
        finally:
            ray.shutdown()
            c.shutdown()
    rows[-1]["speedup_vs_1_node"] = round(rows[0]["wall_s"] / rows[-1]["wall_s"], 2)
    return rows
