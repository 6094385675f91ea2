"""`--precision auto`'s search (bmpose.convert.auto) on made-up builds: the order it tries candidates in, when it
stops, what it chooses, and the ranking of layers it reads from a build's per-layer compare."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmpose.convert import auto
from bmpose.errors import BmposeError

RANKED = [f"layer{i}" for i in range(20)]
FLOATS = {"fp16": (1.5, 0.98), "bf16": (1.5, 0.95), "fp32": (2.2, 1.0)}


def fake(int8_ms=0.7, per_layer_ms=0.05, per_layer_fid=0.1, floats=FLOATS, fail=()):
    """build/measure/ranking of a model whose INT8 fidelity is 0.5 + per_layer_fid per float layer."""
    built = []

    def build(c: auto.Candidate):
        built.append(c.label)
        if c.label in fail:
            raise BmposeError(f"{c.label}: model_deploy failed")
        if c.precision != "int8":
            return Path(c.label), floats[c.precision][0]
        return Path(c.label), int8_ms + per_layer_ms * len(c.float_layers)

    def measure(d: Path):
        if d.name in FLOATS:
            return np.float64(floats[d.name][1]), {}
        k = int(d.name.split("x")[-1]) if "x" in d.name else 0
        return np.float64(min(1.0, 0.5 + per_layer_fid * k)), {"k": k}

    return build, measure, (lambda: list(RANKED)), built


def search(target=0.9, budget=10, chip="bm1684x", **kw):
    build, measure, ranking, built = fake(**kw)
    s = auto.Search(chip, build, measure, ranking, target, budget, log=lambda m: None)
    return s, s.run(), built


def test_doubles_then_bisects_to_the_fewest_float_layers():
    s, winner, built = search()
    # floats first (their time is the ceiling), then INT8, then k = 1, 2, 4 (meets), then 3 between 2 and 4
    assert built == ["fp16", "bf16", "fp32", "int8", "int8_f16x1", "int8_f16x2", "int8_f16x4", "int8_f16x3"]
    assert winner.candidate.label == "int8_f16x4" and winner.candidate.float_layers == tuple(RANKED[:4])
    assert winner.candidate.float_mode == "F16"
    summary = s.summary(winner)
    assert summary["winner"] == "int8_f16x4" and "fastest build meeting" in summary["why"]
    # plain JSON types (a numpy bool written with default=str reads back as the truthy text "False")
    assert all(type(t["meets"]) is bool and type(t["fidelity"]) is float for t in summary["trials"])
    assert [t["variant"] for t in summary["trials"]] == built


def test_bm1684_keeps_float_layers_in_fp32_and_has_no_half_precision():
    _, winner, built = search(chip="bm1684")
    assert built[:2] == ["fp32", "int8"] and "fp16" not in built
    assert winner.candidate.float_mode == "F32"


def test_int8_that_buys_no_time_is_not_chosen():
    s, winner, built = search(int8_ms=1.6)
    assert winner.candidate.label == "fp16" and built == ["fp16", "bf16", "fp32", "int8"]
    assert any("buys no time" in n for n in s.notes)


def test_builds_of_one_speed_are_told_apart_by_agreement():
    """BF16 0.08% faster than FP16 (RTMPose-t on BM1684X) is the same speed: the better agreement wins; 2% faster
    is faster."""
    for bf16_ms, want in ((1.5 * (1 - 0.0008), "fp16"), (1.5 * (1 - 0.02), "bf16")):
        floats = {**FLOATS, "bf16": (bf16_ms, 0.95)}
        _, winner, _ = search(int8_ms=1.6, floats=floats)
        assert winner.candidate.label == want, (bf16_ms, winner.candidate.label)


def test_stops_adding_layers_once_no_faster_than_float():
    # each float layer costs 0.3 ms: k=2 (1.3 ms) still beats FP16 (1.5 ms), k=4 (1.9 ms) does not: no k=8
    s, winner, built = search(per_layer_ms=0.3)
    assert winner.candidate.label == "fp16"
    assert built[-1] == "int8_f16x4" and any("no faster than the float build" in n for n in s.notes)


def test_all_int8_that_meets_the_target_wins_at_once():
    _, winner, built = search(target=0.5)
    assert winner.candidate.label == "int8" and built == ["fp16", "bf16", "fp32", "int8"]


def test_budget_and_a_failed_build():
    s, winner, built = search(budget=5, fail=("int8_f16x1",))
    assert len(built) == 5 and winner.candidate.label == "fp16"
    assert s.trials[4].error and any("budget" in n for n in s.notes)


def test_unreachable_target_names_the_best_reached():
    s, winner, _ = search(target=1.5)
    assert winner is None
    msg = str(auto.unreachable(s))
    # equal fidelity: the faster one (8 F16 layers, 1.1 ms, against FP32's 2.2)
    assert "no build met fidelity >= 1.5" in msg and "the best reached is int8_f16x8 at fidelity 1.0000" in msg


def test_same_inputs_same_trials():
    a, _, built_a = search()
    b, _, built_b = search()
    assert built_a == built_b and a.summary(a.winner()) == b.summary(b.winner())


def test_qtable_text_names_each_layer_once_in_its_mode():
    c = auto.Candidate("int8", ("x", "y"), "F16")
    assert auto.qtable_text(c, "why").splitlines() == ["# why", "x F16", "y F16"]
    with pytest.raises(AttributeError):
        c.precision = "fp32"   # frozen: a candidate is a key


def test_the_choice_is_recorded_and_reused_until_an_input_changes(tmp_path):
    build, measure, ranking, _ = fake()

    def build_here(c):   # every trial a folder with a manifest, as real builds have
        d, ms = build(c)
        (tmp_path / d).mkdir(exist_ok=True)
        (tmp_path / d / "manifest.json").write_text(c.label)
        return tmp_path / d, ms

    s = auto.Search("bm1684x", build_here, lambda d: measure(Path(d.name)), ranking, 0.9, 10, log=lambda m: None)
    winner = s.run()
    (tmp_path / "data.txt").write_text("calibration")
    inputs, options = {"data": tmp_path / "data.txt"}, {"target": 0.9}
    summary = auto.record_choice(s, winner, False, tmp_path / "auto", inputs, options)
    assert summary["winner"] == "int8_f16x4" and summary["winner_dir"] == str(tmp_path / "int8_f16x4")
    assert auto.cached_choice(tmp_path / "auto", inputs, options) == summary
    assert auto.cached_choice(tmp_path / "auto", inputs, {"target": 0.95}) is None
    (tmp_path / "data.txt").write_text("other calibration")
    assert auto.cached_choice(tmp_path / "auto", inputs, options) is None


def test_no_winner_fails_or_keeps_the_best_marked(tmp_path):
    s, winner, _ = search(target=1.5)
    with pytest.raises(BmposeError, match="no build met fidelity >= 1.5"):
        auto.record_choice(s, winner, False, tmp_path / "auto", {}, {})
    assert not (tmp_path / "auto" / "choice.json").exists()
    for t in s.trials:   # record_choice hashes the winner's manifest
        t.build_dir = tmp_path / t.candidate.label
        t.build_dir.mkdir()
        (t.build_dir / "manifest.json").write_text("{}")
    summary = auto.record_choice(s, winner, True, tmp_path / "auto", {}, {})
    assert summary["winner"] == "int8_f16x8" and "below target" in summary["marked"]


def tool_search(tool_fid: dict, target=0.9, budget=12):
    """A search whose calibration tools lift all-INT8 by tool_fid[tag]; float layers add to the best one."""
    from bmpose.convert import cali_tools

    build, measure, ranking, built = fake()

    def measure_tools(d: Path):
        fid, extra = measure(d)
        lift = max((v for k, v in tool_fid.items() if d.name.startswith(f"int8_{k}")), default=0.0)
        return np.float64(min(1.0, fid + lift)), extra

    s = auto.Search("bm1684x", build, measure_tools, ranking, target, budget, log=lambda m: None,
                    tools=(("search_threshold",), ("bc",)))
    return s, s.run(), built, cali_tools


def test_calibration_tools_are_tried_on_all_int8_before_any_float_layer():
    s, winner, built, _ = tool_search({"st": 0.1, "bc": 0.0})
    assert built[3:6] == ["int8", "int8_st", "int8_bc"]
    # the float layers are added to the all-INT8 trial closest to float (search_threshold's table here)
    assert built[6:] and all(b.startswith("int8_st_f16x") for b in built[6:]), built
    assert winner.candidate.tools == ("search_threshold",) and s.summary(winner)["tools"] == ["search_threshold"]
    assert s.summary(winner)["trials"][4]["tools"] == ["search_threshold"]


def test_a_tool_that_meets_the_target_ends_the_search_without_float_layers():
    _, winner, built, _ = tool_search({"st": 0.0, "bc": 0.45})
    assert built[3:] == ["int8", "int8_st", "int8_bc"] and winner.candidate.label == "int8_bc"


def test_tool_names_tags_and_refusals():
    from bmpose.convert import cali_tools

    assert cali_tools.normalise(["we", "search_threshold", "we"]) == ("search_threshold", "we")
    assert cali_tools.tag(["we", "bc"]) == "bc+we" and cali_tools.tag([]) == ""
    with pytest.raises(BmposeError, match="'sq': unknown"):
        cali_tools.normalise(["sq"])
    with pytest.raises(BmposeError, match="name the chip"):
        cali_tools.run_args(["bc"], None, None)
    assert cali_tools.run_args(["we"], None, None) == ["--we"]   # chip-free: the qtable is not asked for
    args = cali_tools.run_args(["search_threshold"], "bm1684x", "pre_qtable")
    assert args[:2] == ["--search", "search_threshold"] and args[-4:] == ["--chip", "bm1684x", "--pre_qtable",
                                                                             "pre_qtable"]
    # TPU-MLIR 1.30.2 would run only the threshold search: refused before any graph is read
    assert "unreachable" in cali_tools.refusal(["bc", "search_threshold"], Path("no.mlir"))


def test_an_int8_winner_in_the_search_folder_is_listed_for_evaluation_by_its_chip(tmp_path):
    """`bmpose eval` scores the auto winner beside the plain builds (list_bmodels(auto=True)); a float winner is
    the plain build itself and is not listed twice."""
    import json

    from bmpose import config
    from bmpose.layout import list_bmodels
    from bmpose.manifest import write_manifest

    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)

    def fake_build(d: Path, chip: str, precision: str, batch: int = 1):
        d.mkdir(parents=True)
        (d / cfg.layout.bmodel_name(chip, precision, batch)).write_bytes(b"bmodel")
        write_manifest(d, stage="deploy", inputs={}, options={"chip": chip, "precision": precision, "batch": batch},
                       extra={"tpu_mlir": "x_tpu.mlir"})
        return d

    fake_build(cfg.layout.bmodel("bm1684x", "int8", 1), "bm1684x", "int8")
    winner = fake_build(cfg.layout.auto("bm1684x") / "int8_f16x2_b1", "bm1684x", "int8")
    fake_build(cfg.layout.auto("bm1684x") / "int8_f16x2_b4", "bm1684x", "int8", 4)   # the recipe at batch 4
    fake_build(cfg.layout.auto("bm1684x") / "int8_f16x4_b1", "bm1684x", "int8")      # another trial
    (cfg.layout.auto("bm1684x") / "choice.json").write_text(json.dumps({"winner": "int8_f16x2",
                                                                        "winner_dir": str(winner)}))
    floats = fake_build(cfg.layout.bmodel("bm1684", "fp32", 1), "bm1684", "fp32")
    cfg.layout.auto("bm1684").mkdir(parents=True)
    (cfg.layout.auto("bm1684") / "choice.json").write_text(json.dumps({"winner": "fp32", "winner_dir": str(floats)}))
    assert [b["name"] for b in list_bmodels(cfg)] == ["bm1684_fp32_b1", "bm1684x_int8_b1"]
    listed = list_bmodels(cfg, auto=True)
    assert [b["name"] for b in listed] == ["bm1684_fp32_b1", "bm1684x_auto_b1", "bm1684x_int8_b1",
                                           "bm1684x_auto_b4"]
    assert listed[1]["dir"] == winner and listed[1]["precision"] == "int8" and listed[1]["variant"] == "int8_f16x2"
    assert [b["file"] for b in listed[1::2]] == [f"{cfg.name}_bm1684x_auto_b{n}.bmodel" for n in (1, 4)]
    # a float winner is the plain build, listed once and marked (deploy --precisions auto bundles it)
    assert listed[0]["variant"] == "fp32" and listed[0]["file"] == cfg.layout.bmodel_name("bm1684", "fp32", 1)
    assert "variant" not in listed[2] and not any("variant" in b for b in list_bmodels(cfg))


def test_deploy_searches_as_the_chip_was_last_searched(tmp_path):
    """`bmpose deploy --precisions auto` passes the recorded search's options back, so the choice is reused."""
    from bmpose import config
    from bmpose.convert import auto, cali_tools
    from bmpose.flows.build import BuildRequest
    from bmpose.flows.deploy import last_search, wanted
    from bmpose.manifest import write_manifest

    cfg = config.load("hrnet_small_128x96", artifacts=tmp_path)
    assert last_search(cfg, "bm1684x") == {}   # never searched: the defaults
    for tags, tools in (([], ("none",)), (["st", "bc"], ("search_threshold", "bc")), (["bc+we"], ("bc+we",))):
        write_manifest(cfg.layout.auto("bm1684x"), stage="auto_choice", inputs={}, outputs=[],
                       options={"target": 0.1 + 0.2, "budget": 9, "best": True, "tools": tags})
        got = last_search(cfg, "bm1684x")
        assert got == {"auto_budget": 9, "auto_best": True, "auto_tools": tools,
                       "tolerances": ("auto_target=0.30000000000000004",)}
        # what the search then records as its options again: the same tags
        assert [cali_tools.tag(t) for t in auto.parse_tools(BuildRequest("auto", **got).auto_tools)] == tags
    assert wanted({"precision": "int8", "variant": "int8_f16x2"}, ("auto",))
    assert not wanted({"precision": "int8", "variant": "int8_f16x2"}, ("int8", "fp32"))
    assert not wanted({"precision": "int8"}, ("auto",)) and wanted({"precision": "fp16"}, ("auto",))

