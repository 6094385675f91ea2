"""A detector's page: artifacts/<detector>/report/report.md (its builds' boxes against ONNX's, each chip's
--precision auto trials with their plot) and the row cells the console table shares."""
from __future__ import annotations

import json
from pathlib import Path


def auto_lines(choice: dict) -> list[str]:
    from bmpose.report.render import auto_markdown

    return auto_markdown(choice, "box AP vs ONNX's persons (bundled val frames)",
                    [("found_vs_float", "ONNX persons kept", "{:.3f}"), ("box_ap", "box AP (labels)", "{:.4f}")])


def _auto_plot(choices: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmpose.manifest import atomic_file
    from bmpose.report.plots import auto_plot, auto_plot_chips

    if not auto_plot_chips(choices):
        return False
    with atomic_file(path) as tmp:
        return auto_plot(plt, choices, "box AP vs ONNX's persons", "ms per frame", tmp)


def write_results(dcfg, rows: list[dict], choices: dict | None = None) -> None:
    from bmpose.manifest import atomic_file

    with atomic_file(dcfg.layout.eval() / "boxes.json") as tmp:
        tmp.write_text(json.dumps({"detector": dcfg.summary(), "rows": rows}, indent=2, default=str) + "\n")
    lines = [f"# {dcfg.name}: person boxes, ONNX vs bmodels", "",
             f"Evaluation set: {rows[0]['eval_set']} ({rows[0]['images']} images, "
             f"{rows[0]['recall_iou50']['persons']} non-crowd persons > 32x32). Recall at IoU 0.5 over boxes with "
             f"score >= {rows[0]['eval_score_thr']} (and >= {rows[0]['score_thr']}, what pictures keep); COCO bbox "
             f"AP of the person category.", "",
             "| build | backend | box AP | AP50 | recall | recall @score_thr | output cos | sim. ms/frame | gate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = cells(r)
        g = r.get("gate")
        verdict = c["gate"] if g is None or g["passed"] else f"FAIL (AP -{g['ap_drop']:.4f}, max {g['max_ap_drop']})"
        lines.append(f"| {r['label']} | {r['backend']} | {c['ap']} | {c['ap50']} | {c['recall']} | {c['at_thr']} | "
                     f"{c['cos']} | {c['ms']} | {verdict} |")
    for choice in (choices or {}).values():
        lines += [""] + auto_lines(choice)
    if choices and _auto_plot(choices, dcfg.layout.report() / "auto.png"):
        lines += ["", "![--precision auto: box agreement with ONNX against simulated ms per frame](auto.png)"]
    with atomic_file(dcfg.layout.report() / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def cells(r: dict) -> dict:
    """One row's values as the report and the console table both print them."""
    g = r.get("gate")

    def recall(x):
        return f"{x['found']}/{x['persons']}"

    return {"ap": f"{r['AP']:.4f}", "ap50": f"{r['AP50']:.4f}", "recall": recall(r["recall_iou50"]),
            "at_thr": recall(r["recall_iou50_at_score_thr"]),
            "cos": f"{r['output_cos']:.6f}" if r.get("output_cos") else "",
            "ms": f"{r['device_ms']:.2f}" if r.get("device_ms") else "",
            "gate": "reference" if g is None else "pass" if g["passed"] else "FAIL"}
