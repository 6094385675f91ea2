"""Deploy yamls under systematic corruption: every key of a bundled config (the ONNX door's BlazePose with every
optional key present, and the mmpose door's small HRNet), nested ones included, taken away or given a wrong type,
a non-finite or a negative number. Each case either loads or is one BmposeError line that names the yaml;
another exception (a TypeError from deep inside, as `tolerances: 7` and `mmpose_config: 7` gave) fails the test.
Fast: no model is read, no tool runs (the mmpose facts come from the artifacts cache after the first load)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from bmpose import config
from bmpose.errors import BmposeError

WRONG = {"str": "x", "list": [], "dict": {}, "None": None, "bool": True, "int": 7, "negative": -1,
         "nan": float("nan"), "inf": float("inf")}
DELETE = object()


def _base(name: str) -> dict:
    src = config.CONFIG_DIR / f"{name}.yaml"
    raw = yaml.safe_load(src.read_text())
    for key in ("onnx", "mmpose_config", "checkpoint"):   # absolute, so the copy loads from anywhere
        if key in raw and not str(raw[key]).startswith("mmpose::"):
            raw[key] = str((src.parent / raw[key]).resolve())
    if "onnx" in raw:   # every optional key of the ONNX door present, so each is corrupted too
        raw.update(bbox_score_thr=0.1, val_evaluator={"nms_thr": 0.9}, name="bp",
                   test_cfg={**raw["test_cfg"], "shift_heatmap": False})
    return raw


def _cases(raw: dict, prefix=()):
    for key, value in raw.items():
        yield prefix + (key,), "delete", DELETE
        for label, wrong in WRONG.items():
            yield prefix + (key,), label, wrong
        if isinstance(value, dict):
            yield from _cases(value, prefix + (key,))


CASES = [(name, keys, label, value) for name in ("blazepose_lite_256x256", "hrnet_small_128x96")
         for keys, label, value in _cases(_base(name))]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One artifacts root for every case: loading writes only the mmpose facts cache there, read once."""
    return tmp_path_factory.mktemp("fuzz_artifacts")


@pytest.mark.parametrize("name, keys, label, value", CASES,
                         ids=[f"{n}:{'.'.join(map(str, k))}={lab}" for n, k, lab, _ in CASES])
def test_a_corrupted_deploy_yaml_loads_or_is_one_line(tmp_path, root, name, keys, label, value):
    raw = copy.deepcopy(_base(name))
    d = raw
    for k in keys[:-1]:
        d = d[k]
    if value is DELETE:
        d.pop(keys[-1])
    else:
        d[keys[-1]] = value
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        cfg = config.load(path, artifacts=root)
    except BmposeError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e), str(e)
        return
    assert cfg.name and cfg.input_size   # what loads is a usable config


def test_the_corruptions_cover_both_doors():
    assert len(CASES) > 300
    assert {n for n, *_ in CASES} == {"blazepose_lite_256x256", "hrnet_small_128x96"}
