"""`bmpose detector --precision auto` (bmpose.convert.auto): per chip, the fastest detector build whose boxes agree
with ONNX's to the config's auto target (COCO box AP against ONNX's persons at the picture threshold, on the
bundled val frames: never among the train2017 calibration frames). Trials go to artifacts/<detector>/auto/<chip>/
(floats: the normal build folders); choice.json there says what was tried and why the winner won."""
from __future__ import annotations

from pathlib import Path

from bmpose.convert.detector_build import DetectorBuild
from bmpose.evaluate.box_agreement import DetectorFidelity


def auto_search(build: DetectorBuild, chip: str, target: float, budget: int, fidelity: DetectorFidelity,
                ladder=None):
    """`--precision auto` for one chip (bmpose.convert.auto): -> (Search, winner trial or None)."""
    from bmpose.convert import auto, steps
    from bmpose.manifest import read_manifest

    root = build.cfg.layout.auto(chip)

    def make(c: auto.Candidate) -> tuple[Path, float]:
        # the floats and the default INT8 (no float layers) are `bmpose detector`'s own builds
        d, _ = build.bmodel(chip, c.precision, auto.candidate_qtables(c, root),
                            root / f"{c.label}_b1" if c.own_folder else None, tools=c.tools)
        return d, read_manifest(d)["checks"]["device_time"]["runtime_ms"]

    def ranking() -> list[str]:
        return auto.sensitive_layers(build.cfg, build.mlir(), build.frames(), build.cali_table(), chip,
                                     build.stem_qtable())

    tools, notes = auto.tool_sets(build.mlir() / steps.transform_files(build.cfg)["mlir"],
                                  auto.TOOL_LADDER if ladder is None else ladder)
    search = auto.Search(chip, make, fidelity, ranking, target, budget, log=lambda s: print(s, flush=True),
                         tools=tuple(tools), notes=notes)
    return search, search.run()


_FIDELITY: dict = {}


def fidelity(cfg, frames_ann: Path, labelled: Path) -> DetectorFidelity:
    """One measure per detector and sets in a process (ONNX's reference boxes computed once)."""
    key = (cfg.name, str(cfg.onnx), str(frames_ann), str(labelled))
    if key not in _FIDELITY:
        _FIDELITY[key] = DetectorFidelity(cfg, frames_ann, labelled)
    return _FIDELITY[key]


def fidelity_sets() -> tuple[Path, Path]:
    """(frames the agreement is measured on: every bundled val image, 26; the labelled set scored beside it:
    coco_val_mini). Both COCO val2017: never among the train2017 calibration frames."""
    from bmpose.evaluate.sets import eval_set
    from bmpose.runtime.boxes import bundled_sample

    return eval_set()[0], bundled_sample()[0]


def auto_build(build: DetectorBuild, chip: str, overrides: dict | None = None) -> tuple[Path, bool]:
    """Search (or reuse) the auto choice for `chip`; artifacts/<detector>/auto/<chip>/choice.json says what was
    tried and why the winner won. -> (the winner's build folder, whether anything was built or measured now)."""
    from bmpose.convert import auto

    cfg = build.cfg
    opts = {**cfg.auto, "best": False, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    ladder = auto.parse_tools(opts.get("tools"))
    frames_ann, labelled = fidelity_sets()
    out = cfg.layout.auto(chip)
    inputs = {"onnx": cfg.onnx, "frames_ann": frames_ann, "labelled_ann": labelled,
              "calibration_frames": build.frames()[0].parent}
    options = {"target": opts["target"], "budget": opts["budget"], "best": opts["best"],
               "tools": [auto.cali_tools.tag(t) for t in ladder],
               "calibration": {"method": cfg.calibration["method"], "num": len(build.frames())}}
    old = auto.cached_choice(out, inputs, options)
    if old is not None:
        return Path(old["winner_dir"]), False
    search, winner = auto_search(build, chip, opts["target"], opts["budget"], fidelity(cfg, frames_ann, labelled),
                                 ladder)
    summary = auto.record_choice(search, winner, opts["best"], out, inputs, options)
    return Path(summary["winner_dir"]), True
