"""The chips bmpose builds for and what each computes in (TPU-MLIR 1.30.2). Import-light: the report, the
CLI and the builds read these facts from here."""
from __future__ import annotations

from bmpose.errors import BmposeError

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# BM1688 and CV186X (its single-core sibling) share TPU-MLIR's BM1688 backend and simulator; not in the
# bundled configs' chips (CHIPS=bm1688 builds them), compiled for one core.
CHIPS = ("bm1684", "bm1684x", "bm1688", "cv186x")
# BM1684 has FP32 and INT8 only (model_deploy --quantize F16/BF16 for it stops in codegen with "Not
# Implemented"), so bmpose refuses those before any tool runs.
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
