"""The report: eval and study tables, valid HTML, skip when nothing changed; the verdict over (stand-in) bmodel
builds, its pose pictures and relative paths; the page in a real headless browser (fast)."""
from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from bmpose import config
from bmpose.cli import report as report_cli
from bmpose.evaluate import pictures
from bmpose.layout import FAILED_OPTIONS
from bmpose.report import report
from bmpose.runtime.backends.base import Backend
from helpers import skip_or_fail


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.imgs, self.cells = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)


@pytest.fixture
def cfg(tmp_path):
    return config.load("hrnet_small_128x96", artifacts=tmp_path)


def test_report_has_eval_and_study_tables_and_skips_when_unchanged(cfg):
    ev = cfg.artifacts / "eval"
    ev.mkdir(parents=True)
    (ev / "onnx_fp32.json").write_text(json.dumps({"label": "onnx_fp32", "artifact": "x.onnx", "AP": 0.70,
                                                   "AP50": 0.9, "AP75": 0.8, "AR": 0.75}))
    (ev / "bm1684_int8_b1.json").write_text(json.dumps({"label": "bm1684_int8_b1", "artifact": "y.bmodel",
                                                        "AP": 0.68, "AP50": 0.9, "AP75": 0.78, "AR": 0.73,
                                                        "backend": "cmodel", "persons": 4,
                                                        "subset": "first 4 persons"}))
    (cfg.artifacts / "study").mkdir()
    (cfg.artifacts / "study" / "study.json").write_text(json.dumps({"rows": [{"method": "kl", "cos": 0.97}]}))
    index = report.ensure_report(cfg)
    p = _Collect()
    p.feed(index.read_text())
    assert p.stack == [] and p.imgs == []
    assert "bm1684_int8_b1" in p.cells and "-0.0200" in p.cells and "kl" in p.cells
    assert "cmodel" in p.cells and "4 (first 4 persons)" in p.cells   # where and on what a bmodel was scored
    data = json.loads((index.parent / "report.json").read_text())
    assert data["bmodels"] == [] and len(data["eval"]) == 2
    stamp = index.stat().st_mtime_ns, (index.parent / "manifest.json").stat().st_ino
    report.ensure_report(cfg)
    assert (index.stat().st_mtime_ns, (index.parent / "manifest.json").stat().st_ino) == stamp
    (ev / "onnx_fp32.json").write_text(json.dumps({"label": "onnx_fp32", "AP": 0.71}))   # an input changed
    report.ensure_report(cfg)
    assert "0.7100" in index.read_text()


def test_report_says_which_persons_calibrated_and_which_were_scored(cfg):
    """The evaluation set and, loudly, an INT8 result scored on its own calibration images."""
    ev = cfg.artifacts / "eval"
    ev.mkdir(parents=True)
    row = {"label": "bm1684_int8_b1", "artifact": "y.bmodel", "AP": 0.68, "AP50": 0.9, "AP75": 0.78, "AR": 0.73,
           "eval_set": "data/coco_val_mini/person_keypoints_val2017_subset.json",
           "calibration": {"set": "data/coco_val_mini/person_keypoints_val2017_subset.json",
                           "seen": ["data/coco_val_mini/images/a.jpg", "data/coco_val_mini/images/b.jpg"]}}
    (ev / "bm1684_int8_b1.json").write_text(json.dumps(row))
    index = report.ensure_report(cfg)
    md = (index.parent / "report.md").read_text()
    assert "evaluated on `data/coco_val_mini/person_keypoints_val2017_subset.json`" in md
    assert "Warning: bm1684_int8_b1 was scored on 2 images that also calibrated it" in md
    assert "bm1684_int8_b1 (scored on 2 of its calibration images)" in md
    assert "Warning: bm1684_int8_b1 was scored on 2 images" in index.read_text()
    (ev / "bm1684_int8_b1.json").write_text(json.dumps({**row, "calibration": {"set": "x.json", "seen": []}}))
    md = (report.ensure_report(cfg).parent / "report.md").read_text()
    assert "Warning" not in md and "scored on" not in md


def test_report_cli(cfg, capsys):
    assert report_cli.main(["--model", "hrnet_small_128x96", "--artifacts-dir", str(cfg.root)]) == 0
    assert "index.html" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ the verdict

KPTS = [(12, 4), (13, 3), (11, 3), (14, 4), (10, 4), (15, 8), (9, 8), (17, 13), (7, 13), (18, 17), (6, 17),
        (14, 18), (10, 18), (15, 24), (9, 24), (15, 30), (9, 30)]   # a standing person, heatmap (x, y) of 24x32


class _StickBackend(Backend):
    """Stands in for the mlir backend: a person's heatmaps whatever the crop, so the report's pose picture goes
    through the real predict, decode and draw (the real pymlir run is in tests/convert/test_build.py, slow)."""
    kind, calls = "mlir", []

    def __init__(self, path, chip=None, workers=None):
        super().__init__(path)
        self.chip = chip
        _StickBackend.calls.append(self.name)

    def run(self, x):
        yy, xx = np.mgrid[:32, :24]
        hm = np.stack([np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / 2.0) for kx, ky in KPTS]).astype(np.float32)
        return np.repeat(hm[None], len(x), axis=0)


def _fake_build(cfg, chip, precision, batch, cos, failed=False):
    """A bmodel build dir as bmpose.convert.bmodel_build leaves it (manifest, bmodel, deployed MLIR, compare files);
    failed: as a build stopped by the heatmap gate leaves it (`<dir>.failed`, compare.csv, log, no manifest)."""
    from bmpose.compare import write_csv
    from bmpose.manifest import sha256_file

    d = cfg.artifacts / f"{chip}_{precision}_b{batch}{'.failed' if failed else ''}"
    d.mkdir(parents=True)
    rng = np.random.default_rng(batch)
    onnx = rng.random((batch, 17, 32, 24), dtype=np.float32)
    np.savez(d / "compare.npz", onnx=onnx, bmodel=onnx + 0.01)
    layers = [{"layer": f"l{i}", "op": "tpu.Conv2D", "quant": "F32" if i == 9 else "INT8", "shape": "1x8x8x8",
               "cosine": 0.999 - i / 1000, "euclidean": 0.9, "sqnr_db": 30.0} for i in range(10)]
    write_csv(layers + [{"layer": "heatmaps (bmodel vs ONNX)", "op": "bmodel", "quant": precision.upper(),
                         "shape": "x", "cosine": cos, "euclidean": 0.9, "sqnr_db": 25.0}], d / "compare.csv")
    (d / "model_deploy.log").write_text("model_deploy ...\n")
    if failed:   # the options deploy writes before model_deploy runs: the gate it was held to
        (d / FAILED_OPTIONS).write_text(json.dumps({"tolerance": {f"{precision}_cos": 0.99}}))
        return d
    mlir, weights, bmodel = f"{chip}_{precision}_tpu.mlir", f"{chip}_{precision}_w.npz", cfg.layout.bmodel_name(
        chip, precision, batch)
    (d / mlir).write_text(f'module attributes {{module.chip = "{chip}"}} // {precision} b{batch}\n')
    np.savez(d / weights, w=np.zeros(1))
    (d / bmodel).write_bytes(b"\0" * 1000 * batch)
    key = f"{precision}_cos"
    (d / "manifest.json").write_text(json.dumps({
        "stage": "deploy", "status": "ok", "created": "2026-01-01T00:00:00+00:00",
        "options": {"chip": chip, "precision": precision, "batch": batch, "method": "kl",
                    "checkpoint": str(config.ROOT / "configs" / "checkpoints" / "x.pth"), "tolerance": {key: 0.99}},
        "outputs": {bmodel: "b", mlir: sha256_file(d / mlir), weights: sha256_file(d / weights)},
        "checks": {"final": {"cosine": cos, "euclidean": 0.9, "sqnr_db": 25.0}, "tolerance": {key: 0.99},
                   "tpu_mlir_vs_top_min_cos": 0.99,
                   "device_time": {"runtime_ms": 0.2 * batch, "ms_per_person": 0.2, "cycles": 1}},
        "build_seconds": 1.0, "fp32_layers": ["l9"] if precision == "int8" else [], "size_bytes": 1000 * batch,
        "tpu_mlir": mlir, "tpu_weights": weights}))
    return d


@pytest.fixture
def built(cfg, monkeypatch):
    """Three bmodels that pass, one INT8 build that failed its heatmap gate, an eval of one of them, the pose
    pictures (bmpose.evaluate.pictures: a stick figure per chip)."""
    from bmpose.manifest import sha256_file
    from bmpose.runtime.backends import mlir

    monkeypatch.setattr(mlir, "MlirBackend", _StickBackend)
    _StickBackend.calls = []
    good = [_fake_build(cfg, "bm1684", "int8", 1, 0.9986), _fake_build(cfg, "bm1684", "fp32", 1, 1.0),
            _fake_build(cfg, "bm1684x", "fp32", 4, 1.0)]
    _fake_build(cfg, "bm1684x", "int8", 4, 0.95, failed=True)
    ev = cfg.artifacts / "eval"
    ev.mkdir()
    (ev / "bm1684_int8_b1.json").write_text(json.dumps({
        "label": "bm1684_int8_b1", "artifact": "x", "backend": "mlir", "persons": 51, "AP": 0.8251, "AP50": 1.0,
        "AP75": 0.97, "AR": 0.87, "onnx_AP_same_persons": 0.8280,
        "inputs": {"artifact": sha256_file(good[0] / "bm1684_int8_tpu.mlir")}}))
    assert pictures.ensure_pictures(cfg) == []
    return cfg


def test_verdict_counts_every_gate_and_the_failed_build(built):
    index = report.ensure_report(built)
    v = json.loads((index.parent / "report.json").read_text())["verdict"]
    assert v["overall"] == {"pass": False, "text": "1 of 4 fail: bm1684x_int8_b4 (build failed): int8_cos 0.950000 "
                                                   "< 0.99"}
    rows = {r["bmodel"]: r for r in v["rows"]}
    assert [r["bmodel"] for r in v["rows"]] == ["bm1684_fp32_b1", "bm1684_int8_b1", "bm1684x_fp32_b4",
                                                "bm1684x_int8_b4"]
    assert [(g["name"], g["pass"]) for g in rows["bm1684_int8_b1"]["gates"]] == [("deploy", True), ("int8_cos", True)]
    assert [(g["name"], g["pass"]) for g in rows["bm1684x_int8_b4"]["gates"]] == [("deploy", True),
                                                                                ("int8_cos", False)]
    assert rows["bm1684_int8_b1"]["AP"] == 0.8251 and rows["bm1684_int8_b1"]["delta_AP"] == pytest.approx(-0.0029)
    assert rows["bm1684_fp32_b1"]["AP"] is None and "make eval" in rows["bm1684_fp32_b1"]["source"]
    assert rows["bm1684x_fp32_b4"]["sim_ms_per_person"] == 0.2
    # a pose per chip, drawn by its INT8 bmodel where one passed, else the best that did
    assert [(p["chip"], p["bmodel"]) for p in v["pictures"]] == [("bm1684", "bm1684_int8_b1"),
                                                                 ("bm1684x", "bm1684x_fp32_b4")]
    img = cv2.imread(str(index.parent / "pose_bm1684.jpg"))
    assert img.shape == (427, 640, 3) and v["pictures"][0]["persons"] == 2
    md = (index.parent / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Bmodels")
    assert "**❌ FAIL: 1 of 4 fail: bm1684x_int8_b4 (build failed)" in md and "| bm1684_int8_b1 | bm1684 | int8 | 1 | ✅ PASS |" in md
    page = index.read_text()
    assert page.index('id="verdict"') < page.index("<h2>Bmodels</h2>")
    assert '<span class="badge fail">&#10007; FAIL</span> 1 of 4 fail' in page   # colour and word


def test_report_paths_are_relative_and_commands_portable(built):
    index = report.ensure_report(built)
    out = index.parent
    for name in ("index.html", "report.md", "report.json"):
        text = (out / name).read_text()
        assert str(built.artifacts) not in text and str(config.ROOT) not in text, name
    p = _Collect()
    p.feed(index.read_text())
    links = re.findall(r'href="([^"]+)"', index.read_text())
    assert len(p.imgs) == 2 + 1 + 2 and len(links) >= 4 + 3   # pictures, layer plot, heatmaps; bmodels, log
    for ref in p.imgs + links:
        assert not ref.startswith("/") and (out / ref).exists(), ref
    md = (out / "report.md").read_text()
    assert ("bmpose infer --model hrnet_small_128x96 --backend bmodel $BMPOSE_ARTIFACTS/hrnet_small_128x96/"
            "bm1684_int8_b1/hrnet_small_128x96_bm1684_int8_b1.bmodel --chip bm1684") in md
    assert "configs/checkpoints/x.pth" in (out / "report.json").read_text()   # the repository's own files


def test_pose_pictures_are_reused_until_their_bmodel_changes(built):
    report.ensure_report(built)
    assert len(_StickBackend.calls) == 2
    (built.artifacts / "eval" / "onnx_fp32.json").write_text(json.dumps({"label": "onnx_fp32", "AP": 0.828}))
    assert pictures.ensure_pictures(built) == []
    index = report.ensure_report(built)          # the report is rebuilt (an input changed), the pictures are not
    assert "onnx_fp32" in index.read_text() and len(_StickBackend.calls) == 2
    d = built.artifacts / "bm1684_int8_b1"       # a rebuilt bmodel: a new picture, and its old eval is stale
    (d / "bm1684_int8_tpu.mlir").write_text('module attributes {module.chip = "bm1684"} // rebuilt, longer\n')
    m = json.loads((d / "manifest.json").read_text())
    m["outputs"]["bm1684_int8_tpu.mlir"] = "changed"
    (d / "manifest.json").write_text(json.dumps(m))
    v = json.loads((report.ensure_report(built).parent / "report.json").read_text())["verdict"]
    assert v["pictures"][0]["file"] is None and "not drawn" in v["pictures"][0]["why"]   # the report only reads
    assert pictures.ensure_pictures(built) == []
    v = json.loads((report.ensure_report(built).parent / "report.json").read_text())["verdict"]
    assert _StickBackend.calls == ["bm1684_int8_tpu.mlir", "bm1684x_fp32_tpu.mlir", "bm1684_int8_tpu.mlir"]
    row = next(r for r in v["rows"] if r["bmodel"] == "bm1684_int8_b1")
    assert row["AP"] is None and "stale" in row["source"]


def test_verdict_without_bmodels_and_when_all_pass(cfg, monkeypatch):
    from bmpose.runtime.backends import mlir

    monkeypatch.setattr(mlir, "MlirBackend", _StickBackend)
    data = json.loads((report.ensure_report(cfg).parent / "report.json").read_text())
    assert data["verdict"] == {"overall": {"pass": None, "text": "No bmodels built yet"}, "rows": [], "pictures": []}
    _fake_build(cfg, "bm1684x", "int8", 1, 0.999)
    data = json.loads((report.ensure_report(cfg).parent / "report.json").read_text())
    assert data["verdict"]["overall"] == {"pass": True, "text": "The 1 bmodel passes its gates"}


# ------------------------------------------------------------------------------------------------ in a browser

@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed by scripts/install_chromium.sh when missing (root or passwordless sudo);
    the browser test skips, saying why, where neither works (under CI=true it fails with that line)."""
    if shutil.which("chromium") is None:
        out = subprocess.run(["bash", str(config.ROOT / "scripts" / "install_chromium.sh")], capture_output=True,
                             text=True, timeout=900)
        if shutil.which("chromium") is None:
            why = (out.stdout + out.stderr).strip().splitlines()[-1:] or [f"exit {out.returncode}"]
            skip_or_fail(f"no chromium for the report's browser test: {why[0]}")
    return shutil.which("chromium")


def _browse(exe, page, tmp_path, *args) -> str:
    cmd = [exe, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", *args, page.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class _Dom(html.parser.HTMLParser):
    """The dumped DOM: every <img>'s attributes, <body>'s, the verdict section's and its text."""

    def __init__(self):
        super().__init__()
        self.imgs, self.body, self.verdict, self.text, self._depth = [], {}, {}, "", 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.imgs += [a] if tag == "img" else []
        self.body = a if tag == "body" else self.body
        if a.get("id") == "verdict":
            self.verdict, self._depth = a, 1
        elif self._depth and tag == "section":
            self._depth += 1

    def handle_endtag(self, tag):
        if self._depth and tag == "section":
            self._depth -= 1

    def handle_data(self, data):
        self.text += data if self._depth else ""


def test_report_page_in_a_headless_browser(built, chromium, tmp_path):
    index = report.ensure_report(built)
    dom = _Dom()
    dom.feed(_browse(chromium, index, tmp_path, "--dump-dom"))
    assert dom.body.get("data-images-checked") == str(len(dom.imgs)) == "5"   # the page's own script ran
    assert all(int(i["data-natural-width"]) > 0 and "missing" not in i.get("class", "") for i in dom.imgs), dom.imgs
    assert dom.verdict.get("data-verdict") == "fail"
    assert "✗ FAIL 1 of 4 fail: bm1684x_int8_b4 (build failed)" in " ".join(dom.text.split())
    assert "✓ PASS" in dom.text
    # what a person sees: not blank, the pass badges green and the fail badge red (#1a7f37, #c62828)
    shot = tmp_path / "shot.png"
    _browse(chromium, index, tmp_path, f"--screenshot={shot}", "--window-size=1200,900")
    img = cv2.imread(str(shot))
    assert img.shape == (900, 1200, 3) and img.std() > 20

    def pixels(rgb):
        return int((np.abs(img.astype(int) - rgb[::-1]).sum(axis=2) < 30).sum())

    assert pixels((0x1a, 0x7f, 0x37)) > 500 and pixels((0xc6, 0x28, 0x28)) > 500
    # and the check can fail: a picture gone from the report is seen as not loaded, and framed
    (index.parent / "pose_bm1684x.jpg").unlink()
    dom = _Dom()
    dom.feed(_browse(chromium, index, tmp_path, "--dump-dom"))
    gone = [i for i in dom.imgs if i["src"] == "pose_bm1684x.jpg"]
    assert gone and gone[0]["data-natural-width"] == "0" and "missing" in gone[0]["class"]


def test_a_failed_build_is_judged_by_the_gate_it_was_held_to(cfg):
    """No manifest in `<dir>.failed/`: the verdict reads the options the build left (random-init weights: the
    *_random gate, here passed, so the failure is the build's own); without them no heatmap gate is claimed."""
    from bmpose.report import verdict

    d = _fake_build(cfg, "bm1684x", "int8", 1, 0.95, failed=True)
    row = verdict._row_of_failure(d, set())
    assert [(g["name"], g["pass"]) for g in row["gates"]] == [("deploy", True), ("int8_cos", False)]  # trained
    (d / FAILED_OPTIONS).write_text(json.dumps({"tolerance": {"int8_cos_random": 0.9}, "checkpoint": "fixture"}))
    row = verdict._row_of_failure(d, set())
    assert [(g["name"], g["pass"]) for g in row["gates"]] == [("deploy", True), ("int8_cos_random", True),
                                                              ("build", False)]
    (d / FAILED_OPTIONS).unlink()
    assert [(g["name"], g["pass"]) for g in verdict._row_of_failure(d, set())["gates"]] == [("deploy", True),
                                                                                          ("build", False)]


def test_the_report_names_where_the_network_came_from(cfg, tmp_path):
    """An mmpose config, or the ONNX file of an `onnx:` deploy config."""
    import dataclasses

    md = (report.ensure_report(cfg).parent / "report.md").read_text()
    assert f"mmpose config `{cfg.mmpose_config.relative_to(config.ROOT)}`" in md   # the repository's own file
    onnx_cfg = dataclasses.replace(cfg, mmpose_config=None, onnx=tmp_path / "net.onnx", dataset="coco")
    index = report.ensure_report(onnx_cfg, force=True)
    assert f"ONNX file `{tmp_path / 'net.onnx'}`" in (index.parent / "report.md").read_text()
    assert f"ONNX file <code>{tmp_path / 'net.onnx'}</code>" in index.read_text()


def test_report_shows_what_precision_auto_tried_and_why(cfg):
    """artifacts/<model>/auto/<chip>/choice.json: a table per chip, the winner named, the plot drawn."""
    trial = {"precision": "int8", "float_mode": "F16", "meets": False, "error": None, "build_dir": None,
             "agree90": 0.5, "AP": 0.7}
    choice = {"chip": "bm1684x", "target": 0.98, "budget": 8, "winner": "int8_f16x4", "notes": ["a note"],
              "why": "int8_f16x4: fastest build meeting fidelity >= 0.98", "float_layers": ["a"] * 4,
              "float_mode": "F16", "winner_dir": "x",
              "trials": [{**trial, "variant": "fp16", "precision": "fp16", "float_layers": 0, "float_mode": None,
                          "ms": 0.09, "fidelity": 0.999, "meets": True},
                         {**trial, "variant": "int8", "float_layers": 0, "float_mode": None, "ms": 0.04,
                          "fidelity": 0.96},
                         {**trial, "variant": "int8_f16x4", "float_layers": 4, "ms": 0.05, "fidelity": 0.985,
                          "meets": True}]}
    (cfg.artifacts / "auto" / "bm1684x").mkdir(parents=True)
    (cfg.artifacts / "auto" / "bm1684x" / "choice.json").write_text(json.dumps(choice))
    index = report.ensure_report(cfg)
    p = _Collect()
    p.feed(index.read_text())
    assert p.stack == [] and "auto.png" in p.imgs and (index.parent / "auto.png").stat().st_size > 1000
    assert "chosen (meets)" in p.cells and "4 F16" in p.cells and "0.9850" in p.cells
    md = (index.parent / "report.md").read_text()
    assert "### bm1684x: --precision auto chose int8_f16x4" in md and "- a note" in md
    assert "| int8 | 0 | 0.040 | 0.9600 | 0.50 | 0.7000 | below |" in md
