"""`bmpose detector`: a person detector's bmodels, built and checked like a pose model's.

  bmpose detector                                   # the config's precision per chip (yolox_nano_416: BM1684X FP16, BM1684 FP32)
  bmpose detector --chips bm1684x --precision int8  # one build
  bmpose detector --precision auto                  # the fastest build whose boxes agree with ONNX's (a search)
  bmpose detector --detector my_yolov8.yaml --frames /data/frames

Each bmodel is built by the pose models' stages (calibration frames letterboxed by the function inference uses,
top MLIR, calibration table for INT8, model_deploy with TPU-MLIR's own check, output vs ONNX gate, compare
files, simulated device time) under artifacts/<detector>/. Then its person boxes on the evaluation images
(default: the bundled COCO val persons) are scored beside ONNX Runtime's: recall at IoU 0.5 and COCO person box
AP, held to the config's margins (tolerances max_recall_drop / max_ap_drop; int8_* for INT8). Results:
artifacts/<detector>/eval/boxes.json and report/report.md; exit 1 when a build misses its gate.
Run a build's boxes elsewhere with `--boxes detector:NAME@<chip>_<precision>` (bmpose infer / eval).

`--precision auto` (bmpose.convert.auto) builds the float precisions of the chip, then INT8, then INT8 with its
most sensitive layers in float (F16 where the chip has it), and keeps the fastest whose boxes agree with ONNX's
to the config's auto target (COCO box AP against ONNX's persons, on the bundled val frames, never calibrated
on); artifacts/<detector>/auto/<chip>/choice.json and the report hold what was tried and why the winner won.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bmpose.chips import CHIPS, PRECISIONS, check_chip_precision
from bmpose.cli.args import add_artifacts_dir
from bmpose.detector_config import AUTO
from bmpose.errors import BmposeError
from bmpose.convert.auto import parse_tools


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose detector", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default=None, help="detector config name or yaml (default: yolox_nano_416)")
    add_artifacts_dir(ap)
    ap.add_argument("--chips", nargs="+", choices=CHIPS, help="chips (default: those in the config's precisions)")
    ap.add_argument("--precision", choices=(*PRECISIONS, AUTO),
                    help="one precision for every chip, or auto (default: the config's per chip)")
    ap.add_argument("--auto-target", type=float, metavar="X", help="auto: box AP against ONNX's persons to keep "
                    "(default: the config's auto target)")
    ap.add_argument("--auto-budget", type=int, metavar="N", help="auto: most builds per chip (default: the config's)")
    ap.add_argument("--auto-tools", nargs="+", metavar="TOOLS",
                    help="auto: TPU-MLIR calibration tools tried on all-INT8 before float layers, in order, each a "
                         "tool or tools joined by '+' (search_threshold, bc, we), or none (default: "
                         "search_threshold bc we; bc runs the chip's INT8 model once per conv: minutes on large nets)")
    ap.add_argument("--auto-best", action="store_true", help="auto: when no build meets the target, keep the best "
                    "one built (marked) instead of failing")
    ap.add_argument("--frames", type=Path, help="folder of whole frames to calibrate on (default: the 80 bundled "
                                                "COCO train2017 frames, tests/data/coco_train_mini and "
                                                "coco_train_frames)")
    ap.add_argument("--num", type=int, help="calibration frames (default: the config's calibration.num)")
    ap.add_argument("--coco-ann", type=Path, help="COCO annotations whose persons score the boxes (default: the "
                                                  "bundled val persons)")
    ap.add_argument("--coco-img", type=Path, help="its image folder (default: beside the json)")
    ap.add_argument("--runtime", choices=("mlir", "cmodel"), default="mlir",
                    help="how a bmodel's boxes are computed without a device: its deployed tpu.mlir on pymlir "
                         "(default; what TPU-MLIR checks the bmodel against) or the bmodel on the chip simulator")
    args = ap.parse_args(argv)
    if args.auto_target is not None and not 0 < args.auto_target <= 1:
        ap.error(f"--auto-target {args.auto_target}: a box AP against ONNX's persons, in (0, 1]")
    if args.auto_budget is not None and args.auto_budget < 2:
        ap.error(f"--auto-budget {args.auto_budget}: at least 2 builds")
    try:
        parse_tools(args.auto_tools)
    except BmposeError as e:
        ap.error(f"--auto-tools: {e}")
    return args


def targets(dcfg, chips, precision) -> list[tuple[str, str]]:
    chips = chips or list(dcfg.precisions)
    out = []
    for chip in chips:
        p = precision or dcfg.precisions.get(chip)
        if p is None:
            raise BmposeError(f"{dcfg.path}: no precision for {chip} in its precisions; name one with --precision")
        if p != AUTO:
            check_chip_precision(chip, p)
        out.append((chip, p))
    return out


def main(argv=None) -> int:
    from dataclasses import replace

    from bmpose.choose.detector import auto_build
    from bmpose.convert.detector_build import DetectorBuild
    from bmpose.detector_config import load_detector
    from bmpose.layout import list_bmodels
    from bmpose.runtime.boxes import bundled_sample

    args = parse_args(argv)
    dcfg = load_detector(args.detector, args.artifacts_dir)
    plan = targets(dcfg, args.chips, args.precision)
    build = DetectorBuild(dcfg, args.frames, args.num)
    overrides = {"target": args.auto_target, "budget": args.auto_budget, "best": args.auto_best,
                 "tools": args.auto_tools}
    for chip, precision in plan:
        t0 = time.perf_counter()
        print(f"detector: {dcfg.name} {chip} {precision}: building ...", flush=True)
        out, built = (auto_build(build, chip, overrides) if precision == AUTO else build.bmodel(chip, precision))
        checks = json.loads((out / "manifest.json").read_text())["checks"]
        ms = (checks.get("device_time") or {}).get("runtime_ms")
        print(f"detector: {dcfg.name} {chip} {precision}: {'built' if built else 'up to date'} "
              f"({time.perf_counter() - t0:.0f} s), output cos vs ONNX {checks['final']['cosine']:.6f}"
              + (f", simulated {ms:.2f} ms per frame" if ms else ""), flush=True)

    ann_default, img_default = bundled_sample()
    ann = args.coco_ann or ann_default
    img = args.coco_img or (img_default if not args.coco_ann else ann.parent)
    rows = [score(dcfg, ann, img, None)]
    # this run's builds, then every other complete build of the detector (the report compares them all)
    others = [(b["chip"], b["precision"]) for b in list_bmodels(dcfg) if b["batch"] == 1]
    for chip, precision in plan + [t for t in others if t not in plan]:
        rows.append(score(replace(dcfg, build=f"{chip}_{precision}"), ann, img, args.runtime, rows[0]))
    failed = [r for r in rows[1:1 + len(plan)] if not r["gate"]["passed"]]
    choices = {chip: json.loads(p.read_text()) for chip, p in dcfg.layout.auto_choices().items()}
    write_results(dcfg, rows, choices)
    print_table(rows)
    for chip, choice in choices.items():
        if (chip, AUTO) in plan:
            print("\n" + "\n".join(auto_lines(choice)))
    for r in failed:
        g = r["gate"]
        print(f"detector: {r['label']}: FAILED its box gate: recall -{g['recall_drop']:.3f} (max "
              f"{g['max_recall_drop']}), box AP -{g['ap_drop']:.4f} (max {g['max_ap_drop']}) vs ONNX", file=sys.stderr)
    return 1 if failed else 0


def score(dcfg, ann: Path, img: Path, runtime: str | None, onnx_row: dict | None = None) -> dict:
    """One row: the detector (ONNX, or a build on `runtime`) on the set, reused while model and set are unchanged."""
    from bmpose.evaluate.detector_boxes import gate, score_detector
    from bmpose.manifest import atomic_file, sha256_file
    from bmpose.runtime.detector import PersonDetector

    model = dcfg.model_path(runtime)
    key = {"model": sha256_file(model), "annotations": sha256_file(ann), "runtime": runtime,
           "summary": dcfg.summary(), "thresholds": [dcfg.eval_score_thr, dcfg.score_thr]}
    cache = dcfg.layout.eval() / f"boxes_{dcfg.tag}.json"
    row = json.loads(cache.read_text()) if cache.is_file() else None
    if row is None or row.get("key") != key:
        print(f"detector: scoring {dcfg.tag} on {ann.name} ...", flush=True)
        detector = PersonDetector(dcfg, kind=runtime)
        scored, _ = score_detector(detector, ann, img)
        row = {"label": dcfg.tag, "artifact": str(model), "backend": detector.backend.kind,
               "precision": dcfg.precision, **scored, "key": key}
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as tmp:
            tmp.write_text(json.dumps(row, indent=2) + "\n")
    if onnx_row is not None:
        row["gate"] = gate(row, onnx_row, dcfg.box_gate(dcfg.precision, dcfg.chip))
        m = json.loads((model.parent / "manifest.json").read_text())
        row["output_cos"] = m["checks"]["final"]["cosine"]
        row["device_ms"] = (m["checks"].get("device_time") or {}).get("runtime_ms")
    return row


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
        c = _cells(r)
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


def _cells(r: dict) -> dict:
    """One row's values as the report and the console table both print them."""
    g = r.get("gate")

    def recall(x):
        return f"{x['found']}/{x['persons']}"

    return {"ap": f"{r['AP']:.4f}", "ap50": f"{r['AP50']:.4f}", "recall": recall(r["recall_iou50"]),
            "at_thr": recall(r["recall_iou50_at_score_thr"]),
            "cos": f"{r['output_cos']:.6f}" if r.get("output_cos") else "",
            "ms": f"{r['device_ms']:.2f}" if r.get("device_ms") else "",
            "gate": "reference" if g is None else "pass" if g["passed"] else "FAIL"}


def print_table(rows: list[dict]) -> None:
    print(f"\n{'build':<28} {'backend':<7} {'box AP':>7} {'AP50':>7} {'recall':>7} {'@thr':>7} {'ms':>6}  gate")
    for r in rows:
        c = _cells(r)
        print(f"{r['label']:<28} {r['backend']:<7} {c['ap']:>7} {c['ap50']:>7} {c['recall']:>7} {c['at_thr']:>7} "
              f"{c['ms']:>6}  {c['gate']}")
