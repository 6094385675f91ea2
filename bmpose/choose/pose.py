"""`bmpose build --precision auto` for a pose model (bmpose.convert.auto): per chip, the fastest batch-1 build
whose keypoints agree with ONNX FP32's to the tolerance auto_target (mean OKS against float, bmpose.evaluate.agreement,
on the bundled val persons with ground-truth boxes: never among the train2017 calibration persons).

The INT8 ladder's float layers come from TPU-MLIR's own sensitivity search (search_qtable with every layer
ranked: each quantised alone, the rest float; steps.sensitivity_ranking), in F16 where the chip has it. Builds
go to artifacts/<model>/auto/<chip>/<variant>_b1 (floats: the normal build folders); the choice, with every
trial and why the winner won, to artifacts/<model>/auto/<chip>/choice.json beside a manifest. The winner's recipe
(precision, calibration tools, float layers) is then built at the config's other batches too, beside it
(<variant>_b<N>): the search measures at batch 1, the box runs batch 4 as well.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from bmpose import manifest
from bmpose.convert import auto, steps
from bmpose.evaluate.agreement import PoseFidelity


def candidate_bmodel(pipe, plan, chip: str, c: auto.Candidate, root: Path, batch: int = 1) -> tuple[Path, float]:
    """Build (or reuse) one candidate -> (its folder, simulated ms per person)."""
    from bmpose.convert import bmodel_build

    # the options `bmpose build` records for these builds: the default INT8 and the floats are the same build
    # folders as theirs, reused both ways
    spec = plan.spec(chip, batch, c.precision)
    qtables = list(plan.qtables) + auto.candidate_qtables(c, root)   # used by INT8 only
    if c.own_folder:
        # a trial is judged by its agreement with float: neither the heatmap gate nor TPU-MLIR's per-layer floor
        # refuses it (BlazePose's INT8 falls below that floor on BM1684 in every layout)
        spec = dataclasses.replace(spec, qtables=tuple(str(q) for q in qtables), gate=(spec.gate[0], 0.0),
                                   tpu_layer_tolerance=bmodel_build.INT8_LAYER_TOL_RANDOM)
    if c.tools:
        spec = dataclasses.replace(spec, cali_tools=tuple(c.tools))
    table = pipe.cali_table(plan.method, tools=c.tools, chip=chip, qtables=plan.qtables) \
        if c.precision == "int8" else None
    d, _ = pipe.bmodel(chip, c.precision, batch, spec, cali_table=table, user_qtables=qtables,
                       out=root / f"{c.label}_b{batch}" if c.own_folder else None)
    return d, manifest.read_manifest(d)["checks"]["device_time"]["ms_per_person"]


def winner_build(pipe, plan, chip: str, choice: dict, batch: int) -> Path:
    """The chosen recipe built (or reused) at `batch` (batch 1: the winning trial itself) -> its folder."""
    return candidate_bmodel(pipe, plan, chip, auto.winner_candidate(choice), pipe.cfg.layout.auto(chip), batch)[0]


def search_chip(pipe, plan, chip: str, fidelity: PoseFidelity, target: float, budget: int,
                ladder=auto.TOOL_LADDER):
    """One chip's search -> (Search, winner or None)."""
    root = pipe.cfg.layout.auto(chip)

    def ranking() -> list[str]:
        return auto.sensitive_layers(pipe.cfg, pipe.mlir(1), pipe.crops(), pipe.cali_table(plan.method), chip,
                                     plan.qtables)

    tools, notes = auto.tool_sets(pipe.mlir(1) / steps.transform_files(pipe.cfg)["mlir"], ladder)
    search = auto.Search(chip, lambda c: candidate_bmodel(pipe, plan, chip, c, root), fidelity, ranking, target,
                         budget, log=lambda s: print(s, flush=True), tools=tuple(tools), notes=notes)
    return search, search.run()


def choose(pipe, plan, chip: str, fidelity: PoseFidelity, target: float, budget: int, best: bool,
           ladder=auto.TOOL_LADDER) -> dict:
    """The chip's choice (choice.json), searched or reused while nothing it was made from changed."""
    root = pipe.cfg.layout.auto(chip)
    inputs = {"onnx": pipe.onnx(1)[1], "eval_annotations": fidelity.ann, "calibration": pipe.lmdb()}
    options = {"target": target, "budget": budget, "best": best, "method": plan.method, "num": pipe.num_used(),
               "tools": [auto.cali_tools.tag(t) for t in ladder],
               "qtables": [str(q) for q in plan.qtables], "flip": fidelity.flip}
    old = auto.cached_choice(root, inputs, options)
    if old is not None:
        return old
    search, winner = search_chip(pipe, plan, chip, fidelity, target, budget, ladder)
    return auto.record_choice(search, winner, best, root, inputs, options)


def lines(choice: dict) -> list[str]:
    from bmpose.report.render import POSE_AUTO, auto_markdown

    return auto_markdown(choice, *POSE_AUTO)
