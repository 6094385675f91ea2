"""Device time without the verified build: model_deploy without its test input (so no TPU-MLIR layer check, no
bmodel simulation, no gate against ONNX), then the compiler's cycle estimate embedded in the bmodel
(bmpose.tpu_mlir.devtime), the same number a verified build records. For sizing a variant before paying for its
build: HRNet-W32's verified FP32 batch-1 BM1684X build took 13 min here.

Each estimate keeps only its manifest (device time in checks), the qtable and model_deploy's log under
artifacts/<model>/estimate/<chip>_<precision>_b<batch>/; the bmodel is deleted, having never been verified.
INT8 uses the build's calibration table and automatic FP32 tail, so it times what `make int8` would build."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from bmpose.chips import check_chip_precision
from bmpose.convert.bmodel_build import QUANTIZE, TAIL_RULE
from bmpose.tpu_mlir.runner import run_tool
from bmpose.convert.steps import build, link, transform_files
from bmpose.errors import BmposeError
from bmpose.manifest import locked, read_manifest, up_to_date, write_manifest
from bmpose.tpu_mlir.devtime import device_time, link_bm1684_estimate

KEEP = ("model_deploy.log", "qtable")


def ensure_estimate(cfg, chip: str, precision: str, batch: int, *, mlir: Path,
                    cali_table: Path | None = None) -> tuple[dict, bool]:
    """-> (the manifest's checks: device_time and deploy_seconds, freshly estimated?)."""
    from bmpose.convert.qtable import build_qtable, format_qtable

    check_chip_precision(chip, precision)
    if precision == "int8" and cali_table is None:
        raise BmposeError("an INT8 estimate needs a calibration table")
    out = cfg.layout.estimate(chip, precision, batch)
    files = transform_files(cfg)
    inputs = {"mlir": mlir / files["mlir"], "weights": mlir / files["weights"]}
    options = {"chip": chip, "precision": precision, "batch": batch, "verified": False,
               "device_time": "embedded estimate v1"}
    if precision == "int8":
        inputs["cali_table"] = cali_table
        options["tail_rule"] = TAIL_RULE
    with locked(out):
        if up_to_date(out, inputs, options):
            return read_manifest(out)["checks"], False
        with build(out) as tmp:
            for key in ("mlir", "weights"):
                link(mlir / files[key], tmp)
            args = ["--mlir", files["mlir"], "--chip", chip, "--model", "estimate.bmodel",
                    "--quantize", QUANTIZE[precision], "--debug"]   # without --debug no estimate is embedded
            if precision == "int8":
                qtable, _ = build_qtable(mlir / files["mlir"], [], None, auto=True)
                (tmp / "qtable").write_text(format_qtable(qtable, f"bmpose qtable ({TAIL_RULE})"))
                args += ["--calibration_table", Path(cali_table).resolve(), "--quantize_table", "qtable"]
            link_bm1684_estimate(tmp, chip)
            t0 = time.monotonic()
            run_tool("model_deploy.py", args, tmp, "model_deploy.log")
            checks = {"device_time": device_time(tmp / "estimate.bmodel", chip, batch),
                      "deploy_seconds": round(time.monotonic() - t0, 1)}
            if checks["device_time"]["runtime_ms"] is None:
                raise BmposeError(f"{tmp}: {checks['device_time']['why']}")
            for f in tmp.iterdir():   # the bmodel too: it was never checked against anything
                if f.name not in KEEP:
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
            write_manifest(tmp, stage="estimate", inputs=inputs, options=options,
                           outputs=[k for k in KEEP if (tmp / k).exists()], checks=checks)
    return checks, True
