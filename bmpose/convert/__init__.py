"""TPU-MLIR driver: ONNX -> top MLIR -> calibration table -> F32/F16/BF16/INT8 bmodels, verified and compared.

Layout under artifacts/<name>/ (each directory has a manifest.json and is written atomically):
  cali_inputs/                    normalised real crops as npz (calibration input, transform test input)
  mlir/b<batch>/                  model_transform: top MLIR, weights, ONNX/top reference tensors
  cali_table/<method>_n<num>/     run_calibration on the batch-1 MLIR (serves every batch)
  cali_table/<method>_n<num>/search_<chip>/   optional search_qtable result
  <chip>_<precision>_b<batch>/    model_deploy: the bmodel, the deployed *_tpu.mlir + its weight npz, qtable,
                                  compare.csv/compare.npz, logs
This module stays import-light (no torch, no tpu_mlir): `list_bmodels` is used by the report and backends.
"""
from __future__ import annotations

from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.manifest import read_manifest

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# BM1688 and CV186X (its single-core sibling) share TPU-MLIR's BM1688 backend and simulator; not in the
# bundled configs' chips (CHIPS=bm1688 builds them), compiled for one core.
CHIPS = ("bm1684", "bm1684x", "bm1688", "cv186x")
# What each chip computes in (TPU-MLIR 1.30.2): BM1684 has FP32 and INT8 only (model_deploy --quantize
# F16/BF16 for it stops in codegen with "Not Implemented"), so bmpose refuses those before any tool runs.
_ALL = ("fp32", "fp16", "bf16", "int8")
CHIP_PRECISIONS = {"bm1684": ("fp32", "int8"), "bm1684x": _ALL, "bm1688": _ALL, "cv186x": _ALL}


def chip_supports(chip: str, precision: str) -> bool:
    return precision in CHIP_PRECISIONS.get(chip, ())


def no_precision(chip: str, precision: str) -> str | None:
    """Why `chip` gets no `precision` bmodel (one line), None when it does."""
    if chip_supports(chip, precision):
        return None
    others = [c for c in CHIPS if chip_supports(c, precision)]
    return (f"{chip} has no {precision} ({chip} bmodels: {', '.join(CHIP_PRECISIONS.get(chip, ()))}; "
            f"{precision} bmodels: {', '.join(others) or 'no chip'})")


def check_chip_precision(chip: str, precision: str) -> None:
    """Refuse a chip x precision TPU-MLIR cannot compile, before any tool runs."""
    if why := no_precision(chip, precision):
        raise BmposeError(why)


def bmodel_dir(cfg, chip: str, precision: str, batch: int) -> Path:
    return cfg.artifacts / f"{chip}_{precision}_b{batch}"


def bmodel_name(cfg, chip: str, precision: str, batch: int) -> str:
    return f"{cfg.name}_{chip}_{precision}_b{batch}.bmodel"


def list_bmodels(cfg) -> list[dict]:
    """Every complete bmodel build of this config: path, chip, precision, batch, tpu_mlir (+ manifest facts)."""
    out = []
    for d in sorted(cfg.artifacts.glob("*_*_b*")):
        if d.name.startswith(".") or d.name.endswith(".failed"):   # builds in progress or failed
            continue
        m = read_manifest(d)
        if not d.is_dir() or m is None or m.get("stage") != "deploy" or m.get("status") != "ok":
            continue
        o = m["options"]
        path = d / bmodel_name(cfg, o["chip"], o["precision"], o["batch"])
        if not path.is_file():
            continue
        out.append({"path": path, "chip": o["chip"], "precision": o["precision"], "batch": int(o["batch"]),
                    "tpu_mlir": d / m["tpu_mlir"], "dir": d, "manifest": m})
    order = {c: i for i, c in enumerate(CHIPS)}
    return sorted(out, key=lambda b: (order.get(b["chip"], 9), PRECISIONS.index(b["precision"]), b["batch"]))
