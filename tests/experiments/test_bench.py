"""`bmpose bench`: table, --only, bench.json keeps other benchmarks' rows."""
import json

import pytest

from bmpose.cli import bench as bench_cli
from bmpose.experiments import bench
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


def test_every_benchmark_is_listed():
    assert set(bench.BENCHMARKS) == {"calib", "infer", "host", "device", "simulators", "deploy", "fused",
                                     "estimate", "scene", "video"}


def test_video_benchmark_says_what_it_needs(tmp_path):
    """Without the BM1684X builds there is no simulated TPU time to stand in for: one row saying so."""
    from bmpose import config

    rows = bench.bench_video(config.load("hrnet_small_128x96", artifacts=tmp_path), None)
    assert rows == [{"benchmark": "video", "case": "needs the BM1684X builds: make int8 and make detector"}]


def test_host_benchmark_measures_the_bundles_stages():
    """Rows for the config's input size and 256x192, every stage timed (values are not asserted: a benchmark)."""
    from bmpose import config

    rows = bench.bench_host(config.load("hrnet_small_128x96"), None)
    assert [r["case"].split(", ")[1] for r in rows] == ["96x128", "192x256"]
    for r in rows:
        assert all(r[k] > 0 for k in ("crop_ms", "normalise_ms", "decode_ms", "vendor_preprocess_ms"))
        assert r["total_ms"] == pytest.approx(r["crop_ms"] + r["normalise_ms"] + r["decode_ms"], abs=2e-3)


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
    boxes = bench._bench_persons(cfg, 2)
    rgb = bench._network_input(cfg, boxes)
    bgr = bench._network_input(dataclasses.replace(cfg, bgr_to_rgb=False, mean=cfg.mean[::-1], std=cfg.std[::-1]),
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
            assert r[f"{k}_ms"] > 0 and (k == "decode" or r[f"vendor_{k}_ms"] > 0)
        assert r["x_vs_vendor"] > 0
