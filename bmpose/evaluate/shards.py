"""An evaluation in shards, for sets of thousands of persons (COCO val2017: 6352 with keypoints).

The persons are cut into shards of whole images (`SHARD_PERSONS` persons or a few more: OKS-NMS works per
image, so an image never straddles two shards); each shard is cropped, run and decoded on its own (memory
stays flat: the crops of one shard at a time) and written, as it finishes, to `<folder>/<i>.json` with the
per-person outputs (keypoints, scores, box, area) and a key over everything that made it (the artifact's and
annotations' hashes, the options, the shard's boxes). A rerun reuses every shard whose key matches, so an
interrupted run resumes at the first missing shard and ends with the same files and numbers as one that was
never stopped. The shards run here, one after another, or as tasks of a Ray cluster (bmpose.evaluate.cluster),
which writes the same files.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bmpose.manifest import atomic_file

SHARD_PERSONS = 256


def plan(boxes: list, size: int = SHARD_PERSONS) -> list[list]:
    """Whole images in the boxes' order, a shard closing once it holds `size` persons or more."""
    shards, cur, last = [], [], None
    for b in boxes:
        if cur and b.image_id != last and len(cur) >= size:
            shards.append(cur)
            cur = []
        cur.append(b)
        last = b.image_id
    return shards + ([cur] if cur else [])


def shard_key(key: dict, shard: list) -> str:
    """sha256 over the run's key and the shard's boxes (image, box, score)."""
    boxes = [[b.image_id, [float(v) for v in b.bbox], float(b.score)] for b in shard]
    return hashlib.sha256(json.dumps({"key": key, "boxes": boxes}, sort_keys=True, default=str).encode()).hexdigest()


def instances(predictions) -> list[dict]:
    """The per-person outputs a shard keeps (JSON: what COCO scoring and a person-by-person comparison need)."""
    return [{"image_id": int(p.box.image_id), "keypoints": p.keypoints.tolist(), "keypoint_scores":
             p.scores.tolist(), "bbox_score": float(p.box.score), "area": float(p.area),
             "bbox": [float(v) for v in p.box.bbox]} for p in predictions]


def predict_shard(cfg, backend, shard: list, flip: bool, heatmaps: bool = False) -> dict:
    """One shard's outputs (bmpose.runtime.predict: the same crops, decode and flip as every other path);
    `order`: each person's box index in the shard (predictions come grouped by image); with `heatmaps`, the
    (N, K, h, w) heatmaps too (the study's cosine against float; not written to a shard file)."""
    from bmpose.runtime import predict as infer

    run = infer.predict(cfg, backend, shard, flip, progress=False, allow_slow=True, keep_heatmaps=heatmaps)
    index = {id(b): i for i, b in enumerate(shard)}
    out = {"instances": instances(run.predictions), "order": [index[id(p.box)] for p in run.predictions],
           "seconds": round(run.seconds, 3), "skipped": len(shard) - len(run.predictions)}
    return {**out, "heatmaps": run.heatmaps} if heatmaps else out


def read(path: Path, want: str) -> dict | None:
    """A shard file whose key is `want`, else None (missing, stale or unreadable: computed again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("key") == want else None


def write(path: Path, want: str, result: dict) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps({"key": want, **result}) + "\n")


def run(cfg, open_backend, boxes: list, flip: bool, folder: Path, key: dict, *, size: int = SHARD_PERSONS,
        label: str = "", runner=None, after_shard=None) -> dict:
    """Every shard reused or computed (here, or by `runner(todo, on_done)`: bmpose.evaluate.cluster) ->
    {"instances": all persons in order, "seconds": compute seconds summed over shards, "computed": shards
    computed by this call, "shards": how many}. `open_backend()` is called once, only if a shard is missing;
    `after_shard()` after each shard written (the benchmark's memory reading)."""
    from bmpose.progress import bar

    shards = plan(boxes, size)
    folder.mkdir(parents=True, exist_ok=True)
    keys = [shard_key(key, s) for s in shards]
    done = {i: r for i, r in ((i, read(folder / f"{i:05d}.json", k)) for i, k in enumerate(keys)) if r}
    todo = [i for i in range(len(shards)) if i not in done]
    for stale in folder.glob("*.json"):   # shards of a longer earlier run
        if not stale.stem.isdigit() or int(stale.stem) >= len(shards):
            stale.unlink()
    with bar(len(boxes), f"eval {label}".strip(), unit="person") as b:
        b.update(sum(len(shards[i]) for i in done))

        def on_done(i: int, result: dict) -> None:
            write(folder / f"{i:05d}.json", keys[i], result)
            done[i] = result
            b.update(len(shards[i]))
            if after_shard:
                after_shard()

        if todo:
            if runner is None:
                local(cfg, open_backend, shards, todo, flip, on_done)
            else:
                runner(shards, todo, on_done)
    ordered = [done[i] for i in range(len(shards))]
    return {"instances": [p for r in ordered for p in r["instances"]],
            "seconds": round(sum(r["seconds"] for r in ordered), 2), "computed": len(todo), "shards": len(shards),
            "skipped": sum(r.get("skipped", 0) for r in ordered)}


def local(cfg, open_backend, shards: list, todo: list[int], flip: bool, on_done) -> None:
    """The shards one after another in this process, the backend (a loaded model) opened once."""
    backend = open_backend()
    for i in todo:
        on_done(i, predict_shard(cfg, backend, shards[i], flip))
