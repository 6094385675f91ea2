"""NNTC bundle: what the vendor's older toolchain (NNTC, BMNNSDK2 2.7) needs to build BM1684 bmodels.

`ensure_nntc(cfg, lmdb)` builds (or reuses) artifacts/<model>/nntc/:
  onnx/<name>_b1.onnx, onnx/<name>_b4.onnx  exported at opset 12 (NNTC 2.7's bmneto reads onnx 1.7.0 =
                                             opset 12), parity-checked like every export (onnx_opset12/)
  lmdb/                                      the calibration crops as a ufw LMDB: one 1xCxHxW float32 record
                                             per crop, the exact network input (bmpose.calib.ufw)
  gen_fp32bmodel.sh, gen_int8bmodel.sh       bmneto / on_to_umodel -> calibration_use_pb -> bmnetu, combine
  README.md, bundle.json, manifest.json
  models/, logs/                             only where NNTC imports (inside the SDK docker): the scripts ran
The INT8 script keeps bmpose's automatic FP32 tail (convert.qtable.auto_tail, applied to the ONNX graph)
in float through calibration_use_pb's -fpfwd_outputs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bmpose import procs
from bmpose.calib import store
from bmpose.calib.ufw import write_ufw_lmdb
from bmpose.convert.export import INPUT, OUTPUT, ensure_onnx
from bmpose.tpu_mlir.mlirgraph import Graph, Op
from bmpose.convert.qtable import auto_tail
from bmpose.convert.steps import link
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, locked, read_manifest, up_to_date, write_manifest

TARGET = "BM1684"        # NNTC 2.7 targets BM1682/BM1684; BM1684X needs TPU-MLIR
OPSET = 12               # bmneto in NNTC 2.7: onnx == 1.7.0 (opset 12, IR 7)
MAX_IR_VERSION = 7
BATCHES = (1, 4)
# calibration_use_pb -th_method, as the SophonSDK 3 / BMNNSDK2 2.7 guide lists them ("-th_method: ... KL(default),
# SYMKL,JSD,ADMM,ACIQ,MAX,PERCENTILE9999", docs/device.md). bmpose's kl, max and percentile9999 are the same
# methods by name; mse and aciq_laplace/aciq_gauss are TPU-MLIR's own (NNTC's ACIQ names no distribution).
TH_METHODS = ("KL", "SYMKL", "JSD", "ADMM", "ACIQ", "MAX", "PERCENTILE9999")
SCRIPTS = ("gen_fp32bmodel.sh", "gen_int8bmodel.sh")
_SHAPE_OPS = {"Shape", "Size"}   # their outputs are metadata, not activations


def th_method_name(method: str) -> str:
    """bmpose's calibration method (kl, max, percentile9999) or an NNTC name -> calibration_use_pb's -th_method."""
    name = str(method).upper()
    if name in TH_METHODS:
        return name
    raise BmposeError(f"calibration method {method!r}: NNTC's calibration_use_pb has no such threshold method "
                      f"(-th_method takes {', '.join(TH_METHODS)}); use kl, max or percentile9999")


def tools_available() -> bool:
    """NNTC's Python front ends import here: we are inside the SDK docker and can run the scripts."""
    return all(importlib.util.find_spec(m) is not None for m in ("bmneto", "ufw"))


def onnx_graph(path) -> Graph:
    """The ONNX graph in the shape convert.qtable reads: one Op per output tensor, activation inputs only
    (initializers, Constant outputs and shape computations are not activations)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    init = {t.name for t in g.initializer}
    act = {i.name for i in g.input if i.name not in init}
    ops = []
    for node in g.node:                  # ONNX nodes are topologically sorted
        ins = tuple(i for i in node.input if i in act)
        if node.op_type in _SHAPE_OPS or not ins:
            continue
        for out in filter(None, node.output):
            act.add(out)
            ops.append(Op(out, node.op_type, ins, "f32"))
    return Graph(Path(path), tuple(ops), tuple(o.name for o in g.output))


def onnx_tail_outputs(path) -> list[str]:
    """bmpose's automatic FP32 tail on the ONNX graph, as ONNX tensor names (HRNet: heatmap Conv, the last
    fuse layer's Relu and its Add)."""
    return auto_tail(onnx_graph(path))


def onnx_tail_layers(path) -> list[str]:
    """The FP32 tail as calibration_use_pb's -fpfwd_outputs wants it: LAYER names of the prototxt that
    on_to_umodel writes, which are the ONNX node names (e.g. `/estimator/final_layer/Conv`), not the tensor
    names (`heatmaps`); see docs/device.md for the vendor text."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    producer = {o: n for n in nodes for o in n.output if o}
    layers = []
    for tensor in onnx_tail_outputs(path):
        name = producer[tensor].name
        if not name:
            raise BmposeError(f"{path}: the node that writes {tensor!r} has no name; NNTC's -fpfwd_outputs needs "
                              f"node names (export with named nodes)")
        layers.append(name)
    return layers


def _check_onnx(path: Path, batch: int, chw: list) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != OPSET or m.ir_version > MAX_IR_VERSION:
        raise BmposeError(f"{path}: opset {opset}, IR {m.ir_version}; NNTC 2.7's bmneto needs opset {OPSET}, "
                          f"IR <= {MAX_IR_VERSION}")
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    if dims != [batch, *chw]:
        raise BmposeError(f"{path}: input shape {dims}, the batch-{batch} file needs {[batch, *chw]}")
    return {"opset": opset, "ir_version": m.ir_version, "nodes": {n.name for n in m.graph.node}}


def _tail_layers(onnx: dict, checks: dict) -> list[str]:
    """The FP32 tail's node names, found in the batch-1 file, checked in every file and for NNTC's command
    lines (pops each check's node set)."""
    tail = onnx_tail_layers(onnx[1])
    for b in BATCHES:
        nodes = checks[f"b{b}"].pop("nodes")
        missing = [t for t in tail if t not in nodes]
        if missing:
            raise BmposeError(f"{onnx[b]}: FP32 tail nodes {missing} (found in the batch-1 file) are missing")
    bad = [t for t in tail + [INPUT, OUTPUT] if not t or any(ch in t for ch in ",[]'\"\n ")]
    if bad:
        raise BmposeError(f"{onnx[1]}: names {bad} cannot be passed on NNTC's command lines")
    return tail


def ensure_nntc(cfg, lmdb, checkpoint=None, method: str | None = None, iterations: int | None = None,
                force: bool = False, run: bool | None = None, verbose: bool = True) -> dict:
    """Build (or reuse) the NNTC bundle from the calibration LMDB `lmdb` (bmpose.calib); run its scripts when
    `run` (default: when NNTC imports here). Returns dir, ran, models, records, th_method, tail, skipped."""
    cfg.require_heatmaps("the NNTC bundle")
    method = method or cfg.calibration.get("method", "kl")
    th_method = th_method_name(method)
    run = tools_available() if run is None else bool(run)
    count = int(store.check_lmdb(lmdb, cfg)["count"])
    iterations = int(iterations or count)
    if not 0 < iterations <= count:
        raise BmposeError(f"{lmdb}: iterations {iterations}, but the calibration set holds {count} crops")
    onnx = ensure_onnx(cfg, checkpoint, batches=BATCHES, opset=OPSET, verbose=verbose)
    c, (h, w) = 3, cfg.input_hw
    checks = {f"b{b}": _check_onnx(onnx[b], b, [c, h, w]) for b in BATCHES}
    tail = _tail_layers(onnx, checks)
    out_dir = cfg.layout.nntc()
    inputs = {"onnx_b1": onnx[1], "onnx_b4": onnx[4], "calib_lmdb": lmdb}
    options = {"target": TARGET, "opset": OPSET, "batches": list(BATCHES), "method": method, "th_method": th_method,
               "iterations": iterations, "fpfwd_outputs": tail, "run_nntc": run, "config": cfg.summary(),
               "templates": _templates_sha256()}   # a changed script or README text rebuilds the bundle
    result = {"dir": out_dir, "ran": run, "records": count, "th_method": th_method, "tail": tail, "skipped": False}
    with locked(out_dir):
        if not force and up_to_date(out_dir, inputs, options):
            if verbose:
                print(f"nntc: {out_dir} is up to date (skipped)")
            return {**result, "skipped": True, "models": sorted((read_manifest(out_dir) or {})
                                                                 .get("checks", {}).get("models", {}))}
        with atomic_dir(out_dir) as tmp:
            t0 = time.perf_counter()
            (tmp / "onnx").mkdir()
            for b in BATCHES:
                link(onnx[b], tmp / "onnx")   # no second copy of a 100 MB model
            records = write_ufw_lmdb(tmp / "lmdb", store.iter_batches(lmdb, cfg, 1))
            lmdb_s = time.perf_counter() - t0
            fmt = dict(net=cfg.name, c=c, h=h, w=w, target=TARGET, iterations=iterations, th_method=th_method,
                       method=method, fpfwd=",".join(tail), input=INPUT, output=OUTPUT, records=records,
                       opset=OPSET, tail_list="\n".join(f"- `{t}`" for t in tail))
            for name, text in zip(SCRIPTS, (_FP32, _INT8)):
                (tmp / name).write_text(text.format(**fmt))
                (tmp / name).chmod(0o755)
            (tmp / "README.md").write_text(_README.format(**fmt))
            (tmp / "bundle.json").write_text(json.dumps({
                "net_name": cfg.name, "target": TARGET, "input_shape": [c, h, w], "batches": list(BATCHES),
                "input": INPUT, "outputs": [OUTPUT], "io_dtype": "float32", "onnx": {f"b{b}": {"file": f"onnx/{onnx[b].name}",
                                                                         "source": str(onnx[b]), **checks[f"b{b}"]}
                                                               for b in BATCHES},
                "lmdb": {"source": str(lmdb), "records": records, "record": [1, c, h, w], "dtype": "float32",
                         "normalised": {"mean": list(cfg.mean), "std": list(cfg.std), "rgb": cfg.bgr_to_rgb}},
                "calibration": {"method": method, "th_method": th_method, "iterations": iterations,
                                "fpfwd_outputs": tail}}, indent=2) + "\n")
            outputs = [f"onnx/{onnx[b].name}" for b in BATCHES] + ["lmdb", *SCRIPTS, "README.md", "bundle.json"]
            models = _run_scripts(tmp, out_dir, verbose) if run else {}
            if run:
                outputs.append("logs")
            write_manifest(tmp, stage="nntc", inputs=inputs, options=options, outputs=outputs,
                           checks={"records": records, "lmdb_s": round(lmdb_s, 2), **checks, "models": models})
    if verbose:
        print(f"nntc: wrote {out_dir}")
    return {**result, "models": sorted(models)}


def _templates_sha256() -> str:
    import hashlib

    return hashlib.sha256("\0".join((_FP32, _INT8, _README)).encode()).hexdigest()[:16]


def _run_scripts(tmp: Path, out_dir: Path, verbose: bool) -> dict:
    """Run both scripts in the bundle (logs/<script>.log); return {models/<file>: plain sha256}. Plain hashes:
    manifest's bmodel digest needs TPU-MLIR's model_tool, which the NNTC docker does not have."""
    import hashlib

    (tmp / "logs").mkdir()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])  # python3 = this one
    for name in SCRIPTS:
        t0 = time.perf_counter()
        log = tmp / "logs" / f"{Path(name).stem}.log"
        with open(log, "w") as fh:
            rc = procs.run(["bash", str(tmp / name)], cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)   # stopped with bmpose on an interrupt
        if rc != 0:
            last = (log.read_text().strip().splitlines() or ["(no output)"])[-1]
            raise BmposeError(f"{out_dir}.failed/{name}: exit {rc}: {last} (log: logs/{log.name})")
        if verbose:
            print(f"nntc: {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return {f"models/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((tmp / "models").glob("*.bmodel"))}


_PREAMBLE = """#!/bin/bash
# Written by `bmpose nntc`. Runs inside the BMNNSDK2 2.7 docker with NNTC set up (README.md); every path is
# inside this bundle, so it runs from any working directory.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
NET={net}
C={c}; H={h}; W={w}
TARGET={target}
die() {{ echo "$(basename "$0"): $*" >&2; exit 1; }}
need() {{ [ -s "$1" ] || die "$2 did not produce $1"; }}
mkdir -p models
"""

_COMBINE = """bm_model.bin --combine "models/${{NET}}_{p}_1b.bmodel" "models/${{NET}}_{p}_4b.bmodel" \\
    -o "models/${{NET}}_{p}_1b4b.bmodel"
need "models/${{NET}}_{p}_1b4b.bmodel" "bm_model.bin --combine"
echo "{P} bmodels: models/${{NET}}_{p}_1b.bmodel models/${{NET}}_{p}_4b.bmodel models/${{NET}}_{p}_1b4b.bmodel"
"""

_FP32 = _PREAMBLE + """
for b in 1 4; do
    rm -rf "fp32/b$b"
    python3 -m bmneto --model="onnx/${{NET}}_b$b.onnx" --shapes="[$b,$C,$H,$W]" --target="$TARGET" \\
        --net_name="$NET" --outdir="fp32/b$b" --opt=1 --cmp=true --dyn=false
    need "fp32/b$b/compilation.bmodel" "bmneto (batch $b)"
    cp "fp32/b$b/compilation.bmodel" "models/${{NET}}_fp32_${{b}}b.bmodel"
done
# one bmodel, two stages: BMRuntime picks the stage from the input batch
""" + _COMBINE.replace("{p}", "fp32").replace("{P}", "FP32")

_INT8 = _PREAMBLE + """ITERATIONS={iterations}
TH_METHOD={th_method}
# bmpose's FP32 tail as prototxt LAYER names (= the ONNX node names on_to_umodel keeps; not tensor names):
# these layers and everything after them stay float
FPFWD_OUTPUTS='{fpfwd}'

# 1. ONNX -> fp32 umodel; -D points the prototxt's Data layer at the calibration LMDB
rm -rf int8
python3 -m ufw.tools.on_to_umodel -m "onnx/${{NET}}_b1.onnx" -s "[1,$C,$H,$W]" -i "[{input}]" -o "[{output}]" \\
    -d int8/umodel -D lmdb --cmp
shopt -s nullglob
protos=(int8/umodel/*_bmneto_test_fp32.prototxt)
[ "${{#protos[@]}}" -eq 1 ] || die "expected one int8/umodel/*_bmneto_test_fp32.prototxt, found ${{#protos[@]}}"
PREFIX="${{protos[0]%_test_fp32.prototxt}}"
need "${{PREFIX}}.fp32umodel" "on_to_umodel"
# a tail name the umodel does not know would be ignored or rejected: check before calibrating, against the
# name: of each top-level `layer {{ }}` block only (not tops, bottoms or the net's own name)
layer_names() {{
    awk '
        depth == 0 && /^[ \\t]*layer[ \\t]*\\{{/ {{ in_layer = 1 }}
        in_layer && depth == 1 && match($0, /^[ \\t]*name:[ \\t]*"[^"]*"/) {{
            v = substr($0, RSTART, RLENGTH); sub(/^[^"]*"/, "", v); sub(/"$/, "", v); print v
        }}
        {{ depth += gsub(/\\{{/, "{{") - gsub(/\\}}/, "}}"); if (depth == 0) in_layer = 0 }}
    ' "$1"
}}
LAYERS=$(layer_names "${{PREFIX}}_test_fp32.prototxt")
IFS=, read -r -a tail_names <<< "$FPFWD_OUTPUTS"
for n in "${{tail_names[@]}}"; do
    grep -qxF -- "$n" <<< "$LAYERS" || die "FP32 tail layer '$n' is not a layer of ${{PREFIX}}_test_fp32.prototxt"
done

# 2. calibrate on ITERATIONS batch-1 records -> int8 umodel
calibration_use_pb quantize -model="${{PREFIX}}_test_fp32.prototxt" -weights="${{PREFIX}}.fp32umodel" \\
    -iterations="$ITERATIONS" -bitwidth=TO_INT8 -th_method="$TH_METHOD" -fpfwd_outputs="$FPFWD_OUTPUTS"
need "${{PREFIX}}_deploy_int8_unique_top.prototxt" "calibration_use_pb"
need "${{PREFIX}}.int8umodel" "calibration_use_pb"

# 3. int8 umodel -> bmodels for batch 1 and 4, then one two-stage bmodel. Float32 input and output (bmnetu's
#    -input_as_fp32/-output_as_fp32 take tensor names): the bmodel quantises and dequantises on the TPU, and
#    the device runtime feeds and reads float32, as for every bmpose bmodel
for b in 1 4; do
    bmnetu -model="${{PREFIX}}_deploy_int8_unique_top.prototxt" -weight="${{PREFIX}}.int8umodel" \\
        -shapes="[$b,$C,$H,$W]" -prec=INT8 -target="$TARGET" -net_name="$NET" -cmp=1 -outdir="int8/b$b" \\
        -input_as_fp32={input} -output_as_fp32={output}
    need "int8/b$b/compilation.bmodel" "bmnetu (batch $b)"
    cp "int8/b$b/compilation.bmodel" "models/${{NET}}_int8_${{b}}b.bmodel"
done
""" + _COMBINE.replace("{p}", "int8").replace("{P}", "INT8")

_README = """# NNTC bundle: {net} ({c}x{h}x{w}) for {target}

Written by `bmpose nntc`. Builds FP32 and INT8 bmodels (batch 1, batch 4, and a two-stage 1b4b file each) with
NNTC, the toolchain of BMNNSDK2 2.7, for deployments pinned to that SDK. bmpose's own builds use TPU-MLIR.

## Run

In the BMNNSDK2 2.7 docker, with this directory mounted into it:

    cd <bmnnsdk2-2.7>/scripts && ./install_lib.sh nntc && source envsetup_cmodel.sh   # or envsetup_pcie.sh
    cd <this bundle>
    ./gen_fp32bmodel.sh      # -> models/{net}_fp32_{{1b,4b,1b4b}}.bmodel
    ./gen_int8bmodel.sh      # -> models/{net}_int8_{{1b,4b,1b4b}}.bmodel

Both scripts `cd` to their own directory, use only paths inside the bundle and stop at the first failing step.

## Contents

| path | what |
| --- | --- |
| `onnx/{net}_b1.onnx`, `onnx/{net}_b4.onnx` | static batch 1 / 4, exported at opset {opset} (bmneto reads onnx 1.7.0), input `{input}`, output `{output}` |
| `lmdb/` | {records} calibration crops, ufw LMDB: key `%010d__ `, value `ufw.Datum` float32 1x{c}x{h}x{w}, already normalised (no mean/scale in the prototxt) |
| `gen_fp32bmodel.sh` | `python3 -m bmneto` batch 1 and 4, `bm_model.bin --combine` |
| `gen_int8bmodel.sh` | `python3 -m ufw.tools.on_to_umodel ... -D lmdb`, `calibration_use_pb quantize -iterations={iterations} -th_method={th_method} -fpfwd_outputs=<tail>`, `bmnetu -prec=INT8 -input_as_fp32 -output_as_fp32` batch 1 and 4, combine |
| `bundle.json` | parameters, sources, checks |

Calibration method `{method}` is `-th_method={th_method}` (the NNTC guide lists KL, SYMKL, JSD, ADMM, ACIQ, MAX,
PERCENTILE9999). FP32 tail (`-fpfwd_outputs`: prototxt layer names, which on_to_umodel takes from the ONNX node
names; these layers and everything after them stay float):

{tail_list}

I/O of every bmodel: float32 input `{input}` [N,{c},{h},{w}] and float32 output `{output}`, the INT8 ones too
(`bmnetu -input_as_fp32={input} -output_as_fp32={output}`): bmpose's device app feeds and reads float32.

The INT8 script checks each name is a layer of the generated `*_bmneto_test_fp32.prototxt` before calibrating.
If the umodel names a layer differently, edit `FPFWD_OUTPUTS`: the last name (the tail's first layer) is enough.
"""
