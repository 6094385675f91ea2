"""`bmpose export`: mmpose model -> ONNX (backbone + head), checked against PyTorch with onnxruntime.

Output: artifacts/<name>/onnx/<name>_b<batch>.onnx (static batch; `<name>_dynamic.onnx` on request), input
"input" float32 [N,3,H,W] (normalised, network channel order), output "heatmaps" [N,K,h,w] (a SimCC head,
RTMPose's: "simcc_x" [N,K,W*r] and "simcc_y" [N,K,H*r]), and a manifest
recording, per file, onnx.checker's verdict, the graph's op types and the parity with PyTorch on the same
seeded image-like inputs (max/mean abs diff, argmax agreement). Above `tolerances.onnx_max_abs` the build
fails and is kept as `onnx.failed/` for inspection.
"""
from __future__ import annotations

import collections
import time
import warnings
from pathlib import Path

import numpy as np

from bmpose.config import mmpose_config_inputs
from bmpose.errors import BmposeError
from bmpose.convert.onnx_import import ensure_imported, onnx_plan
from bmpose.layout import ONNX_OPSET
from bmpose.manifest import atomic_dir, locked, up_to_date, write_manifest
from bmpose.weights.checkpoint import build_model, resolve_checkpoint

OPSET = ONNX_OPSET   # another opset (NNTC's bmneto reads 12) is its own build beside it
PARITY_SEED = 1234
DYNAMIC_PARITY_BATCH = 3  # a batch size neither static file uses
INPUT, OUTPUT = "input", "heatmaps"


def heatmap_net(estimator):
    """Backbone + head only (mmpose's mode='tensor'): preprocessing and decoding stay in bmpose's core.
    torch is imported here, not at the top: a build whose ONNX is up to date never loads it (1.5 s)."""
    import torch

    class HeatmapNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.estimator = estimator
            # Eval on the wrapper itself: the exporter restores the wrapper's mode afterwards, recursively, and
            # a wrapper left in train mode would switch BatchNorm to batch statistics for the parity run.
            self.eval()

        def forward(self, x):
            return self.estimator(x, None, mode="tensor")

    return HeatmapNet()


def export_one(net, cfg, batch: int | None, path: Path, opset: int = OPSET) -> tuple[float, float]:
    """Export to `path`; return (wall, CPU) seconds: CPU time says more than wall time on a shared machine."""
    import torch

    h, w = cfg.input_hw
    dummy = torch.zeros(batch or 1, 3, h, w)
    dynamic_axes = {name: {0: "batch"} for name in (INPUT, *cfg.outputs)} if batch is None else None
    t0, c0 = time.perf_counter(), time.process_time()
    # The legacy TorchScript exporter (dynamo=False), deliberately: on these CPUs it exports HRNet-W32 about
    # 15x faster than the dynamo exporter, and both give the same plain Conv/Relu/Add/Resize graph that
    # TPU-MLIR's ONNX front end consumes; the dynamo path would also need onnxscript in the venv.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # its deprecation notice and tracer warnings, not actionable here
        torch.onnx.export(net, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT], output_names=list(cfg.outputs), dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    return time.perf_counter() - t0, time.process_time() - c0


def check_graph(path: Path) -> dict:
    """onnx.checker (with shape inference) and the op types the graph uses."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise BmposeError(f"{path}: onnx.checker rejects the exported model ({str(e).splitlines()[0]})") from None
    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(node.op_type for node in model.graph.node)
    return {"onnx_checker": "passed", "ops": dict(sorted(ops.items()))}


def parity(net, path: Path, inputs: np.ndarray, outputs=(OUTPUT,)) -> dict:
    """Run PyTorch and onnxruntime on the same inputs; compare every output and its per-keypoint argmax
    (over the heatmap, or along each SimCC vector)."""
    import onnxruntime as ort

    import torch

    with torch.no_grad():
        refs = net(torch.from_numpy(inputs))
    refs = [r.numpy() for r in (refs if isinstance(refs, (tuple, list)) else (refs,))]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gots = sess.run(list(outputs), {INPUT: inputs})
    diffs, agree = [], []
    for name, ref, got in zip(outputs, refs, gots):
        if got.shape != ref.shape:
            raise BmposeError(f"{path}: onnxruntime output {name} shape {got.shape} != PyTorch {ref.shape}")
        diffs.append(np.abs(got.astype(np.float64) - ref))
        flat_ref, flat_got = ref.reshape(*ref.shape[:2], -1), got.reshape(*got.shape[:2], -1)
        agree.append(float(np.mean(flat_ref.argmax(-1) == flat_got.argmax(-1))))
    out = {"batch_run": int(inputs.shape[0]), "max_abs_diff": float(max(d.max() for d in diffs)),
           "mean_abs_diff": float(np.mean([d.mean() for d in diffs])), "argmax_agreement": min(agree),
           "heatmap_range": [float(min(r.min() for r in refs)), float(max(r.max() for r in refs))]}
    if len(outputs) > 1:
        out["per_output"] = {n: {"max_abs_diff": float(d.max()), "argmax_agreement": a}
                             for n, d, a in zip(outputs, diffs, agree)}
    return out


def ensure_onnx(cfg, checkpoint=None, batches=(1, 4), dynamic: bool = False, force: bool = False,
                verbose: bool = True, opset: int = OPSET) -> dict:
    """Build (or reuse) the ONNX files; return {batch: path} (key None for the dynamic file). Which batches
    the folder holds: onnx_import.planned_batches."""
    from bmpose.weights.fixture import realistic_inputs

    if cfg.onnx is not None:   # an `onnx:` config: its file is imported, not exported
        if checkpoint not in (None, cfg.checkpoint):
            raise BmposeError(f"{cfg.path}: an onnx: config has no checkpoint to choose (its weights are in "
                              f"{cfg.onnx}); drop --checkpoint")
        return ensure_imported(cfg, batches, dynamic, force, verbose, opset)
    ckpt = resolve_checkpoint(cfg, checkpoint)
    out_dir = cfg.layout.onnx(opset)
    inputs = {"checkpoint": ckpt, **mmpose_config_inputs(cfg.mmpose_config)}
    tol = float(cfg.tolerances["onnx_max_abs"])
    with locked(out_dir):
        want, dyn, options, result = onnx_plan(cfg, out_dir, batches, dynamic, opset,
                                               {"exporter": "torchscript (dynamo=False)"})
        if not force and up_to_date(out_dir, inputs, options):
            if verbose:
                print(f"export: {out_dir} is up to date (skipped)")
            return result
        net = heatmap_net(build_model(cfg, ckpt))
        checks, files = {}, []
        with atomic_dir(out_dir) as tmp:
            for b in want + ([None] if dyn else []):
                path = tmp / cfg.layout.onnx_file(b, opset).name
                seconds, cpu_seconds = export_one(net, cfg, b, path, opset)
                n = b or DYNAMIC_PARITY_BATCH
                check = {"export_s": round(seconds, 2), "export_cpu_s": round(cpu_seconds, 2), **check_graph(path),
                         **parity(net, path, realistic_inputs(cfg, n, PARITY_SEED), cfg.outputs), "tolerance": tol}
                check["passed"] = check["max_abs_diff"] <= tol
                checks[path.name] = check
                files.append(path.name)
                if verbose:
                    print(f"export: {path.name}: {seconds:.1f} s ({cpu_seconds:.1f} s CPU), "
                          f"max |onnx - torch| {check['max_abs_diff']:.2e} (tolerance {tol:.0e}), "
                          f"argmax agreement {check['argmax_agreement']:.2%}", flush=True)
                if not check["passed"]:
                    write_manifest(tmp, stage="export", inputs=inputs, options=options, outputs=files,
                                   checks=checks)
                    raise BmposeError(f"{path.name}: onnxruntime differs from PyTorch by "
                                      f"{check['max_abs_diff']:.3g} > tolerance {tol:g} (build kept in "
                                      f"{out_dir.name}.failed/)")
            write_manifest(tmp, stage="export", inputs=inputs, options=options, outputs=files, checks=checks,
                           extra={"checkpoint_ref": str(checkpoint or cfg.checkpoint)})
    if verbose:
        print(f"export: wrote {out_dir}")
    return result
