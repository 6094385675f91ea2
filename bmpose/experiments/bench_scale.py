"""`make bench ONLY=scale`: evaluation at val2017 scale, measured in one run on a set made from the bundled
persons (bmpose.evaluate.scale_set: the same images under new ids).

Rows: persons/s of the sharded evaluation (bmpose.evaluate.shards) on ONNX Runtime and through the default INT8
build's deployed tpu.mlir (the bmodel's arithmetic on pymlir) with the config's flip test, the process's
resident memory after the first and the last shard (flat: crops live one shard at a time), the projected time
for COCO val2017's 6352 persons on this machine, and the same shards as tasks of a local Ray cluster of one and
of two nodes (Ray's own multi-node test cluster on this machine, one CPU per node): the scale-out ratio.
"""
from __future__ import annotations

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


def bench_scale(cfg, args) -> list[dict]:
    from bmpose.convert.export import ensure_onnx
    from bmpose.layout import list_bmodels
    from bmpose.runtime.backends import open_backend

    rows = []
    onnx = ensure_onnx(cfg, getattr(args, "checkpoint", None), batches=(4,), verbose=False)[4]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        boxes = _set(tmp, 40)   # ~2000 persons: memory over many shards
        rows.append({"case": "onnx, sharded, one process", **_sharded(
            cfg, lambda: open_backend(onnx, kind="onnx"), boxes, cfg.flip_test, tmp / "onnx")})
        int8 = next((b for b in list_bmodels(cfg) if b["precision"] == "int8" and b["batch"] == 1), None)
        if int8 is not None:   # the bmodel's arithmetic, flip on: what a val2017 number costs here
            few = _set(tmp, 2)
            rows.append({"case": f"{int8['name']} tpu.mlir, flip, all cores", **_sharded(
                cfg, lambda: open_backend(int8["tpu_mlir"], int8["chip"], kind="mlir"), few, True, tmp / "int8")})
        # scale-out on the costly path (the INT8 tpu.mlir, flip) where it is built: ONNX's milliseconds per person
        # would measure Ray's per-task overhead
        art = (int8["tpu_mlir"], int8["chip"], "mlir", True, _set(tmp, 6)) if int8 else \
            (onnx, None, "onnx", cfg.flip_test, _set(tmp, 8))
        rows += _scale_out(cfg, art, tmp)
    return rows


def _scale_out(cfg, art: tuple, tmp: Path) -> list[dict]:
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
                         **_sharded(cfg, None, boxes, flip, tmp / f"ray{nodes}", runner=runner, size=32)})
        finally:
            ray.shutdown()
            c.shutdown()
    rows[-1]["speedup_vs_1_node"] = round(rows[0]["wall_s"] / rows[-1]["wall_s"], 2)
    return rows
