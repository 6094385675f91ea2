"""`bmpose eval --model M` (what `make eval` runs): COCO keypoint AP of every artifact of a model.

ONNX FP32 (our export) and every built bmodel (`bmpose.convert.list_bmodels`) are run over the evaluation set
(default: the bundled coco_val_mini with ground-truth boxes) with the same preprocessing, decode, rescoring
and OKS-NMS, then scored with xtcocotools. Without a device, a bmodel is evaluated through its deployed
`*_tpu.mlir` on pymlir (whole set; what TPU-MLIR checks the bmodel against, see bmpose.runtime.backends.mlir), or with
`--bmodel-runtime cmodel` on the bmodel itself on a small named subset (the simulator takes seconds to
minutes per crop). Each result lands in artifacts/<model>/eval/<label>.json for the report, with the ONNX
AP of the same persons beside it; a result whose inputs and options are unchanged is not recomputed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from bmpose import procs
from bmpose.calib import provenance
from bmpose.evaluate import coco as evaluate
from bmpose.evaluate import shards as shards_mod
from bmpose.runtime import boxes as boxes_mod
from bmpose.runtime import predict as infer
from bmpose.runtime.results import dataset_sigmas, metric_options
from bmpose.errors import BmposeError
from bmpose.manifest import atomic_file, cached_result, result_key, write_manifest, write_result

DEFAULT_SUBSET = 4


@dataclasses.dataclass(frozen=True)
class EvalRequest:
    """One `bmpose eval --model M` (the CLI's options, typed)."""
    checkpoint: str | None = None
    coco_ann: str | None = None          # None: the bundled coco_val_mini
    coco_img: str | None = None
    boxes: str = "gt"                    # gt | dets:JSON | detector:NAME
    artifacts: tuple | None = None       # labels to evaluate (None: all built)
    subset: int | None = None            # persons for bmodels on the cmodel
    bmodel_runtime: str = "mlir"         # mlir | cmodel
    flip: bool = False
    shard_persons: int = shards_mod.SHARD_PERSONS
    ray: str | None = None               # a Ray cluster's address, auto or local
    force: bool = False
    allow_calib_overlap: bool = False


def subset_boxes(boxes: list, persons: int) -> list:
    """Whole images, in annotation order, until `persons` boxes are reached: a subset COCOeval can score."""
    out, images = [], []
    for b in boxes:
        if b.image_id not in images:
            if len(out) >= persons:
                break
            images.append(b.image_id)
        out.append(b)
    return out


def score(cfg, open_model, boxes, ann, flip, sigmas, options, subset: bool, shards: dict | None = None) -> dict:
    """COCO AP of the backend `open_model()` opens, on `boxes`; with `shards` ({folder, key, size, runner, label}:
    bmpose.evaluate.shards) in shards written as they finish, so an interrupted run resumes where it stopped, and
    the model is opened only if a shard is computed here (not when every shard is done, nor on Ray)."""
    from bmpose.runtime.results import to_coco_results

    if shards is None:
        run = infer.predict(cfg, open_model(), boxes, flip, allow_slow=True)
        results = infer.coco_results(cfg, run.predictions, sigmas, options)
        persons, seconds = len(run.predictions), run.seconds
    else:
        out = shards_mod.run(cfg, open_model, boxes, flip, **shards)
        results = to_coco_results(out["instances"], sigmas, **(options or {}))
        persons, seconds = len(out["instances"]), out["seconds"]
    ids = sorted({b.image_id for b in boxes}) if subset else None
    stats = evaluate.coco_keypoint_ap(ann, results, sigmas=sigmas, image_ids=ids)
    return {**stats, "persons": persons, "seconds": round(seconds, 2),
            "seconds_per_crop": round(seconds / max(1, persons * (2 if flip else 1)), 4), "image_ids": ids}


def run_eval(req, cfg, collect: dict | None = None) -> int:
    """Every artifact's row on the evaluation set; `collect` (optional) gets {label: the COCO metrics, persons,
    ONNX's AP on the same persons}."""
    from bmpose.convert.export import ensure_onnx

    ann, img, boxes = _boxes(req, cfg)
    onnx = ensure_onnx(cfg, req.checkpoint, batches=(4,), verbose=False)[4]
    artifacts = _artifacts(cfg, req, onnx)
    _check_calibration(req, artifacts, boxes)
    artifacts = _other_cmodel_chips_in_children(cfg, req, artifacts, ann, img)
    ctx = {"ann": ann, "boxes": boxes, "onnx": onnx, "flip": bool(req.flip), "sigmas": dataset_sigmas(cfg),
           "options": metric_options(cfg), "onnx_cache": {}}
    if req.ray:
        from bmpose.evaluate import cluster

        cluster.connect(req.ray)
        ctx["runner"] = lambda a: cluster.runner(cfg, a["path"], a["chip"], a["kind"], ctx["flip"])
    out_dir = cfg.layout.eval()
    tag = _label_tag(req, ann)
    artifacts = [{**a, "label": a["label"] + tag} for a in artifacts]
    rows = [_eval_one(cfg, req, a, ctx, out_dir / f"{a['label']}.json") for a in artifacts]
    if rows:
        write_manifest(out_dir, stage="eval", inputs={"annotations": ann},
                       options={"flip": ctx["flip"], "boxes": req.boxes, "bmodel_runtime": req.bmodel_runtime},
                       outputs=sorted(p.name for p in out_dir.glob("*.json") if p.name != "manifest.json"),
                       checks={r["label"]: r["AP"] for r in rows})
    if collect is not None:
        from bmpose.evaluate.coco import STAT_NAMES

        collect.update({r["label"]: {**{k: r[k] for k in STAT_NAMES}, "persons": r["persons"],
                                     "onnx_AP_same_persons": r["onnx_AP_same_persons"]} for r in rows})
    print(f"\n{'label':<28} {'AP':>7} {'AP50':>7} {'AP75':>7} {'AR':>7} {'dAP':>8}  persons")
    for r in rows:
        print(f"{r['label']:<28} {r['AP']:7.4f} {r['AP50']:7.4f} {r['AP75']:7.4f} {r['AR']:7.4f} "
              f"{r['AP'] - r['onnx_AP_same_persons']:+8.4f}  {r['persons']}{' (subset)' if r.get('image_ids') else ''}"
              f"{'  scored on its own calibration images' if (r.get('calibration') or {}).get('seen') else ''}")
    return 0


def _label_tag(req, ann: Path) -> str:
    """What tells a row's evaluation apart from the default one (the bundled set with its annotated boxes), so
    it lands beside those rows, not over them: `@<annotation file>` for another set, `__<detector>` for a
    detector's boxes, `__dets_<file>` for a detection file's."""
    from bmpose.detector_config import load_detector_spec

    tag = "" if ann.resolve() == boxes_mod.bundled_sample()[0].resolve() else f"@{ann.stem}"
    if req.boxes.startswith("detector:"):
        tag += "__" + load_detector_spec(req.boxes).tag
    elif req.boxes.startswith("dets:"):
        tag += "__dets_" + Path(req.boxes[5:]).stem
    return tag


def _boxes(req, cfg):
    """-> (annotation file, image folder, person boxes) of the evaluation set."""
    ann_default, img_default = boxes_mod.bundled_sample()
    ann = Path(req.coco_ann) if req.coco_ann else ann_default
    img = Path(req.coco_img) if req.coco_img else (img_default if not req.coco_ann else ann.parent)
    if req.boxes == "gt":
        return ann, img, boxes_mod.gt_boxes(ann, img)
    if req.boxes.startswith("dets:"):
        return ann, img, boxes_mod.det_boxes(Path(req.boxes[5:]), ann, img, boxes_mod.det_score_thr(cfg))
    if req.boxes.startswith("detector:"):
        return ann, img, _detector_boxes(req, cfg, ann, img)
    raise BmposeError(f"--boxes {req.boxes!r}: expected gt, dets:JSON or detector:NAME")


def _detector_boxes(req, cfg, ann: Path, img: Path) -> list:
    """The detector's person boxes on every image of the evaluation set (its eval_score_thr: AP rewards low-score
    boxes), and its own person-box AP and recall, recorded as eval/detector_<name>.json beside the pose rows."""
    from bmpose.detector_config import load_detector_spec
    from bmpose.evaluate.detector_boxes import score_detector
    from bmpose.runtime.detector import PersonDetector

    dcfg = load_detector_spec(req.boxes, artifacts=cfg.root)
    detector = PersonDetector(dcfg)
    scored, boxes = score_detector(detector, ann, img)
    row = {"label": f"detector_{dcfg.tag}", "artifact": str(detector.backend.path), "backend": detector.backend.kind,
           "precision": dcfg.precision, **scored}
    with atomic_file(cfg.layout.eval() / f"detector_{dcfg.tag}.json") as tmp:
        tmp.write_text(json.dumps(row, indent=2) + "\n")
    r = row["recall_iou50"]
    print(f"eval: {dcfg.tag}: {row['boxes']} person boxes, box AP {row['AP']:.4f}, recall at IoU 0.5 "
          f"{r['found']}/{r['persons']}")
    return boxes


def _artifacts(cfg, req, onnx: Path) -> list[dict]:
    """ONNX FP32 and every built bmodel (through its deployed MLIR, or on the cmodel), as --artifacts picks."""
    from bmpose.layout import list_bmodels

    artifacts = [{"label": "onnx_fp32", "path": onnx, "kind": "onnx", "chip": None, "precision": "fp32",
                  "batch": 4}]
    for b in list_bmodels(cfg, auto=True):
        mlir = req.bmodel_runtime == "mlir"
        artifacts.append({"label": b["name"] + ("" if mlir else "_cmodel"),
                          "path": b["tpu_mlir"] if mlir else b["path"], "kind": "mlir" if mlir else "cmodel",
                          "chip": b["chip"], "precision": b["precision"], "batch": b["batch"], "bmodel": b["path"],
                          "calibration": b["manifest"].get("calibration")})
    if req.artifacts:
        # a build is named by its folder whichever runtime scores it (`_cmodel` rows answer to both names)
        names = {a["label"]: {a["label"], a["label"].removesuffix("_cmodel")} for a in artifacts}
        unknown = set(req.artifacts) - set().union(*names.values())
        if unknown:
            raise BmposeError(f"--artifacts {', '.join(sorted(unknown))}: not built (have: "
                              f"{', '.join(a['label'] for a in artifacts)})")
        artifacts = [a for a in artifacts if names[a["label"]] & set(req.artifacts)]
    return artifacts


def _check_calibration(req, artifacts: list[dict], boxes: list) -> None:
    """An INT8 build is not scored on the images that calibrated it (its AP would flatter it) unless
    --allow-calib-overlap says so; then its result says how many. Sets each INT8 artifact's `calibration`
    to {"set", "seen": evaluation images it was calibrated on, None when unknown}."""
    files = sorted({Path(b.file) for b in boxes})
    for a in artifacts:
        if a["precision"] != "int8":
            continue
        record = a.get("calibration")
        hit = provenance.seen(record, files)
        a["calibration"] = {"set": record["set"] if record else None,
                            "seen": None if hit is None else [provenance.short(f) for f in hit]}
        if not hit:
            continue
        names = ", ".join(f.name for f in hit[:3]) + (", ..." if len(hit) > 3 else "")
        what = (f"{a['bmodel']}: {len(hit)} of the {len(files)} evaluation images also calibrated it "
                f"({record['set']}: {names})")
        if not req.allow_calib_overlap:
            raise BmposeError(f"{what}: its INT8 AP would be measured on its own calibration set; evaluate on "
                              f"other images, calibrate on other persons, or pass --allow-calib-overlap to score "
                              f"it anyway (marked in the result and the report)")
        print(f"eval: warning: {what}; scored anyway (--allow-calib-overlap), marked in the result",
              file=sys.stderr)


def _other_cmodel_chips_in_children(cfg, req, artifacts: list[dict], ann: Path, img: Path) -> list[dict]:
    """The cmodel binds one chip per process: the bmodels of every other chip are evaluated by a child
    `bmpose eval`. -> what is left for this process."""
    cm_chips = sorted({a["chip"] for a in artifacts if a["kind"] == "cmodel"})
    for chip in cm_chips[1:]:
        labels = [a["label"] for a in artifacts if a["kind"] == "cmodel" and a["chip"] == chip]
        cmd = [sys.executable, "-m", "bmpose", "eval", "--model", str(cfg.path), "--artifacts-dir", str(cfg.root),
               "--bmodel-runtime", "cmodel", "--boxes", req.boxes, "--subset", str(req.subset or DEFAULT_SUBSET),
               "--coco-ann", str(ann), "--coco-img", str(img), "--artifacts", *labels] + \
            (["--flip"] if req.flip else []) + (["--force"] if req.force else []) + \
            (["--allow-calib-overlap"] if req.allow_calib_overlap else [])
        # stopped with this process on an interrupt, which it then leaves to this one to report
        if procs.run(cmd, env={**os.environ, "BMPOSE_NESTED": "1"}) != 0:
            raise BmposeError(f"eval of {', '.join(labels)} ({chip} cmodel) failed (see above)")
    return [a for a in artifacts if a["kind"] != "cmodel" or a["chip"] == cm_chips[0]]


def _eval_one(cfg, req, a: dict, ctx: dict, dest: Path) -> dict:
    """One artifact's eval row: reused from `dest` when its inputs, options and tools are unchanged."""
    from bmpose.runtime.backends import open_backend

    subset = a["kind"] == "cmodel"
    todo = subset_boxes(ctx["boxes"], req.subset or DEFAULT_SUBSET) if subset else ctx["boxes"]
    inputs = {"annotations": ctx["ann"], "artifact": a["path"], "bmodel": a.get("bmodel"),
              **({"detections": Path(req.boxes[5:])} if req.boxes.startswith("dets:") else {})}
    key = result_key(inputs, {"flip": ctx["flip"], "boxes": req.boxes, "backend": a["kind"], "persons": len(todo),
                              "subset": subset, "metric": ctx["options"], "config": cfg.summary(),
                              "calibration": a.get("calibration")})
    if req.force:   # nothing of an earlier run is reused, and an interrupted forced run leaves no old row
        dest.unlink(missing_ok=True)
        shutil.rmtree(dest.with_suffix(".shards"), ignore_errors=True)
    old = cached_result(dest, key)
    if old is not None:
        print(f"eval: {a['label']}: up to date, AP {old['AP']:.4f}")
        return old
    def open_model():
        backend = open_backend(a["path"], a["chip"], kind=a["kind"])
        print(f"eval: {a['label']}: on {backend.describe()}", flush=True)
        return backend

    print(f"eval: {a['label']}: {len(todo)} persons")
    scoring = (ctx["ann"], ctx["flip"], ctx["sigmas"], ctx["options"], subset)
    # in shards beside the row: an interrupted evaluation resumes at its first missing shard
    shards = {"folder": dest.with_suffix(".shards"), "key": key, "size": req.shard_persons, "label": a["label"],
              "runner": ctx["runner"](a) if "runner" in ctx else None}

    stats = score(cfg, open_model, todo, *scoring, shards=shards)
    n, cache = len(todo), ctx["onnx_cache"]
    if n not in cache:  # the ONNX AP of the same persons, so a subset row has its own reference
        cache[n] = stats if a["kind"] == "onnx" else score(cfg, lambda: open_backend(ctx["onnx"], kind="onnx"), todo,
                                                             *scoring)
    row = {"label": a["label"], "artifact": str(a.get("bmodel") or a["path"]), "backend": a["kind"],
           "chip": a["chip"], "precision": a["precision"], "batch": a["batch"], **stats,
           "subset": (f"first {len(stats['image_ids'])} images ({stats['persons']} persons) of {ctx['ann'].name}"
                      if subset else f"all of {ctx['ann'].name}"),
           "onnx_AP_same_persons": cache[n]["AP"], "eval_set": provenance.short(ctx["ann"]),
           "calibration": a.get("calibration")}
    row = write_result(dest, key, row)
    print(f"eval: {a['label']}: AP {row['AP']:.4f} (ONNX on the same persons {row['onnx_AP_same_persons']:.4f})"
          f", {row['seconds_per_crop']:.3f} s/crop")
    return row
