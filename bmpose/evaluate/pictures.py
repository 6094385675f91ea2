"""A pose per chip for the report's verdict: the two persons of a bundled COCO image drawn by the chip's INT8
bmodel (else the best precision that passed its gates) through its deployed MLIR on pymlir, about a second per
chip. Each lands in `pictures/<chip>/` with a manifest: redrawn only when that bmodel, the image, the drawing
code or the config change. The report only reads them (`read_pictures`).
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from bmpose.config import DATA_DIR
from bmpose.layout import list_bmodels
from bmpose.manifest import atomic_dir, jsonable, read_manifest, up_to_date, write_manifest

SAMPLE = DATA_DIR / "coco_val_mini"   # the bundled sample (bmpose.runtime.boxes.bundled_sample)
IMAGE = "000000397133.jpg"            # COCO val2017 397133 (two persons, Flickr, CC BY)
PREFERENCE = ("int8", "fp16", "bf16", "fp32")
FILE = "pose.jpg"


def passes(b: dict) -> bool:
    """The heatmap gates the build recorded (a build writes its manifest only after model_deploy's own)."""
    checks = b["manifest"]["checks"]
    return all(checks["final"]["cosine"] >= tol for tol in (checks.get("tolerance") or {}).values())


def source(bmodels: list[dict], chip: str) -> dict | None:
    """The chip's bmodel to draw with: INT8 first (what deploys), else the best precision; batch 1 first; only
    builds that passed their gates."""
    rank = {p: i for i, p in enumerate(PREFERENCE)}
    cands = sorted((b for b in bmodels if b["chip"] == chip and passes(b)),
                   key=lambda b: (rank.get(b["precision"], len(rank)), b["batch"]))
    return cands[0] if cands else None


def _options(cfg, b: dict) -> dict:
    m = b["manifest"]
    return {"bmodel": b["dir"].name, "precision": b["precision"], "batch": b["batch"], "image": IMAGE,
            "flip": cfg.flip_test, "config": cfg.summary(),
            "hashes": {k: m.get("outputs", {}).get(m.get(k) or "") for k in ("tpu_mlir", "tpu_weights")}}


def _inputs() -> dict:
    """The image and the code that draws (found without importing it: a no-op build stays fast)."""
    code = {f"{m.rsplit('.', 1)[1]}_code": Path(importlib.util.find_spec(m).origin)
            for m in ("bmpose.runtime.predict", "bmpose.pose.draw")}
    return {"image": SAMPLE / "images" / IMAGE, **code}


def ensure_pictures(cfg) -> list[str]:
    """Draw what is missing or stale; -> one line per chip that got no picture, saying why."""
    bmodels, notes = list_bmodels(cfg), []
    for chip in dict.fromkeys(b["chip"] for b in bmodels):
        b = source(bmodels, chip)
        if b is None:
            continue
        out = cfg.layout.pictures(chip)
        inputs, options = _inputs(), _options(cfg, b)
        if up_to_date(out, inputs, options):
            continue
        try:
            with atomic_dir(out, keep_failed=False) as tmp:
                persons = _draw(cfg, b, tmp / FILE)
                write_manifest(tmp, stage="picture", inputs=inputs, options=options, outputs=[FILE],
                               checks={"persons": persons})
        except Exception as e:   # a picture is worth having, not worth failing a build over: say why
            notes.append(f"{chip}: no pose picture ({type(e).__name__}: {e})")
    return notes


def _draw(cfg, b: dict, out: Path) -> int:
    """Pose of the picture's persons by this bmodel's deployed MLIR -> out (jpg); persons drawn."""
    import tempfile

    from bmpose.runtime import boxes as boxes_mod, predict
    from bmpose.runtime.backends.mlir import MlirBackend

    ann, img_dir = boxes_mod.bundled_sample()
    persons = boxes_mod.gt_boxes(ann, img_dir, {IMAGE})
    backend = MlirBackend(b["tpu_mlir"], b["chip"], workers=1)
    run = predict.predict(cfg, backend, persons, flip=cfg.flip_test, progress=False)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        name = predict.draw_results(run.predictions, Path(tmp), style=predict.look(cfg))[0]
        shutil.move(str(Path(tmp) / name), out)
    return len(run.predictions)


def read_pictures(cfg) -> list[dict]:
    """Per chip: the picture of its current source bmodel (`file` its path), or why there is none. Reads only."""
    bmodels, out = list_bmodels(cfg), []
    for chip in dict.fromkeys(b["chip"] for b in bmodels):
        b = source(bmodels, chip)
        if b is None:
            out.append({"chip": chip, "file": None, "why": "no bmodel of this chip passed its gates"})
            continue
        d = cfg.layout.pictures(chip)
        m = read_manifest(d)
        if m is None or m.get("options") != jsonable(_options(cfg, b)) or not (d / FILE).is_file():
            out.append({"chip": chip, "file": None, "why": "not drawn for this bmodel yet (`bmpose report` draws it)"})
            continue
        o = m["options"]
        out.append({"chip": chip, "file": d / FILE, "manifest": d / "manifest.json", "bmodel": o["bmodel"],
                    "precision": o["precision"], "batch": o["batch"], "image": IMAGE, "flip": o["flip"],
                    "persons": m["checks"]["persons"]})
    return out
