"""The report's opening verdict: every gate each bmodel build checked, pass or fail, and a pose per chip.

A bmodel build (bmpose.convert.deploy) passes two gates before it writes its manifest: TPU-MLIR's own checks in
model_deploy (the bmodel against the TPU MLIR, every TPU MLIR layer against the top MLIR) with bmpose's FP32 tail
deployed as planned, then the heatmap cosine against ONNX Runtime at the config's tolerance (`checks.tolerance`
in the manifest). A build that fails is kept as `<dir>.failed/` without a manifest; its compare.csv, when it
got that far, still holds the cosine. Beside the gates each row shows the COCO AP where that very artifact was
evaluated (`bmpose eval`, or the calibration study on the same deployed MLIR, matched by content hash) and the
compiler's device time estimate. The pose picture per chip is drawn by the chip's INT8 bmodel (else the best
built precision) through its deployed MLIR on pymlir, for the two persons of a bundled COCO image (about a
second per chip), and reused while its inputs are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from bmpose.convert import CHIPS, PRECISIONS
from bmpose.manifest import sha256_file

PICTURE_VERSION = 1
PICTURE_IMAGE = "000000397133.jpg"      # COCO val2017 397133 (two persons, Flickr, CC BY): bundled
PICTURE_PREFERENCE = ("int8", "fp16", "bf16", "fp32")
_FAILED = re.compile(r"^(?P<chip>.+)_(?P<precision>[a-z0-9]+)_b(?P<batch>\d+)\.failed$")
DEPLOY_GATE = ("deploy", "TPU-MLIR model_deploy's own checks (bmodel vs TPU MLIR, layers vs top MLIR), FP32 tail "
                         "as planned")


def failed_builds(cfg) -> list[Path]:
    """Bmodel builds that failed (kept as `<dir>.failed/`, with their logs)."""
    return [d for d in sorted(cfg.artifacts.glob("*_*_b*.failed")) if d.is_dir() and _FAILED.match(d.name)]


def _gate(name, what, passed, value=None, threshold=None, note="") -> dict:
    return {"name": name, "what": what, "pass": bool(passed), "value": value, "threshold": threshold,
            "note": note}


def _heatmap_gate(key, cos, tol) -> dict:
    ok = cos is not None and cos >= tol
    return _gate(key, "heatmap cosine vs ONNX", ok, cos, tol,
                 f"{cos:.6f} {'>=' if ok else '<'} {tol}" if cos is not None else "no cosine recorded")


def _row_of_build(b: dict) -> dict:
    tol = b.get("tolerance") or {}
    gates = [_gate(*DEPLOY_GATE, True, note="passed")]   # the build wrote its manifest only after them
    gates += [_heatmap_gate(k, b["cosine"], v) for k, v in tol.items()]
    return {"bmodel": Path(b["dir"]).name, "file": b["name"], "link": b["path"], "chip": b["chip"],
            "precision": b["precision"], "batch": b["batch"], "built": True, "gates": gates,
            "pass": all(g["pass"] for g in gates), "cosine": b["cosine"],
            "sim_ms_per_person": b.get("sim_ms_per_person"), "sim_ms_per_batch": b.get("sim_ms_per_batch")}


def _failed_gate(cfg, d: Path, precision: str) -> tuple[str, float | None]:
    """The heatmap gate a failed build was held to: from the options it left (bmpose.convert.deploy), else, for
    a build older than that file, the config's rule (random-init fixture weights: the *_random gate)."""
    from bmpose.convert.deploy import FAILED_OPTIONS, gate_key

    try:
        key, tol = next(iter(json.loads((d / FAILED_OPTIONS).read_text())["tolerance"].items()))
        return key, float(tol)
    except (OSError, ValueError, KeyError, StopIteration, AttributeError, TypeError):
        key = gate_key(precision, cfg.checkpoint)
        return key, cfg.tolerances.get(key)


def _row_of_failure(cfg, d: Path, kept: set) -> dict:
    from bmpose.convert.compare import read_csv

    m = _FAILED.match(d.name)
    chip, precision, batch = m["chip"], m["precision"], int(m["batch"])
    log = d / "model_deploy.log"
    rows = read_csv(d / "compare.csv") if (d / "compare.csv").is_file() else []
    final = next((r for r in rows if r.get("op") == "bmodel"), None)
    if final is None:   # stopped in model_deploy or the qtable check, before any comparison with ONNX
        gates = [_gate(*DEPLOY_GATE, False, note=f"failed: see {log}")]
    else:
        key, tol = _failed_gate(cfg, d, precision)
        gates = [_gate(*DEPLOY_GATE, True, note="passed")]
        if tol is not None:
            gates.append(_heatmap_gate(key, float(final["cosine"]), tol))
        if all(g["pass"] for g in gates):
            gates.append(_gate("build", "the build itself", False, note=f"failed after its gates: see {log}"))
    name = d.name[:-len(".failed")]
    return {"bmodel": name, "file": d.name, "link": str(log if log.is_file() else d), "chip": chip,
            "precision": precision, "batch": batch, "built": False, "gates": gates, "pass": False,
            "cosine": float(final["cosine"]) if final else None, "sim_ms_per_person": None,
            "sim_ms_per_batch": None, "note": "the last build failed" + ("; an earlier build is kept" if name in kept
                                                                       else "")}


# ------------------------------------------------------------------------------------------------ AP

def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _ap_of(cfg, b: dict, study: dict | None) -> dict:
    """The AP of this very artifact: `bmpose eval` (whole set on its deployed MLIR, else the cmodel subset),
    else the calibration study's evaluation of the same deployed MLIR and weights (equal content hashes)."""
    ev = cfg.artifacts / "eval"
    label = Path(b["dir"]).name
    for name, path in ((label, b["tpu_mlir"]), (f"{label}_cmodel", b["path"])):
        obj = _read_json(ev / f"{name}.json")
        if not isinstance(obj, dict) or obj.get("AP") is None:
            continue
        want = (obj.get("inputs") or {}).get("artifact")
        if want is not None and want != sha256_file(path):
            return {"AP": None, "source": f"eval/{name}.json is stale: the bmodel was rebuilt after it"}
        ref = obj.get("onnx_AP_same_persons")
        return {"AP": obj["AP"], "delta_AP": None if ref is None else obj["AP"] - ref,
                "persons": obj.get("persons"), "source": f"bmpose eval ({obj.get('backend') or 'mlir'})"}
    mlir_hash, weights_hash = (b.get("hashes") or {}).get("tpu_mlir"), (b.get("hashes") or {}).get("tpu_weights")
    if isinstance(study, dict) and mlir_hash and weights_hash:
        for p in sorted((cfg.artifacts / "study" / "eval").glob("*.json")):
            obj = _read_json(p)
            inp = obj.get("inputs") if isinstance(obj, dict) else None
            if isinstance(inp, dict) and (inp.get("artifact"), inp.get("weights")) == (mlir_hash, weights_hash):
                ref = study.get("onnx_AP")
                return {"AP": obj.get("AP"), "delta_AP": None if ref is None or obj.get("AP") is None
                        else obj["AP"] - ref, "persons": obj.get("persons"),
                        "source": f"calibration study, the same deployed MLIR ({obj.get('label')})"}
    return {"AP": None, "source": "not evaluated: make eval"}


# ------------------------------------------------------------------------------------------------ verdict

def verdict(cfg, data: dict) -> dict:
    """{overall: {pass, text}, rows: [per bmodel build: gates, cosine, AP, device time]}; pass None: nothing
    built."""
    rows = []
    for b in data["bmodels"]:
        rows.append({**_row_of_build(b), **_ap_of(cfg, b, data.get("study"))})
    kept = {r["bmodel"] for r in rows}
    rows += [_row_of_failure(cfg, d, kept) for d in failed_builds(cfg)]
    rank = {p: i for i, p in enumerate((*CHIPS, *PRECISIONS))}
    rows.sort(key=lambda r: (rank.get(r["chip"], 9), r["chip"], rank.get(r["precision"], 9), r["batch"],
                             not r["built"]))
    failing = [r for r in rows if not r["pass"]]
    n = len(rows)
    if not rows:
        overall = {"pass": None, "text": "No bmodels built yet"}
    elif not failing:
        overall = {"pass": True, "text": f"All {n} bmodels pass their gates" if n > 1 else
                   "The 1 bmodel passes its gates"}
    else:
        why = "; ".join(f"{r['bmodel']}{'' if r['built'] else ' (build failed)'}: "
                        + ", ".join(f"{g['name']} {g['note']}" for g in r["gates"] if not g["pass"])
                        for r in failing)
        overall = {"pass": False, "text": f"{len(failing)} of {n} fail: {why}"}
    return {"overall": overall, "rows": rows, "pictures": []}


# ------------------------------------------------------------------------------------------------ pictures

def _picture_source(data: dict, chip: str) -> dict | None:
    """The chip's bmodel to draw with: INT8 first (what deploys), else the best precision built; batch 1 first;
    only builds that passed their gates."""
    ok = {r["bmodel"] for r in data["verdict"]["rows"] if r["pass"]}
    cands = [b for b in data["bmodels"] if b["chip"] == chip and Path(b["dir"]).name in ok]
    rank = {p: i for i, p in enumerate(PICTURE_PREFERENCE)}
    cands.sort(key=lambda b: (rank.get(b["precision"], len(rank)), b["batch"]))
    return cands[0] if cands else None


def _picture_key(cfg, b: dict, image: Path) -> str:
    from bmpose.pose import draw
    from bmpose.runtime import predict

    facts = {"v": PICTURE_VERSION, "hashes": b.get("hashes"), "flip": cfg.flip_test, "config": cfg.summary(),
             "image": sha256_file(image) if image.is_file() else None,
             "code": [sha256_file(m.__file__) for m in (predict, draw)]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def _draw(cfg, b: dict, ann: Path, img_dir: Path, out: Path) -> int:
    """Pose of the bundled picture's persons by this bmodel's deployed MLIR -> out (jpg); persons drawn."""
    from bmpose.runtime import boxes as boxes_mod, predict
    from bmpose.runtime.backends.mlir import MlirBackend

    persons = boxes_mod.gt_boxes(ann, img_dir, {PICTURE_IMAGE})
    backend = MlirBackend(b["tpu_mlir"], b["chip"], workers=1)
    run = predict.predict(cfg, backend, persons, flip=cfg.flip_test, progress=False)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        name = predict.draw_results(run.predictions, Path(tmp))[0]
        shutil.move(str(Path(tmp) / name), out)
    return len(run.predictions)


def pose_pictures(cfg, data: dict, tmp: Path, old_dir: Path) -> list[str]:
    """A pose picture per chip into tmp (reused from old_dir, the previous report, when its key is unchanged);
    data["verdict"]["pictures"] lists them, or why a chip has none. -> the files written."""
    from bmpose.runtime.boxes import bundled_sample

    ann, img_dir = bundled_sample()
    old = _read_json(old_dir / "report.json") or {}
    before = {p.get("key"): p for p in (old.get("verdict") or {}).get("pictures", []) if p.get("file")}
    pictures, files = [], []
    for chip in dict.fromkeys(b["chip"] for b in data["bmodels"]):
        b = _picture_source(data, chip)
        if b is None:
            pictures.append({"chip": chip, "file": None, "why": "no bmodel of this chip passed its gates"})
            continue
        name, key = f"pose_{chip}.jpg", _picture_key(cfg, b, img_dir / PICTURE_IMAGE)
        pic = {"chip": chip, "file": name, "key": key, "bmodel": Path(b["dir"]).name, "precision": b["precision"],
               "batch": b["batch"], "image": PICTURE_IMAGE, "flip": cfg.flip_test}
        prev = before.get(key)
        try:
            if prev and (old_dir / prev["file"]).is_file():
                shutil.copy2(old_dir / prev["file"], tmp / name)
                pic["persons"], pic["reused"] = prev.get("persons"), True
            else:
                pic["persons"], pic["reused"] = _draw(cfg, b, ann, img_dir, tmp / name), False
        except Exception as e:   # a picture is worth having, not worth failing the report over: say why
            pictures.append({"chip": chip, "file": None, "why": f"{type(e).__name__}: {e}"})
            continue
        pic["sha256"] = sha256_file(tmp / name)
        pictures.append(pic)
        files.append(name)
    data["verdict"]["pictures"] = pictures
    return files
