"""Report without bmodels: eval and study tables, valid HTML, skip when nothing changed (fast)."""
from __future__ import annotations

import html.parser
import json

import pytest

from bmpose import config
from bmpose.cli import report as report_cli
from bmpose.report import report


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
def cfg(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ARTIFACTS", tmp_path)
    return config.load("hrnet_small_128x96")


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


def test_report_cli(cfg, capsys):
    assert report_cli.main(["--model", "hrnet_small_128x96"]) == 0
    assert "index.html" in capsys.readouterr().out
