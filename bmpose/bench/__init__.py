"""Benchmarks for `bmpose bench`, each measured within one run so its ratios are comparable.

`BENCHMARKS` (at the bottom) names them: `calib` (LMDB crops/s), `infer` (persons/s on ONNX Runtime vs mmpose,
stage costs per person), `host` (the device bundle's pre/post-processing per person), `device` (simulated
device time per bmodel beside the host's ms per person), `simulators` (cmodel vs pymlir seconds per crop),
`deploy` (bmpose's deploy vs the raw model_deploy.py on the same inputs), `fused` (normalisation inside the
bmodel, an option measured), `estimate` (compile-only device time of variants not built), `scene` (detect ->
pose host time per frame beside the vendor's steps), `video` (a video through the frame loop, decode ahead and
encode behind as levers), `scale` (sharded evaluation at val2017 scale, memory, a local Ray cluster's
scale-out). Each is
`fn(cfg, req: BenchRequest) -> rows`, a row being {"case": ..., then any numbers}.

One module per side: build, host (with the vendor's steps it compares against, vendor), device, video,
scale; common holds what they share (the request, the timer, the bundled persons, codec-shaped outputs).
"""
from __future__ import annotations

from bmpose.bench.build import bench_calib, bench_deploy, bench_estimate, bench_fused
from bmpose.bench.common import BenchRequest, format_table
from bmpose.bench.device import bench_device, bench_simulators
from bmpose.bench.host import bench_host, bench_infer, bench_scene
from bmpose.bench.video import bench_video


def bench_scale(cfg, req: BenchRequest) -> list[dict]:
    """Sharded evaluation at val2017 scale on a set made from the bundled persons: persons/s on ONNX Runtime and
    through the INT8 build's tpu.mlir with flip, memory after the first and last shard, the projected val2017
    time, and a local Ray cluster of 1 and 2 nodes (bmpose.bench.scale)."""
    from bmpose.bench import scale   # imports Ray: only when asked

    return scale.bench_scale(cfg, req)


BENCHMARKS = {"calib": bench_calib, "infer": bench_infer, "host": bench_host, "device": bench_device,
              "simulators": bench_simulators, "deploy": bench_deploy, "fused": bench_fused, "estimate": bench_estimate,
              "scene": bench_scene, "video": bench_video, "scale": bench_scale}
__all__ = ["BENCHMARKS", "BenchRequest", "format_table"]
