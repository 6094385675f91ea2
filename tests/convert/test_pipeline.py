"""bmpose.convert.pipeline: one object chains calibration crops -> ONNX -> top MLIR -> calibration table, each
stage ensured once per Pipeline (the stages' own reuse is tested with them)."""
from bmpose import config
from bmpose.convert import pipeline, steps

SMALL = "hrnet_small_128x96"


def test_each_stage_is_ensured_once_and_in_order(monkeypatch, tmp_path):
    calls = []

    def fake(name, result):
        def f(*args, **kw):
            calls.append((name, args[1:], kw))
            return result(*args, **kw)
        return f

    import bmpose.calib.calibset as calibset
    import bmpose.convert.export as export

    monkeypatch.setattr(calibset, "ensure_calib", fake("calib", lambda cfg, spec, **kw: tmp_path / "calib.lmdb"))
    monkeypatch.setattr(steps, "ensure_cali_inputs", fake("crops", lambda cfg, lmdb, num: [tmp_path / "c0.npz"]))
    monkeypatch.setattr(export, "ensure_onnx", fake("onnx", lambda cfg, ck, batches, verbose: {
        b: tmp_path / f"b{b}.onnx" for b in batches}))
    monkeypatch.setattr(steps, "ensure_transform", fake("mlir", lambda cfg, b, onnx, crops, ck: tmp_path / f"m{b}"))
    monkeypatch.setattr(steps, "ensure_cali_table", fake("table", lambda cfg, m, crops, method, num, out=None, **tools:
                                                         (out or tmp_path) / f"{method}_{num}"))
    cfg = config.load(SMALL)
    pipe = pipeline.Pipeline(cfg, "ck", num=8)
    assert pipe.cali_table("kl") == tmp_path / "kl_8"
    assert pipe.cali_table("max") == tmp_path / "max_8"
    assert pipe.mlir(1) == tmp_path / "m1" and pipe.onnx(1, 4) == {1: tmp_path / "b1.onnx", 4: tmp_path / "b4.onnx"}
    names = [c[0] for c in calls]
    # calib, crops, onnx b1, mlir b1 once each; two tables; b4 exported when first asked for
    assert names == ["calib", "crops", "onnx", "mlir", "table", "table", "onnx"], names
    assert calls[2][1] == ("ck",) and calls[2][2]["batches"] == (1,) and calls[6][2]["batches"] == (4,)
    # a subset table is named by its own size, in its own folder
    assert pipe.cali_table("kl", crops=[tmp_path / "a", tmp_path / "b"], out=tmp_path / "sub") == tmp_path / "sub" / "kl_2"
    # no calibration tool unless asked (then it measures on the chip with the build's float layers float)
    assert all(c[2].get("tools") == () and c[2].get("qtables") == () for c in calls if c[0] == "table")
    # the config's count names the table when none is given
    assert pipeline.Pipeline(cfg).num_used() == int(cfg.calibration.get("num", 100))


def test_a_bmodel_is_built_from_its_batchs_mlir(monkeypatch, tmp_path):
    from bmpose.convert import bmodel_build

    got = []
    monkeypatch.setattr(steps, "ensure_transform", lambda cfg, b, onnx, crops, ck: tmp_path / f"m{b}")
    monkeypatch.setattr(bmodel_build, "ensure_bmodel", lambda cfg, *a, **kw: got.append((a, kw)) or (tmp_path, True))
    pipe = pipeline.Pipeline(config.load(SMALL, artifacts=tmp_path), "ck")
    pipe._onnx, pipe._crops = {4: tmp_path / "b4.onnx"}, []
    assert pipe.bmodel("bm1684x", "fp32", 4, "the spec", out=tmp_path / "x") == (tmp_path, True)
    (args, kw), = got
    assert args == ("bm1684x", "fp32", 4) and kw["mlir"] == tmp_path / "m4" and kw["spec"] == "the spec"
    assert kw["out"] == tmp_path / "x" and kw["auto_tail"] is True and kw["cali_table"] is None


def test_a_qtable_layer_split_by_tpu_mlir_holds_when_every_part_is_f32():
    """TPU-MLIR lowers some ops into parts named `<name>_<part>` (BM1684: ScaleNorm's ReduceL2 -> _Square,
    _ReduceSum, _Sqrt) and folds others into a neighbour (BM1684X: a Transpose into its MatMul); the
    deployed-qtable check follows the parts, lets a folded op of the top MLIR go, and still refuses a name
    that neither graph has (TPU-MLIR would ignore it)."""
    from types import SimpleNamespace

    from bmpose.convert.bmodel_build import qtable_mismatches

    quant = {"a": "F32", "r_Square": "F32", "r_ReduceSum": "F32", "r_Sqrt": "F32", "s_Square": "INT8",
             "s_Sqrt": "F32", "rr": "INT8"}
    graph = SimpleNamespace(names=list(quant), op=lambda n: SimpleNamespace(quant=quant[n]))
    assert qtable_mismatches(graph, {"a": "F32", "r": "F32"}) == []
    assert qtable_mismatches(graph, {"s": "F32"}) == ["s_Square (INT8)"]
    assert qtable_mismatches(graph, {"rr": "F32", "gone": "F32"}) == ["rr (INT8)", "gone"]
    assert qtable_mismatches(graph, {"gone": "F32"}, top_names=["gone", "a"]) == []
