"""Fixture checkpoints, checkpoint loading and ONNX export with parity, in a private artifacts dir."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from bmpose import cli, config
from bmpose.weights.checkpoint import build_model, resolve_checkpoint
from bmpose.weights.model import load_checkpoint_file
from bmpose.errors import BmposeError
from bmpose.convert.export import ensure_onnx
from bmpose.weights.fixture import make_fixture, realistic_inputs

SMALL, W32 = "hrnet_small_128x96", "hrnet_w32_256x192"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def small(artifacts):
    return config.load(SMALL, artifacts=artifacts)


@pytest.fixture(scope="module")
def w32(artifacts):
    return config.load(W32, artifacts=artifacts)


@pytest.fixture(scope="module")
def small_onnx(small):
    return ensure_onnx(small, batches=(1, 4))


def _ort(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess, sess.run(["heatmaps"], {"input": x})[0]


def _assert_parity(cfg, paths, batches):
    """Re-check what the manifest claims, independently: ONNX I/O contract and onnxruntime vs PyTorch."""
    model = build_model(cfg)
    h, w = cfg.input_hw
    m = json.loads((cfg.layout.onnx() / "manifest.json").read_text())
    for b in batches:
        path = paths[b]
        assert path == cfg.layout.onnx_file(b) and path.is_file()
        x = realistic_inputs(cfg, b, seed=99)
        sess, got = _ort(path, x)
        (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
        assert (inp.name, inp.shape, inp.type) == ("input", [b, 3, h, w], "tensor(float)")
        assert (out.name, out.shape) == ("heatmaps", [b, 17, cfg.heatmap_size[1], cfg.heatmap_size[0]])
        with torch.no_grad():
            ref = model(torch.from_numpy(x), None, mode="tensor").numpy()
        assert np.abs(got - ref).max() < cfg.tolerances["onnx_max_abs"]
        assert (got.reshape(b, 17, -1).argmax(-1) == ref.reshape(b, 17, -1).argmax(-1)).mean() >= 0.99
        check = m["checks"][path.name]
        assert check["passed"] and check["onnx_checker"] == "passed"
        assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] >= 0.99
        assert set(check["ops"]) <= {"Conv", "Relu", "Add", "Resize", "Constant"}


# --- fixture checkpoints ------------------------------------------------------------------------------------

def test_fixture_is_mmpose_format_with_random_batchnorm(small):
    path = make_fixture(small)
    assert path == small.layout.fixture_checkpoint()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain meta: loads without unpickling
    assert set(ckpt) == {"meta", "state_dict"}
    assert ckpt["meta"]["bmpose_fixture"]["model"] == SMALL
    sd = ckpt["state_dict"]
    bns = [k[: -len(".running_var")] for k in sd if k.endswith(".running_var")]
    assert len(bns) > 30
    for bn in bns:  # mmpose's init would leave 0 / 1 / 1 / 0 everywhere: an identity that hides BN folding bugs
        assert sd[f"{bn}.running_mean"].abs().max() > 1e-3, bn
        assert (sd[f"{bn}.running_var"] - 1).abs().max() > 1e-2, bn
        assert (sd[f"{bn}.weight"] - 1).abs().max() > 1e-2, bn
        assert sd[f"{bn}.bias"].abs().max() > 1e-3, bn


def test_fixture_is_deterministic_and_skipped_when_up_to_date(small):
    path = make_fixture(small)
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert make_fixture(small) == path and path.stat().st_mtime_ns == mtime  # up to date: not rewritten
    make_fixture(small, force=True)
    assert path.stat().st_mtime_ns != mtime
    assert path.read_bytes() == before  # byte for byte: a rewrite does not change its sha256 (no rebuilds)


# --- export ---------------------------------------------------------------------------------------------------

def test_small_export_parity_batch_1_and_4(small, small_onnx):
    _assert_parity(small, small_onnx, (1, 4))


def test_same_inputs_skip(small, small_onnx, capsys):
    mtimes = {b: p.stat().st_mtime_ns for b, p in small_onnx.items()}
    assert ensure_onnx(small, batches=(1, 4)) == small_onnx
    assert "up to date (skipped)" in capsys.readouterr().out
    assert {b: p.stat().st_mtime_ns for b, p in small_onnx.items()} == mtimes
    assert cli.main(["export", "--model", SMALL, "--artifacts-dir", str(small.root)]) == 0
    assert "skipped" in capsys.readouterr().out


def _variant(cfg, name):
    """The same model under another name: its own artifacts dir, so a test can rebuild without touching
    the shared small build (and without exporting batch 4 each time)."""
    return dataclasses.replace(cfg, name=name)


def test_changed_checkpoint_rebuilds(small, tmp_path, capsys):
    cfg, fixture = _variant(small, "ckpt_swap"), make_fixture(small)
    x = realistic_inputs(small, 1)
    ensure_onnx(cfg, fixture, batches=(1,))
    before = _ort(cfg.layout.onnx_file(1), x)[1]
    ckpt = torch.load(fixture, weights_only=True)
    ckpt["state_dict"]["head.final_layer.weight"] *= 2  # the fixture's final conv has no bias term to worry about
    other = tmp_path / "other.pth"
    torch.save(ckpt, other)
    capsys.readouterr()
    ensure_onnx(cfg, other, batches=(1,))
    assert "wrote" in capsys.readouterr().out
    assert json.loads((cfg.layout.onnx() / "manifest.json").read_text())["inputs"]["checkpoint"]["path"] == str(other)
    np.testing.assert_allclose(_ort(cfg.layout.onnx_file(1), x)[1], 2 * before, atol=1e-5)
    ensure_onnx(cfg, fixture, batches=(1,))  # back to the fixture: rebuilt again, not skipped
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_allclose(_ort(cfg.layout.onnx_file(1), x)[1], before, atol=0)


def test_new_batch_keeps_the_old_ones_and_dynamic(small):
    cfg = _variant(small, "batches")
    ensure_onnx(cfg, make_fixture(small), batches=(1,))
    paths = ensure_onnx(cfg, make_fixture(small), batches=(2,), dynamic=True)
    assert set(paths) == {2, None}
    assert cfg.layout.onnx_file(1).is_file() and cfg.layout.onnx_file(2).is_file()
    sess, out = _ort(paths[None], realistic_inputs(small, 3))
    assert out.shape[0] == 3 and sess.get_inputs()[0].shape[0] == "batch"
    m = json.loads((cfg.layout.onnx() / "manifest.json").read_text())
    assert m["options"]["batches"] == [1, 2] and m["options"]["dynamic"]
    assert all(c["passed"] for c in m["checks"].values())


def test_parity_above_tolerance_fails_and_keeps_dot_failed(small, small_onnx):
    strict = dataclasses.replace(small, tolerances={**small.tolerances, "onnx_max_abs": 1e-12})
    with pytest.raises(BmposeError, match=r"differs from PyTorch by .* > tolerance 1e-12"):
        ensure_onnx(strict, batches=(1,))
    failed = small.layout.onnx().with_name("onnx.failed")
    assert not json.loads((failed / "manifest.json").read_text())["checks"][f"{SMALL}_b1.onnx"]["passed"]
    assert (small.layout.onnx() / "manifest.json").is_file()  # the good build is untouched


# --- checkpoints: errors and formats --------------------------------------------------------------------------

def test_small_checkpoint_with_w32_config_is_a_clear_error(small, w32):
    ckpt = str(make_fixture(small))
    with pytest.raises(BmposeError) as e:
        build_model(w32, ckpt)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(ckpt)
    assert "do not match model config td-hm_hrnet-w32" in msg and "missing keys" in msg and "shape mismatches" in msg


def test_cli_reports_a_missing_checkpoint_on_one_line(artifacts, capsys):
    assert cli.main(["export", "--model", SMALL, "--artifacts-dir", str(artifacts), "--checkpoint",
                     "/nonexistent/hrnet.pth"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (import warnings from mmengine may precede it)
    assert err == "bmpose export: error: /nonexistent/hrnet.pth: checkpoint not found " \
                  "(give a .pth file, a URL, or 'fixture')"


def test_unreadable_and_non_checkpoint_files(small, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BmposeError, match="junk.pth: cannot read checkpoint"):
        build_model(small, junk)
    listy = tmp_path / "list.pth"
    torch.save([1, 2, 3], listy)
    with pytest.raises(BmposeError, match="list.pth: not a PyTorch/mmpose checkpoint"):
        build_model(small, listy)


def test_openmmlab_style_checkpoint_needs_and_gets_full_unpickling_only_when_named(small, tmp_path, capsys):
    # openmmlab's checkpoints carry numpy arrays in meta: torch>=2.6's weights_only load refuses them.
    ckpt = torch.load(make_fixture(small), weights_only=True)
    ckpt["meta"]["dataset_meta"] = {"dataset_name": "coco", "sigmas": np.linspace(0.025, 0.1, 17)}
    trained = tmp_path / "openmmlab_style.pth"
    torch.save(ckpt, trained)
    with pytest.raises(BmposeError, match="refusing to unpickle"):
        load_checkpoint_file(trained, allow_pickle=False)
    model = build_model(small, trained)  # the user named this file: loaded, with a note saying how
    assert "weights_only=False because you named this file" in capsys.readouterr().err
    assert model.dataset_meta["dataset_name"] == "coco"


def test_data_parallel_prefix_is_stripped(small, tmp_path):
    """A checkpoint saved from DataParallel/DDP ("module." before every key) loads into the same weights."""
    ckpt = torch.load(make_fixture(small), weights_only=True)
    want = dict(ckpt["state_dict"])
    ckpt["state_dict"] = {f"module.{k}": v for k, v in want.items()}
    path = tmp_path / "ddp.pth"
    torch.save(ckpt, path)
    got = build_model(small, path).state_dict()
    loaded = {k: v for k, v in got.items() if k in want}
    assert len(loaded) == len(want) > 100   # every weight found under its own name ...
    for k, v in want.items():
        assert torch.equal(loaded[k], v), k   # ... and equal to the checkpoint's


def test_url_checkpoint_is_downloaded_once_into_torch_hub_cache(small, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    src = make_fixture(small)
    local = resolve_checkpoint(small, src.as_uri())  # file:// goes through the same download path as https://
    assert local == str(tmp_path / "hub" / "checkpoints" / src.name)
    assert open(local, "rb").read() == src.read_bytes()
    os.utime(local, ns=(1, 1))
    assert resolve_checkpoint(small, src.as_uri()) == local and os.stat(local).st_mtime_ns == 1  # cached
    with pytest.raises(BmposeError, match="cannot download checkpoint"):
        resolve_checkpoint(small, (tmp_path / "absent.pth").as_uri())


# --- the full-size model (slow: ~1.5 min on 2 cores) ------------------------------------------------------------

@pytest.mark.slow
def test_w32_export_parity_batch_1_and_4(w32_onnx):
    """The run's shared W32 export (conftest's `w32_onnx`, also built to bmodels in test_build.py)."""
    _assert_parity(w32_onnx, ensure_onnx(w32_onnx, batches=(1, 4)), (1, 4))


@pytest.mark.slow
def test_w32_checkpoint_with_small_config_is_a_clear_error(small, w32):
    w32_ckpt = str(make_fixture(w32))
    with pytest.raises(BmposeError, match=r"weights do not match model config td-hm_hrnet-small.*unexpected keys"):
        build_model(small, w32_ckpt)


def test_rtmpose_exports_both_simcc_outputs(rtmpose_onnx, tmp_path):
    """RTMPose-t (SimCC head): the ONNX has simcc_x [N,17,384] and simcc_y [N,17,512], each within the parity gate
    of PyTorch; the NNTC bundle (heatmap models only) says so in one line."""
    import onnx

    from bmpose.convert.nntc import ensure_nntc

    cfg = rtmpose_onnx
    assert cfg.outputs == ("simcc_x", "simcc_y") and cfg.heatmap_size is None
    path = cfg.layout.onnx_file(1)
    g = onnx.load(str(path)).graph
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in g.output}
    assert shapes == {"simcc_x": [1, 17, 384], "simcc_y": [1, 17, 512]}
    check = json.loads((path.parent / "manifest.json").read_text())["checks"][path.name]
    assert check["passed"] and set(check["per_output"]) == {"simcc_x", "simcc_y"}
    assert all(v["max_abs_diff"] < 1e-4 and v["argmax_agreement"] == 1.0 for v in check["per_output"].values())
    assert 0.1 < abs(check["heatmap_range"][1]) < 5   # the fixture's vectors spread like a trained model's
    with pytest.raises(BmposeError, match=r"rtmpose-t_256x192\.yaml: the NNTC bundle of a SimCCLabel model .*"
                                          r"make fp32 / make int8"):
        ensure_nntc(cfg, tmp_path / "no.lmdb", run=False)
