"""`bmpose build` as a library call: a BuildRequest -> its Plan (cheap: config and manifests only) -> every
bmodel built or reused through bmpose.convert's stages (or, for precision auto, each chip's choice:
bmpose.choose.pose), the report refreshed, one error naming every failed build."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from bmpose import config
from bmpose.chips import check_chip_precision, chip_supports, no_precision
from bmpose.convert import bmodel_build, steps
from bmpose.errors import BmposeError


def parse_tolerances(items: list[str], cfg) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in cfg.tolerances:
            raise BmposeError(f"--tolerance {item}: expected KEY=VALUE with KEY one of {', '.join(cfg.tolerances)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise BmposeError(f"--tolerance {item}: {value!r} is not a number") from None
    return out


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """One `bmpose build`: which bmodels of which model, calibrated how (the CLI's options, typed)."""
    precision: str                      # fp32 | fp16 | bf16 | int8 | auto
    model: str | None = None            # config name or yaml (None: the default model)
    artifacts_dir: Path | None = None
    checkpoint: str | None = None
    chips: tuple = ()                   # () = the config's
    batches: tuple = ()
    calib: str = "coco"
    coco_ann: str | None = None
    coco_img: str | None = None
    num: int | None = None
    method: str | None = None
    qtables: tuple = ()                 # extra qtable files
    search: bool = False
    tolerances: tuple = ()              # "KEY=VALUE" overrides of the config's tolerances
    report: bool = True
    auto_budget: int | None = None
    auto_tools: tuple | None = None
    auto_best: bool = False


class Plan:
    """Everything the build will do, computed from the request and the config alone (cheap)."""

    def __init__(self, req: BuildRequest):
        self.req = req
        cfg = config.load(req.model, artifacts=req.artifacts_dir)
        if req.tolerances:
            cfg = dataclasses.replace(cfg, tolerances={**cfg.tolerances, **parse_tolerances(req.tolerances, cfg)})
        self.cfg = cfg
        self.precision = req.precision
        self.skipped: list[str] = []
        if self.precision == "auto":   # every chip has some build to choose
            self.chips = tuple(req.chips or cfg.chips)
        elif req.chips:
            for chip in req.chips:
                check_chip_precision(chip, self.precision)
            self.chips = tuple(req.chips)
        else:   # the config's chips: those that have this precision
            self.chips = tuple(c for c in cfg.chips if chip_supports(c, self.precision))
            self.skipped = [c for c in cfg.chips if c not in self.chips]
            if not self.chips:
                raise BmposeError(f"{cfg.path}: none of its chips ({', '.join(cfg.chips)}) has {self.precision}; "
                                  f"name one with --chips")
        self.batches = tuple(dict.fromkeys(req.batches or cfg.batches))
        self.method = req.method or cfg.calibration.get("method", "kl")
        self.num = int(req.num if req.num is not None else cfg.calibration.get("num", 100))
        if self.num <= 0:
            raise BmposeError(f"--num {self.num}: must be positive (calibration persons)")
        self.qtables = ([cfg.qtable] if cfg.qtable else []) + [Path(q).resolve() for q in req.qtables]
        for q in self.qtables:
            if not Path(q).is_file():
                raise BmposeError(f"{q}: qtable not found")
        self.calib = {"spec": req.calib, "coco_ann": req.coco_ann, "coco_img": req.coco_img, "num": self.num}
        self.targets = [(chip, b) for chip in self.chips for b in self.batches]

    def spec(self, chip, batch, precision: str | None = None) -> bmodel_build.DeploySpec:
        """A build of this plan (bmodel_build.DeploySpec); `precision`: another than the plan's (--precision
        auto's trials)."""
        return bmodel_build.deploy_options(self.cfg, chip, precision or self.precision, batch, method=self.method,
                                           user_qtables=self.qtables, search=self.req.search,
                                           checkpoint=self.req.checkpoint, calib=self.calib)

    def all_fresh(self) -> bool:
        if self.precision == "auto":   # the choice's own manifest decides (pose_auto.choose)
            return False
        return all(steps.deep_fresh(self.cfg.layout.bmodel(c, self.precision, b), self.spec(c, b).options())
                   for c, b in self.targets)


def run(plan: Plan) -> list[dict]:
    """Build (or reuse) every target; returns one result dict per bmodel, failures included."""
    from bmpose.convert.pipeline import Pipeline

    cfg, req = plan.cfg, plan.req
    # a CalibWarning (fewer persons than --num) prints as bmpose's one line through bmpose.cli
    pipe = Pipeline(cfg, req.checkpoint, req.calib, coco_ann=req.coco_ann, coco_img=req.coco_img, num=plan.num,
                    progress=sys.stderr.isatty())
    crops = pipe.crops()
    need = sorted(set(plan.batches) | ({1} if plan.precision == "int8" else set()))
    pipe.onnx(*need)
    mlir = {}
    for b in need:
        t0 = clock()
        mlir[b] = pipe.mlir(b)
        print(f"build: transform b{b}: {mlir[b]} ({took(t0)})")
    table = None
    if plan.precision == "int8":
        t0 = clock()
        table = pipe.cali_table(plan.method)
        print(f"build: calibration ({plan.method}, {min(plan.num, len(crops))} crops): {table} ({took(t0)})")
    results = []
    for chip in plan.chips:
        searched = None
        if plan.precision == "int8" and req.search:
            searched = steps.ensure_search(cfg, mlir[1], crops, table, chip, plan.num)
            print(f"build: search_qtable {chip}: {searched}")
        for b in plan.batches:
            name = cfg.layout.bmodel_name(chip, plan.precision, b)
            t0 = clock()
            try:
                d, built = pipe.bmodel(chip, plan.precision, b, plan.spec(chip, b), cali_table=table,
                                       user_qtables=plan.qtables, searched=searched)
            except BmposeError as e:
                print(f"build: {name}: FAILED: {e}", file=sys.stderr)
                results.append({"name": name, "ok": False, "error": str(e)})
                continue
            from bmpose.manifest import read_manifest

            m = read_manifest(d)
            fin = m["checks"]["final"]
            print(f"build: {name}: {'built' if built else 'up to date'} ({took(t0)}), "
                  f"{'+'.join(cfg.outputs)} vs ONNX cos {fin['cosine']:.6f} euclid {fin['euclidean']:.4f} "
                  f"SQNR {fin['sqnr_db']:.1f} dB, {m['size_bytes'] / 1e6:.1f} MB")
            results.append({"name": name, "ok": True, "dir": d, "built": built})
    return results


def run_auto(plan: Plan) -> list[dict]:
    """--precision auto: each chip's choice (searched, or reused while its inputs are unchanged), as a table."""
    from bmpose.choose import pose as pose_auto
    from bmpose.convert import auto
    from bmpose.convert.pipeline import Pipeline
    from bmpose.evaluate.sets import eval_set

    cfg, req = plan.cfg, plan.req
    pipe = Pipeline(cfg, req.checkpoint, req.calib, coco_ann=req.coco_ann, coco_img=req.coco_img, num=plan.num,
                    progress=sys.stderr.isatty())
    fidelity = pose_auto.PoseFidelity(cfg, pipe.onnx(1)[1], *eval_set())
    results = []
    for chip in plan.chips:
        choice = pose_auto.choose(pipe, plan, chip, fidelity, cfg.tolerances["auto_target"],
                                  req.auto_budget or auto.DEFAULT_BUDGET, req.auto_best,
                                  auto.parse_tools(req.auto_tools))
        print("\n".join(pose_auto.lines(choice)) + "\n")
        for b in plan.batches:
            t0 = clock()
            d = pose_auto.winner_build(pipe, plan, chip, choice, b)
            print(f"build: {chip} auto b{b} ({choice['winner']}): {d} ({took(t0)})")
            results.append({"name": f"{chip} auto b{b}", "ok": True, "dir": d})
    return results


def clock() -> tuple[float, float]:
    """(now, this process's lock wait so far): a stage's time without the wait for another build of it."""
    from bmpose.manifest import LOCK_WAIT

    return time.monotonic(), LOCK_WAIT[0]


def took(start: tuple[float, float]) -> str:
    from bmpose.manifest import waited_since

    waited = waited_since(start[1])
    text = f"{time.monotonic() - start[0] - waited:.1f} s"
    return text + (f", after {waited:.1f} s waiting for another process's build" if waited >= 0.1 else "")


def build(req: BuildRequest) -> list[dict]:
    """Every bmodel of the request built or reused (the report refreshed unless req.report is False); -> one
    result per bmodel. A failed build is a BmposeError naming them all, after the others are done."""
    t0 = time.monotonic()
    plan = Plan(req)
    for chip in plan.skipped:
        print(f"build: {chip} left out: {no_precision(chip, plan.precision)}")
    if plan.all_fresh():
        print(f"build: {len(plan.targets)} {plan.precision} bmodel(s) of {plan.cfg.name} up to date "
              f"({time.monotonic() - t0:.2f} s)")
        results = [{"ok": True}]
    elif plan.precision == "auto":
        results = run_auto(plan)
    else:
        results = run(plan)
    if req.report:
        from bmpose.flows.report import refresh_report

        print(f"build: report {refresh_report(plan.cfg)}")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise BmposeError(f"{len(failed)} bmodel(s) failed: " + "; ".join(r["error"] for r in failed))
    return results
