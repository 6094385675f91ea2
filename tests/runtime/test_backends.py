"""Backends on real bmodels of the small model: the mlir backend (pymlir on the deployed tpu.mlir) equals the
bmodel on the cmodel, per chip, on fixture crops; wrong-chip artifacts are refused. Reads the run's shared
INT8 b1 bmodels of both chips, so it is slow."""
import numpy as np
import pytest

from bmpose.errors import BmposeError
from bmpose.layout import list_bmodels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(small):
    """The run's shared build of the small model (conftest's `small`): its INT8 batch-1 bmodels for both chips."""
    return small


@pytest.mark.parametrize("chip", ["bm1684", "bm1684x"])
def test_mlir_equals_cmodel(cfg, chip):
    """One chip per process: each chip's cmodel runs in its own spawned interpreter."""
    import multiprocessing

    from bmpose.runtime.backends import open_backend
    from bmpose.weights.fixture import realistic_inputs
    from bmpose.bench.device import cmodel_seconds_per_crop

    b = next(b for b in list_bmodels(cfg) if b["chip"] == chip and b["precision"] == "int8" and b["batch"] == 1)
    x = realistic_inputs(cfg, 2, 7)
    ml = open_backend(b["tpu_mlir"], chip, kind="mlir")
    with multiprocessing.get_context("spawn").Pool(1) as cmodel_process:
        ys_cm = [cmodel_process.apply(cmodel_seconds_per_crop, (str(b["path"]), chip, x[i:i + 1]))[1]
                 for i in range(2)]
    diff = max(float(np.abs(c - ml.run(x[i:i + 1])).max()) for i, c in enumerate(ys_cm))
    # Stated bound: bit-exact for a pure INT8 network (measured on both chips without an FP32 tail); with the
    # FP32 tail the float layers may round differently, measured up to 2.4e-7 on heatmaps of range ~1.
    print(f"{chip}: max |cmodel - mlir| = {diff}")
    assert diff <= 1e-5, f"INT8 tpu.mlir on pymlir differs from the bmodel on the cmodel: {diff}"


def test_wrong_chip_refused(cfg):
    from bmpose.runtime.backends import open_backend

    b = next(b for b in list_bmodels(cfg) if b["chip"] == "bm1684x")
    with pytest.raises(BmposeError, match="built for bm1684x, not for the requested chip bm1684"):
        open_backend(b["tpu_mlir"], "bm1684", kind="mlir")
    with pytest.raises(BmposeError, match="built for bm1684x, not for the requested chip bm1684"):
        open_backend(b["path"], "bm1684", kind="cmodel")


def test_mlir_missing_weights(cfg, tmp_path):
    import shutil

    from bmpose.runtime.backends import open_backend

    b = list_bmodels(cfg)[0]
    copy = tmp_path / b["tpu_mlir"].name
    shutil.copy(b["tpu_mlir"], copy)
    with pytest.raises(BmposeError, match="weight file .* is missing"):
        open_backend(copy, kind="mlir")


def test_mlir_worker_pool_gives_the_same_heatmaps(cfg):
    """A long mlir run is spread over spawned worker processes: the outputs must not change by a bit."""
    from bmpose.runtime.backends import open_backend, mlir
    from bmpose.weights.fixture import realistic_inputs
    from bmpose.runtime.predict import run_batches

    b = next(b for b in list_bmodels(cfg) if b["chip"] == "bm1684" and b["precision"] == "int8" and b["batch"] == 1)
    x = realistic_inputs(cfg, 6, 3)
    alone = run_batches(open_backend(b["tpu_mlir"], "bm1684", kind="mlir"), x, progress=False)
    pooled_backend = mlir.MlirBackend(b["tpu_mlir"], "bm1684", workers=2)
    pooled_backend.pool_worth_s = 0.0   # pool even for this short run
    pooled = run_batches(pooled_backend, x, progress=False)
    assert pooled_backend.last_workers == 2    # the pool really ran ...
    assert np.array_equal(pooled, alone)       # ... and changed nothing


def test_the_simulators_own_prints_stay_off_the_console(cfg, tmp_path):
    """The cmodel's C code printed "Cannot open libusercpu.so, disable user cpu layer.", "[0] do_allreduce: 0."
    and, at exit, "BMLIB Send Quit Message" around `bmpose infer`'s own lines; now only bmpose's lines remain."""
    import subprocess
    import sys

    b = next(b for b in list_bmodels(cfg) if b["chip"] == "bm1684x" and b["precision"] == "int8" and b["batch"] == 1)
    run = subprocess.run([sys.executable, "-m", "bmpose", "infer", "--model", cfg.name, "--artifacts-dir",
                          str(cfg.root), "--backend", "bmodel", str(b["path"]), "--limit", "1", "--no-vis",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    said = run.stdout + run.stderr
    for chatter in ("libusercpu", "do_allreduce", "BMLIB", "cmodel_deinit", "bmcpu init"):
        assert chatter not in said, said
    assert "infer: 1 persons" in run.stdout
