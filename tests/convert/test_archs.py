"""Other mmpose top-down heatmap architectures than HRNet, and the diagnosis line of a failed INT8 build.

Slow: SE-ResNet-50 (configs/seresnet50_128x96.yaml) with the random-init fixture weights, exported and built
to INT8 (calibrated on 8 crops) for BM1684X at batch 1 in a private artifacts dir: no TPU-MLIR tool may fail,
and the bmodel passes bmpose's own gate. Its INT8 build runs every stage an FP32 build does (export, transform
with its ONNX-vs-top check, lowering, codegen, the bmodel-vs-MLIR check) and the automatic FP32 tail lowers part
of it in FP32; a separate FP32 build took 20 s more of CI (issue 32) to prove no other stage.
SimpleBaseline ResNet-50 (res50_128x96.yaml) is exported and checked against PyTorch only: its config is the one
SE-ResNet-50's inherits with another backbone type, and every op it has (the bottleneck's conv/BN/ReLU/add, the
deconvolution head) is in SE-ResNet-50's graph too, which adds
the squeeze-excitation pooling, sigmoid and multiply; building both took 66 s more of CI for no op not built.
Fast: the diagnosis of an INT8 build that fails TPU-MLIR's per-layer check or bmpose's gate, on the toy graph
(conftest.py).
"""
from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from bmpose import config
from bmpose.flows.build import BuildRequest, build
from bmpose import compare
from bmpose.layout import list_bmodels
from bmpose.convert import bmodel_build, diagnose, steps
from bmpose.errors import BmposeError
from bmpose.manifest import read_manifest
from helpers import assert_random_weight_gates_passed

ARCHS = ("seresnet50_128x96",)   # built; res50_128x96 is exported only (module doc)


def _int8_options(cfg, checkpoint):
    return bmodel_build.deploy_options(cfg, "bm1684x", "int8", 1, method="kl", user_qtables=[], search=False,
                                checkpoint=checkpoint, calib=None)


def test_random_weights_get_a_per_layer_floor_that_cannot_decide_and_record_it():
    cfg = config.load("hrnet_small_128x96")
    assert _int8_options(cfg, "fixture").options()["tpu_layer_tolerance"] == bmodel_build.INT8_LAYER_TOL_RANDOM \
        == "0,-inf"
    # trained weights keep TPU-MLIR's strict per-layer check (the default floor), unrecorded as before
    assert "tpu_layer_tolerance" not in _int8_options(cfg, None).options()
    assert "tpu_layer_tolerance" not in _int8_options(cfg, "/some/real.pth").options()


def _failed(d):
    return d.with_name(d.name + ".failed")


def test_per_layer_failure_names_the_first_layer_below_not_the_tool_lines(toy):
    cfg, mlir, crops = toy
    table = steps.ensure_cali_table(cfg, mlir, crops, "kl", 4)
    opts = dataclasses.replace(_int8_options(cfg, "fixture"), tpu_layer_tolerance="0.99999,0.9999")   # no INT8 layer is that close
    out = cfg.artifacts / "diag_layer"
    with pytest.raises(BmposeError) as e:
        bmodel_build.ensure_bmodel(cfg, "bm1684x", "int8", 1, mlir=mlir, spec=opts, cali_table=table, out=out)
    msg = str(e.value)
    assert "\n" not in msg and "npz compare FAILED" not in msg and "RuntimeError" not in msg
    # the first layer, in graph order, that TPU-MLIR's rule (cosine > 0.99999 and euclidean > 0.9999) fails,
    # recomputed here from the tensors the failed build kept
    failed = _failed(out)
    stem = f"{cfg.name}_bm1684x_int8_sym"
    # (in the top MLIR's order, as TPU-MLIR walks it; both measures are symmetric)
    top = failed / steps.transform_files(cfg)["top_outputs"]
    rows = compare.compare_npz(top, failed / f"{stem}_tpu_outputs.npz")
    first = next(r for r in rows if not (r["cosine"] > 0.99999 and r["euclidean"] > 0.9999))
    named = re.search(r"first layer below: (\S+) at cosine ([0-9.]+)", msg)
    assert named and named[1] == first["layer"]
    assert abs(float(named[2]) - first["cosine"]) < 1e-3   # TPU-MLIR computes in float32
    assert msg.startswith(f"{failed / 'model_deploy.log'}: TPU-MLIR's per-layer check")
    assert "a trained checkpoint" in msg and "METHOD=" in msg and "SEARCH=1" in msg
    assert f"QTABLE=<file with `{first['layer']} F32`>" in msg


def test_gate_failure_names_the_first_layer_below_the_gate(toy):
    cfg, mlir, crops = toy
    table = steps.ensure_cali_table(cfg, mlir, crops, "kl", 4)
    strict = dataclasses.replace(cfg, tolerances={**cfg.tolerances, "int8_cos": 0.99999})
    opts = _int8_options(strict, None)   # the config's (trained) checkpoint: no "trained checkpoint" hint
    out = cfg.artifacts / "diag_gate"
    with pytest.raises(BmposeError) as e:
        bmodel_build.ensure_bmodel(strict, "bm1684x", "int8", 1, mlir=mlir, spec=opts, cali_table=table, out=out)
    msg = str(e.value)
    assert "\n" not in msg and "< tolerance int8_cos=0.99999" in msg
    rows = compare.read_csv(_failed(out) / "compare.csv")[:-1]   # without the bmodel-vs-ONNX row
    first = next(r for r in rows if r["cosine"] < 0.99999)
    assert f"first layer below 0.99999 against the top FP32 MLIR: {first['layer']} at cosine" in msg
    assert "a trained checkpoint" not in msg and "METHOD=" in msg
    # the gate it was held to stays with it, for the report's verdict (a failed build has no manifest)
    assert json.loads((_failed(out) / bmodel_build.FAILED_OPTIONS).read_text())["tolerance"] == {"int8_cos": 0.99999}


LOG = """$ cd /x && model_deploy.py --mlir m.mlir
[Running]: npz_tool.py compare m_int8_sym_model_outputs.npz m_int8_sym_tpu_outputs.npz --tolerance 0.98,0.80 -vv
\r  0%|          | 0/2 [00:00<?, ?it/s]compare heatmaps_Conv:  50%|#####     | 1/2
[input                           ]        EQUAL [PASSED]
    (1, 3, 8, 8) float32
[heatmaps_Conv_f32               ]  NOT_SIMLIAR [FAILED]
    (1, 2, 8, 8) float32
    cosine_similarity      = 0.512345
    euclidean_similarity   = 0.101000
    sqnr_similarity        = 1.0
npz compare FAILED.
"""


def test_a_bmodel_that_differs_from_its_tpu_mlir_is_not_blamed_on_calibration(tmp_path):
    log = tmp_path / "model_deploy.log"
    log.write_text(LOG)
    cmp = diagnose.tool_compare(log)
    assert cmp["tolerance"] == (0.98, 0.8) and [r["passed"] for r in cmp["rows"]] == [True, False]
    msg = diagnose.tool_failure(log, "fixture")
    assert "bmodel against its TPU MLIR" in msg and "heatmaps_Conv_f32 at cosine 0.512345" in msg
    assert "compiler problem" in msg and "METHOD=" not in msg
    log.write_text(LOG.replace("npz compare FAILED.", "npz compare PASSED."))
    assert diagnose.tool_failure(log, "fixture") is None   # some other failure: the runner's own message stays


# ------------------------------------------------------------------------------------------ architectures (slow)

@pytest.mark.slow
def test_resnet50_exports_with_parity(tmp_path):
    from bmpose.convert.export import ensure_onnx

    cfg = config.load("res50_128x96", artifacts=tmp_path)
    assert cfg.checkpoint == "fixture" and cfg.input_size == (96, 128)
    ensure_onnx(cfg, batches=(1,), verbose=False)
    check = read_manifest(cfg.artifacts / "onnx")["checks"]["res50_128x96_b1.onnx"]
    assert check["passed"] and check["max_abs_diff"] <= cfg.tolerances["onnx_max_abs"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ARCHS)
def test_architecture_exports_and_builds_int8(model, tmp_path):
    cfg = config.load(model, artifacts=tmp_path)
    assert cfg.checkpoint == "fixture" and cfg.input_size == (96, 128)
    t0 = time.monotonic()
    # random weights: INT8 is a plumbing check (int8_cos_random), so 8 calibration crops serve as well as 100
    build(BuildRequest("int8", model=model, artifacts_dir=tmp_path, chips=("bm1684x",), batches=(1,), num=8,
                       report=False))
    print(f"\n{model}: export + int8 (bm1684x, b1) {time.monotonic() - t0:.0f} s")
    assert not list(cfg.artifacts.rglob("*.failed"))   # no stage failed on the way
    onnx = read_manifest(cfg.artifacts / "onnx")["checks"][f"{model}_b1.onnx"]
    assert onnx["passed"] and onnx["max_abs_diff"] <= cfg.tolerances["onnx_max_abs"]
    bms = list_bmodels(cfg)
    assert [(b["chip"], b["precision"], b["batch"]) for b in bms] == [("bm1684x", "int8", 1)]
    assert_random_weight_gates_passed(cfg, bms, (1, 17, 32, 24))
    m = bms[0]["manifest"]
    assert m["options"]["tpu_layer_tolerance"] == bmodel_build.INT8_LAYER_TOL_RANDOM
    assert "--tolerance 0,-inf" in (bms[0]["dir"] / "model_deploy.log").read_text().splitlines()[0]
    assert 0 < len(m["fp32_layers"]) < 20   # the automatic tail (deconvolution head), the rest INT8
    assert read_manifest(cfg.layout.mlir(1))["checks"]["top_vs_onnx"]["cosine"] > 0.9999   # the float top MLIR
