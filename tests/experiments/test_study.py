"""Calibration study pieces that need no build (fast): the evaluation persons, the choice rule, the heatmap
cosine, bad methods, and the report's study plot. The study itself (`make study`) is measured in docs/calibration.md;
tests/convert/test_fidelity.py gates the defaults it chose."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bmpose import config
from bmpose.cli import study as study_cli
from bmpose.evaluate import sets
from bmpose.experiments import study
from bmpose.report import report
from bmpose.errors import BmposeError


def test_eval_set_is_the_fixtures_51_training_persons():
    boxes = sets.eval_boxes(*sets.eval_set())
    assert len(boxes) == 51
    assert all(b.xyxy is not None and b.score == 1.0 for b in boxes)


def _row(chip, method, layers, dap, n=2, cos=0.999):
    return {"chip": chip, "precision": "INT8", "method": method, "fp32_layers": layers, "n_fp32": n,
            "AP": 0.8 + dap, "dAP": dap, "hm_cos_mean": cos}


def test_choice_is_the_smallest_worst_chip_drop():
    cfg = config.load("hrnet_small_128x96")
    rows = [_row("bm1684", "max", "none", +0.001, 0), _row("bm1684x", "max", "none", -0.006, 0),
            _row("bm1684", "kl", "auto", -0.003), _row("bm1684x", "kl", "auto", -0.003),
            _row("bm1684", "kl", "none", -0.7, 0), _row("bm1684x", "kl", "none", -0.7, 0)]
    c = study.choose(rows, ("bm1684", "bm1684x"), cfg)
    assert c["overall"] == {"method": "kl", "fp32_layers": "auto", "worst_chip_dAP": -0.003}
    assert c["per_chip"]["bm1684"]["method"] == "max"
    assert c["config_default"]["dAP"] == {"bm1684": -0.003, "bm1684x": -0.003}


def test_heatmap_cosine_per_crop():
    a = np.random.default_rng(0).random((3, 17, 8, 6)).astype(np.float32)
    b = a.copy()
    b[1] *= 2.0           # same direction: cosine 1
    b[2] = -b[2]          # opposite: cosine -1
    np.testing.assert_allclose(study.heatmap_cosines(b, a), [1.0, 1.0, -1.0], atol=1e-6)


def test_unknown_method_is_refused():
    with pytest.raises(BmposeError, match="--methods foo: unknown calibration method"):
        study_cli.main(["--methods", "foo"])


def test_report_draws_the_study_default_per_layer_plot(tmp_path):
    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)
    d = cfg.artifacts / "study"
    d.mkdir(parents=True)
    csv = d / "compare.csv"
    csv.write_text("layer,op,quant,shape,cosine,euclidean,sqnr_db\n"
                   "a,tpu.Conv2D,INT8,1x2,0.999,0.95,30\nb,tpu.Conv2D,F32,1x2,0.998,0.94,29\n"
                   "out (bmodel vs ONNX),bmodel,INT8,1x2,0.998,0.94,29\n")
    (d / "study.json").write_text(json.dumps({
        "rows": [{"chip": "bm1684", "method": "kl", "fp32_layers": "auto", "AP": 0.825}],
        "layer_plots": [{"chip": "bm1684", "title": "bm1684, kl, automatic FP32 tail", "csv": str(csv)}]}))
    index = report.ensure_report(cfg)
    assert (index.parent / "study_layers_bm1684.png").is_file()
    assert 'src="study_layers_bm1684.png"' in index.read_text()
    assert "](study_layers_bm1684.png)" in (index.parent / "report.md").read_text()


def test_report_plots_ap_drop_against_device_time(tmp_path):
    """The study reads each variant's simulated time from its build manifest; the report draws AP drop against
    simulated ms per person."""
    from bmpose.manifest import read_manifest, write_manifest

    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)
    d = cfg.artifacts / "study"
    rows = [{"chip": "bm1684x", "precision": "FP32", "method": "-", "fp32_layers": "-", "AP": 0.828, "dAP": 0.0},
            {"chip": "bm1684x", "precision": "INT8", "method": "kl", "fp32_layers": "auto", "AP": 0.827,
             "dAP": -0.001},
            {"chip": "bm1684x", "precision": "INT8", "method": "kl", "fp32_layers": "none", "AP": 0.4, "dAP": -0.43}]
    for row, (label, ms) in zip(rows, (("bm1684x_fp32_b1", 0.227), ("bm1684x_kl_auto_b1", 0.044),
                                       ("bm1684x_kl_none_b1", 0.041))):
        (d / label).mkdir(parents=True)
        write_manifest(d / label, stage="deploy", inputs={}, options={},
                       checks={"device_time": {"ms_per_person": ms, "runtime_ms": ms}})
        row["device_ms"] = study.device_ms(read_manifest(d / label))
    assert [r["device_ms"] for r in rows] == [0.227, 0.044, 0.041]
    (d / "study.json").write_text(json.dumps({"rows": rows, "layer_plots": []}))
    index = report.ensure_report(cfg)
    assert (index.parent / "study_speed.png").is_file()
    assert 'src="study_speed.png"' in index.read_text()


def test_report_plots_agreement_with_float_when_the_study_has_it(tmp_path):
    """A study with keypoint agreement (oks_vs_float) is drawn as fidelity against simulated ms, not AP drop."""
    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)
    d = cfg.artifacts / "study"
    d.mkdir(parents=True)
    rows = [{"chip": "bm1684x", "precision": "FP32", "method": "-", "fp32_layers": "-", "dAP": 0.0,
             "oks_vs_float": 1.0, "device_ms": 0.49},
            {"chip": "bm1684x", "precision": "INT8", "method": "mse", "fp32_layers": "auto", "dAP": -0.06,
             "oks_vs_float": 0.82, "device_ms": 0.16}]
    (d / "study.json").write_text(json.dumps({"rows": rows, "layer_plots": []}))
    index = report.ensure_report(cfg)
    assert (index.parent / "study_speed.png").is_file()
    assert "fidelity (agreement with float) against simulated device time" in index.read_text()
