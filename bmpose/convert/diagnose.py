"""One line on why an INT8 build failed its checks: the first layer below the tolerance, its cosine, and what
to try.

Two checks can fail an INT8 build, and each leaves its per-layer data in the build dir:
- TPU-MLIR's own, inside model_deploy: `npz_tool.py compare` of the deployed TPU MLIR against the top FP32
  MLIR (then of the bmodel against the TPU MLIR). The log has one block per tensor, in graph order:
  `[name]  NOT_SIMLIAR [FAILED]`, then `cosine_similarity = ...` and `euclidean_similarity = ...`;
- bmpose's gate on the heatmaps against ONNX, after compare.csv's rows (every layer vs the top MLIR) exist.
"""
from __future__ import annotations

import re
from pathlib import Path

_RUN = re.compile(r"\[Running\]: npz_tool\.py compare (?P<target>\S+) (?P<ref>\S+) --tolerance (?P<tol>\S+)")
_HEAD = re.compile(r"^\[(?P<layer>.+)\]\s+(?P<verdict>[A-Z_]+)\s+\[(?P<result>PASSED|FAILED)\]\s*$")
_VALUE = re.compile(r"^\s*(?P<key>cosine|euclidean)_similarity\s*=\s*(?P<value>\S+)")


def tool_compare(log: Path) -> dict | None:
    """The npz compare that failed model_deploy, read from its log, or None when no compare failed:
    target and reference npz, tolerance (cosine, euclidean) and one row per tensor in the log's order
    (layer, passed, cosine, euclidean; the last two None for tensors that were equal or close)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    runs = list(_RUN.finditer(text))
    if not runs or "npz compare FAILED" not in text[runs[-1].end():]:
        return None
    run = runs[-1]
    rows = []
    for line in text[run.end():].splitlines():
        line = line.split("\r")[-1]   # progress bars share lines through carriage returns
        if m := _HEAD.match(line):
            rows.append({"layer": m["layer"].strip(), "passed": m["result"] == "PASSED",
                         "cosine": None, "euclidean": None})
        elif rows and (m := _VALUE.match(line)):
            rows[-1][m["key"]] = float(m["value"])
    try:
        cos_tol, euc_tol = (float(x) for x in run["tol"].split(","))
    except ValueError:
        cos_tol = euc_tol = float("nan")
    return {"target": run["target"], "reference": run["ref"], "tolerance": (cos_tol, euc_tol), "rows": rows}


def hint(checkpoint: str | None, layer: str | None = None) -> str:
    """What to try, as Make variables (`bmpose build` has the same as options)."""
    tries = ["METHOD=mse|max|percentile9999|aciq_laplace|aciq_gauss", "SEARCH=1",
             f"QTABLE=<file with `{layer or '<layer>'} F32`>"]
    if checkpoint == "fixture":   # random weights quantise badly whatever the settings
        tries.insert(0, "a trained checkpoint (CHECKPOINT=; these weights are random)")
    return "try " + ", ".join(tries[:-1]) + " or " + tries[-1]


def _fmt(row: dict) -> str:
    cos = "n/a" if row.get("cosine") is None else f"{row['cosine']:.6f}"
    euc = "" if row.get("euclidean") is None else f", euclidean {row['euclidean']:.4f}"
    return f"{row['layer']} at cosine {cos}{euc}"


def tool_failure(log: Path, checkpoint: str | None) -> str | None:
    """One line for a model_deploy that failed one of TPU-MLIR's npz compares, None for any other failure."""
    cmp = tool_compare(log)
    if cmp is None:
        return None
    failed = [r for r in cmp["rows"] if not r["passed"]]
    cos_tol, euc_tol = cmp["tolerance"]
    if "_model_outputs" in cmp["target"]:   # the bmodel vs its TPU MLIR (or the reference): codegen, not quantisation
        what = f"{log}: TPU-MLIR's check of the bmodel against its TPU MLIR failed"
        first = f"; first tensor below cosine {cos_tol:g} / euclidean {euc_tol:g}: {_fmt(failed[0])}" if failed else ""
        return what + first + " (a compiler problem, not calibration: report it with the build dir)"
    what = (f"{log}: TPU-MLIR's per-layer check (TPU MLIR vs top FP32 MLIR: cosine > {cos_tol:g}, euclidean > "
            f"{euc_tol:g}) failed before bmpose's gate")
    if not failed:
        return f"{what}; no failed layer in the log; {hint(checkpoint)}"
    return (f"{what}: first layer below: {_fmt(failed[0])} ({len(failed)} of {len(cmp['rows'])} tensors below); "
            f"{hint(checkpoint, failed[0]['layer'])}")


def gate_failure(rows: list[dict], tolerance: float, checkpoint: str | None) -> str:
    """What to add to a failed heatmap gate: the first layer of compare.csv (TPU MLIR vs top FP32 MLIR, graph
    order) whose cosine is below the gate's tolerance, and what to try."""
    below = [r for r in rows if not r["cosine"] >= tolerance]
    if not below:
        lowest = min(rows, key=lambda r: r["cosine"], default=None)
        at = f" (lowest {_fmt(lowest)})" if lowest else ""
        return (f"every layer of the TPU MLIR is at cosine >= {tolerance:g} against the top MLIR{at}: the loss is "
                f"in the bmodel or the final output; {hint(checkpoint)}")
    return (f"first layer below {tolerance:g} against the top FP32 MLIR: {_fmt(below[0])} ({len(below)} of "
            f"{len(rows)} layers below); {hint(checkpoint, below[0]['layer'])}")
