"""The ONNX door: an `onnx:` deploy yaml and its file imported into onnx/ (opset raised, BatchNormalization's
old `spatial` repaired, batch fixed, shapes checked against the codec, parity with the original recorded), and
the one-line errors of a bad yaml or file."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from bmpose import config
from bmpose.convert.export import ensure_onnx
from bmpose.errors import BmposeError
from bmpose.manifest import read_manifest, sha256_bytes

CODEC = {"type": "MSRAHeatmap", "input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 2}
PRE = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "bgr_to_rgb": True}


def heatmap_net(path, opset=9, batch=1, spatial=True, names=("image", "output"), keypoints=17):
    """A small heatmap network 3x64x48 -> Kx16x12 as old exporters wrote it: opset 9, BatchNormalization with
    `spatial`, Upsample; `batch` None: a dynamic batch."""
    rng = np.random.default_rng(0)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), w("w2", 8, 8, 3, 3), w("w3", 8, 8, 3, 3), w("w4", keypoints, 8, 1, 1),
             numpy_helper.from_array(np.linspace(0.5, 1.5, 8).astype(np.float32), "g"),
             numpy_helper.from_array(np.linspace(-0.2, 0.2, 8).astype(np.float32), "b"),
             numpy_helper.from_array(np.linspace(-0.1, 0.1, 8).astype(np.float32), "mu"),
             numpy_helper.from_array(np.linspace(0.8, 1.2, 8).astype(np.float32), "var")]
    bn = {"spatial": int(spatial)} if spatial is not False else {}   # 0: MXNet's way (with [C] statistics)
    nodes = [helper.make_node("Conv", [names[0], "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "mu", "var"], ["n1"], name="bn1", **bn),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2")]
    if opset < 9:   # Upsample-7: the scales are an attribute
        nodes.append(helper.make_node("Upsample", ["r2"], ["u"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0],
                                      name="up"))
    elif opset < 10:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        nodes.append(helper.make_node("Upsample", ["r2", "scales"], ["u"], mode="nearest", name="up"))
    else:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        nodes.append(helper.make_node("Resize", ["r2", "", "scales"], ["u"], mode="nearest", name="up"))
    nodes += [helper.make_node("Conv", ["u", "w3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv3"),
              helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
              helper.make_node("Conv", ["r3", "w4"], [names[1]], name="head")]
    b = "batch" if batch is None else batch
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [b, 3, 64, 48])],
                              [helper.make_tensor_value_info(names[1], TensorProto.FLOAT, [b, keypoints, 16, 12])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3 if opset < 9 else 4 if opset < 10 else 7
    if model.ir_version < 4:   # IR 3 (MXNet's exports): every initializer is listed as a graph input too
        model.graph.input.extend([helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                  for t in model.graph.initializer])
    path.write_bytes(model.SerializeToString())   # onnx.save would refuse nothing, but say it plainly
    return path


def write_yaml(tmp_path, onnx_name="net.onnx", **over):
    doc = {"onnx": onnx_name, "codec": CODEC, "data_preprocessor": PRE, "chips": ["bm1684x"], "batches": [1, 4]}
    doc.update(over)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def load(tmp_path, **over):
    return config.load(write_yaml(tmp_path, **over), artifacts=tmp_path / "artifacts")


def test_an_opset9_batch1_file_with_spatial_comes_in_at_opset13_batch_1_and_4(tmp_path):
    heatmap_net(tmp_path / "net.onnx")
    cfg = load(tmp_path)
    assert cfg.mmpose_config is None and cfg.onnx == (tmp_path / "net.onnx").resolve()
    assert cfg.input_size == (48, 64) and cfg.heatmap_size == (12, 16) and cfg.bgr_to_rgb is True
    assert cfg.flip_test is False and cfg.checkpoint == str(cfg.onnx)   # mmpose's head default; weights in the file
    paths = ensure_onnx(cfg, batches=(1, 4), verbose=False)
    for b, p in paths.items():
        m = onnx.load(str(p))
        assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 13
        assert [n.op_type for n in m.graph.node].count("Resize") == 1 and "Upsample" not in str(m.graph.node)
        assert (m.graph.input[0].name, m.graph.output[0].name) == ("input", "heatmaps")
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == b
    checks = json.loads((cfg.layout.onnx() / "manifest.json").read_text())["checks"]
    assert all(c["passed"] and c["max_abs_diff"] < 1e-5 and c["repaired_batchnorm"] for c in checks.values())
    assert checks["net_b4.onnx"]["batch_run"] == 4 and checks["net_b1.onnx"]["source_opset"] == 9
    assert ensure_onnx(cfg, batches=(1,), verbose=False) == {1: paths[1]}   # up to date: reused


def test_a_dynamic_batch_file_and_a_bgr_network(tmp_path):
    heatmap_net(tmp_path / "net.onnx", opset=13, batch=None, spatial=False)
    cfg = load(tmp_path, data_preprocessor={**PRE, "bgr_to_rgb": False})
    assert cfg.bgr_to_rgb is False
    paths = ensure_onnx(cfg, batches=(1, 4), verbose=False)
    assert [onnx.load(str(paths[b])).graph.input[0].type.tensor_type.shape.dim[0].dim_value for b in (1, 4)] == [1, 4]


def test_a_file_already_as_the_build_wants_keeps_its_bytes(tmp_path):
    src = heatmap_net(tmp_path / "net.onnx", opset=13, spatial=False, names=("input", "heatmaps"))
    paths = ensure_onnx(load(tmp_path), batches=(1, 4), verbose=False)
    assert sha256_bytes(paths[1]) == sha256_bytes(src) and sha256_bytes(paths[4]) != sha256_bytes(src)


@pytest.mark.parametrize("over,message", [
    ({"codec": {**CODEC, "heatmap_size": [24, 32]}},
     r"heatmaps 17x32x24 expected for input 48x64 and MSRAHeatmap heatmap_size \[24, 32\]; the ONNX outputs 17x16x12"),
    ({"codec": {**CODEC, "input_size": [96, 128]}}, r"input 3x128x96 expected for codec input_size \[96, 128\]"),
])
def test_shapes_that_do_not_fit_the_codec_are_refused_and_nothing_is_written(tmp_path, over, message):
    heatmap_net(tmp_path / "net.onnx")
    cfg = load(tmp_path, **over)
    with pytest.raises(BmposeError, match=message) as e:
        ensure_onnx(cfg, batches=(1,), verbose=False)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(cfg.onnx))
    assert not cfg.layout.onnx().exists() and not list(cfg.layout.onnx().parent.glob("onnx*"))


def test_a_file_onnx_checker_rejects(tmp_path):
    path = heatmap_net(tmp_path / "net.onnx")
    m = onnx.load(str(path))
    m.graph.node[0].input[1] = "nowhere"   # a weight no node or initializer makes
    path.write_bytes(m.SerializeToString())
    with pytest.raises(BmposeError, match=r"net\.onnx: onnx\.checker rejects it"):
        ensure_onnx(load(tmp_path), batches=(1,), verbose=False)
    (tmp_path / "net.onnx").write_bytes(b"not a model")
    with pytest.raises(BmposeError, match=r"net\.onnx: not an ONNX file"):
        ensure_onnx(load(tmp_path), batches=(1,), verbose=False)


def test_spatial_0_with_per_element_statistics_is_refused(tmp_path):
    """spatial=0 with statistics of shape C x H x W is another operation, which no opset >= 9 can express."""
    path = heatmap_net(tmp_path / "net.onnx", spatial=0)
    m = onnx.load(str(path))
    for t in m.graph.initializer:
        if t.name in ("g", "b", "mu", "var"):
            t.CopyFrom(numpy_helper.from_array(np.ones((8, 32, 24), np.float32), t.name))
    path.write_bytes(m.SerializeToString())
    with pytest.raises(BmposeError, match=r"bn1 has spatial=0 with per-element statistics \(shapes \[\[8, 32, 24\]"):
        ensure_onnx(load(tmp_path), batches=(1,), verbose=False)


def test_an_mxnet_style_opset8_file_with_spatial_0_is_read_per_channel(tmp_path):
    """MXNet/GluonCV wrote spatial=0 beside per-channel [C] statistics (and Upsample-7's attribute scales):
    accepted, the repair recorded, every written file within the parity tolerance of the per-channel reading,
    which is BatchNormalization's own per-channel maths (checked against numpy on bn1)."""
    import onnxruntime as ort

    from bmpose.convert.onnx_import import read_checked

    path = heatmap_net(tmp_path / "net.onnx", opset=8, spatial=0)
    files = ensure_onnx(load(tmp_path), batches=(1, 4), verbose=False)
    checks = read_manifest(files[1].parent)["checks"]
    assert set(checks) == {"net_b1.onnx", "net_b4.onnx"}
    for c in checks.values():
        assert c["passed"] and c["source_opset"] == 8 and c["max_abs_diff"] < 1e-5
        assert c["repaired_batchnorm"] == ["bn1: spatial=0 with per-channel statistics [8] read per channel"]
    assert onnx.load(str(files[1])).opset_import[0].version == 13
    # the per-channel reading is BatchNormalization's maths: bn1's output against numpy's, from conv1's output
    model, _ = read_checked(path)
    del model.graph.node[2:]   # conv1 -> bn1
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c1", "n1")])
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 48)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    c1, n1 = sess.run(None, {"image": x})
    g, b, mu, var = (np.linspace(lo, hi, 8, dtype=np.float32).reshape(1, 8, 1, 1) for lo, hi in
                     ((0.5, 1.5), (-0.2, 0.2), (-0.1, 0.1), (0.8, 1.2)))
    np.testing.assert_allclose(n1, g * (c1 - mu) / np.sqrt(var + 1e-5) + b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("over,message", [
    ({"onnx": "absent.onnx"}, r"net\.yaml: onnx: absent\.onnx: no such file"),
    ({"codec": None}, r"net\.yaml: missing key 'codec' \(an mmpose codec dict"),
    ({"codec": {**CODEC, "type": "SimCCLabel"}}, r"codec type 'SimCCLabel' is not one bmpose decodes"),
    ({"codec": {**CODEC, "heatmap_size": [12]}}, r"codec heatmap_size must be \[width, height\]"),
    ({"data_preprocessor": None}, r"missing key 'data_preprocessor'"),
    ({"data_preprocessor": {**PRE, "std": [1, 0, 1]}}, r"std must be positive"),
    ({"dataset": {"keypoint_names": ["a"]}}, r"dataset: missing flip_pairs, skeleton, sigmas"),
])
def test_a_bad_yaml_is_one_line_naming_it(tmp_path, over, message):
    heatmap_net(tmp_path / "net.onnx")
    with pytest.raises(BmposeError, match=message) as e:
        load(tmp_path, **over)
    assert "\n" not in str(e.value)


def test_the_dataset_gives_keypoints_flip_pairs_and_sigmas(tmp_path):
    from bmpose.runtime.results import dataset_metainfo, metric_options

    heatmap_net(tmp_path / "net.onnx", keypoints=3)
    inline = {"keypoint_names": ["head", "left_hand", "right_hand"], "flip_pairs": [[1, 2]],
              "skeleton": [[0, 1], [0, 2]], "sigmas": [0.026, 0.062, 0.062]}
    cfg = load(tmp_path, dataset=inline, val_evaluator={"nms_thr": 0.5})
    meta = dataset_metainfo(cfg)
    assert meta["flip_indices"] == [0, 2, 1] and meta["sigmas"] == inline["sigmas"]
    assert metric_options(cfg)["nms_thr"] == 0.5 and metric_options(cfg)["score_mode"] == "bbox_keypoint"
    ensure_onnx(cfg, batches=(1,), verbose=False)   # 3 heatmaps: what the inline set says
    coco = dataset_metainfo(load(tmp_path))
    assert len(coco["keypoint_names"]) == 17 and coco["keypoint_names"][0] == "nose"
    with pytest.raises(BmposeError, match="dataset 'nosuchset'"):
        dataset_metainfo(load(tmp_path, dataset="nosuchset"))


def test_the_nntc_bundles_opset12_comes_through_the_same_door(tmp_path):
    heatmap_net(tmp_path / "net.onnx")
    cfg = load(tmp_path)
    paths = ensure_onnx(cfg, batches=(1, 4), opset=12, verbose=False)
    assert paths[4].parent == cfg.layout.onnx(12)
    m = onnx.load(str(paths[4]))
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 12
    assert json.loads((cfg.layout.onnx(12) / "manifest.json").read_text())["checks"]["net_b4.onnx"]["passed"]
