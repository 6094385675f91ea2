"""`bmpose bench`: table, --only, bench.json keeps other benchmarks' rows."""
import json

import pytest

from bmpose.cli import bench as bench_cli
from bmpose import bench
from bmpose.bench import common as bench_common
from bmpose import config
from bmpose.errors import BmposeError


def test_registry_table_and_json(tmp_path, monkeypatch, capsys):
    model = ["--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path)]
    table = {"one": lambda cfg, args: [{"case": "a", "per_s": 1.5}],
             "two": lambda cfg, args: [{"case": "b", "per_s": 2}, {"case": "c", "per_s": 3}]}
    monkeypatch.setattr(bench, "BENCHMARKS", table)
    assert bench_cli.main(model) == 0
    out = capsys.readouterr().out
    assert "benchmark" in out.splitlines()[0] and "one" in out and "two" in out
    path = tmp_path / "hrnet_small_128x96" / "bench" / "bench.json"
    assert [r["benchmark"] for r in json.loads(path.read_text())["rows"]] == ["one", "two", "two"]
    table["one"] = lambda cfg, args: [{"case": "a", "per_s": 9}]
    assert bench_cli.main([*model, "--only", "one"]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert sorted((r["benchmark"], r["per_s"]) for r in rows) == [("one", 9), ("two", 2), ("two", 3)]
    with pytest.raises(BmposeError, match="unknown benchmark"):
        bench_cli.main([*model, "--only", "nope"])


def test_every_benchmark_is_documented():
    """`make bench ONLY=NAME` takes the registry's names: the module's doc says what each one measures."""
    import re

    documented = set(re.findall(r"`([a-z]+)` \(", bench.__doc__))
    assert set(bench.BENCHMARKS) == documented, set(bench.BENCHMARKS) ^ documented
    assert all(fn.__doc__ and len(fn.__doc__) > 80 for fn in bench.BENCHMARKS.values())


def test_video_benchmark_says_what_it_needs(tmp_path):
    """Without the BM1684X builds there is no simulated TPU time to stand in for: one row saying so."""
    from bmpose import config

    rows = bench.bench_video(config.load("hrnet_small_128x96", artifacts=tmp_path), None)
    assert rows == [{"benchmark": "video", "case": "needs the BM1684X builds: make int8 and make detector"}]


# Sane bounds for per-person host stages on any CPU this runs on: above a microsecond (the work really ran: a
# 96x128 crop alone is ~20 us here) and below 50 ms (the box's Cortex-A53 takes about 0.6 ms; 50 ms means
# something is broken, not slow). The speed goals themselves live in `make bench`, as ratios of one run.
STAGE_MS = (1e-3, 50.0)


def test_host_benchmark_measures_the_bundles_stages():
    """Rows for the config's input size and 256x192 over every bundled person, every stage timed within sane
    bounds, the total the sum of its stages, the ratio to the vendor's steps computed from the same run."""
    from bmpose import config
    from bmpose.runtime.boxes import bundled_sample, gt_boxes

    n = len(gt_boxes(*bundled_sample()))
    rows = bench.bench_host(config.load("hrnet_small_128x96"), None)
    assert [r["case"] for r in rows] == [f"bundle pre/post per person, {s}, {n} persons" for s in ("96x128", "192x256")]
    for r in rows:
        for k in ("crop_ms", "normalise_ms", "decode_ms", "vendor_preprocess_ms", "previous_preprocess_ms"):
            assert STAGE_MS[0] <= r[k] <= STAGE_MS[1], (k, r)
        assert r["total_ms"] == pytest.approx(r["crop_ms"] + r["normalise_ms"] + r["decode_ms"], abs=2e-3)
        ratio = r["vendor_preprocess_ms"] / (r["crop_ms"] + r["normalise_ms"])
        assert r["x_vs_vendor_preprocess"] == pytest.approx(ratio, rel=0.05, abs=0.02)


@pytest.mark.parametrize("argv,message", [
    (["--chips", "bm1686"], "--chips bm1686: unknown chip"),
    (["--chips", "bm1684", "--precisions", "fp16"], "bm1684"),   # asked for by name: refused as build does
])
def test_estimate_refuses_before_any_work(argv, message, tmp_path):
    with pytest.raises(BmposeError, match=message):
        bench_cli.main(["--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path), "--only", "estimate",
                        *argv])
    assert not (tmp_path / "hrnet_small_128x96").exists()   # nothing exported, calibrated or compiled


def test_benchmarks_feed_the_networks_colour_order():
    """bench normalises crops as inference does: a BGR network (bgr_to_rgb false) gets the channels reversed."""
    import dataclasses

    import numpy as np

    cfg = config.load("hrnet_small_128x96")
    boxes = bench_common.bench_persons(cfg, 2)
    rgb = bench_common.network_input(cfg, boxes)
    bgr = bench_common.network_input(dataclasses.replace(cfg, bgr_to_rgb=False, mean=cfg.mean[::-1], std=cfg.std[::-1]),
                               boxes)
    assert rgb.shape[1] == 3 and np.allclose(bgr, rgb[:, ::-1]) and not np.allclose(bgr, rgb)


def test_scene_benchmark_times_every_stage_beside_the_vendor_steps():
    """Rows for 1080p and 640x480 with 1, 5 and 20 persons, each stage of both pipelines timed (values are not
    asserted: a benchmark)."""
    from bmpose import config

    rows = bench.bench_scene(config.load("hrnet_small_128x96"), None, repeat=1)
    assert [r["case"] for r in rows] == [f"{s}, {n} persons" for s in ("1920x1080", "640x480") for n in (1, 5, 20)]
    for r in rows:
        for k in ("decode", "det_pre", "det_post", "pose_pre", "pose_post"):
            assert STAGE_MS[0] <= r[f"{k}_ms"] <= 20 * STAGE_MS[1], (k, r)   # a whole frame: up to 20 persons
            assert k == "decode" or STAGE_MS[0] <= r[f"vendor_{k}_ms"] <= 20 * STAGE_MS[1], (k, r)
        assert 0.05 < r["x_vs_vendor"] < 100, r   # a ratio of two timings of the same work in one run
    by_size = {r["case"]: r for r in rows}
    for s in ("1920x1080", "640x480"):   # more persons cost more pose pre/post-processing, never less
        assert by_size[f"{s}, 20 persons"]["pose_pre_ms"] > by_size[f"{s}, 1 persons"]["pose_pre_ms"]
