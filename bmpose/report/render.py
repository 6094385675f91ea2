"""The report's text: report.md and index.html (templates/index.html.j2, Jinja2) from the data that
bmpose.report.report collects. The same strings in both."""
from __future__ import annotations

import json
import os
from pathlib import Path

from bmpose import config as config_mod

TEMPLATES = Path(__file__).parent / "templates"
EVAL_KEYS = ("AP", "AP50", "AP75", "AR")


def _command_path(cfg, p: str) -> str:
    """An artifact path of the report's data (relative to the report) as a command takes it: relative to the
    repository, where bmpose runs, or under $BMPOSE_ARTIFACTS (the config's root) when the artifacts live
    elsewhere."""
    full = Path(p) if os.path.isabs(p) else Path(os.path.normpath(cfg.layout.report() / p))
    for base, shown in ((config_mod.ROOT, ""), (cfg.root, "$BMPOSE_ARTIFACTS/")):
        try:
            return shown + full.relative_to(base).as_posix()
        except ValueError:
            pass
    return full.as_posix()


def how_to_run(cfg, b: dict) -> list[str]:
    bmodel = _command_path(cfg, b["path"])
    return [f"bmpose infer --model {cfg.name} --backend bmodel {bmodel} --chip {b['chip']}",
            f"bmpose infer --model {cfg.name} --backend mlir {_command_path(cfg, b['tpu_mlir'])}",
            f"bmrt_test --bmodel {Path(bmodel).name}   # on the device ({b['chip'].upper()})"]


def _fmt(v, nd=6):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _verdict_rows(verdict: dict) -> list[dict]:
    """The verdict's rows as the page shows them (the same strings in markdown and HTML)."""
    out = []
    for r in verdict["rows"]:
        ap = "-" if r.get("AP") is None else _fmt(r["AP"], 4) + (
            "" if r.get("delta_AP") is None else f" ({r['delta_AP']:+.4f})")
        sim = "-" if r.get("sim_ms_per_person") is None else _fmt(r["sim_ms_per_person"], 4)
        out.append({"bmodel": r["bmodel"], "link": r["link"], "chip": r["chip"], "precision": r["precision"],
                    "batch": r["batch"], "pass": r["pass"], "word": "PASS" if r["pass"] else "FAIL",
                    "gates": r["gates"], "cos": _fmt(r.get("cosine")), "ap": ap, "ap_source": r.get("source", ""),
                    "sim": sim, "note": r.get("note", "")})
    return out


def _picture_captions(pictures: list[dict]) -> list[str]:
    out = []
    for i, p in enumerate(pictures):
        if not p.get("file"):
            out.append(f"{p['chip']}: no pose picture ({p.get('why')})")
            continue
        same = [q["chip"] for q in pictures[:i] if q.get("sha256") and q.get("sha256") == p.get("sha256")]
        out.append(f"{p['chip']}: {p['precision'].upper()} batch-{p['batch']} bmodel {p['bmodel']} through its "
                   f"deployed MLIR (pymlir), the {p.get('persons')} persons of COCO val2017 "
                   f"{Path(p['image']).stem.lstrip('0')} (ground-truth boxes{', flip test' if p.get('flip') else ''}"
                   f"; photo Flickr, CC BY){f'; pixel-identical to the {same[0]} picture' if same else ''}")
    return out


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
GATES_NOTE = ("Gates: deploy = TPU-MLIR model_deploy's own checks (bmodel vs TPU MLIR, every TPU MLIR layer vs the "
              "top MLIR) and bmpose's FP32 tail deployed as planned; int8_cos, fp32_cos, ... = the bmodel's output "
              "(heatmaps, or SimCC's two vectors end to end) vs ONNX Runtime on a real crop, cosine at the config's "
              "tolerance. AP: COCO keypoint AP of that very artifact (its deployed MLIR), with its difference to "
              "ONNX FP32 on the same persons.")
INTRO = ("Similarities: bmodel output vs ONNX Runtime on a real calibration crop; per-layer: deployed TPU MLIR vs "
         "top FP32 MLIR.")


def _gate(b) -> str:
    return ", ".join(f"{k} >= {v}" for k, v in (b["tolerance"] or {}).items())


def _checkpoint_note(data) -> str:
    """Random weights make INT8 similarity a pipeline check only: say so above the table."""
    if any(b.get("checkpoint") == "fixture" for b in data["bmodels"]):
        return ("Built from bmpose's random-init fixture checkpoint: its INT8 similarities check the pipeline, "
                "not accuracy (gate int8_cos_random); build from trained weights to judge INT8.")
    return ""


def sets_line(data, code=lambda s: f"`{s}`") -> str:
    """Which persons calibrated the INT8 bmodels and which the evaluation scored; a loud line for any INT8
    result scored on its own calibration images (bmpose eval --allow-calib-overlap)."""
    cal = sorted({f"{code(c['set'])} ({c['crops']} crops)" for c in (b.get("calibration") for b in data["bmodels"])
                  if c and c.get("set")})
    ev = sorted({code(e["eval_set"]) for e in data["eval"] if e.get("eval_set")})
    parts = ([f"INT8 calibrated on {', '.join(cal)}"] if cal else []) + ([f"evaluated on {', '.join(ev)}"] if ev
                                                                        else [])
    text = "; ".join(parts) + "." if parts else ""
    for e in data["eval"]:
        seen = (e.get("calibration") or {}).get("seen")
        if seen:
            text += (f" Warning: {e['label']} was scored on {len(seen)} images that also calibrated it "
                     f"(--allow-calib-overlap): its AP flatters it.")
    return text.strip()


def _eval_label(e: dict) -> str:
    """The row's label, saying when it is not a pose AP (a detector's person boxes) or flatters a build."""
    seen = (e.get("calibration") or {}).get("seen")
    return (e["label"] + (f" ({e['what']})" if e.get("what") else "")
            + (f" (scored on {len(seen)} of its calibration images)" if seen else ""))


def _eval_rows(data):
    # "run on": the mlir backend scores a bmodel through its deployed tpu.mlir (equal to the cmodel run).
    head = ["label", "artifact", "run on", "persons", *EVAL_KEYS, "delta AP vs ONNX FP32 (same persons)"]
    rows = [[_eval_label(e), Path(e["artifact"]).name, e.get("backend", ""),
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
    if not isinstance(study, dict):
        return []
    return [p for p in study.get("layer_plots", []) + [study.get("speed_plot") or {}] if p.get("file")]


def _md_verdict(table, verdict) -> list[str]:
    mark = {True: "✅ PASS", False: "❌ FAIL", None: "no bmodels"}
    rows = [[r["bmodel"] + (f" ({r['note']})" if r["note"] else ""), r["chip"], r["precision"], r["batch"],
             mark[r["pass"]], "; ".join(f"{g['name']} {'✓' if g['pass'] else '✗'} {g['note']}" for g in r["gates"]),
             r["cos"], r["ap"] + (f" ({r['ap_source']})" if r["ap"] == "-" else f"; {r['ap_source']}"), r["sim"]]
            for r in _verdict_rows(verdict)]
    head = ["bmodel", "chip", "precision", "batch", "verdict", "gates", "output cos vs ONNX", "AP (vs ONNX)",
            "sim ms/person"]
    out = ["## Verdict", "", f"**{mark[verdict['overall']['pass']]}: {verdict['overall']['text']}**", ""]
    out += [table(head, rows), ""] if rows else []
    for p, caption in zip(verdict["pictures"], _picture_captions(verdict["pictures"])):
        out += [f"![pose {p['chip']}]({p['file']})" if p.get("file") else "", "", caption, ""]
    return out + [GATES_NOTE, ""]


def _md_bmodels(table, data) -> list[str]:
    head, rows, notes = _bmodel_rows(data)
    return [table(head, rows), "", SIM_NOTE, *(f"[{i}] {n}" for i, n in enumerate(notes, 1))]


def _source(data) -> str:
    """Where the network came from: an mmpose config, or an ONNX file (an `onnx:` deploy config)."""
    return f"ONNX file `{data['onnx']}`" if data.get("onnx") else f"mmpose config `{data['mmpose_config']}`"


def to_markdown(cfg, data) -> str:
    def table(head, rows):
        out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        return "\n".join(out)

    note = _checkpoint_note(data)
    parts = [f"# bmpose report: {cfg.name}", "", *(_md_verdict(table, data["verdict"]) if data.get("verdict") else []),
             f"{_source(data)}, input {data['input_size'][0]}x{data['input_size'][1]} "
             f"(w x h). {INTRO}", "", *([sets_line(data), ""] if sets_line(data) else []),
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
    for choice in data.get("auto", {}).values():
        parts += ["## --precision auto", ""] if choice is next(iter(data["auto"].values())) else []
        parts += auto_markdown(choice, *POSE_AUTO) + [""]
    if data.get("auto_plot"):
        parts += [f"![{data['auto_plot']['title']}]({data['auto_plot']['file']})", ""]
    parts += ["## How to run", ""]
    for b in data["bmodels"]:
        parts += [f"- `{b['name']}`:", *[f"  - `{c}`" for c in how_to_run(cfg, b)]]
    return "\n".join(parts) + "\n"


def to_html(cfg, data) -> str:
    """index.html from templates/index.html.j2: the page's look lives there, its content here."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    head, rows, notes = _bmodel_rows(data)
    for b, row in zip(data["bmodels"], rows):
        row[0] = {"text": row[0], "href": b["path"]}
    verdict = data.get("verdict")
    st = _study_table(data["study"]) if data["study"] is not None else None
    return env.get_template("index.html.j2").render(
        model=cfg.name, data=data, intro=INTRO, checkpoint_note=_checkpoint_note(data),
        sets=sets_line(data, code=str),
        verdict=verdict and {**verdict, "rows": _verdict_rows(verdict),
                             "pictures": [{**p, "caption": c} for p, c in zip(verdict["pictures"],
                                                                              _picture_captions(verdict["pictures"]))]},
        gates_note=GATES_NOTE, bmodels={"head": head, "rows": rows, "notes": notes}, sim_note=SIM_NOTE,
        fp32=[b for b in data["bmodels"] if b["fp32_layers"]],
        layer_plots=[b for b in data["bmodels"] if b.get("plots", {}).get("layers")],
        heatmap_plots=data.get("heatmap_plots", []),
        eval=_eval_rows(data) if data["eval"] else None,
        study=data["study"], study_table=st, study_json=None if st else json.dumps(data["study"], indent=1),
        study_plots=_study_plots(data["study"]),
        auto_tables=[auto_table(c, *POSE_AUTO) for c in data.get("auto", {}).values()],
        auto_plot=data.get("auto_plot"),
        how_to_run=[(b["name"], how_to_run(cfg, b)) for b in data["bmodels"]])


def auto_table(choice: dict, measure: str, columns: list[tuple[str, str, str]]) -> dict:
    """A search (bmpose.convert.auto) as {title, note, head, rows, notes}: every trial (variant, float layers,
    simulated ms, fidelity and the caller's `columns`: (key, header, format)) and why the winner won.
    `measure`: what fidelity is."""
    head = ["variant", "float layers", "sim. ms", measure, *(h for _, h, _ in columns), ""]
    rows = []
    for t in choice["trials"]:
        def cell(key, fmt="{:.4f}"):
            return fmt.format(t[key]) if t.get(key) is not None else "-"
        # a failed trial's reason without its build folder (the whole line is in choice.json)
        verdict = f"failed: {t['error'].split(': ', 1)[-1][:90]}" if t["error"] else "meets" if t["meets"] else "below"
        if t["variant"] == choice["winner"]:
            verdict = f"chosen ({verdict})"
        rows.append([t["variant"], f"{t['float_layers']} {t['float_mode'] or ''}".strip(), cell("ms", "{:.3f}"),
                     cell("fidelity"), *(cell(k, f) for k, _, f in columns), verdict])
    return {"title": f"{choice['chip']}: --precision auto chose {choice['winner']}",
            "note": f"Target: {measure} >= {choice['target']}; budget {choice['budget']} builds. {choice['why'] or ''}"
                    + (f" {choice['marked']}." if choice.get("marked") else ""),
            "head": head, "rows": rows, "notes": list(choice["notes"])}


def auto_markdown(choice: dict, measure: str, columns: list[tuple[str, str, str]]) -> list[str]:
    t = auto_table(choice, measure, columns)
    return ([f"### {t['title']}", "", t["note"], "", "| " + " | ".join(t["head"]) + " |", "|" + "---|" * len(t["head"])]
            + ["| " + " | ".join(r) + " |" for r in t["rows"]] + [f"- {n}" for n in t["notes"]])

POSE_AUTO = ("mean OKS vs ONNX FP32 (bundled val persons)",
             [("agree90", "persons >= 0.9", "{:.2f}"), ("AP", "AP (labels)", "{:.4f}")])
