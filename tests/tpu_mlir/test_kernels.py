"""The CPU kernel pin (bmpose.tpu_mlir.kernels) is in force in every TPU-MLIR process bmpose starts: tool subprocesses,
the in-process runtime and the mlir backend's spawned workers. oneDNN says which ISA and how many threads it
uses when ONEDNN_VERBOSE=1; the tests set a different ISA and thread count outside and read what it used."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys


from bmpose.tpu_mlir import kernels
from bmpose.convert import bmodel_build, steps
from bmpose.tpu_mlir.runner import run_tool, tpu_env

OUTSIDE = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE", "OMP_NUM_THREADS": "7",
           "ONEDNN_VERBOSE": "1"}


def _onednn_info(text: str) -> list[tuple[str, str]]:
    """(isa, nthr) of every oneDNN start-up banner in a log."""
    isas = re.findall(r"onednn_verbose,info,cpu,isa:([^\n]+)", text)
    nthr = re.findall(r"onednn_verbose,info,cpu,runtime:\w+,nthr:(\d+)", text)
    assert isas and len(isas) == len(nthr), text[-3000:]
    return list(zip(isas, nthr))


def test_tool_env_overrides_outside_isa_and_threads(monkeypatch):
    for k, v in OUTSIDE.items():
        monkeypatch.setenv(k, v)
    env = tpu_env()
    assert env["ONEDNN_MAX_CPU_ISA"] == env["DNNL_MAX_CPU_ISA"] == "AVX2"
    assert env["OMP_NUM_THREADS"] == str(kernels.TOOL_THREADS)
    monkeypatch.setenv("BMPOSE_ONEDNN_ISA", "all")   # the one way to change it, recorded in manifests
    assert tpu_env()["ONEDNN_MAX_CPU_ISA"] == "ALL"
    from bmpose.manifest import tool_versions

    assert tool_versions()["onednn_max_cpu_isa"] == "ALL"


def test_tool_process_runs_avx2_with_fixed_threads(toy, tmp_path, monkeypatch):
    """A real TPU-MLIR tool (model_runner on the toy top MLIR, through oneDNN) started by bmpose's runner."""
    cfg, mlir, crops = toy
    for f in mlir.iterdir():
        shutil.copy(f, tmp_path)
    for k, v in OUTSIDE.items():
        monkeypatch.setenv(k, v)
    files = steps.transform_files(cfg)
    run_tool("model_runner.py", ["--input", crops[0], "--model", files["mlir"], "--output", "out.npz"], tmp_path,
             "runner.log")
    info = _onednn_info((tmp_path / "runner.log").read_text())
    assert all(isa == "Intel AVX2" and n == str(kernels.TOOL_THREADS) for isa, n in info), info


CHILD = r"""
import sys
import numpy as np
from bmpose.runtime.backends.mlir import MlirBackend
b = MlirBackend(sys.argv[1], workers=2)
b.pool_worth_s = 0.0                       # force the worker pool
x = np.zeros(b.input_shape, np.float32)
outs = list(b.run_many([x, x, x]))
assert b.last_workers == 2 and all(np.array_equal(o, outs[0]) for o in outs)
"""


def test_mlir_backend_and_its_workers_run_avx2(toy):
    """In-process pymlir and the spawned pool: every oneDNN banner says AVX2 and the tools' thread count, this
    process's (7 threads set outside: overridden) and the workers' alike (kernels.pin_runtime_threads), so the
    mlir backend computes as model_deploy's own reference run does, wherever it runs."""
    cfg, mlir, crops = toy
    table = steps.ensure_cali_table(cfg, mlir, crops, "kl", 4)
    opts = bmodel_build.deploy_options(cfg, "bm1684x", "int8", 1, method="kl", user_qtables=[], search=False,
                                checkpoint=None, calib=None)
    d, _ = bmodel_build.ensure_bmodel(cfg, "bm1684x", "int8", 1, mlir=mlir, spec=opts, cali_table=table)
    from bmpose.manifest import read_manifest

    tpu_mlir = d / read_manifest(d)["tpu_mlir"]
    env = {**tpu_env(), **OUTSIDE}
    r = subprocess.run([sys.executable, "-c", CHILD, str(tpu_mlir)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = _onednn_info(r.stdout + r.stderr)
    assert {isa for isa, _ in info} == {"Intel AVX2"}, info
    assert {n for _, n in info} == {str(kernels.TOOL_THREADS)} and len(info) >= 2, info
