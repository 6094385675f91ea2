"""BM1688 and CV186X: not in the bundled configs' chips, built with `--chips` (`make int8 CHIPS=bm1688`).

The slow tests share one build of the small model in a private artifacts dir: BM1688 fp32, int8 and fp16 and
CV186X fp16, batch 1, deployed from copies of the run's shared transform and calibration table.
"""
from __future__ import annotations

import pytest

from bmpose import config
from bmpose.flows.build import BuildRequest, Plan, build
from bmpose.chips import CHIPS, CHIP_PRECISIONS
from bmpose.layout import list_bmodels
from bmpose.compare import read_csv
from helpers import SAIL_STANDIN, SMALL, copy_stages, simulate_like_the_build

BUILT = [("bm1688", "fp32"), ("bm1688", "fp16"), ("bm1688", "int8"), ("cv186x", "fp16")]


def test_bm1688_and_cv186x_are_chips_with_every_precision():
    assert {"bm1688", "cv186x"} <= set(CHIPS)
    assert set(CHIP_PRECISIONS["bm1688"]) == set(CHIP_PRECISIONS["cv186x"]) == {"fp32", "fp16", "bf16", "int8"}
    plan = Plan(BuildRequest("int8", model=SMALL, chips=("bm1688",)))
    assert plan.targets == [("bm1688", 1), ("bm1688", 4)]
    assert config.load(SMALL).chips == ("bm1684", "bm1684x")   # the default build stays as it was


@pytest.fixture(scope="module")
def chips(small, tmp_path_factory):
    """Seeded with the run's shared export, calibration and transform (conftest's `small`): only the deploys
    for the two chips run here."""
    root = tmp_path_factory.mktemp("chips_artifacts")
    copy_stages(small.root, root, SMALL, ("onnx", "calib", "cali_inputs", "mlir/b1", "cali_table/kl_n100"))
    for chip in ("bm1688", "cv186x"):
        for precision in sorted({p for c, p in BUILT if c == chip}):
            build(BuildRequest(precision, model=SMALL, artifacts_dir=root, chips=(chip,), batches=(1,), report=False))
    return config.load(SMALL, artifacts=root)


@pytest.mark.slow
def test_bm1688_cv186x_builds_pass_their_gates_with_compare_files_and_device_time(chips):
    bms = list_bmodels(chips)
    assert sorted((b["chip"], b["precision"]) for b in bms) == sorted(BUILT)
    for b in bms:
        m = b["manifest"]
        key = f"{b['precision']}_cos"
        assert m["checks"]["tolerance"] == {key: chips.tolerances[key]}
        assert m["checks"]["final"]["cosine"] >= chips.tolerances[key], b["path"]
        rows = read_csv(b["dir"] / "compare.csv")
        assert rows[-1]["op"] == "bmodel" and rows[-1]["quant"] == b["precision"].upper() and len(rows) > 50
        assert b["tpu_mlir"].read_text().count(f'module.chip = "{b["chip"]}"') == 1
        # the compiler's estimate, at the clock of TPU-MLIR's BM1688 cycle model (both chips)
        t = m["checks"]["device_time"]
        assert t["tpu_freq_mhz"] == 900 and t["cycles"] > 0 and t["runtime_ms"] == pytest.approx(t["cycles"] / 9e5)
    int8 = next(b for b in bms if b["precision"] == "int8")
    assert len(int8["manifest"]["fp32_layers"]) >= 2   # the automatic FP32 tail


@pytest.mark.slow
def test_bm1688_bmodel_on_its_simulator_equals_the_build(chips):
    """The cmodel gives the build's own output bit for bit and a profile equal to the embedded estimate; pymlir
    runs the deployed tpu.mlir (conftest.simulate_like_the_build)."""
    b = next(b for b in list_bmodels(chips) if (b["chip"], b["precision"]) == ("bm1688", "int8"))
    simulate_like_the_build(b, "bm1688")


@pytest.mark.slow
def test_a_cv186x_bundle_runs_on_a_device_that_answers_cv186ah(chips, tmp_path):
    """An SE9-8 answers get_target() with its SoC's name, CV186AH: the CV186X bundle runs there (sail stand-in,
    the bmodel on the CV186X cmodel); a device of another chip still gets the one-line refusal."""
    import os
    import subprocess
    import sys
    import tarfile

    from bmpose.deploy.bundle import write_bundle

    bms = [b for b in list_bmodels(chips) if b["chip"] == "cv186x"]
    folder, archive, written = write_bundle(chips, "cv186x", bms)
    assert written
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path)
    bundle = tmp_path / folder.name
    standin = SAIL_STANDIN

    def run(target):
        env = {**os.environ, "PYTHONPATH": str(standin), "SAIL_STANDIN_ENGINE": "cmodel",
               "SAIL_STANDIN_TARGET": target}
        return subprocess.run([sys.executable, str(bundle / "bmodel.py"), "--no-vis", "--out", tmp_path / target],
                              capture_output=True, text=True, env=env, cwd=tmp_path)

    ok = run("CV186AH")
    assert ok.returncode == 0, ok.stderr
    assert "(cv186x, batch 1)" in ok.stdout and (tmp_path / "CV186AH" / "results.json").is_file()
    refused = run("BM1684X")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "built for cv186x, but device 0 is a bm1684x" in refused.stderr
