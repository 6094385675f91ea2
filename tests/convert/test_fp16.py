"""FP16 and BF16 bmodels (every chip but BM1684): the BM1684 refusal, and one BM1684X build of each for the
small model.

The slow tests share one build of the small model's bm1684x fp16 and bf16 batch-1 bmodels in a private
artifacts dir (about a minute: export, transform, two deploys).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmpose import config
from bmpose.flows.build import BuildRequest, Plan, build
from bmpose.layout import list_bmodels
from bmpose.convert import bmodel_build
from bmpose.compare import read_csv, similarity
from bmpose.tpu_mlir.mlirgraph import read_graph
from bmpose.errors import BmposeError
from helpers import SMALL, copy_stages, simulate_like_the_build

HALF = ("fp16", "bf16")


# ------------------------------------------------------------------------------------------ fast

@pytest.mark.parametrize("precision", HALF)
def test_bm1684_is_refused_in_one_line_before_anything_runs(precision, tmp_path):
    art = tmp_path / "artifacts"
    bmpose = Path(sys.executable).parent / "bmpose"
    out = subprocess.run([str(bmpose), "build", "--precision", precision, "--chips", "bm1684", "bm1684x"],
                         env={**os.environ, "BMPOSE_ARTIFACTS": str(art)}, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"bmpose build: error: bm1684 has no {precision} (bm1684 bmodels: fp32, "
                                       f"int8; {precision} bmodels: bm1684x, bm1688, cv186x)"]
    # no export, no transform, no tool: nothing but the mmpose config facts' cache (written by config.load)
    assert sorted(p.name for p in art.iterdir()) == [".cache"]


def test_deploy_refuses_bm1684_half_too(tmp_path):
    cfg = config.load(SMALL)
    with pytest.raises(BmposeError, match=r"^bm1684 has no bf16 \("):
        bmodel_build.ensure_bmodel(cfg, "bm1684", "bf16", 1, mlir=tmp_path, spec=None, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_config_chips_without_the_precision_are_left_out(tmp_path, capsys):
    plan = Plan(BuildRequest("fp16", model=SMALL))
    assert plan.chips == ("bm1684x",) and plan.skipped == ["bm1684"]
    assert plan.targets == [("bm1684x", 1), ("bm1684x", 4)]
    plan = Plan(BuildRequest("fp32", model=SMALL))
    assert plan.chips == ("bm1684", "bm1684x") and plan.skipped == []
    only = tmp_path / "only_bm1684.yaml"
    src = config.load(SMALL)
    only.write_text(f"mmpose_config: {src.mmpose_config}\nchips: [bm1684]\n")
    with pytest.raises(BmposeError, match=r"only_bm1684\.yaml: none of its chips \(bm1684\) has bf16"):
        Plan(BuildRequest("bf16", model=str(only)))


@pytest.mark.parametrize("model", [SMALL, "hrnet_w32_256x192"])
def test_half_gates_come_from_the_config(model):
    cfg = config.load(model)
    for precision in HALF:
        # random-init weights lose more in half precision: their own, looser gate (as INT8's)
        default = f"{precision}_cos" + ("_random" if cfg.checkpoint == "fixture" else "")   # W32: fixture
        for checkpoint, key in ((None, default), ("/a/real.pth", f"{precision}_cos"),
                                ("fixture", f"{precision}_cos_random")):
            opts = bmodel_build.deploy_options(cfg, "bm1684x", precision, 1, method=None, user_qtables=[], search=False,
                                         checkpoint=checkpoint, calib=None)
            assert opts.options()["tolerance"] == {key: cfg.tolerances[key]}
        assert cfg.tolerances[f"{precision}_cos_random"] < cfg.tolerances[f"{precision}_cos"]
    t = cfg.tolerances
    assert t["int8_cos"] < t["bf16_cos"] < t["fp16_cos"] < t["fp32_cos"]


# ------------------------------------------------------------------------------------------ small HRNet (slow)

@pytest.fixture(scope="module")
def half(small, tmp_path_factory):
    """FP16 + BF16 for BM1684X, batch 1, in a root seeded with the run's shared export, calibration crops and
    transform (conftest's `small`): only model_deploy runs here."""
    root = tmp_path_factory.mktemp("half_artifacts")
    copy_stages(small.root, root, SMALL, ("onnx", "calib", "cali_inputs", "mlir/b1"))
    for precision in HALF:
        build(BuildRequest(precision, model=SMALL, artifacts_dir=root, chips=("bm1684x",), batches=(1,), report=False))
    return config.load(SMALL, artifacts=root)


@pytest.mark.slow
def test_half_bmodels_have_compare_files_and_pass_their_gate(half):
    bms = list_bmodels(half)
    assert [(b["chip"], b["precision"], b["batch"]) for b in bms] == [("bm1684x", p, 1) for p in HALF]
    for b in bms:
        p, m = b["precision"], b["manifest"]
        key = f"{p}_cos"
        assert m["checks"]["tolerance"] == {key: half.tolerances[key]}
        assert m["checks"]["final"]["cosine"] >= half.tolerances[key], b["path"]
        assert b["path"].name == f"{SMALL}_bm1684x_{p}_b1.bmodel" and b["dir"].name == f"bm1684x_{p}_b1"
        rows = read_csv(b["dir"] / "compare.csv")
        final = rows[-1]
        assert final["layer"] == "heatmaps_Conv_f32 (bmodel vs ONNX)" and final["quant"] == p.upper()
        assert final["cosine"] == pytest.approx(m["checks"]["final"]["cosine"], abs=1e-6)
        layers = rows[:-1]
        assert len(layers) > 50 and min(r["cosine"] for r in layers) > 0.999
        mode = {"fp16": "F16", "bf16": "BF16"}[p]
        assert sum(r["quant"] == mode for r in layers) > 50   # the network really runs in half precision
        assert sum(op.quant == mode for op in read_graph(b["tpu_mlir"]).ops) > 50
        with np.load(b["dir"] / "compare.npz") as z:
            assert z["bmodel"].shape == (1, 17, 32, 24)
            assert similarity(z["bmodel"], z["onnx"])["cosine"] == pytest.approx(final["cosine"], abs=1e-6)
        t = m["checks"]["device_time"]
        assert t["tpu_freq_mhz"] == 1000 and t["cycles"] > 0 and t["runtime_ms"] == pytest.approx(t["cycles"] / 1e6)


@pytest.mark.slow
def test_half_bmodel_on_cmodel_equals_its_build_and_mlir_backend(half):
    """The cmodel backend gives the bmodel's own build output, bit for bit, and the profile equals the embedded
    estimate; the mlir backend runs the deployed tpu.mlir (conftest.simulate_like_the_build)."""
    for b in list_bmodels(half):
        y, onnx = simulate_like_the_build(b, "bm1684x")
        assert similarity(y, onnx)["cosine"] >= half.tolerances[f"{b['precision']}_cos"]


@pytest.mark.slow
def test_half_bmodels_in_report_and_eval(half, capsys):
    from bmpose.cli import eval as eval_cli
    from bmpose.report.report import ensure_report

    index = ensure_report(half)
    data = json.loads((index.parent / "report.json").read_text())
    assert [(b["precision"], b["batch"]) for b in data["bmodels"]] == [(p, 1) for p in HALF]
    assert all(b["sim_ms_per_batch"] > 0 for b in data["bmodels"])
    md = (index.parent / "report.md").read_text()
    assert all(f"| {SMALL}_bm1684x_{p}_b1.bmodel | bm1684x | 1 | {p} |" in md for p in HALF)
    assert eval_cli.main(["--model", SMALL, "--artifacts-dir", str(half.root),
                          "--artifacts", *(f"bm1684x_{p}_b1" for p in HALF)]) == 0
    for p in HALF:
        row = json.loads((half.artifacts / "eval" / f"bm1684x_{p}_b1.json").read_text())
        assert row["backend"] == "mlir" and row["precision"] == p
        # measured AP - ONNX AP: fp16 0.0000 (-0.0012 with --flip), bf16 +0.0016 (+0.0008); AP moves in steps
        # of one person's OKS thresholds, so the bound is a sanity check, not a fidelity gate
        assert abs(row["AP"] - row["onnx_AP_same_persons"]) <= 0.003, row
