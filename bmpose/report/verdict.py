"""The report's opening verdict: every gate each bmodel build checked, pass or fail, and a pose per chip.

A bmodel build (bmpose.convert.bmodel_build) passes two gates before it writes its manifest: TPU-MLIR's own checks in
model_deploy (the bmodel against the TPU MLIR, every TPU MLIR layer against the top MLIR) with bmpose's FP32 tail
deployed as planned, then the heatmap cosine against ONNX Runtime at the config's tolerance (`checks.tolerance`
in the manifest). A build that fails is kept as `<dir>.failed/` without a manifest; its compare.csv, when it
got that far, still holds the cosine. Beside the gates each row shows the COCO AP where that very artifact was
evaluated (`bmpose eval`, or the calibration study on the same deployed MLIR, matched by content hash) and the
compiler's device time estimate. The pose picture per chip comes from bmpose.evaluate.pictures, which draws
it; the report only reads it.
"""
from __future__ import annotations

import json
from pathlib import Path

from bmpose.chips import CHIPS, PRECISIONS
from bmpose.compare import read_csv
from bmpose.layout import FAILED_OPTIONS, failed_build_target, failed_builds
from bmpose.manifest import sha256_file

DEPLOY_GATE = ("deploy", "TPU-MLIR model_deploy's own checks (bmodel vs TPU MLIR, layers vs top MLIR), FP32 tail "
                         "as planned")


def _gate(name, what, passed, value=None, threshold=None, note="") -> dict:
    return {"name": name, "what": what, "pass": bool(passed), "value": value, "threshold": threshold,
            "note": note}


def _heatmap_gate(key, cos, tol) -> dict:
    ok = cos is not None and cos >= tol
    return _gate(key, "output cosine vs ONNX (heatmaps or SimCC vectors)", ok, cos, tol,
                 f"{cos:.6f} {'>=' if ok else '<'} {tol}" if cos is not None else "no cosine recorded")


def _row_of_build(b: dict) -> dict:
    tol = b.get("tolerance") or {}
    gates = [_gate(*DEPLOY_GATE, True, note="passed")]   # the build wrote its manifest only after them
    gates += [_heatmap_gate(k, b["cosine"], v) for k, v in tol.items()]
    return {"bmodel": Path(b["dir"]).name, "file": b["name"], "link": b["path"], "chip": b["chip"],
            "precision": b["precision"], "batch": b["batch"], "built": True, "gates": gates,
            "pass": all(g["pass"] for g in gates), "cosine": b["cosine"],
            "sim_ms_per_person": b.get("sim_ms_per_person"), "sim_ms_per_batch": b.get("sim_ms_per_batch")}


def _failed_gate(d: Path) -> tuple[str | None, float | None]:
    """The heatmap gate a failed build was held to: from the options it left (bmpose.convert.bmodel_build writes them
    before model_deploy runs)."""
    try:
        key, tol = next(iter(json.loads((d / FAILED_OPTIONS).read_text())["tolerance"].items()))
        return key, float(tol)
    except (OSError, ValueError, KeyError, StopIteration, AttributeError, TypeError):
        return None, None


def _row_of_failure(d: Path, kept: set) -> dict:
    chip, precision, batch = failed_build_target(d)
    log = d / "model_deploy.log"
    rows = read_csv(d / "compare.csv") if (d / "compare.csv").is_file() else []
    final = next((r for r in rows if r.get("op") == "bmodel"), None)
    if final is None:   # stopped in model_deploy or the qtable check, before any comparison with ONNX
        gates = [_gate(*DEPLOY_GATE, False, note=f"failed: see {log}")]
    else:
        key, tol = _failed_gate(d)
        gates = [_gate(*DEPLOY_GATE, True, note="passed")]
        if tol is not None:
            gates.append(_heatmap_gate(key, float(final["cosine"]), tol))
        if all(g["pass"] for g in gates):
            gates.append(_gate("build", "the build itself", False, note=f"failed after its gates: see {log}"))
    name = d.name[:-len(".failed")]
    return {"bmodel": name, "file": d.name, "link": str(log if log.is_file() else d), "chip": chip,
            "precision": precision, "batch": batch, "built": False, "gates": gates, "pass": False,
            "cosine": float(final["cosine"]) if final else None, "sim_ms_per_person": None,
            "sim_ms_per_batch": None, "note": "the last build failed" + ("; an earlier build is kept" if name in kept
                                                                       else "")}


# ------------------------------------------------------------------------------------------------ AP

def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _ap_of(cfg, b: dict, study: dict | None) -> dict:
    """The AP of this very artifact: `bmpose eval` (whole set on its deployed MLIR, else the cmodel subset),
    else the calibration study's evaluation of the same deployed MLIR and weights (equal content hashes)."""
    ev = cfg.layout.eval()
    label = Path(b["dir"]).name
    for name, path in ((label, b["tpu_mlir"]), (f"{label}_cmodel", b["path"])):
        obj = _read_json(ev / f"{name}.json")
        if not isinstance(obj, dict) or obj.get("AP") is None:
            continue
        want = (obj.get("inputs") or {}).get("artifact")
        if want is not None and want != sha256_file(path):
            return {"AP": None, "source": f"eval/{name}.json is stale: the bmodel was rebuilt after it"}
        ref = obj.get("onnx_AP_same_persons")
        return {"AP": obj["AP"], "delta_AP": None if ref is None else obj["AP"] - ref,
                "persons": obj.get("persons"), "source": f"bmpose eval ({obj.get('backend') or 'mlir'})"}
    mlir_hash, weights_hash = (b.get("hashes") or {}).get("tpu_mlir"), (b.get("hashes") or {}).get("tpu_weights")
    if isinstance(study, dict) and mlir_hash and weights_hash:
        for p in sorted((cfg.layout.study() / "eval").glob("*.json")):
            obj = _read_json(p)
            inp = obj.get("inputs") if isinstance(obj, dict) else None
            if isinstance(inp, dict) and (inp.get("artifact"), inp.get("weights")) == (mlir_hash, weights_hash):
                ref = study.get("onnx_AP")
                return {"AP": obj.get("AP"), "delta_AP": None if ref is None or obj.get("AP") is None
                        else obj["AP"] - ref, "persons": obj.get("persons"),
                        "source": f"calibration study, the same deployed MLIR ({obj.get('label')})"}
    return {"AP": None, "source": "not evaluated: make eval"}


# ------------------------------------------------------------------------------------------------ verdict

def verdict(cfg, data: dict) -> dict:
    """{overall: {pass, text}, rows: [per bmodel build: gates, cosine, AP, device time]}; pass None: nothing
    built."""
    rows = []
    for b in data["bmodels"]:
        rows.append({**_row_of_build(b), **_ap_of(cfg, b, data.get("study"))})
    kept = {r["bmodel"] for r in rows}
    rows += [_row_of_failure(d, kept) for d in failed_builds(cfg)]
    rank = {p: i for i, p in enumerate((*CHIPS, *PRECISIONS))}
    rows.sort(key=lambda r: (rank.get(r["chip"], 9), r["chip"], rank.get(r["precision"], 9), r["batch"],
                             not r["built"]))
    failing = [r for r in rows if not r["pass"]]
    n = len(rows)
    if not rows:
        overall = {"pass": None, "text": "No bmodels built yet"}
    elif not failing:
        overall = {"pass": True, "text": f"All {n} bmodels pass their gates" if n > 1 else
                   "The 1 bmodel passes its gates"}
    else:
        why = "; ".join(f"{r['bmodel']}{'' if r['built'] else ' (build failed)'}: "
                        + ", ".join(f"{g['name']} {g['note']}" for g in r["gates"] if not g["pass"])
                        for r in failing)
        overall = {"pass": False, "text": f"{len(failing)} of {n} fail: {why}"}
    return {"overall": overall, "rows": rows, "pictures": []}
