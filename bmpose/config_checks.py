"""What a deploy yaml may say, checked before anything is built from it: known keys (a typo gets the nearest
known one), and each value of the right kind and range (bmpose.config reads the yaml through these)."""
from __future__ import annotations

from pathlib import Path

import yaml

from bmpose.errors import BmposeError

MAX_BATCH = 256   # the largest batch a yaml may ask for

def check_keys(path: Path, mapping: dict, known, where: str = "") -> None:
    """One line for the first key a reader does not know, with the nearest known one: a typo (flip_tset:,
    checkpiont:) must not silently change what is built."""
    import difflib

    known = sorted(str(k) for k in known)
    for key in mapping:
        if str(key) not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise BmposeError(f"{path}: unknown key {key!r}{f' in {where}' if where else ''}{hint} "
                              f"(known: {', '.join(known)})")

def read_yaml(path: Path, keys: str) -> dict:
    """A config yaml as a mapping; one line naming the file when it is not valid YAML or not a mapping."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise BmposeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise BmposeError(f"{path}: expected a mapping of keys ({keys})")
    return raw


# calibration methods run_calibration.py takes (bmpose.convert.steps.CALI_METHODS, without importing the stages)
CALI_METHODS = ("kl", "mse", "max", "percentile9999", "aciq_laplace", "aciq_gauss")


def check_common(raw: dict, path: Path, tolerances: dict, calibration: dict) -> None:
    """The keys every deploy yaml shares (`tolerances`, `calibration`: the known keys, bmpose.config's defaults):
    nested keys known and of the right kind, chips known, batches positive."""
    import math

    from bmpose.chips import CHIPS

    for key in ("name", "checkpoint", "qtable", "mmpose_config", "onnx"):
        if key in raw and not isinstance(raw[key], str):
            raise BmposeError(f"{path}: {key} must be a string (a name, path or URL), got {raw[key]!r}")
    for key in ("tolerances", "calibration"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise BmposeError(f"{path}: {key} must be a mapping ({key}: {{...}}), got {raw[key]!r}")
    check_keys(path, raw.get("tolerances") or {}, tolerances, "tolerances")
    check_keys(path, raw.get("calibration") or {}, calibration, "calibration")
    for key, v in (raw.get("tolerances") or {}).items():
        ok = type(v) in (int, float) and math.isfinite(v) and (0 <= v <= 1 if key.endswith("_cos") else v > 0)
        if not ok:
            raise BmposeError(f"{path}: tolerances {key} must be a number "
                              f"{'from 0 to 1 (a cosine)' if key.endswith('_cos') else 'above 0'}, got {v!r}")
    cal = raw.get("calibration") or {}
    if "method" in cal and cal["method"] not in CALI_METHODS:
        raise BmposeError(f"{path}: calibration method {cal['method']!r} is not one TPU-MLIR has "
                          f"({', '.join(CALI_METHODS)})")
    for key in ("num", "seed"):
        if key in cal and not (type(cal[key]) is int and cal[key] >= (1 if key == "num" else 0)):
            raise BmposeError(f"{path}: calibration {key} must be a whole number "
                              f"{'of crops, 1 or more' if key == 'num' else '(0 or more)'}, got {cal[key]!r}")
    chips = raw.get("chips", [])
    bad = [c for c in chips if c not in CHIPS] if isinstance(chips, list) else [chips]
    if bad:
        raise BmposeError(f"{path}: chips: {bad[0]!r} is not a chip bmpose builds for ({', '.join(CHIPS)})")
    batches = raw.get("batches", [1])
    if not (isinstance(batches, list) and batches and all(type(b) is int and 1 <= b <= MAX_BATCH for b in batches)):
        raise BmposeError(f"{path}: batches must be a list of batch sizes from 1 to {MAX_BATCH}, got {batches!r}")
