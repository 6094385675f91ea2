"""`bmpose eval` at scale: a few hundred persons (the bundled val persons six times over, under new ids) in
shards written as they finish; an interrupted run resumes at its first missing shard and ends with the same AP
and per-person outputs as one never stopped; the same shards as tasks of a two-node Ray cluster, one of whose
workers dies, give the same files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bmpose import config
from bmpose.cli import eval as eval_cli
from bmpose.evaluate import shards
from bmpose.evaluate.scale_set import replicate
from bmpose.evaluate.sets import eval_set
from bmpose.runtime.boxes import gt_boxes
from helpers import SMALL, copy_stages

COPIES = 6   # the bundled persons six times over: a few hundred


@pytest.fixture(scope="module")
def big(small, tmp_path_factory):
    """(a private copy of the small HRNet's ONNX stage, the 306-person set)."""
    root = tmp_path_factory.mktemp("scale")
    copy_stages(small.root, root, SMALL, ("onnx",))
    ann = replicate(*eval_set(), COPIES, root / "val_x6.json")
    return config.load(SMALL, artifacts=root), ann


def _eval(cfg, ann, *extra) -> dict:
    argv = ["--model", SMALL, "--artifacts-dir", str(cfg.root), "--coco-ann", str(ann), "--coco-img", str(ann.parent),
            "--artifacts", "onnx_fp32", "--shard-persons", "64", *extra]
    assert eval_cli.main(argv) == 0
    row = json.loads((cfg.layout.eval() / f"onnx_fp32@{ann.stem}.json").read_text())
    folder = cfg.layout.eval() / f"onnx_fp32@{ann.stem}.shards"
    return {"row": row, "shards": {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}}


def test_whole_images_per_shard():
    from bmpose.runtime.boxes import PersonBox

    boxes = [PersonBox(i // 3, Path("x.jpg"), (0, 0, 1, 1)) for i in range(10)]   # images of 3, 3, 3, 1 persons
    plan = shards.plan(boxes, 4)
    assert [len(s) for s in plan] == [6, 4] and all(len({b.image_id for b in s}) == len(s) // 3 or
                                                   s[-1].image_id == 3 for s in plan)
    assert {b.image_id for b in plan[0]}.isdisjoint({b.image_id for b in plan[1]})


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_to_the_same_numbers(big, monkeypatch):
    cfg, ann = big
    whole = _eval(cfg, ann, "--force")
    assert whole["row"]["persons"] == len(gt_boxes(ann, ann.parent)) > 250 and len(whole["shards"]) >= 4

    calls = []
    real = shards.predict_shard

    def stop_at_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(shards, "predict_shard", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        _eval(cfg, ann, "--force")
    folder = cfg.layout.eval() / f"onnx_fp32@{ann.stem}.shards"
    assert len(list(folder.glob("*.json"))) == 2 and not list(folder.glob(".*"))   # two whole shards, no half one
    monkeypatch.setattr(shards, "predict_shard", real)
    counted = []
    monkeypatch.setattr(shards, "predict_shard", lambda *a, **k: counted.append(1) or real(*a, **k))
    resumed = _eval(cfg, ann)
    assert len(counted) == len(whole["shards"]) - 2   # only the missing shards ran
    assert resumed["row"]["AP"] == whole["row"]["AP"] and resumed["row"]["persons"] == whole["row"]["persons"]
    strip = {k: {**v, "seconds": None} for k, v in whole["shards"].items()}
    assert {k: {**v, "seconds": None} for k, v in resumed["shards"].items()} == strip


@pytest.mark.slow
def test_a_two_node_ray_cluster_writes_the_same_shards_and_retries_a_dead_worker(big, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from bmpose.evaluate import cluster as ray_eval
    from bmpose.runtime.backends import open_backend

    cfg, ann = big
    local = _eval(cfg, ann)
    boxes = gt_boxes(ann, ann.parent)
    onnx = cfg.layout.onnx_file(4)
    marker = tmp_path / "died"

    def dies_once(cfg_, artifact, chip, kind, shard, flip, heatmaps=False):
        import os

        if not marker.exists():   # the first task's worker dies; Ray runs the task again elsewhere
            marker.write_text("x")
            os._exit(1)
        return ray_eval.shard_task(cfg_, artifact, chip, kind, shard, flip, heatmaps)

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    try:
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        out = tmp_path / "ray_shards"
        res = shards.run(cfg, lambda: open_backend(onnx, kind="onnx"), boxes, False, out,
                         local["row"]["options"] | {"k": 1}, size=64,
                         runner=ray_eval.runner(cfg, onnx, None, "onnx", False, task=dies_once))
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        c.shutdown()
    assert marker.exists() and len(nodes) == 2 and res["computed"] == res["shards"] == len(local["shards"])
    for name, want in local["shards"].items():
        got = json.loads((out / name).read_text())
        assert got["instances"] == want["instances"], name
