"""A COCO-shaped evaluation set of any size made from the bundled one: its images again and again under new
image and annotation ids (the same files, named by absolute path), for what only size shows: resuming, flat
memory, throughput, a cluster's scale-out (`make bench ONLY=scale`, tests/evaluate/test_shards.py)."""
from __future__ import annotations

import json
from pathlib import Path

from bmpose.manifest import atomic_file


def replicate(ann: Path, img_root: Path, copies: int, out: Path) -> Path:
    """`copies` copies of every image and person of `ann` (ids offset per copy) -> `out` (a json)."""
    src = json.loads(Path(ann).read_text())
    step_img = max(im["id"] for im in src["images"]) + 1
    step_ann = max(a["id"] for a in src["annotations"]) + 1
    images, anns = [], []
    for c in range(copies):
        images += [{**im, "id": im["id"] + c * step_img,
                    "file_name": str((Path(img_root) / im["file_name"]).resolve())} for im in src["images"]]
        anns += [{**a, "id": a["id"] + c * step_ann, "image_id": a["image_id"] + c * step_img}
                 for a in src["annotations"]]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps({**src, "images": images, "annotations": anns}))
    return out
