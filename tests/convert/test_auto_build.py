"""`bmpose build --precision auto` on the small HRNet (its trained fixture, BM1684, a budget of 4 builds, one
calibration tool): the float build and the default INT8 build are `make fp32` / `make int8`'s own (reused), then
INT8 calibrated with TPU-MLIR's search_threshold, then that with TPU-MLIR's most sensitive layer in FP32 (BM1684
has no F16), each measured by its agreement with ONNX FP32 on the val persons; the choice, its table and its
reuse. The full search (budget 12, both chips, the real networks) lives
in docs/auto.md: the fixture memorises its persons, so only the mechanics are asserted here."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bmpose import config
from bmpose.manifest import read_manifest
from bmpose.tpu_mlir.mlirgraph import read_graph
from helpers import SMALL


@pytest.fixture(scope="module")
def auto_run(small, tmp_path_factory):
    """Two runs in a copy of the shared small builds (a choice there would add a section to every report made
    from them)."""
    root = tmp_path_factory.mktemp("auto")
    shutil.copytree(small.artifacts, root / SMALL, ignore=shutil.ignore_patterns(".*.lock", "report", "auto"))
    cmd = [sys.executable, "-m", "bmpose", "build", "--precision", "auto", "--model", SMALL, "--chips", "bm1684",
           "--artifacts-dir", str(root), "--auto-budget", "4", "--auto-tools", "search_threshold", "--auto-best",
           "--no-report"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    second = subprocess.run(cmd, capture_output=True, text=True)
    return config.load(SMALL, artifacts=root), first, second


@pytest.mark.slow
def test_auto_tries_the_cheapest_first_and_keeps_the_fastest_that_agrees(auto_run):
    cfg, run, _ = auto_run
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    choice = json.loads((cfg.layout.auto("bm1684") / "choice.json").read_text())
    trials = choice["trials"]
    assert [t["variant"] for t in trials[:3]] == ["fp32", "int8", "int8_st"] and len(trials) <= 4
    # the float and the default INT8 trial are the builds `make fp32` / `make int8` made (reused, not rebuilt)
    assert trials[0]["build_dir"] == str(cfg.layout.bmodel("bm1684", "fp32", 1))
    assert trials[1]["build_dir"] == str(cfg.layout.bmodel("bm1684", "int8", 1))
    assert trials[0]["fidelity"] == pytest.approx(1.0, abs=1e-6)   # FP32 is ONNX's arithmetic
    # the tool's table: its own folder, the method it picked recorded; the trial built from it
    st = read_manifest(trials[2]["build_dir"])
    table = st["inputs"]["cali_table"]["path"]
    assert "_st_bm1684" in table and st["options"]["cali_tools"] == ["search_threshold"] and not trials[2]["error"]
    assert read_manifest(Path(table).parent)["checks"]["picked"]
    # float layers go onto the all-INT8 trial closest to float (the earlier one on a tie)
    base = max(trials[1:3], key=lambda t: (t["fidelity"], -trials.index(t)))
    prefix = "int8_st_f32x" if base is trials[2] else "int8_f32x"
    for t in trials[3:]:
        assert t["variant"].startswith(prefix) and t["float_mode"] == "F32" and not t["error"], t
        assert read_manifest(t["build_dir"])["inputs"]["cali_table"]["sha256"] == \
            read_manifest(base["build_dir"])["inputs"]["cali_table"]["sha256"]
        m = read_manifest(t["build_dir"])
        fp32 = set(m["fp32_layers"])
        asked = [line.split()[0] for line in (cfg.layout.auto("bm1684") / f"{t['variant']}.qtable").read_text()
                 .splitlines() if not line.startswith("#")]
        assert len(asked) == t["float_layers"] and set(asked) <= fp32, (asked, fp32)   # deployed as asked
        assert len(read_graph(t["build_dir"] + "/" + m["tpu_mlir"]).ops) > 0
    chosen = next(t for t in trials if t["variant"] == choice["winner"])
    if choice.get("marked"):   # nothing met the target: the best agreement built, marked
        assert chosen["fidelity"] == max(t["fidelity"] for t in trials if t["fidelity"] is not None)
    else:
        assert chosen["meets"] and chosen["ms"] == min(t["ms"] for t in trials if t["meets"])
    assert "--precision auto chose " + choice["winner"] in run.stdout and "| variant |" in run.stdout


@pytest.mark.slow
def test_a_second_auto_run_reuses_the_choice(auto_run):
    cfg, first, second = auto_run
    assert second.returncode == 0, second.stderr[-3000:]
    assert "auto bm1684:" in first.stdout and "auto bm1684:" not in second.stdout   # no trial built or measured
    assert json.loads((cfg.layout.auto("bm1684") / "choice.json").read_text())["winner"] in second.stdout
