"""TPU-MLIR's calibration tools beyond the threshold method (run_calibration.py flags), as bmpose offers them:

  search_threshold  the chip's INT8 model built with each of kl, max, percentile9999 and mse (each tuned on 5
                    inputs, as every table is) and the one whose outputs' cosine to float is highest kept
                    (`--search search_threshold`); the configured method is then only the first candidate
  bc                bias correction: conv biases shifted to cancel the mean error of the chip's INT8 outputs
                    (`--bc`); it rewrites the weights, which the bmodel must then be built from
  we                cross-layer weight equalisation of Conv -> Conv pairs (`--we`); rewrites the weights too

Each is refused in one line where TPU-MLIR 1.30.2 cannot honour it: search_threshold with bc (run_calibration
runs only the threshold search then; its bias-correction branch under a search is unreachable), and we where an
equalised pair passes through a clipped ReLU (ReLU6 is not scale-invariant: scaling a channel by s before
min(x, 6) and by 1/s after changes the network; TPU-MLIR equalises such pairs anyway) or where it finds no pair.
"""
from __future__ import annotations

from pathlib import Path

from bmpose.errors import BmposeError

TOOLS = ("search_threshold", "bc", "we")
TAGS = {"search_threshold": "st", "bc": "bc", "we": "we"}
CHIP_TOOLS = frozenset({"search_threshold", "bc"})      # they run the chip's INT8 model
WEIGHT_TOOLS = frozenset({"bc", "we"})                  # they rewrite the weights file


def normalise(tools) -> tuple[str, ...]:
    """The tools in TOOLS order, without repeats; an unknown name is a one-line error."""
    tools = tuple(tools or ())
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        raise BmposeError(f"calibration tool {bad[0]!r}: unknown (choose from {', '.join(TOOLS)})")
    return tuple(t for t in TOOLS if t in tools)


def tag(tools) -> str:
    """Short name of a tool set for folder and variant names: 'st', 'bc+we', '' for none."""
    return "+".join(TAGS[t] for t in normalise(tools))


def refusal(tools, mlir: Path) -> str | None:
    """Why TPU-MLIR cannot apply these tools to this top MLIR as asked, in a line; None when it can."""
    tools = normalise(tools)
    if "search_threshold" in tools and "bc" in tools:
        return ("search_threshold with bc: TPU-MLIR 1.30.2 then runs only the threshold search (its bias "
                "correction under a search is unreachable); ask for one of them")
    if "we" in tools:
        ok, clipped = we_pairs(mlir)
        if clipped:
            return (f"we: {len(clipped)} of the {len(ok) + len(clipped)} Conv -> Conv pairs TPU-MLIR would equalise "
                    f"pass through a clipped ReLU (ReLU6, first {clipped[0]}), which is not scale-invariant: "
                    f"equalising them changes the network")
        if not ok:
            return "we: no Conv -> Conv or Conv -> ReLU -> Conv pair to equalise (it would do nothing)"
    return None


def we_pairs(mlir: Path) -> tuple[list[str], list[str]]:
    """The first convs of the pairs TPU-MLIR's weight equalisation rewrites (a Conv whose only consumer is a Conv,
    or a ReLU/PReLU/LeakyReLU feeding only Convs: MixPrecSearcher.find_successor), split into (scale-invariant,
    through a clipped ReLU)."""
    from bmpose.tpu_mlir.mlirgraph import _parser_class

    p = _parser_class()(str(mlir))
    kinds = {op.name: op for op in p.ops}

    def clipped(op) -> bool:
        limit = str(op.attrs.get("relu_limit", "-1")).split(":")[0].strip()
        return (op.type == "top.Relu" or str(op.attrs.get("do_relu", "false")) == "true") and float(limit) > 0

    ok, bad = [], []
    for op in p.ops:
        if op.type != "top.Conv":
            continue
        nxt = p.get_next_op_by_op_name(op.name)
        through = [n for n in nxt if kinds[n].type in ("top.Relu", "top.PRelu", "top.LeakyRelu")]
        convs = [c for n in through for c in p.get_next_op_by_op_name(n)] if through else nxt
        if len(nxt) != 1 or len(convs) != 1 or kinds[convs[0]].type != "top.Conv":
            continue
        (bad if clipped(op) or any(clipped(kinds[n]) for n in through) else ok).append(op.name)
    return ok, bad


def run_args(tools, chip: str | None, pre_qtable: str | None) -> list:
    """run_calibration.py's arguments for the tools (the method, inputs and output are the caller's)."""
    tools = normalise(tools)
    if CHIP_TOOLS & set(tools) and not chip:
        raise BmposeError(f"calibration tools {', '.join(tools)}: they run the chip's INT8 model; name the chip")
    args = []
    if "search_threshold" in tools:
        args += ["--search", "search_threshold", "--quantize_table", "shape_pattern_qtable"]
    if "bc" in tools:
        args += ["--bc"]
    if "we" in tools:
        args += ["--we"]
    if CHIP_TOOLS & set(tools):
        args += ["--chip", chip]
        if pre_qtable:   # the layers the build keeps float are float while the tool measures, too
            args += ["--pre_qtable", pre_qtable]
    return args
