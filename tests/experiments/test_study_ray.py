"""`bmpose study --ray`: the builds run here, the evaluations as (variant x shard) tasks of a Ray cluster. A
two-variant study (BM1684 FP32 and all-INT8 kl, beside ONNX) on Ray's own two-node test cluster, one of whose
workers dies, writes the same study.json as the local run, timings aside."""
from __future__ import annotations

import json

import pytest

from bmpose.cli import study as study_cli
from helpers import SMALL, copy_stages

TIMINGS = ("seconds", "eval_s")   # wall-clock facts of a run, not results


def _study(root, *extra) -> dict:
    argv = ["--model", SMALL, "--artifacts-dir", str(root), "--chips", "bm1684", "--methods", "kl", "--layers",
            "none", "--no-flip", "--no-report", "--shard-persons", "16", *extra]
    assert study_cli.main(argv) == 0
    doc = json.loads((root / SMALL / "study" / "study.json").read_text())
    doc.pop("seconds")
    for row in doc["rows"]:
        for k in TIMINGS:
            row.pop(k, None)
    return doc


@pytest.mark.slow
def test_a_study_on_a_two_node_ray_cluster_matches_the_local_one(small, tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from bmpose.evaluate import cluster

    root = tmp_path / "art"
    copy_stages(small.root, root, SMALL, ("onnx", "calib", "cali_inputs", "mlir/b1", "cali_table/kl_n100"))
    local = _study(root)
    assert [r["chip"] + "_" + r["precision"] for r in local["rows"]] == ["-_FP32", "bm1684_FP32", "bm1684_INT8"]
    assert all(r["AP"] is not None and r.get("oks_drop") is not None for r in local["rows"])

    marker, real = tmp_path / "died", cluster.shard_task

    def dies_once(*a, **k):
        import os

        if not marker.exists():   # the first task's worker dies; Ray runs the task again
            marker.write_text("x")
            os._exit(1)
        return real(*a, **k)

    monkeypatch.setattr(cluster, "shard_task", dies_once)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    try:
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        on_ray = _study(root, "--ray", c.address, "--force-eval")
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        c.shutdown()
    assert marker.exists() and len(nodes) == 2
    diff = {(i, k): (a.get(k), b.get(k)) for i, (a, b) in enumerate(zip(on_ray["rows"], local["rows"]))
            for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert not diff, diff
    assert on_ray == local
