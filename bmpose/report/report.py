"""`bmpose report --model M`: artifacts/<model>/report/{index.html, report.md, report.json, *.png, *.jpg}.

What a deployment engineer needs to trust the bmodels: first the verdict (bmpose.report.verdict: every gate of
every bmodel build, pass or fail, with its AP and device time, and a pose drawn by each chip's bmodel), then a
table of every bmodel (chip, batch, precision, size, build time, final similarity to ONNX, FP32 layers), a
per-layer similarity plot per INT8/FP16/BF16 bmodel, one crop's heatmaps ONNX vs every precision side by side,
how to run each bmodel, and - when present - the COCO evaluation (artifacts/<model>/eval/*.json) and the
calibration study (artifacts/<model>/study/study.json). The HTML comes from templates/index.html.j2 (Jinja2);
every path in the report is relative to it (commands: to the repository). The report has a manifest over
everything it reads, so refreshing it after a no-op build costs nothing.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bmpose import config as config_mod
from bmpose.errors import BmposeError
from bmpose.evaluate.pictures import read_pictures
from bmpose.layout import failed_builds, list_bmodels
from bmpose.manifest import atomic_dir, locked, sha256_file, up_to_date, write_manifest
from bmpose.report import verdict as verdict_mod
from bmpose.report.plots import make_plots
from bmpose.report.render import EVAL_KEYS, TEMPLATES, to_html, to_markdown

REPORT_VERSION = 2


def _inputs(cfg) -> dict:
    inputs = {f"bmodel/{b['dir'].name}": b["dir"] / "manifest.json" for b in list_bmodels(cfg)}
    inputs.update({f"eval/{p.name}": p for p in sorted(cfg.layout.eval().glob("*.json"))})
    inputs.update({f"pictures/{p['chip']}": p["manifest"] for p in read_pictures(cfg) if p["file"]})
    study = cfg.layout.study() / "study.json"
    if study.is_file():
        inputs["study"] = study
        inputs.update({f"study_eval/{p.name}": p for p in sorted((study.parent / "eval").glob("*.json"))})
    inputs.update({f"auto/{chip}": p for chip, p in cfg.layout.auto_choices().items()})
    for d in failed_builds(cfg):   # a failed build is a failing row of the verdict
        inputs.update({f"failed/{d.name}/{f.name}": f for f in sorted(d.glob("*.csv")) + sorted(d.glob("*.log"))})
    return inputs


def _code() -> dict:
    from bmpose.report import plots, render

    return {p.name: sha256_file(p) for p in (Path(__file__), *(Path(m.__file__) for m in (verdict_mod, plots, render)),
                                             *sorted(TEMPLATES.glob("*.j2")))}


def ensure_report(cfg, force: bool = False) -> Path:
    out = cfg.layout.report()
    with locked(out):
        inputs = _inputs(cfg)
        options = {"version": REPORT_VERSION, "code": _code(), "config": cfg.summary()}
        if not force and up_to_date(out, inputs, options):
            return out / "index.html"
        with atomic_dir(out) as tmp:
            data = collect(cfg)
            outputs = make_plots(cfg, data, tmp)
            outputs += _copy_pictures(data, tmp)
            data = relative_paths(cfg, data)
            (tmp / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
            (tmp / "report.md").write_text(to_markdown(cfg, data))
            (tmp / "index.html").write_text(to_html(cfg, data))
            write_manifest(tmp, stage="report", inputs=inputs, options=options,
                           outputs=["index.html", "report.md", "report.json", *outputs])
    return out / "index.html"


# ------------------------------------------------------------------------------------------------ data

def _eval_stats(obj: dict) -> dict:
    for key in (None, "stats", "metrics", "coco"):
        d = obj if key is None else obj.get(key)
        if isinstance(d, dict) and "AP" in d:
            return {k: d.get(k) for k in EVAL_KEYS}
    return {}


def collect(cfg) -> dict:
    bmodels = []
    for b in list_bmodels(cfg):
        m = b["manifest"]
        fin = m["checks"]["final"]
        bmodels.append({
            "name": b["path"].name, "dir": str(b["dir"]), "path": str(b["path"]), "chip": b["chip"],
            "batch": b["batch"], "precision": b["precision"], "size_mb": round(m["size_bytes"] / 1e6, 2),
            "build_s": m.get("build_seconds"), "cosine": fin["cosine"], "euclidean": fin["euclidean"],
            "sqnr_db": fin["sqnr_db"], "tolerance": m["checks"].get("tolerance"),
            "fp32_layers": m.get("fp32_layers", []), "qtable_origin": m.get("qtable_origin", {}),
            "method": m["options"].get("method"), "tpu_mlir": str(b["tpu_mlir"]), "created": m.get("created"),
            "layer_min_cos": m["checks"].get("tpu_mlir_vs_top_min_cos"), "checkpoint": m["options"].get("checkpoint"),
            "tpu_layer_tolerance": m["options"].get("tpu_layer_tolerance"), "tpu_weights": m.get("tpu_weights"),
            "hashes": {k: m.get("outputs", {}).get(m.get(k) or "") for k in ("tpu_mlir", "tpu_weights")},
            "calibration": {k: (m.get("calibration") or {}).get(k) for k in ("set", "crops")}
            if m.get("calibration") else None,
            **_device_time(m),
        })
    evals = []
    for p in sorted(cfg.layout.eval().glob("*.json")):
        try:
            obj = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            raise BmposeError(f"{p}: not a readable eval json") from None
        stats = _eval_stats(obj) if isinstance(obj, dict) else {}
        if stats:
            evals.append({"label": obj.get("label", p.stem), "artifact": obj.get("artifact", obj.get("backend", "")),
                          "backend": obj.get("backend", ""), "persons": obj.get("persons"),
                          "subset": obj.get("subset", ""), "eval_set": obj.get("eval_set"),
                          "calibration": obj.get("calibration"), "what": obj.get("what"), **stats,
                          "_onnx_same": obj.get("onnx_AP_same_persons")})
    ref = next((e for e in evals if "onnx" in str(e["label"]).lower()), None)
    for e in evals:
        # Against ONNX on the same persons when the eval recorded it (a cmodel run may score a subset).
        base = e.pop("_onnx_same")
        base = base if base is not None else (ref or {}).get("AP")
        e["delta_AP"] = None if base is None or e["AP"] is None or e["what"] else e["AP"] - base
    study_path = cfg.layout.study() / "study.json"
    study = json.loads(study_path.read_text()) if study_path.is_file() else None
    data = {"model": cfg.name, "mmpose_config": str(cfg.mmpose_config) if cfg.mmpose_config else None,
            "onnx": str(cfg.onnx) if cfg.onnx else None, "input_size": list(cfg.input_size),
            "bmodels": bmodels, "eval": evals, "study": study,
            "auto": {chip: json.loads(p.read_text()) for chip, p in cfg.layout.auto_choices().items()}}
    data["verdict"] = verdict_mod.verdict(cfg, data)
    data["verdict"]["pictures"] = read_pictures(cfg)
    return {"verdict": data.pop("verdict"), **data}   # first in report.json too


def _copy_pictures(data: dict, tmp: Path) -> list[str]:
    """Each chip's pose picture (drawn by bmpose.evaluate.pictures) into the report, beside the page."""
    files = []
    for p in data["verdict"]["pictures"]:
        if p.pop("manifest", None) and p["file"]:
            name = f"pose_{p['chip']}.jpg"
            shutil.copyfile(p["file"], tmp / name)
            p["file"], p["sha256"] = name, sha256_file(tmp / name)
            files.append(name)
    return files


def relative_paths(cfg, obj):
    """Every path of the build machine in the report's data made relative: to the report for artifacts, to the
    repository for its own files (configs, checkpoints)."""
    if isinstance(obj, dict):
        return {k: relative_paths(cfg, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_paths(cfg, v) for v in obj]
    if isinstance(obj, str):
        obj = obj.replace(str(cfg.artifacts), os.path.relpath(cfg.artifacts, cfg.layout.report()))
        return obj.replace(str(config_mod.ROOT) + os.sep, "")
    return obj


def _device_time(m: dict) -> dict:
    """The build's simulated device time (the compiler's cycle estimate, bmpose.tpu_mlir.devtime)."""
    t = m["checks"].get("device_time") or {"runtime_ms": None, "why": "no device time estimate recorded"}
    return {"sim_ms_per_batch": t.get("runtime_ms"), "sim_ms_per_person": t.get("ms_per_person"),
            "device_time": t}
