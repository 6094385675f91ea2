"""Several artifacts' predictions on the same boxes as (artifact x shard) tasks: here, one artifact after
another with each model loaded once, or as tasks of a Ray cluster (bmpose.evaluate.cluster; connect() first)
that may all run at once. Both cut the same shards (bmpose.evaluate.shards.plan) and run the same per-shard
arithmetic, so a study's numbers do not depend on where it ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmpose.evaluate.shards import SHARD_PERSONS, plan, predict_shard


@dataclass(frozen=True)
class Artifact:
    path: Path
    chip: str | None
    kind: str            # onnx | mlir | cmodel (bmpose.runtime.backends)


def predictions(cfg, artifacts: list[Artifact], boxes: list, flip: bool, *, size: int = SHARD_PERSONS,
                heatmaps: bool = False, on_cluster: bool = False, label: str = "eval") -> list[dict]:
    """Per artifact: {"instances" (bmpose.evaluate.shards.instances, grouped by image), "order" (each one's
    index in `boxes`), "heatmaps" (with `heatmaps`), "seconds" (compute, summed over shards)}."""
    from bmpose.progress import bar

    shards = plan(boxes, size)
    offsets = np.cumsum([0] + [len(s) for s in shards[:-1]]).tolist()
    tasks = [(a, s) for a in range(len(artifacts)) for s in range(len(shards))]
    results: dict = {}
    with bar(len(boxes) * len(artifacts), label, unit="person") as b:
        def done(j: int, result: dict) -> None:
            results[tasks[j]] = result
            b.update(len(shards[tasks[j][1]]))

        if on_cluster:
            from bmpose.evaluate import cluster

            cluster.spread(cfg, [(artifacts[a].path, artifacts[a].chip, artifacts[a].kind, shards[s], flip)
                                 for a, s in tasks], done, heatmaps=heatmaps)
        else:
            _here(cfg, artifacts, shards, flip, heatmaps, tasks, done)
    return [_merge([results[(a, s)] for s in range(len(shards))], offsets, heatmaps) for a in range(len(artifacts))]


def _here(cfg, artifacts, shards, flip, heatmaps, tasks, done) -> None:
    from bmpose.runtime.backends import open_backend

    opened = None
    for j, (a, s) in enumerate(tasks):
        if opened is None or opened[0] != a:   # tasks come artifact by artifact: one model loaded at a time
            art = artifacts[a]
            opened = (a, open_backend(art.path, art.chip, kind=art.kind))
        done(j, predict_shard(cfg, opened[1], shards[s], flip, heatmaps=heatmaps))


def _merge(parts: list[dict], offsets: list[int], heatmaps: bool) -> dict:
    out = {"instances": [p for r in parts for p in r["instances"]],
           "order": [off + i for r, off in zip(parts, offsets) for i in r["order"]],
           "seconds": round(sum(r["seconds"] for r in parts), 2)}
    if heatmaps:
        maps = [r["heatmaps"] for r in parts if r.get("heatmaps") is not None]
        out["heatmaps"] = np.concatenate(maps) if maps else None
    return out
