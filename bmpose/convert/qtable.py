"""Quantize tables: the automatic FP32 tail, the user's extra layers, validation against the MLIR.

A qtable line is `<op name> <mode>` (mode F32 here; TPU-MLIR also reads F16/BF16/INT8). Op names are MLIR loc
names: `<onnx output tensor>_<OpType>`, and a fused Conv+BN+ReLU is named after its Relu. TPU-MLIR silently
ignores a name it does not know, so every name is checked against the top MLIR before deploy.

The automatic tail rule (`auto_tail`): starting from each graph output, walk back through ops that have
exactly one activation input (the heatmap conv, and for heads with deconvs/convs those too), and stop at the
first op that merges several activations, which is included. In HRNet that merge is the last fuse layer's
Add(+ReLU): the final 1x1 heatmap conv and the sum that feeds it run in FP32, so the heatmaps - whose peak
positions and sub-pixel shape decide the keypoints - are not re-quantised at the very end. A network with no
merge at all (a plain chain such as AlexNet) would be FP32 to its input that way: there the tail ends at the
first op with weights from the output (the heatmap conv).
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.tpu_mlir.mlirgraph import Graph, read_graph

MODES = ("F32", "F16", "BF16", "INT8")


# Ops with weights, in the top MLIR and in ONNX (convert.nntc applies the rule to the ONNX graph).
WEIGHTED = {"top.Conv", "top.Deconv", "top.MatMul", "Conv", "ConvTranspose", "Gemm", "MatMul"}


def auto_tail(graph: Graph) -> list[str]:
    producers = graph.producers()
    tail: list[str] = []
    for out in graph.outputs:
        name, walked = out, []
        while name in producers and name not in tail + walked:
            op = producers[name]
            walked.append(name)
            if len(op.inputs) != 1:      # a merge (the last fuse): stop here
                break
            name = op.inputs[0]
        if name not in producers:
            # the walk reached the graph input without a merge (a plain chain, AlexNet): it is the whole
            # network, which would leave nothing INT8. Keep the output back to its first weighted op (the
            # heatmap conv; the output op alone when nothing is weighted).
            first = next((i for i, n in enumerate(walked) if producers[n].type in WEIGHTED), 0)
            walked = walked[:first + 1]
        tail += walked
    return tail


def read_qtable(path: str | os.PathLike) -> dict[str, str]:
    """Parse a qtable file: `name MODE` per line, `#` comments; BmposeError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise BmposeError(f"{path}: qtable not found")
    entries: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1].upper() not in MODES:
            raise BmposeError(f"{path}:{lineno}: expected '<op name> <{'|'.join(MODES)}>', got {raw.strip()!r}")
        entries[parts[0]] = parts[1].upper()
    return entries


def validate(entries: dict[str, str], graph: Graph, source: str) -> None:
    """Every name must be an op of the MLIR; an unknown one is an error listing the nearest valid names."""
    names = graph.names
    known = set(names)
    for name in entries:
        if name not in known:
            near = difflib.get_close_matches(name, names, n=5, cutoff=0.3)
            hint = f"; nearest valid names: {', '.join(near)}" if near else ""
            raise BmposeError(f"{source}: layer {name!r} is not an op of {graph.path.name}{hint}")


def format_qtable(entries: dict[str, str], header: str = "") -> str:
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    lines += [f"{name} {mode}" for name, mode in entries.items()]
    return "\n".join(lines) + "\n"


def build_qtable(top_mlir: Path, user_tables: list[Path] = (), searched: Path | None = None,
                 auto: bool = True) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Merge the automatic tail, the user's tables and a searched table; validate; return (entries, origin).

    `origin` maps each source ("auto", a file path, "search") to the names it contributed.
    """
    graph = read_graph(top_mlir)
    entries: dict[str, str] = {}
    origin: dict[str, list[str]] = {}
    if auto:
        tail = auto_tail(graph)
        entries.update({n: "F32" for n in tail})
        origin["auto"] = tail
    for src in [*(Path(p) for p in user_tables), *([Path(searched)] if searched else [])]:
        table = read_qtable(src)
        validate(table, graph, str(src))
        entries.update(table)
        origin["search" if searched and src == Path(searched) else str(src)] = list(table)
    return entries, origin
