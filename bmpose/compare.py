"""Similarity between tensors: per layer (deployed TPU MLIR vs top FP32 MLIR) and final (bmodel vs ONNX).

The three measures are TPU-MLIR's own (numpy_helper/tensor_compare.py, what `npz_tool.py compare` prints), so
the numbers here read the same as its logs:
  cosine     = a.b / (|a| |b|)
  euclidean  = 1 - |a - b| / |(a + b) / 2|
  SQNR (dB)  = 10 log10(var(reference) / var(reference - target))

`bmpose compare TARGET.npz REFERENCE.npz [--csv out.csv]` compares every tensor name the two files share.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError

CSV_FIELDS = ("layer", "op", "quant", "shape", "cosine", "euclidean", "sqnr_db")


def similarity(target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """cosine, euclidean similarity and SQNR (dB) of target against reference (same size)."""
    a = np.asarray(target, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.size != b.size:
        raise BmposeError(f"cannot compare tensors of {a.size} and {b.size} elements")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    mid = np.linalg.norm((a + b) / 2)
    dist = np.linalg.norm(a - b)
    euclid = 1.0 - float(dist / mid) if mid > 0 else (1.0 if dist == 0 else 0.0)
    noise = b - a
    var_ref, var_noise = np.sum((b - b.mean()) ** 2), np.sum((noise - noise.mean()) ** 2)
    sqnr = math.inf if var_noise == 0 or var_ref == 0 else float(10 * np.log10(var_ref / var_noise))
    return {"cosine": cos, "euclidean": euclid, "sqnr_db": sqnr}


def compare_npz(target: Path, reference: Path, ops: dict | None = None) -> list[dict]:
    """One row per tensor name present in both files, in the target's order.

    `ops` maps a layer name to (op type, quant mode) - from the deployed MLIR - for the CSV's columns.
    """
    ops = ops or {}
    rows = []
    with np.load(target) as t, np.load(reference) as r:
        for name in t.files:
            if name not in r.files or t[name].size != r[name].size:
                continue
            op, quant = ops.get(name, ("", ""))
            rows.append({"layer": name, "op": op, "quant": quant, "shape": "x".join(map(str, t[name].shape)),
                         **similarity(t[name], r[name])})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    from bmpose.manifest import atomic_file

    with atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]) for k in CSV_FIELDS})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for k in ("cosine", "euclidean", "sqnr_db"):
            row[k] = float(row[k])
    return rows


def gate(name: str, cos: float, minimum: float, where: str) -> None:
    """Fail loudly when the final heatmaps are less similar than the config's tolerance."""
    if not cos >= minimum:
        raise BmposeError(f"{where}: output cosine {cos:.6f} < tolerance {name}={minimum} "
                          f"(bmodel vs ONNX); see compare.csv in the build dir")
