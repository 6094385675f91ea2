"""`bmpose build --precision fp32|fp16|bf16|int8`: ONNX -> bmodels for every chip x batch, compared and gated.

  bmpose build --precision int8 --model hrnet_small_128x96 --calib coco --method kl --qtable extra.txt --search
  bmpose build --precision fp16 --chips bm1684x
  bmpose build --precision auto --chips bm1684x    # the fastest batch-1 build that keeps the keypoints (a search)

BM1684 has no fp16/bf16: named in --chips, it is refused before anything runs; from the config's chips it is
left out, with a note.

Each stage is skipped when its manifest says it is up to date. Before anything heavy is imported, a cheap
check (manifests and file hashes only, no torch/mmpose) decides whether there is anything to do at all, so a
no-op `make int8` returns in about a second.

`--precision auto` (bmpose.choose.pose) searches per chip, at batch 1, from the cheapest simulated time:
the float builds, INT8, then INT8 with its most sensitive layers (TPU-MLIR's ranking) in F16 (F32 on BM1684),
and keeps the fastest whose keypoints agree with ONNX FP32's to the tolerance auto_target (mean OKS against
float on the bundled val persons, never calibrated on). artifacts/<model>/auto/<chip>/choice.json and the
printed table say what was tried and why the winner won.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from bmpose.device.inputs import positive_int
from bmpose.errors import BmposeError
from bmpose.chips import CHIPS, PRECISIONS, check_chip_precision, chip_supports, no_precision
from bmpose.convert import bmodel_build, steps
from bmpose.convert.auto import parse_tools
from bmpose.cli.args import add_calibration, add_model, load_model


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bmpose build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", required=True, choices=(*PRECISIONS, "auto"))
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint path/URL or 'fixture' (default: the config's)")
    ap.add_argument("--chips", nargs="+", help=f"chips (default: the config's; known: {' '.join(CHIPS)})")
    ap.add_argument("--batches", nargs="+", type=positive_int, help="batch sizes (default: the config's)")
    add_calibration(ap)
    ap.add_argument("--method", help="calibration method: " + ", ".join(steps.CALI_METHODS)
                    + " (default: the config's, kl)")
    ap.add_argument("--qtable", action="append", default=[], type=Path,
                    help="extra qtable (`op_name F32` lines), added to the automatic FP32 tail; repeatable")
    ap.add_argument("--search", action="store_true", help="also run TPU-MLIR's search_qtable per chip and "
                    "add the layers it finds to the qtable")
    ap.add_argument("--tolerance", action="append", default=[], metavar="KEY=VALUE",
                    help="override a tolerance of the config, e.g. int8_cos=0.98 (int8_cos_random gates INT8 "
                         "builds of the random-init fixture checkpoint); recorded in the manifests")
    ap.add_argument("--no-report", action="store_true", help="do not refresh artifacts/<model>/report")
    ap.add_argument("--auto-budget", type=int, default=None, metavar="N",
                    help="auto: most builds per chip, float builds included (default: 14)")
    ap.add_argument("--auto-tools", nargs="+", metavar="TOOLS",
                    help="auto: TPU-MLIR calibration tools tried on all-INT8 before float layers, in order, each a "
                         "tool or tools joined by '+' (search_threshold, bc, we), or none (default: "
                         "search_threshold bc we; bc runs the chip's INT8 model once per conv: minutes on large nets)")
    ap.add_argument("--auto-best", action="store_true", help="auto: when no build meets the target, keep the best "
                    "one built (marked) instead of failing")
    args = ap.parse_args(argv)
    for c in args.chips or ():
        if c not in CHIPS:
            ap.error(f"--chips {c}: unknown chip (choose from {', '.join(CHIPS)})")
    for b in args.batches or ():
        if b < 1:
            ap.error(f"--batches {b}: must be >= 1")
    if args.auto_budget is not None and args.auto_budget < 2:
        ap.error(f"--auto-budget {args.auto_budget}: at least 2 builds")
    try:
        parse_tools(args.auto_tools)
    except BmposeError as e:
        ap.error(f"--auto-tools: {e}")
    return args


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


class Plan:
    """Everything the build will do, computed from the arguments and the config alone (cheap)."""

    def __init__(self, args):
        self.args = args
        cfg = load_model(args)
        if args.tolerance:
            cfg = dataclasses.replace(cfg, tolerances={**cfg.tolerances, **parse_tolerances(args.tolerance, cfg)})
        self.cfg = cfg
        self.precision = args.precision
        self.skipped: list[str] = []
        if self.precision == "auto":   # every chip has some build to choose
            self.chips = tuple(args.chips or cfg.chips)
        elif args.chips:
            for chip in args.chips:
                check_chip_precision(chip, self.precision)
            self.chips = tuple(args.chips)
        else:   # the config's chips: those that have this precision
            self.chips = tuple(c for c in cfg.chips if chip_supports(c, self.precision))
            self.skipped = [c for c in cfg.chips if c not in self.chips]
            if not self.chips:
                raise BmposeError(f"{cfg.path}: none of its chips ({', '.join(cfg.chips)}) has {self.precision}; "
                                  f"name one with --chips")
        self.batches = tuple(dict.fromkeys(args.batches or cfg.batches))
        self.method = args.method or cfg.calibration.get("method", "kl")
        self.num = int(args.num if args.num is not None else cfg.calibration.get("num", 100))
        if self.num <= 0:
            raise BmposeError(f"--num {self.num}: must be positive (calibration persons)")
        self.qtables = ([cfg.qtable] if cfg.qtable else []) + [q.resolve() for q in args.qtable]
        for q in self.qtables:
            if not Path(q).is_file():
                raise BmposeError(f"{q}: qtable not found")
        self.calib = {"spec": args.calib, "coco_ann": args.coco_ann, "coco_img": args.coco_img, "num": self.num}
        self.targets = [(chip, b) for chip in self.chips for b in self.batches]

    def options(self, chip, batch, precision: str | None = None):
        """What a build of this plan records; `precision`: another than the plan's (--precision auto's trials)."""
        return bmodel_build.deploy_options(self.cfg, chip, precision or self.precision, batch, method=self.method,
                                           user_qtables=self.qtables, search=self.args.search,
                                           checkpoint=self.args.checkpoint, calib=self.calib)

    def all_fresh(self) -> bool:
        if self.precision == "auto":   # the choice's own manifest decides (pose_auto.choose)
            return False
        return all(steps.deep_fresh(self.cfg.layout.bmodel(c, self.precision, b), self.options(c, b))
                   for c, b in self.targets)


def run(plan: Plan) -> list[dict]:
    """Build (or reuse) every target; returns one result dict per bmodel, failures included."""
    from bmpose.convert.pipeline import Pipeline

    cfg, args = plan.cfg, plan.args
    # a CalibWarning (fewer persons than --num) prints as bmpose's one line through bmpose.cli
    pipe = Pipeline(cfg, args.checkpoint, args.calib, coco_ann=args.coco_ann, coco_img=args.coco_img, num=plan.num,
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
        if plan.precision == "int8" and args.search:
            searched = steps.ensure_search(cfg, mlir[1], crops, table, chip, plan.num)
            print(f"build: search_qtable {chip}: {searched}")
        for b in plan.batches:
            name = cfg.layout.bmodel_name(chip, plan.precision, b)
            t0 = clock()
            try:
                d, built = pipe.bmodel(chip, plan.precision, b, plan.options(chip, b), cali_table=table,
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

    cfg, args = plan.cfg, plan.args
    pipe = Pipeline(cfg, args.checkpoint, args.calib, coco_ann=args.coco_ann, coco_img=args.coco_img, num=plan.num,
                    progress=sys.stderr.isatty())
    fidelity = pose_auto.PoseFidelity(cfg, pipe.onnx(1)[1], *eval_set())
    results = []
    for chip in plan.chips:
        choice = pose_auto.choose(pipe, plan, chip, fidelity, cfg.tolerances["auto_target"],
                                  args.auto_budget or auto.DEFAULT_BUDGET, args.auto_best,
                                  auto.parse_tools(args.auto_tools))
        print("\n".join(pose_auto.lines(choice)) + "\n")
        results.append({"name": f"{chip} auto", "ok": True, "dir": choice["winner_dir"]})
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


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    plan = Plan(args)
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
    if not args.no_report:
        from bmpose.cli.report import refresh_report

        path = refresh_report(plan.cfg)
        print(f"build: report {path}")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise BmposeError(f"{len(failed)} bmodel(s) failed: " + "; ".join(r["error"] for r in failed))
    return 0
