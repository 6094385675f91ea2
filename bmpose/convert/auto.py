"""`--precision auto`: the fastest build of a model for a chip that keeps its fidelity target, searched from the
cheapest simulated time upward, within a budget of builds.

  1. the float builds the chip has (FP16/BF16, FP32): candidates, and the time an INT8 build has to beat;
  2. INT8 as the model builds it by default (`bmpose build --precision int8`: a pose model's automatic FP32 tail,
     a detector's float stem), its own build folder reused;
  3. INT8 with its k most sensitive layers in float (F16 where the chip has it, else F32), k = 1, 2, 4, ...
     then halved back towards the fewest that meet the target. Sensitivity is TPU-MLIR's own (search_qtable:
     each layer quantised alone, the rest float, ranked by the output's cosine loss; steps.sensitivity_ranking).
     A free ranking read from one build's per-layer compare (the cosine each layer loses against its inputs')
     was tried first and ranked nothing useful on YOLOX-nano: 1, 2, 4 and 8 F16 layers left its boxes where
     all-INT8 had them (agreement 0.49-0.50).
Step 3 stops as soon as a build is no faster than the fastest float build that meets the target: INT8 that buys
no time is not chosen (the table says so). Every build is a normal build with its manifest (rerun: seconds);
the fidelity of each (`measure`) is the caller's: agreement with the float model on data never calibrated on.
The same inputs give the same trials, so the same choice, and the same bytes (kernels pinned, tpu_mlir.kernels).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from bmpose.chips import chip_supports
from bmpose.convert import cali_tools
from bmpose.errors import BmposeError

DEFAULT_BUDGET = 14   # builds per chip, float builds included (BlazePose on BM1684X needed 12 to reach 0.98, before
# the two calibration-tool trials that TOOL_LADDER adds)
# simulated times closer than this are one speed: RTMPose-t's BF16 came out 0.08% faster than its FP16 on BM1684X
# and would have won at agreement 0.998 against FP16's 0.99995; the compiler's estimate is no finer than that
SAME_SPEED = 0.01
# TPU-MLIR's sensitivity search runs each layer's trial on this many calibration inputs (its default, 30, takes
# 7.5 s per layer on YOLOX-nano here: 31 min for its 246 layers; 8 inputs: 2.3 s)
SENSITIVITY_INPUTS = 8


@dataclasses.dataclass(frozen=True)
class Candidate:
    precision: str                    # fp32 | fp16 | bf16 | int8
    float_layers: tuple[str, ...] = ()
    float_mode: str = ""              # F16 | F32: how the INT8 build runs its float layers
    tools: tuple[str, ...] = ()       # calibration tools (convert.cali_tools) of an INT8 build

    @property
    def label(self) -> str:
        if self.precision != "int8":
            return self.precision
        return "int8" + (f"_{cali_tools.tag(self.tools)}" if self.tools else "") + (
            f"_{self.float_mode.lower()}x{len(self.float_layers)}" if self.float_layers else "")

    @property
    def own_folder(self) -> bool:
        """Whether it builds in the search's folder (else: the model's normal build folder, reused both ways)."""
        return bool(self.float_layers or self.tools)


@dataclasses.dataclass
class Trial:
    candidate: Candidate
    ms: float | None = None               # simulated device ms (per frame or per person)
    fidelity: float | None = None         # the target's measure
    extra: dict = dataclasses.field(default_factory=dict)   # other measures (labelled AP, ...), for the table
    build_dir: Path | None = None
    error: str | None = None
    meets: bool = False

    def row(self) -> dict:
        c = self.candidate
        return {"variant": c.label, "precision": c.precision, "float_layers": len(c.float_layers),
                "float_mode": c.float_mode or None, "tools": list(c.tools), "ms": self.ms, "fidelity": self.fidelity, "meets": self.meets,
                **self.extra, "build_dir": str(self.build_dir) if self.build_dir else None, "error": self.error}


def float_mode(chip: str) -> str:
    """INT8's float layers run F16 where the chip has it (cheaper than F32, as exact for these nets)."""
    return "F16" if chip_supports(chip, "fp16") else "F32"


def float_candidates(chip: str) -> list[Candidate]:
    return [Candidate(p) for p in ("fp16", "bf16", "fp32") if chip_supports(chip, p)]


@dataclasses.dataclass
class Search:
    """One chip's search. build(candidate) -> (build dir, simulated ms), raising BmposeError when it fails;
    measure(build dir) -> (fidelity, extra measures); ranking() -> op names, most sensitive first (asked only
    when the default INT8 build misses the target)."""
    chip: str
    build: Callable[[Candidate], tuple[Path, float]]
    measure: Callable[[Path], tuple[float, dict]]
    ranking: Callable[[], list[str]]
    target: float
    budget: int = DEFAULT_BUDGET
    log: Callable[[str], None] = print
    tools: tuple = ()     # calibration tool sets to try on all-INT8 before float layers (tool_sets)
    trials: list[Trial] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def run(self) -> Trial | None:
        """-> the winner (fastest trial meeting the target), or None; self.trials and self.notes say why."""
        for c in float_candidates(self.chip):
            self.attempt(c)
        ceiling = self.ceiling()
        base = self.attempt(Candidate("int8"))
        if base is None:
            return self.winner()
        if ceiling is not None and base.ms is not None and base.ms >= ceiling:
            self.notes.append(f"INT8 buys no time on {self.chip}: {base.ms:.3f} ms against the float build's "
                              f"{ceiling:.3f} ms")
            return self.winner()
        if base.meets:
            return self.winner()
        for tools in self.tools:   # all-INT8 still: the calibration tools cost no device time
            t = self.attempt(Candidate("int8", tools=tuple(tools)))
            if t is None or t.meets:
                return self.winner()
        self.float_layers(ceiling, self.int8_base().candidate.tools)
        return self.winner()

    def int8_base(self) -> Trial:
        """The all-INT8 trial closest to float: the float layers are added to its calibration."""
        done = [t for t in self.trials if t.candidate.precision == "int8" and t.fidelity is not None]
        return max(done, key=lambda t: (t.fidelity, -self.trials.index(t)), default=self.trials[-1])

    def float_layers(self, ceiling: float | None, tools: tuple = ()) -> None:
        """Doubling k until a build meets the target (or no longer beats the float ceiling), then bisecting."""
        ranked = self.ranking()
        mode = float_mode(self.chip)
        low, high, k = 0, None, 1
        while k <= len(ranked) and self.left():
            t = self.attempt(Candidate("int8", tuple(ranked[:k]), mode, tools))
            if t is None:
                return
            if ceiling is not None and t.ms is not None and t.ms >= ceiling:
                self.notes.append(f"{k} float layers: {t.ms:.3f} ms, no faster than the float build "
                                  f"({ceiling:.3f} ms); stopped adding layers")
                return
            if t.meets:
                high = k
                break
            if k == len(ranked):
                break
            low, k = k, min(2 * k, len(ranked))
        if high is None:
            if not self.left():
                self.notes.append(f"build budget ({self.budget}) spent before INT8 met the target")
            return
        while high - low > 1 and self.left():
            mid = (low + high) // 2
            t = self.attempt(Candidate("int8", tuple(ranked[:mid]), mode, tools))
            if t is None:
                return
            low, high = (low, mid) if t.meets else (mid, high)

    def left(self) -> bool:
        return len(self.trials) < self.budget

    def ceiling(self) -> float | None:
        ms = [t.ms for t in self.trials if t.meets and t.candidate.precision != "int8"]
        return min(ms) if ms else None

    def attempt(self, c: Candidate) -> Trial | None:
        if not self.left():
            self.notes.append(f"build budget ({self.budget}) spent before trying {c.label}")
            return None
        t = Trial(c)
        self.trials.append(t)
        try:
            t.build_dir, ms = self.build(c)
            t.ms = float(ms)
            fidelity, t.extra = self.measure(t.build_dir)
            t.fidelity = None if fidelity is None else float(fidelity)   # numpy scalars would json as text
            t.meets = t.fidelity is not None and t.fidelity >= self.target
        except BmposeError as e:
            t.error = str(e).splitlines()[0]
        self.log(f"auto {self.chip}: {c.label}: " + (f"FAILED: {t.error}" if t.error else
                 f"{t.ms:.3f} ms, fidelity {t.fidelity:.4f} ({'meets' if t.meets else 'below'} {self.target})"))
        return t

    def winner(self) -> Trial | None:
        """The fastest build meeting the target; builds within SAME_SPEED of its time are as fast, and the one
        agreeing best with float among them wins (then fewer float layers, then the earlier trial)."""
        ok = [t for t in self.trials if t.meets]
        if not ok:
            return None
        fastest = min(t.ms for t in ok)
        near = [t for t in ok if t.ms <= fastest * (1 + SAME_SPEED)]
        return min(near, key=lambda t: (-t.fidelity, len(t.candidate.float_layers), self.trials.index(t)))

    def best_reached(self) -> Trial | None:
        done = [t for t in self.trials if t.fidelity is not None]
        return max(done, key=lambda t: (t.fidelity, -t.ms), default=None)

    def summary(self, winner: Trial | None) -> dict:
        """What the manifest and the report keep: every trial, the notes, and why the winner won."""
        why = None
        if winner is not None:
            faster = [t for t in self.trials if t.ms is not None and t.ms < winner.ms and not t.meets]
            why = (f"{winner.candidate.label}: fastest build meeting fidelity >= {self.target} "
                   f"({winner.ms:.3f} ms, fidelity {winner.fidelity:.4f}; within {SAME_SPEED:.0%} of the fastest, "
                   f"the best agreement wins)"
                   + (f"; faster but below the target: {', '.join(t.candidate.label for t in faster)}"
                      if faster else ""))
        return {"chip": self.chip, "target": self.target, "budget": self.budget,
                "winner": winner.candidate.label if winner else None, "why": why, "notes": self.notes,
                "trials": [t.row() for t in self.trials],
                "float_layers": list(winner.candidate.float_layers) if winner else [],
                "float_mode": winner.candidate.float_mode if winner else None,
                "tools": list(winner.candidate.tools) if winner else []}


def sensitive_layers(cfg, mlir_dir: Path, crops: list[Path], cali_table: Path, chip: str,
                     user_qtables) -> list[str]:
    """The INT8 layers most sensitive first, by TPU-MLIR's own search (run once per table and chip, kept beside
    the table), without the layers every INT8 build already runs in float (the automatic FP32 tail and the
    user's qtables): an F16 entry must not lower one of them from F32."""
    from bmpose.convert import steps
    from bmpose.convert.qtable import build_qtable

    searched = steps.ensure_search(cfg, mlir_dir, crops, cali_table, chip, len(crops), expected_cos=0.99999,
                                   fp_type=float_mode(chip), inference_num=SENSITIVITY_INPUTS)
    fixed, _ = build_qtable(mlir_dir / steps.transform_files(cfg)["mlir"], list(user_qtables))
    return [name for name in steps.sensitivity_ranking(searched.parent) if name not in fixed]


# the calibration tools tried on all-INT8 before float layers, in this order (each a build; refused ones are noted)
TOOL_LADDER = (("search_threshold",), ("bc",), ("we",))


def parse_tools(values) -> tuple[tuple, ...]:
    """--auto-tools: each 'none' (try no tool) or tools joined by '+' (tried together), in the order given;
    None: TOOL_LADDER."""
    if values is None:
        return TOOL_LADDER
    return tuple(cali_tools.normalise(v.split("+")) for v in values if v != "none")


def tool_sets(mlir: Path, ladder=TOOL_LADDER) -> tuple[list[tuple], list[str]]:
    """(the ladder's tool sets TPU-MLIR can apply to this top MLIR, a note for each refused one)."""
    ok, notes = [], []
    for tools in ladder:
        why = cali_tools.refusal(tools, mlir)
        if why:
            notes.append(f"{cali_tools.tag(tools)} not tried: {why}")
        else:
            ok.append(tools)
    return ok, notes


def cached_choice(folder: Path, inputs: dict, options: dict) -> dict | None:
    """<folder>/choice.json while nothing it was made from (inputs, options, the winner's build) changed."""
    import json

    from bmpose import manifest

    choice = folder / "choice.json"
    if not choice.is_file():
        return None
    old = json.loads(choice.read_text())
    return old if manifest.up_to_date(folder, {**inputs, "winner": Path(old["winner_dir"]) / "manifest.json"},
                                      _rules(options)) else None


def _rules(options: dict) -> dict:
    """The caller's options and the choosing rule's own: a choice made under another rule is made again."""
    return {**options, "same_speed": SAME_SPEED}


def record_choice(search: Search, winner: Trial | None, best: bool, folder: Path, inputs: dict,
                  options: dict) -> dict:
    """The search's summary as <folder>/choice.json with a manifest (inputs, options and the winner's build).
    No winner: the unreachable error, or with `best` the best agreement reached, marked."""
    import json

    from bmpose import manifest

    summary = search.summary(winner)
    if winner is None:
        winner = search.best_reached()
        if not best or winner is None:
            raise unreachable(search)
        summary.update(winner=winner.candidate.label, marked="below target: the best one built (--auto-best)",
                       float_layers=list(winner.candidate.float_layers), float_mode=winner.candidate.float_mode,
                       tools=list(winner.candidate.tools))
    summary["winner_dir"] = str(winner.build_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with manifest.locked(folder):
        with manifest.atomic_file(folder / "choice.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        manifest.write_manifest(folder, stage="auto_choice",
                                inputs={**inputs, "winner": winner.build_dir / "manifest.json"},
                                options=_rules(options),
                                outputs=["choice.json"], checks={"winner": summary["winner"], "why": summary["why"]})
    return summary


def winner_candidate(choice: dict) -> Candidate:
    """The Candidate a recorded choice (choice.json) chose: what its batch-N builds repeat."""
    row = next(t for t in choice["trials"] if t["variant"] == choice["winner"])
    return Candidate(row["precision"], tuple(choice["float_layers"]), choice["float_mode"] or "",
                     tuple(choice["tools"]))


def unreachable(search: Search) -> BmposeError:
    best = search.best_reached()
    where = (f"the best reached is {best.candidate.label} at fidelity {best.fidelity:.4f} ({best.ms:.3f} ms)"
             if best else "no build could be measured")
    return BmposeError(f"--precision auto on {search.chip}: no build met fidelity >= {search.target} within "
                       f"{search.budget} builds; {where}; lower the target, raise --auto-budget, or pass "
                       f"--auto-best to keep the best one built (marked)")


def qtable_text(c: Candidate, why: str) -> str:
    return f"# {why}\n" + "".join(f"{name} {c.float_mode}\n" for name in c.float_layers)


def candidate_qtables(c: Candidate, folder: Path) -> list[Path]:
    """[the qtable of the candidate's float layers, <folder>/<label>.qtable] (rewritten only when it changes, so
    an unchanged candidate's build stays up to date), or [] for none."""
    from bmpose.manifest import atomic_file

    if not c.float_layers:
        return []
    q = folder / f"{c.label}.qtable"
    text = qtable_text(c, f"--precision auto: the {len(c.float_layers)} most sensitive layers")
    if not q.is_file() or q.read_text() != text:
        q.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(q) as tmp:
            tmp.write_text(text)
    return [q]
