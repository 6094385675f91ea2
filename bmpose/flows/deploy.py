"""`bmpose deploy` as a library call: a DeployRequest -> the pose bmodels it needs built or reused
(bmpose.flows.build), the person detector's builds checked against their box gate (bmpose.flows.detector), then
one bundle per chip (bmpose.deploy.bundle)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from bmpose import config
from bmpose.errors import BmposeError
from bmpose.flows.build import BuildRequest, build
from bmpose.flows.detector import DetectorRequest, run as run_detector


@dataclasses.dataclass(frozen=True)
class DeployRequest:
    model: str | None = None
    artifacts_dir: Path | None = None
    checkpoint: str | None = None
    chips: tuple = ()
    precisions: tuple = ("int8", "fp32")
    batches: tuple = ()
    detector: str = "yolox_nano_416"     # or "none"
    calib: str = "coco"
    coco_ann: str | None = None
    coco_img: str | None = None
    num: int | None = None


def deploy(req: DeployRequest) -> list[dict]:
    """-> per chip {"chip", "folder", "archive", "written", "bmodels", "detector"}."""
    from bmpose.deploy.bundle import write_bundle
    from bmpose.layout import list_bmodels

    cfg = config.load(req.model, artifacts=req.artifacts_dir)
    chips = tuple(req.chips or cfg.chips)
    batches = tuple(req.batches or cfg.batches)
    common = dict(model=req.model or cfg.name, artifacts_dir=cfg.root, checkpoint=req.checkpoint, batches=batches,
                  calib=req.calib, coco_ann=req.coco_ann, coco_img=req.coco_img, num=req.num, report=False)
    for precision in req.precisions:
        if precision == "auto":   # per chip: its search as last asked for (reused while its inputs hold)
            for chip in chips:
                build(BuildRequest(precision="auto", chips=(chip,), **last_search(cfg, chip), **common))
        else:
            build(BuildRequest(precision=precision, chips=chips, **common))
    detectors = detector_builds(req, cfg, chips)
    out = []
    for chip in chips:
        t0 = time.monotonic()
        bmodels = [b for b in list_bmodels(cfg, auto="auto" in req.precisions) if b["chip"] == chip
                   and b["batch"] in batches and wanted(b, req.precisions)]
        folder, archive, written = write_bundle(cfg, chip, bmodels, detectors.get(chip))
        out.append({"chip": chip, "folder": folder, "archive": archive, "written": written, "bmodels": bmodels,
                    "detector": detectors[chip][0].tag if chip in detectors else None,
                    "seconds": time.monotonic() - t0})
    return out


def last_search(cfg, chip: str) -> dict:
    """The --precision auto options (target, budget, tools, best) the chip's recorded choice was searched with, as
    BuildRequest fields; {} (the defaults) when it has none."""
    from bmpose.convert.cali_tools import TAGS
    from bmpose.manifest import read_manifest

    m = read_manifest(cfg.layout.auto(chip))
    if not m or m.get("stage") != "auto_choice":
        return {}
    o, names = m["options"], {tag: name for name, tag in TAGS.items()}
    tools = tuple("+".join(names[t] for t in tag.split("+")) if tag else "none" for tag in o["tools"])
    return {"auto_budget": o["budget"], "auto_best": o["best"], "auto_tools": tools or ("none",),
            "tolerances": (f"auto_target={o['target']!r}",)}


def wanted(b: dict, precisions) -> bool:
    """Whether a listed bmodel goes into the bundle: the precisions asked for (an auto winner under "auto"), and
    any other float precision built for the chip (FP16/BF16 builds are made on purpose)."""
    if b.get("variant"):
        return "auto" in precisions
    return b["precision"] in precisions or b["precision"] not in ("int8", "fp32")


def detector_builds(req: DeployRequest, cfg, chips) -> dict:
    """{chip: (detector config of that build, bmodel, box row)} for the chips the detector config has a
    precision for, built and scored by bmpose.flows.detector (a build whose boxes miss the gate is refused)."""
    from bmpose.detector_config import load_detector

    if req.detector == "none":
        return {}
    dcfg = load_detector(req.detector, cfg.root)
    have = [c for c in chips if c in dcfg.precisions]
    for c in chips:
        if c not in have:
            print(f"deploy: {c}: {dcfg.name} has no precision for this chip (its precisions: "
                  f"{', '.join(f'{k} {v}' for k, v in dcfg.precisions.items())}); the bundle has no detector")
    if not have:
        return {}
    done = run_detector(DetectorRequest(detector=req.detector, artifacts_dir=cfg.root, chips=tuple(have)))
    if done["failed"]:
        raise BmposeError(f"{dcfg.path}: its bmodels miss their box gate (" + "; ".join(
            f"{r['label']}: box AP -{r['gate']['ap_drop']:.4f}" for r in done["failed"]) + "); nothing bundled")
    rows = {r["label"]: r for r in done["rows"]}
    out = {}
    for c in have:
        d = dataclasses.replace(dcfg, build=f"{c}_{dcfg.precisions[c]}")
        out[c] = (d, d.model_path(), rows.get(d.tag))
    return out
