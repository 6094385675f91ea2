"""model_deploy: the top MLIR (+ calibration table and qtable for INT8) -> an FP32/FP16/BF16/INT8 bmodel for
one chip and batch, its deployed *_tpu.mlir checked (the qtable's layers really F32), per-layer compare files
and the final gate against ONNX; skipped when its manifest is up to date (see convert.steps for the shared helpers)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np

from bmpose import compare
from bmpose.chips import check_chip_precision
from bmpose.convert import diagnose
from bmpose.tpu_mlir.runner import run_tool
from bmpose.convert.steps import build, link, output_names, tool_files, transform_files
from bmpose.errors import BmposeError
from bmpose.layout import FAILED_OPTIONS
from bmpose.pose.pipeline import join_outputs
from bmpose.manifest import locked, up_to_date, write_manifest
from bmpose.tpu_mlir.devtime import device_time, link_bm1684_estimate

TAIL_RULE = ("v2: output op back through single-input ops, up to and including the first merge; without a merge, "
             "up to and including the first weighted op")
QUANTIZE = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "int8": "INT8"}
# model_deploy's own check of every deployed layer against the top FP32 MLIR (cosine, euclidean similarity) is
# a sanity floor, never stricter than bmpose's real gate (heatmaps vs ONNX, *_cos_random included). Lowest layer
# measured (b1): F16 small 0.999997/0.9974, W32 random 0.99995/0.990; BF16 small 0.99990/0.985, W32 random
# 0.997/0.921, whose heatmaps reach cos 0.98 on other crops.
TPU_LAYER_TOL = {"fp32": "0.99,0.99", "fp16": "0.99,0.9", "bf16": "0.9,0.5"}
# INT8 from the random-init fixture: TPU-MLIR's per-layer check must not decide before bmpose's gate
# (int8_cos_random) does, the weights being meaningless (MobileNetV2's middle layers fell to cos 0.50 on BM1684
# and failed the 0.7,0.0 floor). "cosine > 0, euclidean > -inf" fails only a layer gone to zero or
# anti-correlated; no lower cosine can be given (npz_tool's argparse reads "-1,-inf" as an option name).
# Trained checkpoints keep the 0.7,0.0 floor.
INT8_LAYER_TOL_RANDOM = "0,-inf"
def gate_key(precision: str, checkpoint: str | None) -> str:
    """The tolerance a bmodel's heatmaps are held to: `<precision>_cos`, or `*_cos_random` when a quantised
    build comes from random-init fixture weights (FP32 has no excuse)."""
    return f"{precision}_cos" + ("_random" if precision != "fp32" and checkpoint == "fixture" else "")


DEVICE_TIME = "embedded estimate v1"   # v1: the compiler's cycle estimate is embedded in the bmodel (tpu_mlir.devtime)


@dataclasses.dataclass(frozen=True)
class DeploySpec:
    """One bmodel build, frozen: model_deploy's arguments and the gate are read from it and the manifest's
    options are derived from it (options()), so what a build did and what its manifest says cannot differ.
    Variants (the study's, --precision auto's trials, the detector's) are dataclasses.replace of a spec."""
    chip: str
    precision: str
    batch: int
    gate: tuple                          # (tolerance key, the least heatmap cosine vs ONNX the build must keep)
    checkpoint: str | None
    calib: dict | None = None            # the calibration set's record (INT8)
    method: str | None = None            # calibration method (INT8)
    qtables: tuple = ()                  # the user's qtable files (INT8)
    search: bool = False                 # TPU-MLIR's search_qtable layers added (INT8)
    tpu_layer_tolerance: str | None = None   # TPU-MLIR's per-layer floor; None: its default for the precision
    fp32_layers: str | None = None       # the calibration study's layer variant (recorded only)
    cali_tools: tuple = ()               # TPU-MLIR calibration tools of its table (recorded only)

    def layer_floor(self) -> str:
        """model_deploy's --tolerance (per deployed layer vs the top MLIR)."""
        default = "0.7,0.0" if self.precision == "int8" else TPU_LAYER_TOL[self.precision]
        return self.tpu_layer_tolerance or default

    def options(self) -> dict:
        """The manifest's record of the build (what decides whether it is up to date)."""
        key, tol = self.gate
        opts = {"chip": self.chip, "precision": self.precision, "batch": self.batch, "tolerance": {key: tol},
                "checkpoint": self.checkpoint, "calib": self.calib, "device_time": DEVICE_TIME}
        if self.tpu_layer_tolerance is not None:   # recorded: a changed floor redeploys
            opts["tpu_layer_tolerance"] = self.tpu_layer_tolerance
        if self.precision == "int8":
            opts.update({"method": self.method, "qtables": [str(q) for q in self.qtables], "search": self.search,
                         "tail_rule": TAIL_RULE, "symmetric": True})
        if self.fp32_layers is not None:
            opts["fp32_layers"] = self.fp32_layers
        if self.cali_tools:
            opts["cali_tools"] = list(self.cali_tools)
        return opts


def deploy_options(cfg, chip: str, precision: str, batch: int, *, method: str | None, user_qtables, search: bool,
                   checkpoint: str | None, calib: dict | None) -> DeploySpec:
    """The spec `bmpose build` deploys a chip x precision x batch with: the config's gate for it, TPU-MLIR's
    per-layer floor where bmpose sets one (float precisions; INT8 of random-init fixture weights)."""
    checkpoint = checkpoint or cfg.checkpoint
    tol_key = gate_key(precision, checkpoint)
    floor = TPU_LAYER_TOL.get(precision) if precision in ("fp16", "bf16") else \
        INT8_LAYER_TOL_RANDOM if precision == "int8" and checkpoint == "fixture" else None
    int8 = precision == "int8"
    return DeploySpec(chip, precision, batch, (tol_key, cfg.tolerances[tol_key]), checkpoint, calib,
                      method=method if int8 else None, qtables=tuple(str(q) for q in user_qtables) if int8 else (),
                      search=bool(search) and int8, tpu_layer_tolerance=floor)


def ensure_bmodel(cfg, chip: str, precision: str, batch: int, *, mlir: Path, spec: DeploySpec,
                  cali_table: Path | None = None, user_qtables=(), searched: Path | None = None,
                  out: Path | None = None, auto_tail: bool = True,
                  calibration: dict | None = None) -> tuple[Path, bool]:
    """model_deploy (with TPU-MLIR's own validation), per-layer compare, tolerance gate. -> (dir, built?)

    `out` builds elsewhere than the default bmodel dir and `auto_tail=False` leaves out the automatic FP32
    tail (both for the calibration study); put whatever distinguishes the build in `spec`. `calibration`
    (bmpose.calib.provenance.describe) is recorded for INT8: evaluation checks its images against its own."""
    check_chip_precision(chip, precision)
    out = Path(out) if out else cfg.layout.bmodel(chip, precision, batch)
    files = transform_files(cfg)
    inputs = {k: mlir / v for k, v in files.items()}
    if precision == "int8":
        if cali_table is None:
            raise BmposeError("INT8 deploy needs a calibration table")
        inputs["cali_table"] = cali_table
        inputs.update(tool_files(cali_table, files))   # weights a calibration tool rewrote (bc, we)
        inputs.update({f"qtable{i}": Path(q) for i, q in enumerate(user_qtables)})
        if searched:
            inputs["search_qtable"] = searched
    with locked(out):
        if up_to_date(out, inputs, spec.options()):
            return out, False
        with build(out) as tmp:
            _deploy(cfg, chip, precision, batch, tmp, mlir, files, inputs, spec, cali_table, user_qtables,
                    searched, auto_tail, calibration if precision == "int8" else None)
    return out, True


def _deploy(cfg, chip, precision, batch, tmp: Path, mlir: Path, files, inputs, spec: DeploySpec, cali_table,
            user_qtables, searched, auto_tail: bool = True, calibration: dict | None = None) -> None:
    for key in ("mlir", "weights", "input", "top_outputs"):
        link(inputs[key], tmp)
    # A failed build keeps no manifest: this says which gate it was held to (the report's verdict reads it);
    # a build that passes deletes it before writing its manifest, which holds the options.
    options = spec.options()
    (tmp / FAILED_OPTIONS).write_text(json.dumps(options, default=str))
    name = cfg.layout.bmodel_name(chip, precision, batch)
    args, qtable, origin = _deploy_args(tmp, mlir, files, chip, precision, name, spec, cali_table,
                                        user_qtables, searched, auto_tail)
    seconds = _run_model_deploy(tmp, args, chip, precision, spec.checkpoint)
    mode = {"int8": "int8_sym", "fp32": "f32", "fp16": "f16", "bf16": "bf16"}[precision]   # TPU-MLIR's file names
    stem = f"{cfg.name}_{chip}_{mode}"
    tpu_mlir, tpu_weights, graph = _deployed_mlir(tmp, stem, qtable, tmp / files["mlir"])
    fp32_layers = [op.name for op in graph.ops if op.quant == "F32" and op.type != "tpu.Cast"] \
        if precision == "int8" else []
    rows, final, out_names = _compare(tmp, stem, graph, mlir, files, precision)

    # Keep what later stages use (bmodel, the deployed tpu.mlir + weights for the mlir backend, tensors,
    # compare files, logs); drop TPU-MLIR's --debug intermediates and the linked inputs.
    keep = {name, tpu_mlir.name, tpu_weights, f"{stem}_tpu_outputs.npz", f"{stem}_model_outputs.npz",
            "compare.csv", "compare.npz", "qtable", "model_deploy.log", files["input"], FAILED_OPTIONS}
    for f in tmp.iterdir():
        if f.name not in keep:
            shutil.rmtree(f) if f.is_dir() else f.unlink()

    tol_key, tol = spec.gate
    checks = {"final": final, "tpu_mlir_vs_top_min_cos": min((r["cosine"] for r in rows[:-1]), default=None),
              "tolerance": {tol_key: tol}, "seconds": round(seconds, 1),
              "device_time": device_time(tmp / name, chip, batch)}   # the compiler's estimate; no simulator run
    try:
        compare.gate(tol_key, final["cosine"], tol, str(tmp / name))
    except BmposeError as e:
        if precision != "int8":
            raise
        raise BmposeError(f"{e}; {diagnose.gate_failure(rows[:-1], tol, spec.checkpoint)}") from None
    (tmp / FAILED_OPTIONS).unlink()   # passed: the manifest holds the options
    write_manifest(tmp, stage="deploy", inputs=inputs, options=options,
                   outputs=[name, tpu_mlir.name, tpu_weights, "compare.csv", "compare.npz"]
                   + (["qtable"] if precision == "int8" else []),
                   checks=checks,
                   extra={"tpu_mlir": tpu_mlir.name, "tpu_weights": tpu_weights, "output_names": out_names,
                          "input": files["input"], "size_bytes": (tmp / name).stat().st_size,
                          "build_seconds": round(seconds, 1), "fp32_layers": fp32_layers,
                          "qtable_origin": origin, "calibration": calibration})


def _deploy_args(tmp: Path, mlir: Path, files, chip, precision, name, spec: DeploySpec, cali_table, user_qtables,
                 searched, auto_tail) -> tuple[list, dict, dict]:
    """model_deploy's arguments; for INT8 the qtable (automatic tail + the user's + search) written to tmp.
    -> (args, qtable, where each qtable layer came from)."""
    from bmpose.convert.qtable import build_qtable, format_qtable

    args = ["--mlir", files["mlir"], "--chip", chip, "--model", name, "--test_input", files["input"],
            "--test_reference", files["top_outputs"], "--compare_all", "--debug"]
    qtable, origin = {}, {}
    if precision == "int8":
        qtable, origin = build_qtable(mlir / files["mlir"], list(user_qtables), searched, auto=auto_tail)
        header = "\n".join(f"{src}: {len(names)} layer(s)" for src, names in origin.items())
        (tmp / "qtable").write_text(format_qtable(qtable, f"bmpose qtable ({TAIL_RULE})\n{header}"))
        # TPU-MLIR's own check of every TPU-MLIR layer against the top MLIR is only a sanity floor for INT8
        # (middle layers of a random-weight model are noisy: cos 0.85, euclid 0.4 on HRNet-W32); its check of
        # the bmodel against the TPU MLIR stays strict, and the real gate is ours, below: heatmaps vs ONNX.
        # spec.tpu_layer_tolerance lowers the floor (the study's all-INT8 heads: heatmap conv at cos 0.82).
        args += ["--quantize", "INT8", "--calibration_table", Path(cali_table).resolve(),
                 "--quantize_table", "qtable", "--tolerance", spec.layer_floor()]
    else:   # float: TPU-MLIR's per-layer check vs the top MLIR (see TPU_LAYER_TOL)
        args += ["--quantize", QUANTIZE[precision], "--tolerance", spec.layer_floor()]
    return args, qtable, origin


def _run_model_deploy(tmp: Path, args: list, chip: str, precision: str, checkpoint: str | None) -> float:
    # BM1684's codegen writes its cycle estimate to `_0.dat` but embeds only compiler_profile_0.dat: link the
    # two first, so every bmodel carries its simulated device time (bmpose.tpu_mlir.devtime).
    link_bm1684_estimate(tmp, chip)
    try:
        return run_tool("model_deploy.py", args, tmp, "model_deploy.log")
    except BmposeError:
        # an INT8 build that failed TPU-MLIR's per-layer compare: its first layer below, not the raw tool lines
        why = diagnose.tool_failure(tmp / "model_deploy.log", checkpoint) \
            if precision == "int8" else None
        if why is None:
            raise
        raise BmposeError(why) from None


def qtable_mismatches(graph, qtable: dict, top_names=()) -> list[str]:
    """The qtable's float layers that the deployed graph runs in another mode ("name (MODE)"), or that neither
    it nor the top MLIR (`top_names`) has (a name TPU-MLIR would ignore)."""
    bad = []
    for name, mode in qtable.items():
        # TPU-MLIR may lower one op into several named `<name>_<part>` (BM1684: ReduceL2 -> _Square,
        # _ReduceSum, _Sqrt): the qtable holds when every part runs in the mode asked for. An op of the top MLIR
        # that lowering folded into a neighbour (BM1684X: the GAU's Transpose into its MatMul) runs as that one.
        parts = [name] if name in graph.names else [n for n in graph.names if n.startswith(name + "_")]
        if not parts and name not in top_names:
            bad.append(name)
        # a layer asked F16/BF16 may run F32 (TPU-MLIR keeps some output-side ops F32): never less precise
        bad += [f"{n} ({graph.op(n).quant})" for n in parts
                if mode != "INT8" and graph.op(n).quant not in (mode, "F32")]
    return bad


def _deployed_mlir(tmp: Path, stem: str, qtable: dict, top_mlir: Path):
    """The deployed tpu.mlir, its weight file and graph; the qtable must show in it (TPU-MLIR ignores unknown
    names and may change modes silently)."""
    from bmpose.tpu_mlir.mlirgraph import read_graph

    tpu_mlir = tmp / f"{stem}_tpu.mlir"
    if not tpu_mlir.is_file():
        raise BmposeError(f"{tmp}: model_deploy wrote no {tpu_mlir.name} (see model_deploy.log)")
    m = re.search(r'module\.weight_file = "([^"]+)"', tpu_mlir.read_text())
    graph = read_graph(tpu_mlir)
    bad = qtable_mismatches(graph, qtable, read_graph(top_mlir).names if qtable else ())
    if bad:
        raise BmposeError(f"{tpu_mlir}: qtable layers not in their float mode as deployed: {', '.join(bad)}")
    return tpu_mlir, m.group(1) if m else "", graph


def _compare(tmp: Path, stem: str, graph, mlir: Path, files, precision: str) -> tuple[list, dict, list]:
    """Every layer of the deployed TPU MLIR vs the top (FP32) MLIR, then the bmodel's output vs ONNX, into
    compare.csv and compare.npz. -> (rows, the final similarity, the outputs' names). Two outputs (SimCC's x
    and y) are compared end to end, as the backends return them (pose.pipeline.join_outputs)."""
    ops = {op.name: (op.type, op.quant) for op in graph.ops}
    rows = compare.compare_npz(tmp / f"{stem}_tpu_outputs.npz", tmp / files["top_outputs"], ops)
    out_names = list(graph.outputs)
    # an INT8/F16/BF16 output op gets a Cast named `<op>_f32` in the deployed MLIR; the ONNX reference keeps its name
    ref_names = output_names(mlir / files["mlir"])
    with np.load(tmp / f"{stem}_model_outputs.npz") as bm, np.load(mlir / files["ref_outputs"]) as ref, \
            np.load(tmp / f"{stem}_tpu_outputs.npz") as tpu:
        bmodel_out, onnx_out, tpu_out = (join_outputs([z[n] for n in names])
                                         for z, names in ((bm, out_names), (ref, ref_names), (tpu, out_names)))
    out_name = "+".join(out_names)
    final = compare.similarity(bmodel_out, onnx_out)
    rows.append({"layer": f"{out_name} (bmodel vs ONNX)", "op": "bmodel", "quant": precision.upper(),
                 "shape": "x".join(map(str, bmodel_out.shape)), **final})
    compare.write_csv(rows, tmp / "compare.csv")
    np.savez(tmp / "compare.npz", onnx=onnx_out, bmodel=bmodel_out, tpu_mlir=tpu_out,
             layers=np.array([r["layer"] for r in rows[:-1]]),
             cosine=np.array([r["cosine"] for r in rows[:-1]]),
             euclidean=np.array([r["euclidean"] for r in rows[:-1]]),
             sqnr_db=np.array([r["sqnr_db"] for r in rows[:-1]]))
    return rows, final, out_names
