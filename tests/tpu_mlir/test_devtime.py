"""Simulated device time (bmpose.tpu_mlir.devtime): the parsers on real profile files, the estimate every build
records in its manifest (BM1684X, and BM1684 through the `_0.dat` link), and one simulator run agreeing with it.

tests/data/devtime/ holds real files, trimmed: bm1684x_int8_b1.{net_stat.sim,global.profile} from the small
HRNet's BM1684X INT8 b1 bmodel run on the cmodel with BMRUNTIME_ENABLE_PROFILE=1 (header lines, a few commands
and the closing summary, unchanged), bm1684_f32_b1.compile_0.dat from the `_0.dat` BM1684 codegen leaves in
model_deploy's cwd.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bmpose.convert import bmodel_build, steps
from bmpose.manifest import read_manifest
from bmpose.runtime import simulate
from bmpose.tpu_mlir import devtime
from helpers import TEST_DATA

DATA = TEST_DATA / "devtime"


# ------------------------------------------------------------------------------------------------ parsers

def test_parse_net_stat_real_bm1684x_int8_b1():
    text = (DATA / "bm1684x_int8_b1.net_stat.sim").read_text()
    s = devtime.parse_net_stat(text)
    assert s["cycles"] == s["api_end_cycles"] == 43999
    assert s["runtime_ms"] == pytest.approx(0.043999)
    assert s["flops"] == 223275456
    assert s["tops"] == pytest.approx(5.074557)
    assert s["freq_mhz_implied"] == pytest.approx(1000, rel=1e-6)
    assert s["gdma_bytes"] == {"S2L": 1163780, "L2S": 52224, "S2S": 0, "L2L": 0}
    assert s["ddr_bw_usage_pct"] == pytest.approx(40.2172484)
    lines = text.splitlines()
    for key in ("cycles", "runtime", "api_end"):      # `lines` names the line each number came from
        no, line = s["lines"][key]
        assert lines[no - 1].strip() == line
    assert s["lines"]["cycles"][1] == "TCYC : 43999"
    # the trimmed file keeps 17 TIU (ENGINE_BD) and 8 GDMA commands (counted with grep)
    assert (s["tiu_cmds"], s["gdma_cmds"]) == (17, 8)


def test_parse_global_profile_real():
    g = devtime.parse_global_profile((DATA / "bm1684x_int8_b1.global.profile").read_text())
    assert g["arch"] == "BM1684X" and g["tpu_freq_mhz"] == 1000
    assert g["net_name"] == "hrnet_small_128x96"


def test_parse_bm1684_compile_estimate():
    # BM1684 codegen's estimate: same format, no DDR line, runtime at 550 MHz
    est = devtime.compile_estimate(DATA / "bm1684_f32_b1.compile_0.dat")
    assert est["cycles"] == 174188
    assert est["runtime_ms"] == pytest.approx(0.316705)
    assert est["freq_mhz_implied"] == pytest.approx(550, rel=1e-5)
    assert "ddr_bw_usage_pct" not in est
    assert est["source"]["line"].startswith("flops: 223275456, runtime: 0.316705ms")


def test_parse_bm1688_tcyc_with_engine_cycles():
    s = devtime.parse_net_stat("TCYC : 197791. (bdc_cycle:162556, gdma_cycle:161221)\n"
                               "flops: 1000, runtime: 0.219768ms, ComputationAbility: 0.004550T\n")
    assert (s["cycles"], s["bdc_cycle"], s["gdma_cycle"]) == (197791, 162556, 161221)


def test_parse_truncated_raises():
    head = "".join((DATA / "bm1684x_int8_b1.net_stat.sim").read_text().splitlines(True)[:12])
    with pytest.raises(ValueError):
        devtime.parse_net_stat(head)


def test_bm1684_link_only_for_bm1684(tmp_path):
    devtime.link_bm1684_estimate(tmp_path, "bm1684x")
    assert list(tmp_path.iterdir()) == []
    devtime.link_bm1684_estimate(tmp_path, "bm1684")
    devtime.link_bm1684_estimate(tmp_path, "bm1684")        # idempotent
    link = tmp_path / "compiler_profile_0.dat"
    assert link.is_symlink() and str(link.readlink()) == "_0.dat"


# ------------------------------------------------------------------------------------------------ builds

@pytest.fixture(scope="module")
def toy_bmodels(toy):
    """The toy model's INT8 b1 bmodel for each chip: {chip: (dir, manifest)}."""
    cfg, mlir, crops = toy
    table = steps.ensure_cali_table(cfg, mlir, crops, "kl", 4)
    out = {}
    for chip in ("bm1684x", "bm1684"):
        opts = bmodel_build.deploy_options(cfg, chip, "int8", 1, method="kl", user_qtables=[], search=False,
                                    checkpoint=None, calib=None)
        d, _ = bmodel_build.ensure_bmodel(cfg, chip, "int8", 1, mlir=mlir, spec=opts, cali_table=table)
        out[chip] = (d, read_manifest(d))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("chip,mhz", [("bm1684x", 1000), ("bm1684", 550)])
def test_build_records_device_time(toy_bmodels, chip, mhz):
    d, m = toy_bmodels[chip]
    t = m["checks"]["device_time"]
    assert "why" not in t, t                  # BM1684 too: the `_0.dat` link got the estimate embedded
    assert t["cycles"] > 0 and t["tpu_freq_mhz"] == mhz and t["flops"] > 0
    assert t["runtime_ms"] == pytest.approx(t["cycles"] / (mhz * 1e3)) and t["runtime_ms"] > 0
    assert t["ms_per_person"] == pytest.approx(t["runtime_ms"])     # batch 1
    assert t["source"] == devtime.SOURCE
    emb = devtime.read_embedded_stat(next(d.glob("*.bmodel")))
    assert emb["cycles"] == t["cycles"] and emb["runtime_ms"] == pytest.approx(t["runtime_ms"], abs=1e-6)
    assert not (d / "compiler_profile_0.dat").exists() and not (d / "_0.dat").exists()   # not kept
    assert not (d / bmodel_build.FAILED_OPTIONS).exists()   # only a failed build keeps it


@pytest.mark.slow
@pytest.mark.parametrize("chip", ["bm1684x", "bm1684"])
def test_compile_only_estimate_equals_the_verified_build_and_keeps_no_bmodel(toy, toy_bmodels, chip):
    """`bench --only estimate` (bmpose.convert.estimate): the same cycles as the verified build of the same
    INT8 bmodel (same table, same automatic tail), no unverified bmodel left behind, reused when up to date."""
    from bmpose.convert.estimate import ensure_estimate

    cfg, mlir, crops = toy
    d, m = toy_bmodels[chip]
    table = m["inputs"]["cali_table"]["path"]
    checks, fresh = ensure_estimate(cfg, chip, "int8", 1, mlir=mlir, cali_table=table)
    assert fresh and checks["device_time"]["cycles"] == m["checks"]["device_time"]["cycles"]
    assert checks["device_time"]["runtime_ms"] == pytest.approx(m["checks"]["device_time"]["runtime_ms"])
    out = cfg.layout.estimate(chip, "int8", 1)
    assert sorted(f.name for f in out.iterdir()) == ["manifest.json", "model_deploy.log", "qtable"]
    layers = lambda f: [x for x in f.read_text().splitlines() if x and not x.startswith("#")]   # noqa: E731
    assert layers(out / "qtable") == layers(d / "qtable")
    assert read_manifest(out)["options"]["verified"] is False
    assert ensure_estimate(cfg, chip, "int8", 1, mlir=mlir, cali_table=table) == (checks, False)


def test_estimate_refuses_what_a_build_would(toy):
    from bmpose.convert.estimate import ensure_estimate
    from bmpose.errors import BmposeError

    cfg, mlir, _ = toy
    with pytest.raises(BmposeError, match="needs a calibration table"):
        ensure_estimate(cfg, "bm1684x", "int8", 1, mlir=mlir)
    with pytest.raises(BmposeError, match="bm1684"):
        ensure_estimate(cfg, "bm1684", "fp16", 1, mlir=mlir)


@pytest.mark.slow
def test_simulate_time_agrees_and_leaves_cwd_alone(toy_bmodels, tmp_path, monkeypatch):
    d, m = toy_bmodels["bm1684x"]
    bmodel = next(d.glob("*.bmodel"))
    monkeypatch.chdir(tmp_path)
    before = set(Path(tempfile.gettempdir()).glob("bmpose-devtime-*"))
    r = simulate.simulate_time(bmodel, "bm1684x", want_output=True)
    assert list(tmp_path.iterdir()) == []                                       # nothing in the caller's cwd
    assert set(Path(tempfile.gettempdir()).glob("bmpose-devtime-*")) == before   # its scratch dir is gone
    t = m["checks"]["device_time"]
    assert r["matches_embedded"] is True          # the runtime's net_stat.sim is the embedded estimate
    assert (r["cycles"], r["tpu_freq_mhz"]) == (t["cycles"], 1000)
    assert r["runtime_ms"] == pytest.approx(t["runtime_ms"]) and r["batch"] == 1
    assert r["output"].shape[0] == 1
    with pytest.raises(devtime.DevtimeError, match="built for BM1684X"):
        simulate.simulate_time(bmodel, "bm1684")


# ------------------------------------------------------------------------------------------------ report

def test_report_shows_sim_columns_and_why_as_footnote(tmp_path):
    from bmpose import config
    from bmpose.report import render, report

    def bm(name, device_time):
        m = {"checks": {"final": {}, **({"device_time": device_time} if device_time else {})}}
        return {"name": name, "chip": "bm1684x", "batch": 4, "precision": "int8", "size_mb": 1.0, "build_s": 2.0,
                "cosine": 1.0, "euclidean": 0.0, "sqnr_db": 50.0, "tolerance": {}, "fp32_layers": [],
                "plots": {}, "path": f"/x/{name}", "tpu_mlir": "/x/t.mlir", **report._device_time(m)}

    t = {"cycles": 145613, "tpu_freq_mhz": 1000, "runtime_ms": 0.145613, "ms_per_person": 0.03640325,
         "flops": 1, "source": devtime.SOURCE}
    data = {"mmpose_config": "c.py", "input_size": [96, 128], "eval": [], "study": None,
            "bmodels": [bm("a.bmodel", t), bm("b.bmodel", {"runtime_ms": None, "why": "no estimate here"}),
                        bm("c.bmodel", None)]}
    head, rows, notes = render._bmodel_rows(data)
    assert head[-2:] == ["sim ms/batch", "sim ms/person"]
    assert rows[0][-2:] == ["0.1456", "0.0364"]
    assert rows[1][-2:] == ["n/a [1]"] * 2 and rows[2][-1] == "n/a [2]"
    assert notes == ["no estimate here", "no device time estimate recorded"]
    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)
    md, page = render.to_markdown(cfg, data), render.to_html(cfg, data)
    assert "| sim ms/batch | sim ms/person |" in md and "[1] no estimate here" in md
    assert "<th>sim ms/person</th>" in page and "<li>no estimate here</li>" in page
    assert data["bmodels"][0]["sim_ms_per_person"] == pytest.approx(0.03640325)   # report.json's keys
