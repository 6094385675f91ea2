"""`bmpose detector` as a library call: a DetectorRequest -> each chip's bmodel built (or its --precision auto
choice), then every build's person boxes scored against ONNX's (bmpose.evaluate.detector_boxes, cached) and
written with the detector's page (bmpose.report.detector)."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from bmpose.chips import check_chip_precision
from bmpose.detector_config import AUTO
from bmpose.errors import BmposeError


@dataclasses.dataclass(frozen=True)
class DetectorRequest:
    detector: str | None = None          # config name or yaml (None: yolox_nano_416)
    artifacts_dir: Path | None = None
    chips: tuple = ()                    # () = those in the config's precisions
    precision: str | None = None         # one for every chip, or auto (None: the config's per chip)
    auto_target: float | None = None
    auto_budget: int | None = None
    auto_tools: tuple | None = None
    auto_best: bool = False
    frames: Path | None = None           # calibration frames folder
    num: int | None = None
    coco_ann: Path | None = None         # the set whose persons score the boxes
    coco_img: Path | None = None
    runtime: str = "mlir"                # how a bmodel's boxes are computed without a device: mlir | cmodel


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


def run(req: DetectorRequest) -> dict:
    """-> {"detector": its config, "plan": [(chip, precision)], "rows": ONNX's then every build's, "failed": this
    run's builds that miss their gate, "choices": {chip: auto choice}}."""
    from bmpose.detector_config import load_detector
    from bmpose.report.detector import write_results

    dcfg = load_detector(req.detector, req.artifacts_dir)
    plan = targets(dcfg, req.chips, req.precision)
    _build(dcfg, plan, req)
    rows = _score(dcfg, plan, req)
    failed = [r for r in rows[1:1 + len(plan)] if not r["gate"]["passed"]]
    choices = {chip: json.loads(p.read_text()) for chip, p in dcfg.layout.auto_choices().items()}
    write_results(dcfg, rows, choices)
    return {"detector": dcfg, "plan": plan, "rows": rows, "failed": failed, "choices": choices}


def _build(dcfg, plan, req: DetectorRequest) -> None:
    from bmpose.choose.detector import auto_build
    from bmpose.convert.detector_build import DetectorBuild

    build = DetectorBuild(dcfg, req.frames, req.num)
    overrides = {"target": req.auto_target, "budget": req.auto_budget, "best": req.auto_best,
                 "tools": list(req.auto_tools) if req.auto_tools else None}
    for chip, precision in plan:
        t0 = time.perf_counter()
        print(f"detector: {dcfg.name} {chip} {precision}: building ...", flush=True)
        out, built = (auto_build(build, chip, overrides) if precision == AUTO else build.bmodel(chip, precision))
        checks = json.loads((out / "manifest.json").read_text())["checks"]
        ms = (checks.get("device_time") or {}).get("runtime_ms")
        print(f"detector: {dcfg.name} {chip} {precision}: {'built' if built else 'up to date'} "
              f"({time.perf_counter() - t0:.0f} s), output cos vs ONNX {checks['final']['cosine']:.6f}"
              + (f", simulated {ms:.2f} ms per frame" if ms else ""), flush=True)


def _score(dcfg, plan, req: DetectorRequest) -> list[dict]:
    """ONNX's row, this run's builds, then every other complete build of the detector (the page compares them
    all)."""
    from bmpose.evaluate.detector_boxes import scored_row
    from bmpose.layout import list_bmodels
    from bmpose.runtime.boxes import bundled_sample

    ann_default, img_default = bundled_sample()
    ann = req.coco_ann or ann_default
    img = req.coco_img or (img_default if not req.coco_ann else ann.parent)
    rows = [scored_row(dcfg, ann, img, None)]
    others = [(b["chip"], b["precision"]) for b in list_bmodels(dcfg) if b["batch"] == 1]
    for chip, precision in plan + [t for t in others if t not in plan]:
        rows.append(scored_row(dataclasses.replace(dcfg, build=f"{chip}_{precision}"), ann, img, req.runtime,
                               rows[0]))
    return rows
