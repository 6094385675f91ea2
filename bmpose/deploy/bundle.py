"""Write a chip's deploy bundle: artifacts/<model>/deploy/<model>_<chip>/ and <model>_<chip>.tar.gz.

  bmodel.py       the entry point (a launcher for bmpose.device.app)
  deploy.json     everything the device needs, resolved here from the mmpose config, + the bmodels' facts
  bmpose/         the pose core (bmpose/pose) and the device app and sail runner (bmpose/device), copied
                  from this package: one implementation on both sides
  models/         the chip's bmodels (hard links of the builds), and its person detector's when it has one
  images/         sample COCO images (with their licences) and boxes.json, their annotated person boxes
  README.md       how to run it on SE5/SE7 and on an SC5 host

The bundle is rewritten only when its inputs change (bmodels, runtime sources, options), and the archive is
byte-reproducible (sorted members, zero times and owners).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir, atomic_file, read_manifest, sha256_bytes, up_to_date, write_manifest

FORMAT = "bmpose-deploy 1"
PACKAGE = Path(__file__).resolve().parent.parent          # bmpose/
SHIPPED = ("pose", "device")                               # the subpackages that run on the device
SAMPLE_IMAGES = ("000000000139.jpg", "000000229358.jpg", "000000397133.jpg", "000000434204.jpg")
MIN_PYTHON = (3, 7)   # the core uses `from __future__ import annotations` (3.7+)
# The oldest SDK known to run the chip's TPU-MLIR bmodels (docs/device.md): sophon-demo 0.1.7 was the first
# release whose samples ran BM1684 bmodels from TPU-MLIR, and its dependency table asks libsophon >= 0.4.6,
# SophonSDK >= v23.07.01. BMNNSDK2 2.7 / SophonSDK 3 (the NNTC era, before libsophon) is older: boxes on it
# run the NNTC bundle's bmodels (`make nntc`). Other chips only ever had libsophon SDKs.
MIN_RUNTIME = {"bm1684": {"libsophon": "0.4.6", "sophonsdk": "v23.07.01",
                          "older": "BMNNSDK2 2.7 / SophonSDK 3.x: not expected to load these; run the NNTC bundle's bmodels (make nntc)"}}
# The launcher parses on any Python (no f-strings), so an SE5 still on Debian 9's Python 3.5 gets one line
# naming the version it needs instead of a SyntaxError from the package.
LAUNCHER = '''#!/usr/bin/env python3
"""{model} on a Sophon {chip_upper}: `python3 bmodel.py --help`. Written by `bmpose deploy`; see README.md."""
import os
import sys

if sys.version_info < {min_python!r}:
    sys.stderr.write("bmodel.py: error: Python {min_text} or newer is needed, this is Python %d.%d (%s); "
                     "run it with a newer python3 (README.md)\\n"
                     % (sys.version_info[0], sys.version_info[1], sys.executable))
    sys.exit(1)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bmpose.device.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''


def runtime_files() -> list[Path]:
    """The shipped sources: bmpose/__init__.py and every .py of the shipped subpackages."""
    files = [PACKAGE / "__init__.py"]
    for sub in SHIPPED:
        files += sorted((PACKAGE / sub).glob("*.py"))
    return files


def pose_facts(cfg) -> dict:
    """What the device's core needs about the model (bmpose.runtime.results.pose_facts); a config that names no
    dataset metainfo is refused rather than shipped with COCO's keypoint set assumed."""
    from bmpose.runtime.results import dataset_metainfo, pose_facts as facts

    if dataset_metainfo(cfg) is None:
        raise BmposeError(f"{cfg.mmpose_config}: names no dataset metainfo (keypoint names, flip pairs, sigmas)")
    return facts(cfg)


def sample_boxes(images: list[Path]) -> list[dict]:
    """The bundled annotation's person boxes on the sample images, as COCO detection results (score 1)."""
    from bmpose.cocodata import load_coco_keypoints
    from bmpose.runtime.boxes import bundled_sample

    ann, img_dir = bundled_sample()
    names = {p.name for p in images}
    return [{"image_id": p.image_id, "category_id": 1, "bbox": [float(v) for v in p.bbox], "score": 1.0}
            for p in load_coco_keypoints(ann, img_dir).persons() if Path(p.file).name in names]


def detector_facts(dcfg, bmodel: Path, row: dict | None) -> dict:
    """deploy.json's "detector": what the core's detect_frame needs, the bmodel, and its measured boxes."""
    keys = ("input_size", "center", "pad_value", "bgr_to_rgb", "scale", "mean", "std", "decoder", "strides",
            "classes")
    facts = {k: dcfg.summary()[k] for k in keys}
    facts.update({"name": dcfg.name, "bmodel": f"models/{bmodel.name}", "precision": dcfg.precision,
                  "score_thr": dcfg.score_thr, "nms_iou": dcfg.nms_iou})
    if row:
        facts["measured"] = {"box_ap": row["AP"], "onnx_box_ap": row["AP"] + row["gate"]["ap_drop"],
                             "recall_iou50": row["recall_iou50"], "eval_set": row["eval_set"]}
    return facts


def write_bundle(cfg, chip: str, bmodels: list[dict], detector: tuple | None = None) -> tuple[Path, Path, bool]:
    """The bundle folder and archive for `chip` from its built bmodels (list_bmodels entries) and, optionally,
    a person detector: (its DetectorConfig with .build set, its bmodel, its box row from `bmpose detector`).
    Returns (folder, archive, written) - written is False when both were up to date."""
    from bmpose.runtime.boxes import bundled_sample, det_score_thr
    from bmpose.runtime.results import metric_options

    if not bmodels:
        raise BmposeError(f"no {chip} bmodels of {cfg.name} to bundle")
    out = cfg.layout.bundle(chip)
    archive = out.with_name(out.name + ".tar.gz")
    images = [bundled_sample()[1] / n for n in SAMPLE_IMAGES]
    inputs = {f"bmodel_{'auto' if b.get('variant') else b['precision']}_b{b['batch']}": b["path"] for b in bmodels}
    inputs.update({f"runtime/{f.relative_to(PACKAGE)}": f for f in runtime_files()})
    inputs.update({f"image/{p.name}": p for p in images})
    # the auto winner batch 1 first (it is the build chosen to keep the model), then INT8 batch 1
    default = min(bmodels, key=lambda b: (not b.get("variant"), b["precision"] != "int8", b["batch"]))
    det = None
    if detector:
        dcfg, det_bmodel, det_row = detector
        inputs["detector_bmodel"] = det_bmodel
        det = detector_facts(dcfg, det_bmodel, det_row)
    options = {"format": FORMAT, "chip": chip, "config": cfg.summary(), "detector": det,
               "bmodels": sorted(k for k in inputs if k.startswith("bmodel_")),
               "default": default["file"], "bmpose": _version(), "texts": _texts_sha256()}
    if up_to_date(out, inputs, options) and archive.is_file() and \
            read_manifest(out).get("checks", {}).get("archive_sha256") == sha256_bytes(archive):
        return out, archive, False
    with atomic_dir(out, keep_failed=False) as tmp:
        for f in runtime_files():
            dst = tmp / "bmpose" / f.relative_to(PACKAGE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        entries = _link_bmodels(tmp / "models", chip, bmodels)
        if det:
            _link(det_bmodel, tmp / "models" / det_bmodel.name)
        _write_samples(tmp / "images", images)
        meta = {"format": FORMAT, "model": cfg.name, "chip": chip, "bmpose_version": _version(),
                "pose": pose_facts(cfg), "metric": metric_options(cfg), "det_score_thr": det_score_thr(cfg),
                "bmodels": entries, "default_bmodel": f"models/{default['file']}",
                "samples": {"images": "images", "boxes": "images/boxes.json"}, "detector": det,
                "runtime": {"python": ">=" + ".".join(map(str, MIN_PYTHON)), "sdk": "libsophon",
                            **MIN_RUNTIME.get(chip, {})}}
        (tmp / "deploy.json").write_text(json.dumps(meta, indent=1) + "\n")
        launcher = tmp / "bmodel.py"
        launcher.write_text(LAUNCHER.format(model=cfg.name, chip_upper=chip.upper(), min_python=MIN_PYTHON,
                                            min_text=".".join(map(str, MIN_PYTHON))))
        launcher.chmod(0o755)
        (tmp / "README.md").write_text(render_readme(cfg, chip, meta))
        with atomic_file(archive) as tmp_archive:
            write_archive(tmp, out.name, tmp_archive)
            archive_sha = sha256_bytes(tmp_archive)
        write_manifest(tmp, stage="deploy-bundle", inputs=inputs, options=options,
                       outputs=["deploy.json", "bmodel.py", "README.md"] + [e["file"] for e in entries]
                       + ([det["bmodel"]] if det else []),
                       checks={"archive": archive.name, "archive_sha256": archive_sha})
    return out, archive, True


def _texts_sha256() -> str:
    """The launcher, the README template and the runtime facts: a changed text rebuilds the bundle."""
    text = LAUNCHER + (Path(__file__).parent / "templates" / "README.md.j2").read_text() + repr(MIN_RUNTIME)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _link_bmodels(folder: Path, chip: str, bmodels: list[dict]) -> list[dict]:
    """Hard-link (or copy) the bmodels into folder; their deploy.json entries."""
    folder.mkdir()
    entries = []
    for b in bmodels:
        dst = folder / b["file"]
        _link(b["path"], dst)
        m = b["manifest"]
        entries.append({"file": f"{folder.name}/{dst.name}", "chip": chip, "precision": b["precision"],
                        "batch": b["batch"], "sha256": sha256_bytes(dst), "size_bytes": dst.stat().st_size,
                        "build_manifest_sha256": m.get("outputs", {}).get(b["path"].name),
                        "heatmap_cosine_vs_onnx": (m.get("checks", {}).get("final") or {}).get("cosine"),
                        **({"auto": b["variant"]} if b.get("variant") else {})})
    return entries


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_samples(folder: Path, images: list[Path]) -> None:
    """The sample images, their licences and their annotated person boxes."""
    folder.mkdir()
    for p in images:
        shutil.copyfile(p, folder / p.name)
    _write_attribution(images, folder / "ATTRIBUTION.tsv")
    (folder / "boxes.json").write_text(json.dumps(sample_boxes(images), indent=1) + "\n")


def write_archive(folder: Path, root_name: str, dest: Path) -> None:
    """folder -> dest (.tar.gz) under root_name/, the same bytes for the same files (no times, owners)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(p for p in folder.rglob("*") if p.name != "manifest.json"):
            info = tar.gettarinfo(str(f), arcname=f"{root_name}/{f.relative_to(folder)}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if (f.is_dir() or os.access(f, os.X_OK)) else 0o644
            if f.is_file():
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())


def render_readme(cfg, chip: str, meta: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template("README.md.j2").render(model=cfg.name, chip=chip, chip_upper=chip.upper(), meta=meta,
                                                   boxes=chip_boxes(chip))


def chip_boxes(chip: str) -> str:
    return {"bm1684": "SE5 (aarch64, Python 3.8 on the box) or an SC5 card in an x86 host (Python 3.7 in the SDK "
                      "image)", "bm1684x": "SE7 (aarch64) or an SC7 card in an x86 host",
            "bm1688": "SE9-16 (BM1688, aarch64)", "cv186x": "SE9-8 (CV186AH, aarch64)"}.get(chip, chip.upper())


def _write_attribution(images: list[Path], dest: Path) -> None:
    src = images[0].parent.parent / "ATTRIBUTION.tsv"
    lines = src.read_text().splitlines() if src.is_file() else []
    names = {p.name for p in images}
    keep = [ln for i, ln in enumerate(lines) if i == 0 or ln.split("\t", 1)[0] in names]
    dest.write_text("\n".join(keep) + "\n")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bmpose")
    except metadata.PackageNotFoundError:
        return "unknown"

