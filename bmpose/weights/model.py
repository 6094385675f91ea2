"""Checkpoint mechanics: build an mmpose model from its config, read a checkpoint file (safely: weights only,
pickle only for a file the user named), load its weights with one-line errors, write one with its metadata."""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import sys
import warnings
from pathlib import Path

from bmpose.errors import BmposeError


def load_checkpoint_file(path: str | os.PathLike, allow_pickle: bool = False) -> dict:
    """Read a checkpoint into a dict on the CPU.

    torch >= 2.6 loads with weights_only=True by default, and mmengine calls plain `torch.load`, so an
    openmmlab checkpoint (its meta holds numpy arrays and mmengine objects) fails inside mmengine. We load it
    ourselves: weights_only=True first; only when the caller says the user named this very file
    (allow_pickle) do we fall back to full unpickling, which runs code from the file, and say so.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_pickle:
            raise BmposeError(f"{path}: checkpoint holds pickled objects beyond tensors and plain types, "
                              f"refusing to unpickle a file bmpose did not get from you") from None
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"note: {path}: not loadable with weights_only=True ({reason[:120]}); loading it with "
              f"weights_only=False because you named this file", file=sys.stderr)
    except Exception as e:  # a truncated or non-torch file: zipfile, EOF, runtime errors...
        raise BmposeError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise BmposeError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e)[:200]})") from None


def state_dict_of(ckpt, path) -> dict:
    """The model weights of a checkpoint: mmpose's {'state_dict', 'meta'} or a bare state dict."""
    import torch

    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BmposeError(f"{path}: not a PyTorch/mmpose checkpoint (no state_dict of tensors)")
    if all(k.startswith("module.") for k in sd):  # saved from a DataParallel/DDP wrapper
        stripped = type(sd)((k[len("module."):], v) for k, v in sd.items())
        meta = getattr(sd, "_metadata", None)
        if meta is not None:
            stripped._metadata = type(meta)((k[len("module."):] if k.startswith("module.") else k, v)
                                            for k, v in meta.items())
        sd = stripped
    return sd


def load_weights(model, state_dict, path, config_name: str) -> None:
    """Load strictly, but report a mismatch on one line (counts and first examples) instead of torch's
    multi-page RuntimeError. Goes through `load_state_dict` so mmpose's key-conversion hooks still run."""
    shape_errors: list[tuple[str, str, str]] = []
    try:
        result = model.load_state_dict(state_dict, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    except RuntimeError as e:
        shape_errors = re.findall(r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\)"
                                  r" from checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)", str(e))
        if not shape_errors:
            raise BmposeError(f"{path}: cannot load into {config_name} ({str(e).splitlines()[0]})") from None
        own = model.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
    if not (missing or unexpected or shape_errors):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:2])})")
    if shape_errors:
        k, theirs, ours = shape_errors[0]
        parts.append(f"{len(shape_errors)} shape mismatches (e.g. {k}: checkpoint [{theirs}], model [{ours}])")
    raise BmposeError(f"{path}: weights do not match model config {config_name}: {'; '.join(parts)} "
                      f"- is it a checkpoint for another model?")


def build_untrained(cfg):
    """mmpose's model for the config, built by mmpose itself (init_model, no weights, no download)."""
    from bmpose.weights.mmpose_shim import import_mmpose

    # mmpose/mmengine print registry chatter and warn about optional modules (mmcv.ops, pkg_resources)
    # that top-down heatmap models never use; keep the CLI output to what matters.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_mmpose()
        from mmpose.apis import init_model

        try:
            return init_model(str(cfg.mmpose_config), None, device="cpu")
        except Exception as e:  # mmengine's registry raises KeyError/TypeError for a broken model config
            raise BmposeError(f"{cfg.mmpose_config}: mmpose cannot build the model "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def save_checkpoint(state_dict, path: str | os.PathLike, meta: dict) -> Path:
    """Write a checkpoint in mmpose's format ({'meta', 'state_dict'}), atomically. Keep `meta` to plain
    types (str, numbers, lists, dicts) so the file loads with torch's weights_only=True."""
    import torch

    from bmpose.manifest import atomic_file

    path = Path(path)
    meta = json.loads(json.dumps(meta))  # plain types only (e.g. torch.__version__ is a str subclass)
    # Through a buffer: torch.save names the zip's root folder after the file, and the temporary file's name
    # is random, so saving to it directly would give the same weights a new sha256 (and rebuild every stage).
    buf = io.BytesIO()
    torch.save({"meta": meta, "state_dict": state_dict}, buf)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
