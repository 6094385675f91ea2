"""An `onnx:` config's file in through the same door as bmpose's own export: the same onnx/ folder, file names
and manifest, so everything after it (calibration, TPU-MLIR builds, eval, infer, deploy, NNTC) is unchanged.

What the import does, in order:
  1. read and check (onnx.checker), after the one repair old files need: BatchNormalization's `spatial`
     (removed in opset 9; exporters of that time still wrote spatial=1, which is what BatchNormalization does
     now: dropped; MXNet wrote spatial=0 beside per-channel [C] statistics, an ordinary BatchNormalization:
     read per channel; spatial=0 with per-element statistics changes the maths: refused);
  2. raise or lower the opset to what the build wants with the onnx package's own converter (Upsample ->
     Resize, ...); a file already at that opset keeps its bytes;
  3. one input and one output, renamed `input` / `heatmaps` (the names every later stage uses; `keypoints` for
     a regression model); a file with several outputs is cut to the one the yaml's `output:` names, after
     checking that `extra_outputs:` says what each other one is;
  4. one file per batch: the batch dimension set (a fixed batch-1 file or a dynamic one), stale shapes of the
     inner tensors dropped and inferred again;
  5. the shapes checked against the config: input [b, 3, h, w] from the codec's input size, output
     [b, K, hh, hw] from its heatmap size and the dataset's K keypoints (a regression model: [b, L x V] or
     [b, L, V], at least K landmarks of the codec's V values);
  6. ONNX Runtime parity of every written file against the original file on the same crops (one at a time
     when the original has a fixed batch of 1), recorded in the manifest.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, locked, up_to_date, write_manifest

INPUT, OUTPUT = "input", "heatmaps"
PARITY_SEED = 1234


def read_checked(path: Path):
    """(the model, the repairs made): BatchNormalization's `spatial` attribute removed, then onnx.checker;
    one-line errors. spatial=1 is what BatchNormalization does since opset 9. spatial=0 with statistics of
    shape [C] is how MXNet/GluonCV exporters wrote an ordinary per-channel BatchNormalization: read per
    channel (the parity checks below run against that reading). spatial=0 with per-element statistics
    (C x H x W) really is another operation, which no opset >= 9 can express: refused."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BmposeError(f"{path}: not an ONNX file ({why})") from None
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    repairs = []
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        name = node.name or node.output[0]
        for a in [a for a in node.attribute if a.name == "spatial"]:
            if onnx.helper.get_attribute_value(a) == 1:
                repairs.append(f"{name}: spatial=1 dropped (what BatchNormalization does since opset 9)")
            else:
                shapes = [inits.get(i) for i in node.input[1:5]]
                if not all(s is not None and len(s) == 1 for s in shapes):
                    raise BmposeError(f"{path}: BatchNormalization {name} has spatial=0 with per-element "
                                      f"statistics (shapes {shapes}), which no opset >= 9 can express")
                repairs.append(f"{name}: spatial=0 with per-channel statistics {shapes[0]} read per channel")
            node.attribute.remove(a)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise BmposeError(f"{path}: onnx.checker rejects it ({str(e).strip().splitlines()[0]})") from None
    return model, repairs


def opset_of(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def chosen_output(model, cfg, path: Path) -> str:
    """The output bmpose reads: the only one, or the yaml's `output:` when the file has several (each other one
    must be named in `extra_outputs:`, so nothing is dropped that the user did not say)."""
    names = [o.name for o in model.graph.output]
    want = getattr(cfg, "output", None)
    if want is None:
        if len(names) != 1:
            raise BmposeError(f"{path}: {len(names)} outputs ({', '.join(names)}); say which one is the keypoint "
                              f"output in {cfg.path.name} (output: NAME) and what the others are (extra_outputs:)")
        return names[0]
    if want not in names:
        raise BmposeError(f"{cfg.path}: output {want!r} is not one of {path.name}'s outputs ({', '.join(names)})")
    unsaid = [n for n in names if n != want and n not in cfg.extra_outputs]
    if unsaid:
        raise BmposeError(f"{cfg.path}: extra_outputs does not say what {', '.join(unsaid)} of {path.name} "
                          f"{'is' if len(unsaid) == 1 else 'are'} (the import cuts them off)")
    return want


def cut_to(model, output: str, path: Path):
    """The graph from its one input to `output` alone (dead branches gone: a BlazePose bmodel carries no
    segmentation decoder)."""
    import onnx
    from onnx.utils import Extractor

    if [o.name for o in model.graph.output] == [output]:
        return model
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    try:
        cut = Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(inputs, [output])
    except Exception as e:   # onnx raises several types for a graph it cannot walk
        raise BmposeError(f"{path}: cannot cut the graph to output {output!r} ({str(e).strip().splitlines()[0]})") \
            from None
    for key in ("ir_version", "producer_name", "producer_version"):
        setattr(cut, key, getattr(model, key))
    del cut.opset_import[:]
    cut.opset_import.extend(model.opset_import)
    return cut


def normalised(model, opset: int, path: Path, output: str = OUTPUT):
    """At `opset`, with the graph's one input and one output named INPUT and `output`."""
    import onnx
    from onnx import version_converter

    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1 or len(model.graph.output) != 1:
        raise BmposeError(f"{path}: {len(ins)} inputs and {len(model.graph.output)} outputs; a top-down heatmap "
                          f"network has one image input and one heatmap output")
    if opset_of(model) != opset:
        try:
            model = version_converter.convert_version(model, opset)
        except Exception as e:
            raise BmposeError(f"{path}: the onnx converter cannot take it from opset {opset_of(model)} to "
                              f"{opset} ({str(e).strip().splitlines()[0]})") from None
    _rename(model, model.graph.input[[i.name for i in model.graph.input].index(ins[0].name)].name, INPUT)
    _rename(model, model.graph.output[0].name, output)
    onnx.checker.check_model(model)
    return model


def _rename(model, old: str, new: str) -> None:
    if old == new:
        return
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        if vi.name == old:
            vi.name = new


def with_batch(model, batch: int | None):
    """A copy with the batch dimension fixed to `batch` (None: symbolic `batch`), inner shapes inferred again."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in (m.graph.input[0], m.graph.output[0]):
        d = vi.type.tensor_type.shape.dim[0]
        if batch is None:
            d.dim_param = "batch"
        else:
            d.dim_value = int(batch)
    del m.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(m)


def io_shapes(model) -> tuple[list, list]:
    def dims(vi):
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in
                vi.type.tensor_type.shape.dim]

    return dims(model.graph.input[0]), dims(model.graph.output[0])


def check_shapes(model, cfg, keypoints: int, path: Path) -> None:
    """The file's input and output against the config's codec and dataset (batch dimension aside)."""
    w, h = cfg.input_size
    inp, out = io_shapes(model)
    if inp[1:] != [3, h, w]:
        raise BmposeError(f"{path}: input 3x{h}x{w} expected for codec input_size [{w}, {h}]; the ONNX takes "
                          f"{'x'.join(map(str, inp))}")
    if cfg.codec["type"] == "RegressionLabel":
        v = int(cfg.codec["values_per_keypoint"])
        size = int(np.prod([d or 0 for d in out[1:]]))
        if not (len(out) in (2, 3) and size and size % v == 0 and size // v >= keypoints
                and (len(out) == 2 or out[2] == v)):
            raise BmposeError(f"{path}: a RegressionLabel output [batch, L x {v}] or [batch, L, {v}] with L >= "
                              f"{keypoints} landmarks expected; the ONNX outputs {'x'.join(map(str, out))}")
        return
    hw, hh = cfg.heatmap_size
    if out[1:] != [keypoints, hh, hw]:
        raise BmposeError(f"{path}: heatmaps {keypoints}x{hh}x{hw} expected for input {w}x{h} and "
                          f"{cfg.codec['type']} heatmap_size [{hw}, {hh}]; the ONNX outputs "
                          f"{'x'.join(map(str, out[1:]))}")


def _run(model_or_path, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """ONNX Runtime on a path or serialized bytes: `output` (default: the first)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_or_path if isinstance(model_or_path, bytes) else str(model_or_path),
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    outs = [output or sess.get_outputs()[0].name]
    if isinstance(fixed, int) and fixed != x.shape[0]:   # the original's own batch: one slice at a time
        return np.concatenate([sess.run(outs, {name: x[i:i + fixed]})[0] for i in range(0, len(x), fixed)])
    return sess.run(outs, {name: x})[0]


def parity(original, written: Path, x: np.ndarray, output: str | None = None) -> dict:
    """`original`: a path, or the serialized original (repaired) model; `output`: its output compared."""
    ref, got = _run(original, x, output), _run(written, x)
    diff = np.abs(ref.astype(np.float64) - got)
    return {"batch_run": int(x.shape[0]), "max_abs_diff": float(diff.max()), "heatmap_range": [
        float(ref.min()), float(ref.max())]}


def planned_batches(out_dir: Path, batches, dynamic: bool) -> tuple[list[int], bool, list]:
    """The onnx/ folder holds one build: asking for a batch it lacks rebuilds it with the union of the old and
    new batches, so files another stage relies on do not disappear. -> (batches to write, dynamic file too?,
    the asked files' batch keys, None for the dynamic one)."""
    from bmpose.manifest import read_manifest

    prev = (read_manifest(out_dir) or {}).get("options", {})
    want = sorted({int(b) for b in batches} | set(prev.get("batches", [])))
    return want, bool(dynamic or prev.get("dynamic", False)), [int(b) for b in batches] + ([None] if dynamic else [])


def onnx_plan(cfg, out_dir: Path, batches, dynamic: bool, opset: int, made_by: dict):
    """In the onnx folder's lock: (batches to write, dynamic?, the stage's options, {batch asked: its path}), for
    an export and an import alike; `made_by` names the tool that writes the files."""
    want, dyn, targets = planned_batches(out_dir, batches, dynamic)
    options = {"batches": want, "dynamic": dyn, "opset": opset, **made_by, "parity_seed": PARITY_SEED,
               "onnx_max_abs": float(cfg.tolerances["onnx_max_abs"]), "config": cfg.summary()}
    return want, dyn, options, {b: cfg.layout.onnx_file(b, opset) for b in targets}


def ensure_imported(cfg, batches=(1, 4), dynamic: bool = False, force: bool = False, verbose: bool = True,
                    opset: int = 13) -> dict:
    """The config's ONNX file as the onnx/ build every later stage reads; -> {batch: path} (None: dynamic)."""
    import onnx

    from bmpose.runtime.results import dataset_metainfo
    from bmpose.weights.fixture import realistic_inputs

    src = Path(cfg.onnx)
    out_dir = cfg.layout.onnx(opset)
    tol = float(cfg.tolerances["onnx_max_abs"])
    with locked(out_dir):
        want, dyn, options, result = onnx_plan(cfg, out_dir, batches, dynamic, opset,
                                               {"importer": "bmpose onnx_import v1"})
        if not force and up_to_date(out_dir, {"onnx": src}, options):
            if verbose:
                print(f"import: {out_dir} is up to date (skipped)")
            return result
        keypoints = len((dataset_metainfo(cfg) or {}).get("sigmas") or [])
        model, repaired = read_checked(src)
        src_opset, src_batch = opset_of(model), io_shapes(model)[0][0]
        chosen = chosen_output(model, cfg, src)
        as_is = not repaired and src_opset == opset and [i.name for i in model.graph.input] == [INPUT] \
            and [o.name for o in model.graph.output] == [cfg.outputs[0]]
        original = model.SerializeToString()   # the reference of the parity checks (repaired, at its opset)
        model = normalised(cut_to(model, chosen, src), opset, src, cfg.outputs[0])
        checks, files = {}, []
        with atomic_dir(out_dir, keep_failed=False) as tmp:
            for b in want + ([None] if dyn else []):
                path = tmp / cfg.layout.onnx_file(b, opset).name
                if as_is and b == src_batch:
                    shutil.copyfile(src, path)   # already what the build wants: its own bytes
                else:
                    onnx.save(with_batch(model, b), str(path))
                written = onnx.load(str(path))
                onnx.checker.check_model(written)
                check_shapes(written, cfg, keypoints, src)
                n = b or 3
                check = {**parity(original, path, realistic_inputs(cfg, n, PARITY_SEED), chosen), "tolerance": tol,
                         "source_opset": src_opset, "source_batch": src_batch, "repaired_batchnorm": repaired}
                check["passed"] = check["max_abs_diff"] <= tol
                if not check["passed"]:
                    raise BmposeError(f"{src}: the batch-{n} file differs from the original by "
                                      f"{check['max_abs_diff']:.3g} > tolerance {tol:g} (a batch of 1 baked into "
                                      f"a Reshape? export with a dynamic batch)")
                checks[path.name] = check
                files.append(path.name)
                if verbose:
                    print(f"import: {path.name}: max |written - original| {check['max_abs_diff']:.2e}", flush=True)
            write_manifest(tmp, stage="import", inputs={"onnx": src}, options=options, outputs=files, checks=checks,
                           extra={"checkpoint_ref": str(src)})
    if verbose:
        print(f"import: wrote {out_dir}")
    return result
