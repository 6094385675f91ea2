"""Checkpoints: where a model's weights come from, how they are read, and the mmpose model built with them.

A checkpoint reference is "fixture" (bmpose's deterministic random weights, made on demand by
`bmpose.weights.fixture`), a local path, or an http(s)/file URL (downloaded once into torch hub's cache, where
mmengine keeps its own downloads). Files are read with `torch.load(weights_only=True)`; only a file the user
named may fall back to full unpickling (see `load_checkpoint_file`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from bmpose.errors import BmposeError
from bmpose.weights.model import build_untrained, load_checkpoint_file, load_weights, state_dict_of

FIXTURE = "fixture"
URL_SCHEMES = ("http", "https", "file")




def is_url(ref: str) -> bool:
    return urlparse(str(ref)).scheme in URL_SCHEMES


def resolve_checkpoint(cfg, checkpoint: str | os.PathLike | None = None) -> str:
    """Local path of the checkpoint to use: `checkpoint`, else the deploy config's own choice.

    "fixture" -> artifacts/<name>/checkpoint/fixture_random.pth (written now if missing or stale);
    a URL -> downloaded into torch hub's checkpoint cache (skipped when already there); a path must exist.
    """
    ref = str(checkpoint if checkpoint not in (None, "") else cfg.checkpoint)
    if ref == FIXTURE:
        from bmpose.weights.fixture import make_fixture

        return str(make_fixture(cfg))
    if is_url(ref):
        return str(_download(ref))
    path = Path(ref).expanduser()
    if checkpoint in (None, "") and not path.is_absolute() and not path.is_file():
        path = cfg.path.parent / path  # a relative path in a deploy yaml is relative to that yaml
    if not path.is_file():
        raise BmposeError(f"{ref}: checkpoint not found (give a .pth file, a URL, or 'fixture')")
    return str(path.resolve())


def _download(url: str) -> Path:
    import torch

    name = Path(urlparse(url).path).name or "checkpoint.pth"
    dest = Path(torch.hub.get_dir()) / "checkpoints" / name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} -> {dest}", file=sys.stderr)
    tmp = dest.with_name(f".{name}.part")
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=sys.stderr.isatty())
        os.replace(tmp, dest)
    except Exception as e:  # urllib raises URLError, HTTPError, OSError, ValueError...
        raise BmposeError(f"{url}: cannot download checkpoint ({type(e).__name__}: {e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest








def build_model(cfg, checkpoint: str | os.PathLike | None = None, *, device: str = "cpu"):
    """The deploy config's mmpose model (TopdownPoseEstimator) in eval mode with its weights loaded.

    `checkpoint`: "fixture", a path or a URL; None uses the deploy config's `checkpoint` entry.
    """
    ref = str(checkpoint if checkpoint not in (None, "") else cfg.checkpoint)
    path = resolve_checkpoint(cfg, ref)
    model = build_untrained(cfg)
    ckpt = load_checkpoint_file(path, allow_pickle=(ref != FIXTURE))
    load_weights(model, state_dict_of(ckpt, path), path, cfg.mmpose_config.name)
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("dataset_meta"), dict):
        model.dataset_meta = meta["dataset_meta"]  # mmpose's own priority: checkpoint > config
    return model.to(device).eval()
