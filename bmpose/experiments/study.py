"""`bmpose study --model M` (`make study`): which INT8 calibration settings cost the least COCO AP.

For each chip: the float builds (FP32, and FP16/BF16 where the chip has them), then each calibration method
(kl, mse, max, percentile9999) x FP32 layers:
  none    every layer INT8 (no qtable at all)
  auto    the automatic FP32 tail (bmpose.convert.qtable.auto_tail; what `bmpose build` does), + the config's qtable
  search  the tail + the layers TPU-MLIR's search_qtable finds for that chip (`--search`)
an INT8 batch-1 bmodel is built with bmpose's build driver into artifacts/<model>/study/<chip>_<method>_<layers>/
(the default builds are untouched; every variant has its own manifest, so a rerun skips what is built) and
its deployed *_tpu.mlir is run through the mlir backend on the whole evaluation set (default: the 51 persons of
data/person_keypoints_bundled.json, the trained fixture's training persons, ground-truth boxes), giving
COCO AP, AP drop vs ONNX FP32 on the same crops, and heatmap cosine vs ONNX (mean and worst crop). The ONNX
FP32 and the FP32 bmodel (mlir backend) are the reference rows. search_qtable runs the model hundreds of times
on pymlir (2-3 min per chip for kl, seconds where the all-INT8 model already meets int8_cos): --search-methods
limits it, and its time is recorded. Results: artifacts/<model>/study/study.json (rows for the report's study
section, the per-layer compare CSV of the default variant for its plot) and study.md; evaluations are cached
in study/eval/.

Long: building, evaluating and tabulating the variants share one Variant list and read top to bottom; the
paired-OKS statistic and the fragility runs already live in their own modules.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from bmpose.errors import BmposeError
from bmpose.evaluate.sets import eval_boxes, eval_set
from bmpose.evaluate.shards import SHARD_PERSONS
from bmpose.manifest import (atomic_file, cached_result, read_manifest, result_key, write_manifest,
                             write_result)

METHODS = ("kl", "mse", "max", "percentile9999")
LAYERS = ("none", "auto", "search")
STUDY_VERSION = 3   # 2: keypoints kept per variant (agreement with float); 3: person areas in the row


@dataclasses.dataclass(frozen=True)
class StudyRequest:
    """One `bmpose study` (the CLI's options, typed)."""
    checkpoint: str | None = None
    chips: tuple = ()                       # () = the config's
    methods: tuple = METHODS
    layers: tuple = LAYERS
    search_methods: tuple = ("all",)        # methods that get the searched qtable
    tools: tuple = ("none",)                # tool sets: "none" or tools joined by '+'
    coco_ann: str | None = None             # None: the fixture's 51 training persons
    coco_img: str | None = None
    no_flip: bool = False
    force_eval: bool = False
    shard_persons: int = SHARD_PERSONS
    ray: str | None = None                  # evaluations on a Ray cluster: address, auto or local


@dataclasses.dataclass
class Variant:
    label: str
    chip: str | None
    precision: str
    method: str | None = None
    layers: str | None = None
    tools: tuple = ()                 # calibration tools (bmpose.convert.cali_tools)
    artifact: Path | None = None      # onnx file or deployed *_tpu.mlir
    build_dir: Path | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------- building

def build_variants(cfg, req, chips, methods, search_methods) -> tuple[list[Variant], dict]:
    """Every bmodel of the study (built or reused) through bmpose.convert's stages; -> (variants, search facts)."""
    from bmpose.chips import chip_supports
    from bmpose.convert import bmodel_build, cali_tools
    from bmpose.convert.pipeline import Pipeline

    num = int(cfg.calibration.get("num", 100))
    pipe = Pipeline(cfg, req.checkpoint, num=num, progress=True, verbose=False)
    onnx = pipe.onnx(1, 4)
    # The study records poor variants instead of failing them: no heatmap gate on its builds (the search
    # still aims at the config's int8_cos).
    loose = dataclasses.replace(cfg, tolerances={**cfg.tolerances, "int8_cos": 0.0})
    out = cfg.layout.study()
    variants = [Variant("onnx_fp32", None, "fp32", artifact=onnx[4])]
    tables, search = {}, {}
    for chip in chips:
        # the float builds are candidates too: FP32, and half precision where the chip has it (the fidelity and
        # time an INT8 variant has to beat)
        for precision in ("fp32", "fp16", "bf16"):
            if not chip_supports(chip, precision):
                continue
            v = Variant(f"{chip}_{precision}", chip, precision)
            spec = bmodel_build.deploy_options(cfg, chip, precision, 1, method=None, user_qtables=[], search=False,
                                               checkpoint=req.checkpoint, calib=None)
            variants.append(_deploy(pipe, v, out / f"{chip}_{precision}_b1", spec))
        for method in methods:
            if method not in tables:
                t0 = time.monotonic()
                tables[method] = pipe.cali_table(method)
                print(f"study: calibration {method}: {tables[method]} ({time.monotonic() - t0:.1f} s)")
            for layers, tools in [(la, t) for la in req.layers for t in tool_sets(req)]:
                if layers == "search" and (method not in search_methods or tools):
                    continue
                v = Variant(f"{chip}_{method}_{layers}" + (f"_{cali_tools.tag(tools)}" if tools else ""), chip,
                            "int8", method, layers, tools)
                variants.append(_int8_variant(pipe, loose, req.checkpoint, v, tables[method], search))
    return variants, search


def _int8_variant(pipe, loose, checkpoint, v: Variant, table: Path, search: dict) -> Variant:
    """One INT8 variant: its tools' table (or the line saying why TPU-MLIR cannot), its search, its build."""
    from bmpose.convert import bmodel_build, steps

    user_q = [] if v.layers == "none" or not loose.qtable else [loose.qtable]
    if v.tools:
        try:
            table = pipe.cali_table(v.method, tools=v.tools, chip=v.chip, qtables=user_q)
        except BmposeError as e:
            v.error = str(e).splitlines()[0]
            print(f"study: {v.label}: {v.error}", file=sys.stderr)
            return v
    searched = None
    if v.layers == "search":
        t0 = time.monotonic()
        try:
            searched = steps.ensure_search(pipe.cfg, pipe.mlir(1), pipe.crops(), table, v.chip, pipe.num_used())
        except BmposeError as e:
            v.error = f"search_qtable: {e}"
            return v
        m = read_manifest(searched.parent) or {}
        search[f"{v.chip}_{v.method}"] = {"seconds": m.get("checks", {}).get("seconds"),
                                          "layers": m.get("checks", {}).get("layers"),
                                          "wall_s_this_run": round(time.monotonic() - t0, 1)}
    calib = {"spec": "coco", "coco_ann": None, "coco_img": None, "num": pipe.num_used()}   # `bmpose build`'s
    spec = bmodel_build.deploy_options(loose, v.chip, "int8", 1, method=v.method, user_qtables=user_q,
                                       search=v.layers == "search", checkpoint=checkpoint, calib=calib)
    # record, do not refuse, what an all-INT8 head does
    spec = dataclasses.replace(spec, fp32_layers=v.layers, tpu_layer_tolerance="0.0,-1000",
                               cali_tools=tuple(v.tools))
    return _deploy(pipe, v, loose.layout.study() / f"{v.label}_b1", spec, table, user_q, searched,
                   auto_tail=v.layers != "none")


def _deploy(pipe, v: Variant, out: Path, spec, table=None, user_q=(), searched=None, auto_tail=True) -> Variant:
    t0 = time.monotonic()
    try:
        d, built = pipe.bmodel(v.chip, v.precision, 1, spec, cali_table=table, user_qtables=user_q,
                               searched=searched, out=out, auto_tail=auto_tail)
    except BmposeError as e:
        print(f"study: {v.label}: FAILED: {e}", file=sys.stderr)
        v.error = str(e).splitlines()[0]
        return v
    m = read_manifest(d)
    v.build_dir, v.artifact = d, d / m["tpu_mlir"]
    print(f"study: {v.label}: {'built' if built else 'up to date'} ({time.monotonic() - t0:.1f} s)")
    return v


# ---------------------------------------------------------------------------------------------- evaluation

def evaluate_variants(cfg, variants: list[Variant], boxes, ann: Path, flip: bool, force: bool,
                      size: int, on_cluster: bool) -> dict:
    """label -> COCO AP, heatmaps and keypoints of each variant's artifact, cached in study/eval/<label>.json
    with its inputs' hashes; the missing ones run together as (variant x shard) tasks (bmpose.evaluate.spread:
    here, or spread over a Ray cluster)."""
    from bmpose.evaluate import spread

    evals, todo = {}, []
    for v in (v for v in variants if v.artifact is not None):
        key = _eval_key(cfg, v, boxes, ann, flip)
        hit = None if force else _cached_eval(cfg, v, key)
        if hit is not None:
            evals[v.label] = hit
        else:
            todo.append((v, key))
    if todo:
        outs = spread.predictions(cfg, [_artifact(v) for v, _ in todo], boxes, flip, size=size, heatmaps=True,
                                  on_cluster=on_cluster, label="study eval")
        for (v, key), out in zip(todo, outs):
            evals[v.label] = _store_eval(cfg, v, key, out, ann)
    for v in variants:
        if v.label in evals:
            e = evals[v.label]
            print(f"study: {v.label}: AP {e['AP']:.4f} ({e['persons']} persons, {e['seconds']:.1f} s)")
    return evals


def _artifact(v: Variant):
    from bmpose.evaluate.spread import Artifact

    return Artifact(v.artifact, v.chip, "onnx" if v.chip is None else "mlir")


def _eval_key(cfg, v: Variant, boxes, ann: Path, flip: bool) -> dict:
    inputs = {"annotations": ann, "artifact": v.artifact}
    if v.chip is not None:   # a deployed tpu.mlir: its weight file counts too
        inputs["weights"] = v.build_dir / read_manifest(v.build_dir)["tpu_weights"]
    return result_key(inputs, {"flip": flip, "persons": len(boxes), "config": cfg.summary(), "version": STUDY_VERSION})


def _eval_files(cfg, v: Variant) -> tuple[Path, Path, Path]:
    dest = cfg.layout.study() / "eval" / f"{v.label}.json"
    return dest, dest.with_suffix(".npy"), dest.with_suffix(".keypoints.npy")


def _cached_eval(cfg, v: Variant, key: dict) -> dict | None:
    dest, hm_file, kp_file = _eval_files(cfg, v)
    old = cached_result(dest, key)
    if old is not None and hm_file.is_file() and kp_file.is_file():
        return {**old, "heatmaps": np.load(hm_file), "keypoints": np.load(kp_file)}
    return None


def _store_eval(cfg, v: Variant, key: dict, out: dict, ann: Path) -> dict:
    """The row of one variant's predictions (bmpose.evaluate.spread), written beside its heatmaps and keypoints."""
    from bmpose.evaluate import coco as evaluate
    from bmpose.runtime.results import coco_view, dataset_sigmas, metric_options, to_coco_results

    results = to_coco_results(out["instances"], dataset_sigmas(cfg), **metric_options(cfg))
    # COCO's view of each person's keypoints for the agreement with float (make_rows), which takes the box area
    # of each person as its object area (the row's `areas`)
    keypoints = np.stack([coco_view(cfg, np.asarray(p["keypoints"], np.float32)) for p in out["instances"]])
    stats = evaluate.coco_keypoint_ap(ann, results, sigmas=dataset_sigmas(cfg))
    row = {"label": v.label, **stats, "persons": len(out["instances"]), "seconds": out["seconds"],
           "areas": [float(p["bbox"][2] * p["bbox"][3]) for p in out["instances"]]}
    dest, hm_file, kp_file = _eval_files(cfg, v)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for file, array in ((hm_file, out["heatmaps"].astype(np.float32)), (kp_file, keypoints.astype(np.float32))):
        with atomic_file(file) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array)
    return {**write_result(dest, key, row), "heatmaps": out["heatmaps"], "keypoints": keypoints}


def heatmap_cosines(hm: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Cosine per crop (all keypoint heatmaps of a crop as one vector)."""
    a, b = hm.reshape(len(hm), -1).astype(np.float64), ref.reshape(len(ref), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------------------------- output

def make_rows(cfg, variants: list[Variant], evals: dict, onnx_ap: float) -> list[dict]:
    from bmpose.evaluate import agreement
    from bmpose.runtime.results import dataset_sigmas

    ref, ref_kp = evals["onnx_fp32"]["heatmaps"], evals["onnx_fp32"]["keypoints"]
    rows = []
    for v in variants:
        e = evals.get(v.label)
        m = read_manifest(v.build_dir) if v.build_dir else None
        cos = heatmap_cosines(e["heatmaps"], ref) if e else None
        agree = agreement.summary(agreement.oks_vs_float(e["keypoints"], ref_kp, evals["onnx_fp32"]["areas"],
                                                         dataset_sigmas(cfg))) if e else {}
        rows.append({
            "chip": v.chip or "-", "precision": v.precision.upper(), "method": v.method or "-",
            "fp32_layers": v.layers or "-", "tools": "+".join(v.tools) or "-",
            "cali_s": cali_seconds(v.build_dir, m),
            "n_fp32": len(m.get("fp32_layers", [])) if m and v.precision == "int8" else None,
            "AP": e["AP"] if e else None, "dAP": (e["AP"] - onnx_ap) if e else None,
            "AP50": e["AP50"] if e else None, "AP75": e["AP75"] if e else None,
            "hm_cos_mean": float(cos.mean()) if cos is not None else None,
            "hm_cos_min": float(cos.min()) if cos is not None else None,
            "oks_vs_float": agree.get("oks_vs_float"), "agree90": agree.get("agree90"),
            "device_ms": device_ms(m),
            "build_s": m.get("build_seconds") if m else None,
            "eval_s": e["seconds"] if e else None,
            "error": v.error,
        })
    return rows


def tool_sets(req) -> list[tuple]:
    """--tools as tool tuples: 'none' -> (), 'bc+we' -> ('bc', 'we')."""
    from bmpose.convert import cali_tools

    return [() if t == "none" else cali_tools.normalise(t.split("+")) for t in req.tools]


def cali_seconds(build_dir: Path | None, m: dict | None) -> float | None:
    """Seconds its calibration table took (a tool's search included), from the table's own manifest."""
    table = (m or {}).get("inputs", {}).get("cali_table")
    path = Path(table["path"]).parent if isinstance(table, dict) and table.get("path") else None
    return ((read_manifest(path) or {}).get("checks", {}).get("seconds")) if path else None


def device_ms(manifest: dict | None) -> float | None:
    """Simulated device ms per person of a build (its manifest's compiler cycle estimate), None without one."""
    return ((manifest or {}).get("checks", {}).get("device_time") or {}).get("ms_per_person")


def choose(rows: list[dict], chips, cfg) -> dict:
    """The measured best INT8 variant per chip (highest AP; ties -> fewer FP32 layers, then heatmap cosine)
    and the best (method, fp32_layers) over both chips (lowest worst-chip AP drop)."""
    int8 = [r for r in rows if r["precision"] == "INT8" and r["AP"] is not None]
    best = {}
    for chip in chips:
        mine = [r for r in int8 if r["chip"] == chip]
        if mine:
            b = max(mine, key=lambda r: (round(r["AP"], 4), -(r["n_fp32"] or 0), r["hm_cos_mean"]))
            best[chip] = {k: b[k] for k in ("method", "fp32_layers", "AP", "dAP", "hm_cos_mean")}
    combos = {}
    for r in int8:
        combos.setdefault((r["method"], r["fp32_layers"]), {})[r["chip"]] = r
    overall = [(min(round(x["dAP"], 4) for x in by.values()), -sum(x["n_fp32"] or 0 for x in by.values()),
                min(x["hm_cos_mean"] for x in by.values()), k) for k, by in combos.items() if len(by) == len(chips)]
    top = max(overall) if overall else None
    default = (cfg.calibration.get("method", "kl"), "auto")
    return {"per_chip": best,
            "overall": {"method": top[3][0], "fp32_layers": top[3][1], "worst_chip_dAP": top[0]} if top else None,
            "config_default": {"method": default[0], "fp32_layers": default[1],
                               "dAP": {c: combos.get(default, {}).get(c, {}).get("dAP") for c in chips}}}


def _paired_scores(cfg, variants, flip: bool, size: int, on_cluster: bool, force: bool) -> dict:
    """label -> per-person OKS on the jittered set (bmpose.evaluate.paired), cached beside each build; the
    missing ones run together as (variant x shard) tasks (bmpose.evaluate.spread)."""
    from bmpose.evaluate import paired, spread
    from bmpose.runtime.results import coco_view, dataset_sigmas

    boxes, owner, truth = paired.jittered_boxes(*eval_set())
    caches = {v.label: (v.build_dir or cfg.layout.study()) / f"paired_oks_{v.label}.json"
              for v in variants if v.artifact is not None}
    scored = {v.label: None if force else paired.read_cached(caches[v.label], v.artifact, len(boxes))
              for v in variants if v.label in caches}
    todo = [v for v in variants if v.label in scored and scored[v.label] is None]
    outs = spread.predictions(cfg, [_artifact(v) for v in todo], boxes, flip, size=size, on_cluster=on_cluster,
                              label="study paired OKS") if todo else []
    for v, out in zip(todo, outs):
        kp = [coco_view(cfg, np.asarray(p["keypoints"])) for p in out["instances"]]
        scored[v.label] = paired.oks_per_person(out["order"], kp, owner, truth, dataset_sigmas(cfg))
        paired.write_cached(caches[v.label], v.artifact, len(boxes), scored[v.label])
    return scored


def _add_paired_oks(cfg, variants, rows, scored: dict) -> None:
    """Per row: the fidelity gate's statistic (bmpose.evaluate.paired) and, per chip, whether the row differs
    from the chip's best INT8 variant beyond the noise (`~best`: the paired interval holds 0)."""
    from bmpose.evaluate import paired

    ref = scored.get("onnx_fp32")
    for v, row in zip(variants, rows):
        if ref is not None and v.label in scored:
            d = paired.paired_drop(ref, scored[v.label])
            row.update(oks_drop=d["drop"], oks_ci95=f"{d['ci95'][0]:+.4f}..{d['ci95'][1]:+.4f}")
    for chip in {v.chip for v in variants if v.chip}:
        mine = {v.label: scored[v.label] for v in variants if v.chip == chip and v.precision == "int8"
                and v.label in scored}
        if mine:
            verdict = paired.versus_best(mine)
            for v, row in zip(variants, rows):
                if v.label in verdict:
                    row["vs_best"] = "best" if verdict[v.label]["vs"] == v.label else (
                        "~best" if verdict[v.label]["within_noise"] else f"{verdict[v.label]['diff']:+.4f}")


def to_markdown(study: dict) -> str:
    cols = ["chip", "precision", "method", "fp32_layers", "tools", "n_fp32", "AP", "dAP", "oks_vs_float", "agree90",
            "oks_drop", "oks_ci95",
            "vs_best", "hm_cos_mean", "hm_cos_min", "device_ms", "cali_s", "build_s", "eval_s", "error"]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = [f"# Calibration study: {study['model']}", "", study["setup"], "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in study["rows"]]
    lines += ["", "search_qtable: " + json.dumps(study["search"]), "", "choice: " + json.dumps(study["choice"]),
              "", f"total {study['seconds']:.0f} s"]
    return "\n".join(lines) + "\n"


def run_study(cfg, req) -> dict:
    """Build, evaluate and tabulate every variant; writes study/{study.md,study.json,manifest.json}."""
    t_start = time.monotonic()
    chips = tuple(req.chips or cfg.chips)
    for m in req.methods:
        from bmpose.convert.steps import CALI_METHODS

        if m not in CALI_METHODS:
            raise BmposeError(f"--methods {m}: unknown calibration method (choose from {', '.join(CALI_METHODS)})")
    tool_sets(req)   # an unknown tool is an error before anything is built
    search_methods = set(req.methods if list(req.search_methods) == ["all"] else req.search_methods)
    ann, img = (Path(req.coco_ann), Path(req.coco_img or Path(req.coco_ann).parent)) if req.coco_ann \
        else eval_set()
    variants, search = build_variants(cfg, req, chips, req.methods, search_methods)
    boxes = eval_boxes(ann, img)
    flip = cfg.flip_test and not req.no_flip
    on_cluster = bool(req.ray)
    if on_cluster:   # the builds above ran here; the evaluations are tasks of the cluster
        from bmpose.evaluate import cluster

        cluster.connect(req.ray)
    size = req.shard_persons
    evals = evaluate_variants(cfg, variants, boxes, ann, flip, req.force_eval, size, on_cluster)
    onnx_ap = evals["onnx_fp32"]["AP"]
    rows = make_rows(cfg, variants, evals, onnx_ap)
    _add_paired_oks(cfg, variants, rows, _paired_scores(cfg, variants, flip, size, on_cluster,
                                                                  req.force_eval))
    default = next((v for v in variants if v.precision == "int8" and v.layers == "auto"
                    and v.method == cfg.calibration.get("method", "kl") and v.build_dir), None)
    layer_plots = [{"chip": v.chip, "title": f"{v.chip}, {v.method}, automatic FP32 tail",
                    "csv": str(v.build_dir / "compare.csv")}
                   for v in variants if v.precision == "int8" and v.layers == "auto" and v.build_dir
                   and v.method == cfg.calibration.get("method", "kl")]
    study = {
        "version": STUDY_VERSION, "model": cfg.name, "checkpoint": req.checkpoint or cfg.checkpoint,
        "setup": _setup(cfg, len(boxes), ann, flip, onnx_ap, search_methods),
        "eval_set": {"annotations": str(ann), "images": str(img), "persons": len(boxes), "flip": flip},
        "onnx_AP": onnx_ap, "rows": rows, "search": search, "layer_plots": layer_plots,
        "default_variant": default.label if default else None,
    }
    study["choice"] = choose(rows, chips, cfg)
    study["seconds"] = round(time.monotonic() - t_start, 1)
    _write(cfg, study, variants, evals, ann,
           {"chips": list(chips), "methods": list(req.methods), "layers": list(req.layers), "tools": list(req.tools),
            "search_methods": sorted(search_methods), "flip": flip, "checkpoint": req.checkpoint or cfg.checkpoint})
    return study


def _setup(cfg, persons: int, ann: Path, flip: bool, onnx_ap: float, search_methods) -> str:
    """How the study was made, in one paragraph (study.json's `setup`)."""
    return (f"INT8 batch-1 bmodels, calibration on {cfg.calibration.get('num')} requested crops of the "
            f"default calibration set (coco_train_mini, COCO train2017: never evaluated on); evaluated through the "
            f"mlir backend (deployed *_tpu.mlir on pymlir) on "
            f"{persons} persons of {ann.name} with ground-truth boxes{', flip test' if flip else ''}; "
            f"dAP = AP - ONNX FP32 AP ({onnx_ap:.4f}) on the same crops; hm_cos = heatmap cosine vs ONNX per "
            f"crop (mean, worst); oks_vs_float = mean OKS of the keypoints against ONNX FP32's on the same crops "
            f"(COCO keypoints and sigmas, box area), agree90 = share of persons at OKS >= 0.9 against float "
            f"(bmpose.evaluate.agreement: no labels needed); oks_drop = per-person OKS drop vs ONNX on 8 jittered "
            f"crops per person with "
            f"its 95% paired interval (the fidelity gate's statistic), vs_best: ~best = within the noise of "
            f"the chip's best INT8 variant; device_ms = simulated device ms per person (the compiler's cycle "
            f"estimate embedded in the bmodel, bmpose.tpu_mlir.devtime). fp32_layers: none = all INT8, auto = "
            f"automatic FP32 tail, search = tail + TPU-MLIR search_qtable (methods: "
            f"{', '.join(sorted(search_methods))}).")


def _write(cfg, study: dict, variants, evals: dict, ann: Path, options: dict) -> None:
    """study/{study.md, study.json} and a manifest over what the table was made from (every variant's build
    manifest and evaluation record)."""
    out = cfg.layout.study()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "study.md") as tmp:
        tmp.write_text(to_markdown(study))
    with atomic_file(out / "study.json") as tmp:
        tmp.write_text(json.dumps(study, indent=2, default=str) + "\n")
    inputs = {"annotations": ann,
              **{f"build/{v.label}": v.build_dir / "manifest.json" for v in variants if v.build_dir},
              **{f"eval/{k}": out / "eval" / f"{k}.json" for k in evals}}
    write_manifest(out, stage="study", inputs=inputs, options=options, outputs=["study.json", "study.md"],
                   checks={"choice": study["choice"]["overall"]})
