"""The build stages, each `ensure_*`: skip when its manifest is up to date, else build atomically.

Every stage runs its TPU-MLIR tool inside a fresh temporary directory (atomic_dir) holding hard links of the
files the tool reads by relative name; the directory is renamed to its final name only when the tool, the
checks and the manifest all succeeded, and is kept as `<dir>.failed` (logs included) otherwise.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np

from bmpose import compare
from bmpose.errors import BmposeError
from bmpose.pose.pipeline import join_outputs
from bmpose.manifest import (atomic_dir, jsonable, locked, outputs_intact, read_manifest, sha256_file, tool_versions,
                             up_to_date, write_manifest)
from bmpose.tpu_mlir.runner import dot_shim, run_tool

CALI_METHODS = ("kl", "mse", "max", "percentile9999", "aciq_laplace", "aciq_gauss")


@contextlib.contextmanager
def build(out_dir: Path):
    """atomic_dir, with error messages that point at `<dir>.failed` (where the logs end up)."""
    failed = out_dir.with_name(out_dir.name + ".failed")
    tmp = None
    try:
        with atomic_dir(out_dir) as tmp:
            yield tmp
    except BmposeError as e:
        msg = str(e).replace(str(tmp), str(failed)) if tmp else str(e)
        raise BmposeError(msg) from None


def link(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    """Hard link (copy across file systems) src into dst_dir: the tools want their inputs in the cwd."""
    dst = dst_dir / (name or src.name)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def deep_fresh(out_dir: Path, options: dict | None = None, _seen: set | None = None) -> bool:
    """Cheap "is everything up to date" check, without importing torch/mmpose: the manifest of out_dir is ok,
    its options (when given) and tool versions match, its recorded inputs still hash the same, and the same
    holds, recursively, for every input that lives in an artifact directory with its own manifest."""
    _seen = set() if _seen is None else _seen
    out_dir = Path(out_dir)
    if out_dir in _seen:
        return True
    _seen.add(out_dir)
    m = read_manifest(out_dir)
    if m is None or m.get("status") != "ok" or m.get("tools") != tool_versions():
        return False
    if options is not None and m.get("options") != jsonable(options):
        return False
    if not outputs_intact(out_dir, m):
        return False
    for rec in m.get("inputs", {}).values():
        p = Path(rec["path"])
        try:
            if sha256_file(p) != rec["sha256"]:
                return False
        except FileNotFoundError:
            return False
        up = p if p.is_dir() else p.parent
        if (up / "manifest.json").is_file() and not deep_fresh(up, None, _seen):
            return False
    return True


# ---------------------------------------------------------------- calibration inputs (real crops as npz)

def ensure_cali_inputs(cfg, lmdb: Path, num: int | None) -> list[Path]:
    """Normalised crops from the calibration LMDB as TPU-MLIR npz inputs (+ data_list.txt)."""
    from bmpose.calib.tpu_inputs import write_tpu_inputs

    files = write_tpu_inputs(lmdb, cfg, cfg.layout.cali_inputs(), num)
    if not files:
        raise BmposeError(f"{lmdb}: no calibration crops to write")
    return [Path(f) for f in files]


# ---------------------------------------------------------------- transform: ONNX -> top MLIR

def transform_options(cfg, batch: int, checkpoint: str | None) -> dict:
    h, w = cfg.input_hw
    # mean 0 / scale 1: the bmodel input is the already normalised float tensor (fixed decision, contracts).
    return {"batch": batch, "input_shape": [batch, 3, h, w], "mean": [0.0] * 3, "scale": [1.0] * 3,
            "model_name": cfg.name, "checkpoint": checkpoint or cfg.checkpoint}


def transform_files(cfg) -> dict[str, str]:
    n = cfg.name
    return {"mlir": f"{n}.mlir", "weights": f"{n}_top_f32_all_weight.npz", "input": f"{n}_in_f32.npz",
            "top_outputs": f"{n}_top_outputs.npz", "ref_outputs": f"{n}_ref_outputs.npz"}


def ensure_transform(cfg, batch: int, onnx: Path, crops: list[Path], checkpoint: str | None = None) -> Path:
    """model_transform with a test input of `batch` real crops; keeps the ONNX (ref) and top tensors."""
    out = cfg.layout.mlir(batch)
    use = [crops[i % len(crops)] for i in range(batch)]
    inputs = {"onnx": onnx, **{f"crop{i}": p for i, p in enumerate(use)}}
    options = transform_options(cfg, batch, checkpoint)
    files = transform_files(cfg)
    with locked(out):
        if up_to_date(out, inputs, options):
            return out
        with build(out) as tmp:
            x = np.concatenate([np.load(p)[cfg.input_name] for p in use], axis=0).astype(np.float32)
            np.savez(tmp / "test_input.npz", **{cfg.input_name: x})
            seconds = run_tool("model_transform.py", [
                "--model_name", cfg.name, "--model_def", Path(onnx).resolve(),
                "--input_shapes", str([options["input_shape"]]).replace(" ", ""),
                "--mean", "0,0,0", "--scale", "1,1,1",
                "--test_input", "test_input.npz", "--test_result", files["top_outputs"],
                "--mlir", files["mlir"], "--debug"], tmp, "model_transform.log")
            for junk in ("final_opt.onnx", f"{cfg.name}_opt.onnx", f"{cfg.name}_top_f32_all_origin_weight.npz"):
                (tmp / junk).unlink(missing_ok=True)
            names = output_names(tmp / files["mlir"])
            with np.load(tmp / files["top_outputs"]) as top, np.load(tmp / files["ref_outputs"]) as ref:
                sim = compare.similarity(join_outputs([top[n] for n in names]), join_outputs([ref[n] for n in names]))
            write_manifest(tmp, stage="transform", inputs=inputs, options=options, outputs=list(files.values()),
                           checks={"top_vs_onnx": sim, "seconds": round(seconds, 1)},
                           extra={"output_names": names})
    return out


def output_names(mlir: Path) -> list[str]:
    """The MLIR's outputs in graph order: one, or SimCC's two (simcc_x, simcc_y), joined end to end by every
    backend (pose.pipeline.join_outputs)."""
    from bmpose.tpu_mlir.mlirgraph import read_graph

    outs = list(read_graph(mlir).outputs)
    if not 1 <= len(outs) <= 2:
        raise BmposeError(f"{mlir}: expected one output (heatmaps) or two (SimCC's x and y), found {len(outs)}")
    return outs


# ---------------------------------------------------------------- calibration table (batch-1 MLIR)

def _calibration_workdir(tmp: Path, mlir1: Path, files: dict, crops: list[Path], copy_weights: bool = False) -> Path:
    """run_calibration's inputs in its build dir: the batch-1 MLIR + weights (a copy where a tool rewrites them),
    and a list of exactly these crops."""
    link(mlir1 / files["mlir"], tmp)
    if copy_weights:
        shutil.copy(mlir1 / files["weights"], tmp / files["weights"])
    else:
        link(mlir1 / files["weights"], tmp)
    data_list = tmp / "data_list.txt"   # absolute paths
    data_list.write_text("".join(f"{Path(c).resolve()}\n" for c in crops))
    return data_list


def _clear_calibration_workdir(tmp: Path, files: dict, keep=()) -> None:
    for f in (files["mlir"], files["weights"], "data_list.txt"):
        if f not in keep:
            (tmp / f).unlink()


def ensure_cali_table(cfg, mlir1: Path, crops: list[Path], method: str, num: int, out: Path | None = None,
                      tools=(), chip: str | None = None, qtables=()) -> Path:
    """run_calibration on the batch-1 MLIR; the table (op name, threshold, min, max) serves every batch.
    `out`: another folder than cali_table/<method>_n<num> (the calibration-set fragility study's subsets).
    `tools` (convert.cali_tools: search_threshold, bc, we) go to <method>_n<num>_<tools>[_<chip>]; bc and we
    leave the rewritten weights and the top MLIR's outputs with them beside the table (tool_files), which the
    bmodel is then built from. `qtables`: the build's own (user) qtables; with the automatic tail, the layers it
    keeps float are float while the chip's tools measure too."""
    from bmpose.convert import cali_tools

    if method not in CALI_METHODS:
        raise BmposeError(f"--method {method}: unknown calibration method (choose from {', '.join(CALI_METHODS)})")
    tools = cali_tools.normalise(tools)
    files = transform_files(cfg)
    why = cali_tools.refusal(tools, mlir1 / files["mlir"]) if tools else None
    if why:
        raise BmposeError(f"{mlir1 / files['mlir']}: {why}")
    chip = chip if cali_tools.CHIP_TOOLS & set(tools) else None
    out = Path(out) if out else cfg.layout.cali_table(method, num)
    if tools and out == cfg.layout.cali_table(method, num):
        out = out.with_name(f"{out.name}_{cali_tools.tag(tools)}" + (f"_{chip}" if chip else ""))
    inputs = inputs_of(mlir1, files, crops)
    options = {"method": method, "num": min(num, len(crops)), "crops": [Path(c).name for c in crops[:num]]}
    if tools:
        from bmpose.convert.qtable import build_qtable

        pre = build_qtable(mlir1 / files["mlir"], list(qtables))[0] if chip else {}
        options.update(tools=list(tools), chip=chip, pre_qtable=sorted(pre.items()))
    table = f"{cfg.name}_cali_table"
    with locked(out):
        if not up_to_date(out, inputs, options):
            with build(out) as tmp:
                _calibrate(tmp, mlir1, files, crops[:options["num"]], method, table, inputs, options)
    return out / table


def _calibrate(tmp: Path, mlir1: Path, files: dict, crops: list[Path], method: str, table: str, inputs: dict,
               options: dict) -> None:
    from bmpose.convert import cali_tools
    from bmpose.convert.qtable import format_qtable

    tools = options.get("tools", [])
    rewrites = bool(cali_tools.WEIGHT_TOOLS & set(tools))
    data_list = _calibration_workdir(tmp, mlir1, files, crops, copy_weights=rewrites)
    pre = None
    if options.get("pre_qtable"):
        pre = "pre_qtable"
        (tmp / pre).write_text(format_qtable(dict(options["pre_qtable"]), "float layers of the build"))
    seconds = run_tool("run_calibration.py", [
        files["mlir"], "--data_list", data_list, "--input_num", options["num"], "--cali_method", method,
        *cali_tools.run_args(tools, options.get("chip"), pre), "-o", table], tmp, "run_calibration.log")
    checks = {"seconds": round(seconds, 1)}
    outputs = [table]
    if "search_threshold" in tools:   # which method's table it kept
        text = (tmp / table).read_text()
        checks["picked"] = next((f.name[len(table) + 1:] for f in sorted(tmp.glob(f"{table}_*"))
                                 if f.read_text() == text), None)
    if rewrites:   # the bmodel is built from these weights, and checked against the top MLIR's outputs with them
        run_tool("model_runner.py", ["--input", mlir1 / files["input"], "--model", files["mlir"],
                                     "--output", files["top_outputs"], "--dump_all_tensors"], tmp, "model_runner.log")
        outputs += [files["weights"], files["top_outputs"]]
    _clear_calibration_workdir(tmp, files, keep=outputs)
    write_manifest(tmp, stage="calibration", inputs=inputs, options=options, outputs=outputs, checks=checks)


def inputs_of(mlir1: Path, files: dict, crops: list[Path]) -> dict:
    return {"top_mlir": mlir1 / files["mlir"], "weights": mlir1 / files["weights"], "cali_inputs": crops[0].parent}


def tool_files(cali_table: Path | None, files: dict) -> dict:
    """{"weights", "top_outputs": path} that a weight-rewriting calibration tool left beside its table (the bmodel
    is built from them instead of the top MLIR's); {} otherwise."""
    if cali_table is None:
        return {}
    here = Path(cali_table).parent
    return {k: here / files[k] for k in ("weights", "top_outputs") if (here / files[k]).is_file()}


def ensure_search(cfg, mlir1: Path, crops: list[Path], cali_table: Path, chip: str, num: int,
                  expected_cos: float | None = None, fp_type: str | None = None,
                  inference_num: int | None = None) -> Path:
    """TPU-MLIR's sensitive-layer search (run_calibration --search search_qtable) for one chip -> qtable; its
    log ranks every searched layer (sensitivity_ranking). `expected_cos` (default: the config's int8_cos) above
    what the model can reach makes it rank every layer instead of stopping at an all-INT8 model that meets it;
    `fp_type` (F16, F32) is the float the search tries layers in; `inference_num` the inputs each trial runs
    (TPU-MLIR's default 30: 7.5 s per layer for YOLOX-nano here, 246 layers)."""
    expected_cos = cfg.tolerances["int8_cos"] if expected_cos is None else expected_cos
    out = cali_table.parent / (f"search_{chip}" if expected_cos == cfg.tolerances["int8_cos"]
                               and not fp_type and not inference_num
                               else f"search_{chip}_{expected_cos}_{fp_type or 'auto'}_{inference_num or 30}")
    files = transform_files(cfg)
    data_dir = crops[0].parent
    inputs = {"top_mlir": mlir1 / files["mlir"], "cali_table": cali_table, "cali_inputs": data_dir}
    options = {"chip": chip, "num": min(num, len(crops)), "expected_cos": expected_cos}
    if fp_type:
        options["fp_type"] = fp_type
    if inference_num:
        options["inference_num"] = inference_num
    qtable = f"{cfg.name}_{chip}_search_qtable"
    with locked(out):
        if not up_to_date(out, inputs, options):
            with build(out) as tmp:
                data_list = _calibration_workdir(tmp, mlir1, files, crops[:options["num"]])
                shutil.copy(cali_table, tmp / cali_table.name)  # search reuses an existing table of this name
                shim_dir, dot_note = dot_shim(tmp / ".bin")
                seconds = run_tool("run_calibration.py", [
                    files["mlir"], "--data_list", data_list, "--input_num", options["num"],
                    "--search", "search_qtable", "--chip", chip, "--expected_cos", options["expected_cos"],
                    *(["--fp_type", fp_type] if fp_type else []),
                    *(["--inference_num", inference_num] if inference_num else []),
                    "--quantize_table", qtable, "-o", cali_table.name], tmp, "search_qtable.log",
                    extra_path=[shim_dir])
                shutil.rmtree(shim_dir)
                _clear_calibration_workdir(tmp, files)
                if not (tmp / qtable).is_file():
                    raise BmposeError(f"{tmp}: search_qtable wrote no {qtable} (see search_qtable.log)")
                write_manifest(tmp, stage="search_qtable", inputs=inputs, options=options, outputs=[qtable],
                               checks={"seconds": round(seconds, 1), "graph": dot_note,
                                       "layers": len([l for l in (tmp / qtable).read_text().splitlines()
                                                      if l.strip() and not l.startswith("#")])})
    return out / qtable


def sensitivity_ranking(search_dir: Path) -> list[str]:
    """The layers search_qtable measured, most sensitive first: each quantised alone, every other layer float,
    ranked by the loss of the output cosine ("the layer X is N sensitive layer, loss is L" in its log)."""
    import re

    log = Path(search_dir) / "search_qtable.log"
    found = re.findall(r"the layer (\S+) is (\d+) sensitive layer, loss is", log.read_text(errors="replace"))
    return [name for name, _ in sorted(found, key=lambda x: int(x[1]))]


# ---------------------------------------------------------------- deploy: top MLIR -> bmodel (+ compare, gate)
