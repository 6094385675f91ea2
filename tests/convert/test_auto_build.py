"""`bmpose build --precision auto` on the small HRNet (its trained fixture, BM1684, a target of 0.97, a budget of 7
builds, one calibration tool): the float build and the default INT8 build are `make fp32` / `make int8`'s own
(reused), then INT8 calibrated with TPU-MLIR's search_threshold, then INT8 with TPU-MLIR's 1, 2, 4, 8 most
sensitive layers in FP32 (BM1684 has no F16), each measured by its agreement with ONNX FP32 on the val persons; the
choice, its table and its reuse; the winner's recipe built at batch 4 too, and `bmpose deploy --precisions auto`
bundling both as the bundle's default. Measured here (2-core Xeon): INT8 0.958 and 1, 2, 4 FP32 layers
0.957-0.958, 8 layers 0.980 (0.200 ms against FP32's 0.317): the target sits 0.01 from either side, so the winner
is an INT8 build with float layers in the search's own folder. The full search (budget 14, both chips, the real
networks) lives in docs/auto.md: the fixture memorises its persons, so only the mechanics are asserted here."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bmpose import config
from bmpose.manifest import read_manifest, sha256_bytes
from bmpose.tpu_mlir.mlirgraph import read_graph
from helpers import SMALL


@pytest.fixture(scope="module")
def auto_run(small, tmp_path_factory):
    """Two runs in a copy of the shared small builds (a choice there would add a section to every report made
    from them)."""
    root = tmp_path_factory.mktemp("auto")
    shutil.copytree(small.artifacts, root / SMALL, ignore=shutil.ignore_patterns(".*.lock", "report", "auto"))
    cmd = [sys.executable, "-m", "bmpose", "build", "--precision", "auto", "--model", SMALL, "--chips", "bm1684",
           "--artifacts-dir", str(root), "--auto-budget", "7", "--auto-tools", "search_threshold",
           "--tolerance", "auto_target=0.97", "--no-report"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    second = subprocess.run(cmd, capture_output=True, text=True)
    return config.load(SMALL, artifacts=root), first, second


@pytest.mark.slow
def test_auto_tries_the_cheapest_first_and_keeps_the_fastest_that_agrees(auto_run):
    cfg, run, _ = auto_run
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    choice = json.loads((cfg.layout.auto("bm1684") / "choice.json").read_text())
    trials = choice["trials"]
    assert [t["variant"] for t in trials[:3]] == ["fp32", "int8", "int8_st"] and len(trials) <= 7
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


@pytest.mark.slow
def test_the_winner_is_built_at_batch_4_and_bundled_as_the_default(auto_run):
    from bmpose.flows.deploy import DeployRequest, deploy, last_search
    from bmpose.layout import list_bmodels

    cfg, run, _ = auto_run
    choice = json.loads((cfg.layout.auto("bm1684") / "choice.json").read_text())
    assert choice["winner"].startswith("int8") and choice["float_layers"], choice["winner"]   # its own folder
    autos = {b["name"]: b for b in list_bmodels(cfg, auto=True) if b.get("variant")}
    assert sorted(autos) == ["bm1684_auto_b1", "bm1684_auto_b4"], sorted(autos)
    b1, b4 = (read_manifest(autos[f"bm1684_auto_b{n}"]["dir"]) for n in (1, 4))
    assert autos["bm1684_auto_b1"]["dir"] == Path(choice["winner_dir"]) and b4["options"]["batch"] == 4
    # batch 4 is the same recipe: calibration table, float layers as asked, calibration tools
    assert b4["inputs"]["cali_table"]["sha256"] == b1["inputs"]["cali_table"]["sha256"]
    assert b4["fp32_layers"] == b1["fp32_layers"] and b4["options"]["qtables"] == b1["options"]["qtables"]
    assert b4["options"].get("cali_tools") == b1["options"].get("cali_tools")
    assert f"build: bm1684 auto b4 ({choice['winner']})" in run.stdout

    # deploy searches as the choice was searched (so reuses it) and bundles the winner under its own name
    assert last_search(cfg, "bm1684") == {"auto_budget": 7, "auto_best": False, "auto_tools": ("search_threshold",),
                                          "tolerances": ("auto_target=0.97",)}
    done = deploy(DeployRequest(model=SMALL, artifacts_dir=cfg.root, chips=("bm1684",), precisions=("auto",),
                                detector="none"))
    meta = json.loads((done[0]["folder"] / "deploy.json").read_text())
    files = {e["file"]: e for e in meta["bmodels"]}
    name = f"models/{SMALL}_bm1684_auto_b"
    assert sorted(files) == [name + "1.bmodel", name + "4.bmodel"] and meta["default_bmodel"] == name + "1.bmodel"
    assert {e["auto"] for e in files.values()} == {choice["winner"]} and {e["precision"] for e in files.values()} \
        == {"int8"}
    assert files[name + "4.bmodel"]["sha256"] == sha256_bytes(autos["bm1684_auto_b4"]["path"])
    assert "`--precision auto`: " + choice["winner"] in (done[0]["folder"] / "README.md").read_text()
