"""Deploy configs: the mmpose facts bmpose reads (codec, mean/std, flip test) come from mmengine once and then
from a cache keyed on the config text, its local bases and the mmpose/mmengine versions."""
from __future__ import annotations

import shutil

import pytest

from bmpose import config
from bmpose.errors import BmposeError


def test_facts_cache_equals_a_fresh_read_and_follows_edits(tmp_path, monkeypatch):
    src = config.load("hrnet_small_128x96", artifacts=tmp_path / "artifacts").mmpose_config
    base = tmp_path / "base.py"
    shutil.copy(src, base)
    child = tmp_path / "child.py"
    child.write_text("_base_ = ['./base.py']\n")
    cache = tmp_path / "artifacts" / ".cache"
    cache_dir = cache / "mmpose_facts"
    before = set(cache_dir.glob("*.json"))
    fresh = config.mmpose_facts(child, cache)
    assert len(set(cache_dir.glob("*.json")) - before) == 1
    monkeypatch.setattr(config, "_read_mmpose_config", lambda p: (_ for _ in ()).throw(AssertionError("read")))
    assert config.mmpose_facts(child, cache) == fresh     # served from the cache, mmengine not asked
    assert fresh["codec"]["input_size"] == [96, 128] and fresh["flip_test"] is True
    monkeypatch.undo()
    base.write_text(base.read_text().replace("sigma=1", "sigma=3"))   # a local base changes: a new read
    assert config.mmpose_facts(child, cache)["codec"]["sigma"] == 3


def test_a_local_base_is_a_build_input(tmp_path):
    """seresnet50_128x96 inherits the 128x96 ResNet-50 file: editing that base must rebuild the ONNX and the
    fixture weights, so both manifests list every local base (and only the config for a config without one)."""
    se = config.load("seresnet50_128x96").mmpose_config
    res50 = config.load("res50_128x96").mmpose_config
    assert config.mmpose_config_inputs(se) == {"mmpose_config": se, "mmpose_config_base1": res50}
    assert config.mmpose_config_inputs(res50) == {"mmpose_config": res50}   # mmpose:: bases: pinned mmpose
    (tmp_path / "a.py").write_text("_base_ = ['./b.py']\n")
    (tmp_path / "b.py").write_text("_base_ = ['sub/c.py', './a.py']\n")    # a cycle is followed once
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.py").write_text("x = 1\n")
    assert list(config.mmpose_config_inputs(tmp_path / "a.py").values()) == [
        tmp_path / "a.py", tmp_path / "b.py", tmp_path / "sub" / "c.py"]


def test_seresnet_config_is_mmposes_at_128x96():
    """The local SE-ResNet-50 file inherits the ResNet-50 one and swaps the backbone type: its model must equal
    mmpose's td-hm_seresnet50 config's with only the 128x96 codec and no pretrained download."""
    ours = config._read_mmpose_config(config.load("seresnet50_128x96").mmpose_config).model.to_dict()
    ref = config._read_mmpose_config(config.resolve_mmpose_config(
        "mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_seresnet50_8xb64-210e_coco-256x192.py"))
    theirs = ref.model.to_dict()
    ours.pop("_scope_", None)   # mmengine's marker of an mmpose:: base one level further up
    assert theirs["backbone"].pop("init_cfg") and ours["backbone"].pop("init_cfg") is None
    assert ours["head"].pop("decoder")["input_size"] == (96, 128)
    theirs["head"].pop("decoder")
    assert ours == theirs


def test_the_artifacts_root_is_the_configs_own(tmp_path, monkeypatch):
    """$BMPOSE_ARTIFACTS is read when a config loads (not when bmpose is imported); an explicit root wins."""
    monkeypatch.setenv("BMPOSE_ARTIFACTS", str(tmp_path / "from_env"))
    assert config.load("hrnet_small_128x96").artifacts == tmp_path / "from_env" / "hrnet_small_128x96"
    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path / "given")
    assert cfg.root == tmp_path / "given" and cfg.artifacts == tmp_path / "given" / "hrnet_small_128x96"
    monkeypatch.delenv("BMPOSE_ARTIFACTS")
    assert config.load("hrnet_small_128x96").root == config.ROOT / "artifacts"


def _yaml_beside_the_small_config(tmp_path, edit):
    """configs/hrnet_small_128x96.yaml with `edit` applied, as a yaml of its own (its paths made absolute)."""
    import yaml

    doc = yaml.safe_load((config.CONFIG_DIR / "hrnet_small_128x96.yaml").read_text())
    doc["mmpose_config"] = str(config.CONFIG_DIR / doc["mmpose_config"])
    doc["checkpoint"] = str(config.CONFIG_DIR / doc["checkpoint"])
    edit(doc)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.__setitem__("checkpiont", d.pop("checkpoint")),
     "unknown key 'checkpiont'; did you mean 'checkpoint'?"),
    (lambda d: d.__setitem__("chipz", d.pop("chips")), "unknown key 'chipz'; did you mean 'chips'?"),
    (lambda d: d["tolerances"].__setitem__("int8_coss", 0.9), "unknown key 'int8_coss' in tolerances; did you mean"),
    (lambda d: d["calibration"].__setitem__("nun", 5), "unknown key 'nun' in calibration; did you mean 'num'?"),
    (lambda d: d.__setitem__("batches", [0]), "batches must be a list of batch sizes from 1 to 256, got [0]"),
    (lambda d: d.__setitem__("batches", [-4]), "batches must be a list of batch sizes from 1 to 256, got [-4]"),
    (lambda d: d.__setitem__("chips", ["bm1686"]), "chips: 'bm1686' is not a chip"),
])
def test_a_typo_or_bad_value_in_a_deploy_yaml_is_one_line_naming_file_and_key(tmp_path, edit, message):
    """Before: `checkpiont:` silently built from random weights, `chipz:` and `batches: [0]` passed or crashed."""
    path = _yaml_beside_the_small_config(tmp_path, edit)
    with pytest.raises(BmposeError) as e:
        config.load(path, artifacts=tmp_path / "artifacts")
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_an_onnx_yaml_with_a_misspelt_test_cfg_or_codec_key_is_refused(tmp_path):
    """`flip_tset:` silently turned the flip test off; a codec's unknown argument passed."""
    import yaml

    (tmp_path / "net.onnx").write_bytes(b"an onnx file")
    doc = {"onnx": "net.onnx", "codec": {"type": "MSRAHeatmap", "input_size": [96, 128], "heatmap_size": [24, 32]},
           "data_preprocessor": {"mean": [1, 2, 3], "std": [1, 1, 1], "bgr_to_rgb": True},
           "test_cfg": {"flip_tset": True}}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(BmposeError, match=r"unknown key 'flip_tset' in test_cfg; did you mean 'flip_test'\?"):
        config.load(path, artifacts=tmp_path)
    doc["test_cfg"] = {"flip_test": True}
    doc["codec"]["bogus_arg"] = 1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(BmposeError, match=r"unknown key 'bogus_arg' in codec"):
        config.load(path, artifacts=tmp_path)
    del doc["codec"]["bogus_arg"]
    path.write_text(yaml.safe_dump(doc))
    assert config.load(path, artifacts=tmp_path).flip_test is True
