"""Which images calibrated an INT8 build, and whether an evaluation scores any of them.

A calibration set's manifest (bmpose.calib.calibset) hashes every image it cropped. The INT8 build copies
those hashes into its own manifest (`calibration`), and evaluation compares the images it scores by content:
a copy of the same file under another name or folder still counts as seen. An INT8 figure measured on its
own calibration images flatters the build (the fixture measured 0.08 AP of difference, docs/calibration.md).
"""
from __future__ import annotations

from pathlib import Path

from bmpose.calib.store import LMDB_NAME, read_meta
from bmpose.config import ROOT
from bmpose.manifest import read_manifest, sha256_file


def short(path) -> str:
    """A path as the report and messages show it: relative to the repository when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def describe(lmdb: Path) -> dict:
    """{"set": what calibrated (annotation json or folder), "crops", "images": {name: sha256} or None when
    unknown (an LMDB without bmpose's manifest beside it)}."""
    lmdb = Path(lmdb)
    m = read_manifest(lmdb.parent) if lmdb.name == LMDB_NAME else None
    if m and m.get("stage") == "calib":
        images = {k[len("image/"):]: v["sha256"] for k, v in m["inputs"].items() if k.startswith("image/")}
        source = m["inputs"].get("annotations", {}).get("path")
        if source is None:   # dir:PATH: the folder the images came from
            source = str(Path(next(v["path"] for k, v in m["inputs"].items() if k.startswith("image/"))).parent)
        return {"set": short(source), "crops": m["checks"].get("count"), "images": images}
    meta = read_meta(lmdb)
    return {"set": short(lmdb), "crops": meta.get("count"), "images": None}


def seen(calibration: dict | None, files) -> list[Path] | None:
    """The files among `files` whose content calibrated the build; None: cannot tell (no record)."""
    if not calibration or calibration.get("images") is None:
        return None
    hashes = set(calibration["images"].values())
    # a missing image calibrated nothing here and is scored by nothing: inference names it (skipped) itself
    return [Path(f) for f in files if Path(f).is_file() and sha256_file(f) in hashes]
