"""`bmpose report --model M`: artifacts/<model>/report/{index.html, report.md, report.json, *.png}.

What a deployment engineer needs to trust the bmodels: a table of every bmodel (chip, batch, precision, size,
build time, final similarity to ONNX, FP32 layers), a per-layer similarity plot per INT8 bmodel, one crop's
heatmaps ONNX vs FP32 vs INT8 side by side, how to run each bmodel, and - when present - the COCO evaluation
(artifacts/<model>/eval/*.json) and the calibration study (artifacts/<model>/study/study.json).
The report has a manifest over everything it reads, so refreshing it after a no-op build costs nothing.
Long: one module per output format would repeat the data and table helpers the markdown and HTML share.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from bmpose.convert import list_bmodels
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, locked, sha256_file, up_to_date, write_manifest

REPORT_VERSION = 1
EVAL_KEYS = ("AP", "AP50", "AP75", "AR")


def report_dir(cfg) -> Path:
    return cfg.artifacts / "report"


def _inputs(cfg) -> dict:
    inputs = {f"bmodel/{b['dir'].name}": b["dir"] / "manifest.json" for b in list_bmodels(cfg)}
    inputs.update({f"eval/{p.name}": p for p in sorted((cfg.artifacts / "eval").glob("*.json"))})
    study = cfg.artifacts / "study" / "study.json"
    if study.is_file():
        inputs["study"] = study
    return inputs


def ensure_report(cfg, force: bool = False) -> Path:
    out = report_dir(cfg)
    with locked(out):
        inputs = _inputs(cfg)
        options = {"version": REPORT_VERSION, "code": sha256_file(__file__), "config": cfg.summary()}
        if not force and up_to_date(out, inputs, options):
            return out / "index.html"
        with atomic_dir(out) as tmp:
            data = collect(cfg)
            outputs = make_plots(cfg, data, tmp)
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
            **_device_time(m),
        })
    evals = []
    for p in sorted((cfg.artifacts / "eval").glob("*.json")):
        try:
            obj = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            raise BmposeError(f"{p}: not a readable eval json") from None
        stats = _eval_stats(obj) if isinstance(obj, dict) else {}
        if stats:
            evals.append({"label": obj.get("label", p.stem), "artifact": obj.get("artifact", obj.get("backend", "")),
                          "backend": obj.get("backend", ""), "persons": obj.get("persons"),
                          "subset": obj.get("subset", ""), **stats, "_onnx_same": obj.get("onnx_AP_same_persons")})
    ref = next((e for e in evals if "onnx" in str(e["label"]).lower()), None)
    for e in evals:
        # Against ONNX on the same persons when the eval recorded it (a cmodel run may score a subset).
        base = e.pop("_onnx_same")
        base = base if base is not None else (ref or {}).get("AP")
        e["delta_AP"] = None if base is None or e["AP"] is None else e["AP"] - base
    study_path = cfg.artifacts / "study" / "study.json"
    study = json.loads(study_path.read_text()) if study_path.is_file() else None
    return {"model": cfg.name, "mmpose_config": str(cfg.mmpose_config), "input_size": list(cfg.input_size),
            "bmodels": bmodels, "eval": evals, "study": study}


def _device_time(m: dict) -> dict:
    """The build's simulated device time (the compiler's cycle estimate, bmpose.runtime.devtime)."""
    t = m["checks"].get("device_time") or {
        "runtime_ms": None, "why": "built before bmpose recorded the device time estimate (rebuild to get it)"}
    return {"sim_ms_per_batch": t.get("runtime_ms"), "sim_ms_per_person": t.get("ms_per_person"),
            "device_time": t}


# ------------------------------------------------------------------------------------------------ plots

def make_plots(cfg, data: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmpose.convert.compare import read_csv

    files = []
    for b in data["bmodels"]:
        b["plots"] = {}
        if b["precision"] != "int8":
            continue
        rows = [r for r in read_csv(Path(b["dir"]) / "compare.csv") if r["op"] != "bmodel"]
        if not rows:
            continue
        name = f"layers_{Path(b['dir']).name}.png"
        tol = next(iter(b["tolerance"].values())) if b["tolerance"] else cfg.tolerances["int8_cos"]
        _layer_plot(plt, rows, f"{b['name']}: per-layer similarity (deployed TPU MLIR vs top MLIR)", tol, out / name)
        b["plots"]["layers"] = name
        files.append(name)
    # The calibration study's default variant per chip (built under study/, see bmpose.report.study).
    study = data.get("study") if isinstance(data.get("study"), dict) else {}
    for p in study.get("layer_plots", []):
        csv = Path(p["csv"])
        rows = [r for r in read_csv(csv) if r["op"] != "bmodel"] if csv.is_file() else []
        if rows:
            name = f"study_layers_{p['chip']}.png"
            _layer_plot(plt, rows, f"study default ({p['title']}): per-layer similarity vs top MLIR",
                        cfg.tolerances["int8_cos"], out / name)
            p["file"] = name
            files.append(name)
    # One crop's heatmaps, ONNX vs FP32 vs INT8 bmodel (same test crop: every build of a batch shares it).
    data["heatmap_plots"] = []
    for chip in sorted({b["chip"] for b in data["bmodels"]}):
        by = {(b["precision"]): b for b in data["bmodels"] if b["chip"] == chip and b["batch"] == min(
            x["batch"] for x in data["bmodels"] if x["chip"] == chip)}
        if not by:
            continue
        first = next(iter(by.values()))
        with np.load(Path(first["dir"]) / "compare.npz") as z:
            panels = [("ONNX FP32", z["onnx"][0])]
        for prec in ("fp32", "int8"):
            if prec in by:
                with np.load(Path(by[prec]["dir"]) / "compare.npz") as z:
                    panels.append((f"{prec.upper()} bmodel", z["bmodel"][0]))
        if "fp32" in by and "int8" in by:
            panels.append(("|INT8 - FP32|", np.abs(panels[-1][1] - panels[-2][1])))
        crop = _test_crop(cfg, Path(first["dir"]))
        ncol = len(panels) + (crop is not None)
        fig, axes = plt.subplots(1, ncol, figsize=(2.3 * ncol, 3.0))
        axes = np.atleast_1d(axes)
        i = 0
        if crop is not None:
            axes[0].imshow(crop)
            axes[0].set_title("input crop", fontsize=9)
            i = 1
        vmax = max(float(p[1].max()) for p in panels[:-1] or panels)
        for ax, (title, hm) in zip(axes[i:], panels):
            ax.imshow(hm.max(axis=0), cmap="magma", vmin=0, vmax=vmax if "|" not in title else None)
            ax.set_title(title, fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.suptitle(f"{chip}: max over {panels[0][1].shape[0]} keypoint heatmaps", fontsize=10)
        fig.tight_layout()
        name = f"heatmaps_{chip}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        data["heatmap_plots"].append({"chip": chip, "file": name})
        files.append(name)
    return files


def _layer_plot(plt, rows: list[dict], title: str, tol: float, path: Path) -> None:
    """Cosine of every layer (program order) vs the top FP32 MLIR; FP32 layers in red; the heatmap tolerance."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(rows))
    cos = np.array([r["cosine"] for r in rows])
    f32 = np.array([r["quant"] == "F32" for r in rows])
    ax.plot(x, cos, "-", color="#999", lw=0.8)
    ax.scatter(x[~f32], cos[~f32], s=10, label="INT8 layer", color="#1f77b4")
    ax.scatter(x[f32], cos[f32], s=18, label="F32 layer", color="#d62728")
    ax.axhline(tol, color="#2ca02c", ls="--", lw=0.8, label="heatmap tolerance")
    ax.set_ylim(max(0.0, min(cos.min(), 0.98) - 0.005), 1.0005)
    ax.set_xlabel("layer (program order)")
    ax.set_ylabel("cosine vs top FP32 MLIR")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _test_crop(cfg, build_dir: Path):
    """The build's test input (normalised) back to a uint8 RGB picture, for the heatmap figure."""
    try:
        with np.load(build_dir / f"{cfg.name}_in_f32.npz") as z:
            x = z[z.files[0]][0]
    except (OSError, KeyError, IndexError):
        return None
    img = x.transpose(1, 2, 0) * np.array(cfg.std) + np.array(cfg.mean)   # network channel order (RGB)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ text

def how_to_run(cfg, b: dict) -> list[str]:
    rel = Path(b["path"])
    return [f"bmpose infer --model {cfg.name} --backend bmodel {rel} --chip {b['chip']}",
            f"bmpose infer --model {cfg.name} --backend mlir {b['tpu_mlir']}",
            f"bmrt_test --bmodel {rel.name}   # on the device ({b['chip'].upper()})"]


def _fmt(v, nd=6):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _bmodel_rows(data):
    """The bmodel table and its footnotes: why a bmodel has no simulated device time."""
    head = ["bmodel", "chip", "batch", "precision", "size MB", "build s", "cos", "euclid", "SQNR dB",
            "gate", "fp32 layers", "sim ms/batch", "sim ms/person"]
    notes: list[str] = []
    rows = []
    for b in data["bmodels"]:
        if b.get("sim_ms_per_batch") is None:
            why = (b.get("device_time") or {}).get("why") or "no device time estimate recorded"
            notes += [why] if why not in notes else []
            sim = [f"n/a [{notes.index(why) + 1}]"] * 2
        else:
            sim = [_fmt(b["sim_ms_per_batch"], 4), _fmt(b["sim_ms_per_person"], 4)]
        rows.append([b["name"], b["chip"], b["batch"], b["precision"], _fmt(b["size_mb"], 2), _fmt(b["build_s"], 1),
                     _fmt(b["cosine"]), _fmt(b["euclidean"], 4), _fmt(b["sqnr_db"], 1), _gate(b),
                     len(b["fp32_layers"]), *sim])
    return head, rows, notes


SIM_NOTE = ("sim ms: the compiler's cycle estimate embedded in the bmodel (TPU-MLIR's cycle model, read with "
            "model_tool; BM1684X at 1000 MHz, BM1684 at 550 MHz), not a measurement on a device.")


def _gate(b) -> str:
    return ", ".join(f"{k} >= {v}" for k, v in (b["tolerance"] or {}).items())


def _checkpoint_note(data) -> str:
    """Random weights make INT8 similarity a pipeline check only: say so above the table."""
    if any(b.get("checkpoint") == "fixture" for b in data["bmodels"]):
        return ("Built from bmpose's random-init fixture checkpoint: its INT8 similarities check the pipeline, "
                "not accuracy (gate int8_cos_random); build from trained weights to judge INT8.")
    return ""


def _eval_rows(data):
    # "run on": the mlir backend scores a bmodel through its deployed tpu.mlir (equal to the cmodel run).
    head = ["label", "artifact", "run on", "persons", *EVAL_KEYS, "delta AP vs ONNX FP32 (same persons)"]
    rows = [[e["label"], Path(e["artifact"]).name, e.get("backend", ""),
             f"{e.get('persons')} ({e.get('subset')})" if e.get("subset") else e.get("persons", ""),
             *(_fmt(e[k], 4) for k in EVAL_KEYS), _fmt(e["delta_AP"], 4)]
            for e in data["eval"]]
    return head, rows


def _study_table(study):
    rows = study.get("rows") if isinstance(study, dict) else study if isinstance(study, list) else None
    if rows and all(isinstance(r, dict) for r in rows):
        head = list(dict.fromkeys(k for r in rows for k in r))
        return head, [[_fmt(r.get(k), 4) for k in head] for r in rows]
    return None


def _study_plots(study) -> list[dict]:
    return [p for p in (study.get("layer_plots", []) if isinstance(study, dict) else []) if p.get("file")]


def _md_bmodels(table, data) -> list[str]:
    head, rows, notes = _bmodel_rows(data)
    return [table(head, rows), "", SIM_NOTE, *(f"[{i}] {n}" for i, n in enumerate(notes, 1))]


def to_markdown(cfg, data) -> str:
    def table(head, rows):
        out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        return "\n".join(out)

    note = _checkpoint_note(data)
    parts = [f"# bmpose report: {cfg.name}", "",
             f"mmpose config `{data['mmpose_config']}`, input {data['input_size'][0]}x{data['input_size'][1]} "
             "(w x h). Similarities: bmodel output vs ONNX Runtime on a real calibration crop.", "",
             "## Bmodels", "", *([note, ""] if note else []),
             *(_md_bmodels(table, data) if data["bmodels"] else ["No bmodels built yet."]), ""]
    for b in data["bmodels"]:
        if b["plots"].get("layers"):
            parts += [f"![{b['name']} per-layer similarity]({b['plots']['layers']})", ""]
    for h in data.get("heatmap_plots", []):
        parts += [f"![heatmaps {h['chip']}]({h['file']})", ""]
    if data["eval"]:
        parts += ["## COCO keypoint evaluation", "", table(*_eval_rows(data)), ""]
    if data["study"] is not None:
        st = _study_table(data["study"])
        parts += ["## Calibration study", "", table(*st) if st else "```\n" + json.dumps(data["study"], indent=1)
                  + "\n```", ""]
        parts += [f"![{p['title']}]({p['file']})\n" for p in _study_plots(data["study"])]
    parts += ["## How to run", ""]
    for b in data["bmodels"]:
        parts += [f"- `{b['name']}`:", *[f"  - `{c}`" for c in how_to_run(cfg, b)]]
    return "\n".join(parts) + "\n"


def _html_bmodels(table, data) -> str:
    e = html.escape
    head, rows, notes = _bmodel_rows(data)
    foot = "".join(f"<li>{e(n)}</li>" for n in notes)
    return (table(head, rows) + f'<p class="note">{e(SIM_NOTE)}</p>'
            + (f'<ol class="footnotes">{foot}</ol>' if foot else ""))


def to_html(cfg, data) -> str:
    e = html.escape

    def table(head, rows):
        h = "".join(f"<th>{e(str(x))}</th>" for x in head)
        body = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"

    note = _checkpoint_note(data)
    parts = [f"<h1>bmpose report: {e(cfg.name)}</h1>",
             f"<p>mmpose config <code>{e(data['mmpose_config'])}</code>, input {data['input_size'][0]}x"
             f"{data['input_size'][1]} (w x h). Similarities: bmodel output vs ONNX Runtime on a real "
             "calibration crop; per-layer: deployed TPU MLIR vs top FP32 MLIR.</p>", "<h2>Bmodels</h2>",
             f"<p>{e(note)}</p>" if note else "",
             _html_bmodels(table, data) if data["bmodels"] else "<p>No bmodels built yet.</p>"]
    fp32 = [b for b in data["bmodels"] if b["fp32_layers"]]
    if fp32:
        parts.append("<h3>FP32 layers of the INT8 bmodels</h3><ul>")
        for b in fp32:
            parts.append(f"<li>{e(b['name'])}: " + ", ".join(f"<code>{e(n)}</code>" for n in b["fp32_layers"])
                         + "</li>")
        parts.append("</ul>")
    plots = [b for b in data["bmodels"] if b["plots"].get("layers")]
    if plots:
        parts.append("<h2>Per-layer similarity (INT8)</h2>")
        parts += [f'<figure><img src="{e(b["plots"]["layers"])}" alt="{e(b["name"])} per-layer similarity">'
                  f"<figcaption>{e(b['name'])}</figcaption></figure>" for b in plots]
    if data.get("heatmap_plots"):
        parts.append("<h2>Heatmaps of one crop: ONNX vs FP32 vs INT8</h2>")
        parts += [f'<figure><img src="{e(h["file"])}" alt="heatmaps {e(h["chip"])}"></figure>'
                  for h in data["heatmap_plots"]]
    if data["eval"]:
        parts += ["<h2>COCO keypoint evaluation</h2>", table(*_eval_rows(data))]
    if data["study"] is not None:
        st = _study_table(data["study"])
        parts += ["<h2>Calibration study</h2>",
                  table(*st) if st else f"<pre>{e(json.dumps(data['study'], indent=1))}</pre>"]
        parts += [f'<figure><img src="{e(p["file"])}" alt="{e(p["title"])}"><figcaption>{e(p["title"])}'
                  "</figcaption></figure>" for p in _study_plots(data["study"])]
    parts.append("<h2>How to run</h2><ul>")
    for b in data["bmodels"]:
        parts.append(f"<li>{e(b['name'])}<pre>" + e("\n".join(how_to_run(cfg, b))) + "</pre></li>")
    parts.append("</ul>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}th{background:#eee}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:4px}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>bmpose report: "
            f"{e(cfg.name)}</title><style>{style}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
