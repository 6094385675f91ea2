"""How much an INT8 build moves when its calibration set changes by one crop (`bmpose study --fragility`).

kl's threshold search is discontinuous: rounding-level changes in the activations once moved a threshold by
20% and the INT8 AP by 0.004. A user meets the same when the calibration set gains or loses an image. For each
calibration method, the full set and several one-crop-less subsets are calibrated, deployed (INT8, batch 1)
and scored with the paired statistic (bmpose.evaluate.paired: per-person OKS drop against ONNX on the
jittered evaluation set, 95% bootstrap interval). Reported per method and chip: the spread of the drop over
the subsets and the largest relative threshold change against the full set. Everything lives under
artifacts/<model>/study/fragility/ with manifests, so a rerun reuses what is built.
"""
from __future__ import annotations

import json
import time

import numpy as np

from bmpose.manifest import atomic_file

DROPS = (0, 8, 16, 24)   # which crop each subset leaves out (selection order: different images)


def run_fragility(cfg, chips, methods, checkpoint=None, drops=DROPS) -> dict:
    from bmpose.convert import bmodel_build
    from bmpose.convert.pipeline import Pipeline
    from bmpose.evaluate import paired
    from bmpose.tpu_mlir.cali_table import thresholds
    from bmpose.manifest import read_manifest
    from bmpose.evaluate.sets import eval_set
    from bmpose.runtime.backends import open_backend
    from bmpose.runtime.results import dataset_sigmas

    t_start = time.monotonic()
    out = cfg.layout.study() / "fragility"
    pipe = Pipeline(cfg, checkpoint, verbose=False)
    crops = pipe.crops()
    onnx1 = pipe.onnx(1)[1]
    boxes, owner, truth = paired.jittered_boxes(*eval_set())
    sigmas = dataset_sigmas(cfg)
    ref = paired.score_backend(cfg, open_backend(onnx1, kind="onnx"), boxes, owner, truth, sigmas, cfg.flip_test)
    subsets = {"all": crops, **{f"drop{k}": crops[:k] + crops[k + 1:] for k in drops if k < len(crops)}}
    rows = []
    for method in methods:
        tables = {}
        for label, subset in subsets.items():
            tables[label] = pipe.cali_table(method, subset, out=out / f"{method}_{label}" / "cali")
        full = thresholds(tables["all"])
        for chip in chips:
            for label, table in tables.items():
                th = thresholds(table)
                moved = max(abs(th[k] / full[k] - 1) for k in full if k in th and full[k] > 0)
                spec = bmodel_build.deploy_options(cfg, chip, "int8", 1, method=method, user_qtables=[],
                                                   search=False, checkpoint=checkpoint, calib={"subset": label})
                d, _ = pipe.bmodel(chip, "int8", 1, spec, cali_table=table, out=out / f"{method}_{label}" / chip)
                tpu = d / read_manifest(d)["tpu_mlir"]
                test = paired.cached_person_oks(d / "paired_oks.json", tpu, len(boxes), lambda: paired.score_backend(
                    cfg, open_backend(tpu, chip, kind="mlir"), boxes, owner, truth, sigmas, cfg.flip_test))
                row = {"method": method, "chip": chip, "subset": label, "crops": len(subsets[label]),
                       "max_threshold_change": round(moved, 4), **paired.paired_drop(ref, test)}
                rows.append(row)
                print(f"fragility: {method} {chip} {label}: OKS drop {row['drop']:+.4f} "
                      f"[{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}], thresholds moved up to {moved:.1%}")
    summary = []
    for method in methods:
        for chip in chips:
            rs = [r for r in rows if r["method"] == method and r["chip"] == chip]
            drops_ = [r["drop"] for r in rs]
            summary.append({"method": method, "chip": chip, "drop_all": rs[0]["drop"],
                            "drop_min": min(drops_), "drop_max": max(drops_),
                            "spread": max(drops_) - min(drops_), "ci95_hi_max": max(r["ci95"][1] for r in rs),
                            "max_threshold_change": max(r["max_threshold_change"] for r in rs)})
    doc = {"model": cfg.name, "reference_oks": float(np.mean(ref)), "persons": len(truth), "crops": len(boxes),
           "jitters": paired.JITTERS, "subsets": {k: len(v) for k, v in subsets.items()}, "rows": rows,
           "summary": summary, "seconds": round(time.monotonic() - t_start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "fragility.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    with atomic_file(out / "fragility.md") as tmp:
        tmp.write_text(to_markdown(doc))
    return doc


def to_markdown(doc: dict) -> str:
    lines = [f"Calibration-set fragility, {doc['model']}: INT8 b1, per-person OKS drop vs ONNX "
             f"({doc['persons']} persons x {doc['jitters']} crops, reference OKS {doc['reference_oks']:.4f}); "
             f"subsets: {', '.join(f'{k} ({v} crops)' for k, v in doc['subsets'].items())}", "",
             "| method | chip | drop, all crops | drop over subsets (min..max) | spread | worst CI95 upper | "
             "thresholds moved up to |", "|---|---|---|---|---|---|---|"]
    for s in doc["summary"]:
        lines.append(f"| {s['method']} | {s['chip']} | {s['drop_all']:+.4f} | {s['drop_min']:+.4f}..{s['drop_max']:+.4f}"
                     f" | {s['spread']:.4f} | {s['ci95_hi_max']:+.4f} | {s['max_threshold_change']:.1%} |")
    return "\n".join(lines) + "\n"
