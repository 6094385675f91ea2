"""Deploy configs: the mmpose facts bmpose reads (codec, mean/std, flip test) come from mmengine once and then
from a cache keyed on the config text, its local bases and the mmpose/mmengine versions."""
from __future__ import annotations

import shutil

from bmpose import config


def test_facts_cache_equals_a_fresh_read_and_follows_edits(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ARTIFACTS", tmp_path / "artifacts")
    src = config.load("hrnet_small_128x96").mmpose_config
    base = tmp_path / "base.py"
    shutil.copy(src, base)
    child = tmp_path / "child.py"
    child.write_text("_base_ = ['./base.py']\n")
    cache_dir = tmp_path / "artifacts" / ".cache" / "mmpose_facts"
    before = set(cache_dir.glob("*.json"))
    fresh = config.mmpose_facts(child)
    assert len(set(cache_dir.glob("*.json")) - before) == 1
    monkeypatch.setattr(config, "_read_mmpose_config", lambda p: (_ for _ in ()).throw(AssertionError("read")))
    assert config.mmpose_facts(child) == fresh     # served from the cache, mmengine not asked
    assert fresh["codec"]["input_size"] == [96, 128] and fresh["flip_test"] is True
    monkeypatch.undo()
    monkeypatch.setattr(config, "ARTIFACTS", tmp_path / "artifacts")
    base.write_text(base.read_text().replace("sigma=1", "sigma=3"))   # a local base changes: a new read
    assert config.mmpose_facts(child)["codec"]["sigma"] == 3
