"""NNTC bundle (`bmpose nntc`): the ufw LMDB against the vendor's ufwio 0.0.2, the FP32 tail on ONNX, the bundle
of the small model (private artifacts dir) and its scripts run against stand-ins of NNTC's tools.

The stand-ins (tests/nntc_standins/) take the vendor's documented flags, check their inputs (ONNX opset and
shapes, the LMDB's records, tail names) and write placeholder umodels/bmodels: they test the scripts' grammar
and plumbing, not NNTC itself. The ufwio checks run in a Python 3.8 venv (ufwio does not import on >= 3.10)
built once from pyenv's 3.8 and cached under pytest's cache, keyed on the pins.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bmpose import cli, config
from bmpose.calib import store, ufw
from bmpose.convert import nntc
from bmpose.errors import BmposeError
from bmpose.manifest import read_manifest
from helpers import cached_venv

HERE = Path(__file__).resolve().parents[1]
STANDINS = HERE / "nntc_standins"
SMALL = "hrnet_small_128x96"
VENDOR_PINS = ["ufwio==0.0.2", "lmdb==1.4.1", "scikit-image<0.22", "scipy<1.11"]
DTYPES = [np.float32, np.float16, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32]


def crops(n, shape=(3, 128, 96), seed=0):
    rs = np.random.RandomState(seed)
    return [(rs.randn(*shape) * 50).astype(np.float32) for _ in range(n)]


def mixed_arrays(seed=1):
    rs = np.random.RandomState(seed)
    out = []
    for dt in DTYPES:
        if np.dtype(dt).kind == "f":
            out.append((rs.randn(1, 3, 5, 4) * 10).astype(dt))
        else:
            info = np.iinfo(dt)
            out.append(rs.randint(info.min, int(info.max) + 1, size=(1, 3, 5, 4), dtype=np.int64).astype(dt))
    out.append(np.array([[0.0, -0.0, 1e-45, 3.4028235e38, -np.inf, np.inf]], dtype=np.float32))  # awkward floats
    return out


def assert_same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()          # bit-exact, the sign of zero included


# ------------------------------------------------------------------------------------------------ ufw LMDB

def test_ufw_roundtrip_keys_and_batch_dim(tmp_path):
    arrays = crops(7, (3, 8, 6))
    assert ufw.write_ufw_lmdb(tmp_path / "db", arrays) == 7
    items = list(ufw.read_ufw_lmdb_items(tmp_path / "db"))
    assert [k for k, _ in items] == [b"%010d__ " % i for i in range(7)]
    for a, (_, got) in zip(arrays, items):
        assert_same(got, a[np.newaxis])
    mixed = mixed_arrays()
    ufw.write_ufw_lmdb(tmp_path / "mixed", mixed, add_batch_dim=False)
    for want, got in zip(mixed, ufw.read_ufw_lmdb(tmp_path / "mixed")):
        assert_same(got, want)


def test_ufw_map_growth_and_atomic_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(ufw, "_MAP_SIZE", 1 << 16)   # several MapFullError doublings
    assert ufw.write_ufw_lmdb(tmp_path / "db", crops(40, (3, 32, 32))) == 40
    assert len(list(ufw.read_ufw_lmdb(tmp_path / "db"))) == 40

    def broken():
        yield np.zeros((3, 4, 4), np.float32)
        raise RuntimeError("source broke")
    with pytest.raises(RuntimeError):
        ufw.write_ufw_lmdb(tmp_path / "new", broken())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]   # neither the target nor a temp dir is left


def test_ufw_one_line_errors(tmp_path):
    ufw.write_ufw_lmdb(tmp_path / "db", crops(1, (3, 2, 2)))
    with pytest.raises(BmposeError, match="db: already exists"):
        ufw.write_ufw_lmdb(tmp_path / "db", crops(1, (3, 2, 2)))
    assert ufw.write_ufw_lmdb(tmp_path / "db", crops(2, (3, 2, 2)), overwrite=True) == 2
    with pytest.raises(BmposeError, match="float64"):
        ufw.write_ufw_lmdb(tmp_path / "db2", [np.zeros((1, 2))])
    with pytest.raises(BmposeError, match="db3: no arrays"):
        ufw.write_ufw_lmdb(tmp_path / "db3", [])
    with pytest.raises(BmposeError, match="nothing: not an LMDB"):
        list(ufw.read_ufw_lmdb(tmp_path / "nothing"))
    import lmdb
    env = lmdb.open(str(tmp_path / "bad"), map_size=1 << 20, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"0000000000__ ", b"\x35\x00\x00\x80\x3f\x42\x03\x0a\x01\x05")   # 1 float, shape [5]
    env.close()
    with pytest.raises(BmposeError, match=r"bad: record b'0000000000__ ' is not a ufw Datum \(.*needs 5\)") as e:
        list(ufw.read_ufw_lmdb(tmp_path / "bad"))
    assert "\n" not in str(e.value)


def test_ufw_decoder_accepts_other_valid_encodings():
    legacy = b"\x08\x02\x10\x01\x18\x03\x22\x06" + bytes(range(6))   # caffe Datum: C/H/W, uint8, no shape
    assert_same(ufw.decode_datum(legacy), np.arange(6, dtype=np.uint8).reshape(2, 1, 3))
    vals = np.array([1.5, -2.0], "<f4").tobytes()
    packed = b"\x32\x08" + vals + b"\x42\x04\x08\x01\x08\x02" + b"\x48\x00"   # packed floats, unpacked dims
    assert_same(ufw.decode_datum(packed), np.array([[1.5, -2.0]], np.float32))


# ----------------------------------------------------------------------------------------- vendor's ufwio

@pytest.fixture(scope="session")
def py38():
    """Python of a 3.8 venv with the vendor's ufwio (it needs Python < 3.10), made once per machine
    (helpers.cached_venv; measured 15 s cold)."""
    return str(cached_venv("3.8", VENDOR_PINS))


def _probe(py38, *args):
    r = subprocess.run([py38, str(STANDINS / "ufwio_probe.py"), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def _load_probe(npz):
    with np.load(npz, allow_pickle=True) as f:
        return [f[n] for n in sorted(n for n in f.files if n.startswith("a"))], list(f["keys"])


@pytest.mark.slow   # the first vendor test builds the venv: 18 s cold on this 2-core machine
def test_vendor_reads_our_lmdb(py38, tmp_path):
    ours = crops(32)
    assert ufw.write_ufw_lmdb(tmp_path / "ours", ours) == 32
    _probe(py38, "read", tmp_path / "ours", tmp_path / "read.npz")
    arrays, keys = _load_probe(tmp_path / "read.npz")
    assert keys == [b"%010d__ " % i for i in range(32)]
    for want, got in zip(ours, arrays, strict=True):
        assert_same(got, want[np.newaxis])
    mixed = mixed_arrays()
    ufw.write_ufw_lmdb(tmp_path / "mixed", mixed, add_batch_dim=False)
    _probe(py38, "read", tmp_path / "mixed", tmp_path / "mixed.npz")
    for want, got in zip(mixed, _load_probe(tmp_path / "mixed.npz")[0], strict=True):
        assert_same(got, want)


@pytest.mark.slow
def test_we_read_vendor_lmdb_and_encode_identically(py38, tmp_path):
    arrays = [c[np.newaxis] for c in crops(8, seed=5)] + mixed_arrays(seed=6)
    np.savez(tmp_path / "in.npz", **{f"a{i:04d}": a for i, a in enumerate(arrays)})
    _probe(py38, "write", tmp_path / "in.npz", tmp_path / "theirs")
    items = list(ufw.read_ufw_lmdb_items(tmp_path / "theirs"))
    assert [k for k, _ in items] == [b"%010d__ " % i for i in range(len(arrays))]
    for want, (_, got) in zip(arrays, items, strict=True):
        assert_same(got, want)
    _probe(py38, "encode", tmp_path / "in.npz", tmp_path / "blobs.npz")
    with np.load(tmp_path / "blobs.npz", allow_pickle=True) as f:
        assert [ufw.encode_datum(a) for a in arrays] == list(f["blobs"])   # byte-identical values


@pytest.mark.slow
def test_vendor_reads_the_bundle_lmdb(py38, bundle, tmp_path):
    """The bundle's LMDB, read by ufwio, is bit-for-bit the network input bmpose calibrates TPU-MLIR with."""
    cfg, out, lmdb = bundle["cfg"], bundle["dir"], bundle["lmdb"]
    _probe(py38, "read", out / "lmdb", tmp_path / "bundle.npz")
    arrays, _ = _load_probe(tmp_path / "bundle.npz")
    for want, got in zip(store.iter_batches(lmdb, cfg, 1), arrays, strict=True):
        assert_same(got, want)


# ----------------------------------------------------------------------------------------- tail, methods

def test_tail_rule_on_a_synthetic_onnx(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4)
    k = helper.make_tensor("kv", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Conv", ["x", "w"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),                        # the merge: the tail stops here
             helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("Constant", [], ["k"], value=k),
             helper.make_node("Mul", ["d", "k"], ["e"]),                        # a constant is no activation
             helper.make_node("Shape", ["e"], ["s"]),
             helper.make_node("Reshape", ["e", "s"], ["f"])]                    # nor is a shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("f", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 12)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert nntc.onnx_tail_outputs(tmp_path / "m.onnx") == ["f", "e", "d", "c"]


def test_method_names():
    assert [nntc.th_method_name(m) for m in ("kl", "max", "admm", "ACIQ", "percentile9999")] == \
        ["KL", "MAX", "ADMM", "ACIQ", "PERCENTILE9999"]
    for m in ("mse", "aciq_laplace"):
        with pytest.raises(BmposeError, match=r"no such threshold method \(-th_method takes KL, SYMKL, JSD, ADMM, "
                                              r"ACIQ, MAX, PERCENTILE9999\)"):
            nntc.th_method_name(m)


def test_make_target_is_one_bmpose_call():
    out = subprocess.run(["make", "-n", "nntc", "MODEL=m", "CALIB_N=8", "METHOD=max"], cwd=HERE.parent,
                         capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/bmpose nntc --model m --calib coco --num 8 --method max" in " ".join(out.split())


# --------------------------------------------------------------------------------- the small model's bundle

def _cli(*argv):
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, buf.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """`make nntc` for the small model (8 crops) in a private artifacts dir."""
    cfg = config.load(SMALL, artifacts=tmp_path_factory.mktemp("artifacts"))
    rc, out, err = _cli("nntc", "--model", SMALL, "--artifacts-dir", str(cfg.root), "--calib", "coco", "--num", "8")
    assert rc == 0, err
    return {"cfg": cfg, "dir": cfg.layout.nntc(), "out": out, "lmdb": cfg.artifacts / "calib" / "calib.lmdb"}


def standin_env(**extra):
    env = dict(os.environ)
    # the stand-in executables, then the python that has onnx/lmdb/bmpose as `python3`
    env["PATH"] = os.pathsep.join([str(STANDINS / "bin"), os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = str(STANDINS)
    env.update(extra)
    return env


def test_bundle_contents(bundle):
    cfg, out = bundle["cfg"], bundle["dir"]
    assert "NNTC does not import here" in bundle["out"] and str(out) in bundle["out"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "bundle.json", "gen_fp32bmodel.sh",
                                                     "gen_int8bmodel.sh", "lmdb", "manifest.json", "onnx"]
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["calibration"]["th_method"] == "KL" and meta["calibration"]["iterations"] == 8
    for script in nntc.SCRIPTS:
        assert os.access(out / script, os.X_OK)
        assert subprocess.run(["bash", "-n", str(out / script)]).returncode == 0
        assert "/tmp" not in (out / script).read_text() and "/work" not in (out / script).read_text()
    # the exact network input, one 1xCxHxW float32 record per crop
    got = list(ufw.read_ufw_lmdb(out / "lmdb"))
    want = list(store.iter_batches(bundle["lmdb"], cfg, 1))
    assert len(got) == len(want) == 8
    for g, w in zip(got, want):
        assert_same(g, w)
    # a real opset-12 export with its own manifest; the default opset-13 dir is not made
    m12 = read_manifest(cfg.layout.onnx(12))
    assert m12["options"]["opset"] == 12 and all(c["passed"] for c in m12["checks"].values())
    assert not cfg.layout.onnx().exists() and cfg.layout.onnx(13) == cfg.artifacts / "onnx"


def test_tail_names_are_node_names_of_the_opset12_onnx(bundle):
    """-fpfwd_outputs takes prototxt LAYER names, which on_to_umodel takes from the ONNX node names: every
    entry is a node of both bundled files, and the nodes are the tail (heatmap conv, last fuse Relu + Add)."""
    tail = json.loads((bundle["dir"] / "bundle.json").read_text())["calibration"]["fpfwd_outputs"]
    assert f"FPFWD_OUTPUTS='{','.join(tail)}'" in (bundle["dir"] / "gen_int8bmodel.sh").read_text()
    for b in (1, 4):
        model = onnx.load(str(bundle["dir"] / "onnx" / f"{SMALL}_b{b}.onnx"))
        assert model.opset_import[0].version == 12 and model.ir_version <= 7
        nodes = {n.name: n for n in model.graph.node}
        assert [nodes[t].op_type for t in tail] == ["Conv", "Relu", "Add"]   # heatmap conv, last fuse
        assert tail[0] == "/estimator/final_layer/Conv" and nodes[tail[0]].output[0] == model.graph.output[0].name
        assert tail[-1] == "/estimator/backbone/stage4/stage4.0/Add_3"
        tensors = {o for n in model.graph.node for o in n.output}
        assert not set(tail) & tensors          # no tensor is named like a tail node: the two cannot be confused


def test_second_run_is_a_noop(bundle):
    before = (bundle["dir"] / "manifest.json").read_bytes()
    stamp = (bundle["dir"] / "manifest.json").stat().st_mtime_ns
    rc, out, err = _cli("nntc", "--model", SMALL, "--artifacts-dir", str(bundle["cfg"].root), "--calib", "coco",
                        "--num", "8")
    assert rc == 0, err
    assert f"nntc: {bundle['dir']} is up to date (skipped)" in out and "onnx_opset12 is up to date" in out
    assert (bundle["dir"] / "manifest.json").read_bytes() == before
    assert (bundle["dir"] / "manifest.json").stat().st_mtime_ns == stamp


def test_mse_is_refused_in_one_line():
    rc, out, err = _cli("nntc", "--model", SMALL, "--method", "mse")
    assert rc == 1 and err.count("\n") == 1
    assert "'mse'" in err and "KL, SYMKL, JSD, ADMM, ACIQ, MAX, PERCENTILE9999" in err


def test_percentile_maps_to_nntc_percentile9999(bundle, tmp_path):
    """The bundle's INT8 script with bmpose's percentile9999 passes -th_method=PERCENTILE9999 and runs."""
    work = tmp_path / "pct"
    shutil.copytree(bundle["dir"], work)
    text = (work / "gen_int8bmodel.sh").read_text()
    assert "TH_METHOD=KL\n" in text
    (work / "gen_int8bmodel.sh").write_text(text.replace("TH_METHOD=KL\n",
                                                         f"TH_METHOD={nntc.th_method_name('percentile9999')}\n"))
    r = subprocess.run(["bash", str(work / "gen_int8bmodel.sh")], cwd=work, env=standin_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    umodel, = (work / "int8" / "umodel").glob("*.int8umodel")
    assert json.loads(umodel.read_text())["th_method"] == "PERCENTILE9999"


def test_scripts_run_with_standins(bundle, tmp_path):
    moved = tmp_path / "elsewhere" / "bundle"                 # relocatable: copied, run from another cwd
    shutil.copytree(bundle["dir"], moved)
    for script in nntc.SCRIPTS:
        r = subprocess.run(["bash", str(moved / script)], cwd=tmp_path, env=standin_env(), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    tail = json.loads((moved / "bundle.json").read_text())["calibration"]["fpfwd_outputs"]
    for prec in ("fp32", "int8"):
        combined = json.loads((moved / "models" / f"{SMALL}_{prec}_1b4b.bmodel").read_text())
        assert combined["prec"] == prec.upper() and combined["net"] == SMALL
        assert combined["stages"] == [[1, 3, 128, 96], [4, 3, 128, 96]]
    assert combined["fpfwd_outputs"] == tail
    # bmnetu -input_as_fp32/-output_as_fp32: the INT8 bmodel takes and gives float32, as bmpose's runtime does
    assert combined["io_dtypes"] == {"inputs": {"input": "FP32"}, "outputs": {"heatmaps": "FP32"}}


@pytest.mark.parametrize("script,old,new,message", [
    ("gen_fp32bmodel.sh", "--shapes=", "--shape=", "unknown flag --shape"),
    ("gen_fp32bmodel.sh", "--target=", "--targte=", "unknown flag --targte"),
    ("gen_fp32bmodel.sh", "_b$b.onnx", "_b1.onnx", "--shapes=[4, 3, 128, 96] but"),
    ("gen_int8bmodel.sh", "-bitwidth=TO_INT8", "-bitwidth=TO_INT4", "expected TO_INT8"),
    ("gen_int8bmodel.sh", "-D lmdb", "-D onnx", "onnx: not an LMDB"),
    ("gen_int8bmodel.sh", "-prec=INT8", "-precision=INT8", "unknown flag -precision"),
    ("gen_int8bmodel.sh", "FPFWD_OUTPUTS='/estimator/final_layer/Conv,", "FPFWD_OUTPUTS='/estimator/final_layer/Con,",
     "FP32 tail layer '/estimator/final_layer/Con' is not a layer"),
    # a tensor name (the old bundle's) is a top: of the prototxt, not a layer name: the guard refuses it
    ("gen_int8bmodel.sh", "FPFWD_OUTPUTS='/estimator/final_layer/Conv,", "FPFWD_OUTPUTS='heatmaps,",
     "FP32 tail layer 'heatmaps' is not a layer"),
    # ... and so does calibration_use_pb where the guard is skipped
    ("gen_int8bmodel.sh", 'LAYERS=$(layer_names "${PREFIX}_test_fp32.prototxt")',
     'LAYERS=$(tr , "\\n" <<< "$FPFWD_OUTPUTS")', None),
    ("gen_int8bmodel.sh", "    -d int8/umodel", "    -n \"$NET\" -d int8/umodel", "unknown flag -n"),
])
def test_a_broken_flag_fails(bundle, tmp_path, script, old, new, message):
    work = tmp_path / "mut"
    shutil.copytree(bundle["dir"], work)
    text = (work / script).read_text()
    assert old in text
    if message is None:   # the guard sees "heatmaps" only; the script passes it on to calibration_use_pb
        text = text.replace("FPFWD_OUTPUTS='/estimator/final_layer/Conv,", "FPFWD_OUTPUTS='heatmaps,")
        message = "-fpfwd_outputs: 'heatmaps' is not a layer name"
    (work / script).write_text(text.replace(old, new))
    r = subprocess.run(["bash", str(work / script)], cwd=work, env=standin_env(), capture_output=True, text=True)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_runs_the_scripts_where_nntc_imports(bundle, tmp_path, monkeypatch):
    """Inside the SDK docker (here: the stand-ins importable) ensure_nntc runs both scripts, keeps the bmodels
    and logs, and a failing script leaves nntc.failed/ with its log and a one-line error."""
    # the bundle's model in a root of its own (its opset-12 ONNX copied: up to date there), so the run's
    # nntc/ does not replace the bundle the other tests read
    src = bundle["cfg"]
    cfg = dataclasses.replace(src, root=tmp_path / "artifacts")
    shutil.copytree(src.layout.onnx(12), cfg.layout.onnx(12))
    out = cfg.layout.nntc()
    monkeypatch.syspath_prepend(str(STANDINS))
    for k, v in standin_env().items():
        monkeypatch.setenv(k, v)
    assert nntc.tools_available()
    r = nntc.ensure_nntc(cfg, bundle["lmdb"], verbose=False)
    assert r["ran"] and not r["skipped"] and len(r["models"]) == 6
    checks = read_manifest(out)["checks"]
    assert sorted(checks["models"]) == r["models"] and (out / "logs" / "gen_int8bmodel.log").is_file()
    assert nntc.ensure_nntc(cfg, bundle["lmdb"], verbose=False)["skipped"]
    # without the stand-ins' bin: bmneto still imports, bm_model.bin is not found
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]))
    with pytest.raises(BmposeError, match=r"nntc\.failed/gen_fp32bmodel\.sh: exit 127: .*bm_model\.bin") as e:
        nntc.ensure_nntc(cfg, bundle["lmdb"], force=True, verbose=False)
    assert "\n" not in str(e.value)
    assert (out.with_name("nntc.failed") / "logs" / "gen_fp32bmodel.log").is_file()
    assert read_manifest(out)["checks"]["models"] == checks["models"]   # the good build stays
