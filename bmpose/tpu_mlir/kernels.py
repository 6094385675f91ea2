"""One CPU kernel set for TPU-MLIR's float paths, on every machine.

TPU-MLIR's float ops (pymlir: calibration activations, reference outputs, the mlir backend) run on oneDNN,
which picks its kernels by CPU: AVX-512 where the CPU has it, AVX2 otherwise. The two round differently, and
kl calibration is discontinuous in its input: on one AVX-512 machine that rounding moved one threshold of 70
by 20% and the INT8 AP of the fixture by 0.004. Capping oneDNN at AVX2, which every x86-64 machine bmpose runs
on has, makes the same inputs give the same calibration table and bmodel everywhere. oneDNN can only lower
its choice (ONEDNN_MAX_CPU_ISA never raises it), so the cap is the same on machines with and without
AVX-512. It is read once, when oneDNN creates its first kernel: `pin()` must run before TPU-MLIR's runtimes
are imported (in-process) and goes into the environment of every tool and worker process bmpose starts.

The thread count matters too: OpenMP splits float reductions by thread count, and the default count is the
machine's (measured: the small model's kl table differs between 1, 2 and 4 threads in 6 to 45 of its 70
thresholds, by up to 1e-7 relative: rounding, which kl can amplify). Tool processes (calibration,
transform, deploy, search) therefore run with a fixed OMP_NUM_THREADS (`TOOL_THREADS`, whatever the
machine's cores). The mlir backend's pymlir runs with the same count in every process
(`pin_runtime_threads`, on TPU-MLIR's own libomp, so torch keeps its threads): its INT8 outputs were measured
bit-identical with 1, 2 and 4 threads, but an FP32 tpu.mlir's heatmaps differed by 1e-13 (cosine) between a
2-thread process and a 1-thread Ray worker, and an FP16 one's by more than 1e-6 from TPU-MLIR's own reference
outputs (computed by model_deploy with TOOL_THREADS) when run on one thread. With TOOL_THREADS everywhere a
local run, the mlir pool's workers, a Ray worker and TPU-MLIR's own check compute alike on any machine.

`BMPOSE_ONEDNN_ISA` overrides the level (e.g. `ALL` to let oneDNN choose, for speed comparisons only); the
level in force is recorded in every manifest, so a build made with another level is rebuilt, never reused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

DEFAULT_ISA = "AVX2"
# oneDNN >= 2.x reads ONEDNN_*, older builds DNNL_*; both are set so the pin holds whichever is bundled.
VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# The cores of the machines bmpose is built and tested on; a fixed number, not os.cpu_count(), so that a
# 16-core machine splits the work as a 2-core one does (2 threads ran calibration as fast as 4 here).
TOOL_THREADS = 2


def isa() -> str:
    """The oneDNN ISA cap bmpose uses (BMPOSE_ONEDNN_ISA, else AVX2)."""
    return os.environ.get("BMPOSE_ONEDNN_ISA", "").strip().upper() or DEFAULT_ISA


def pin(env: MutableMapping[str, str] | None = None, threads: bool = False) -> MutableMapping[str, str]:
    """Set the cap in `env` (default: this process's os.environ, so children inherit it) and, with
    `threads`, the tool thread count; returns env.

    Overrides a cap set outside (ONEDNN_MAX_CPU_ISA=AVX512_CORE would give other bytes); only
    BMPOSE_ONEDNN_ISA changes it."""
    env = os.environ if env is None else env
    level = isa()
    for var in VARS:
        env[var] = level
    if threads:
        env["OMP_NUM_THREADS"] = str(TOOL_THREADS)
    return env


def pin_runtime_threads(root: Path) -> None:
    """TOOL_THREADS OpenMP threads for pymlir in this process, as its tools run (its float ops' reductions then
    split alike everywhere): omp_set_num_threads on the libomp TPU-MLIR's runtimes link, under `root`
    (tpu_mlir's package folder). Run after pymlir is imported, from the thread that invokes it."""
    import ctypes

    lib = root / "lib" / "third_party" / "libomp.so.5"
    if lib.is_file():   # TPU-MLIR 1.30's layout; another layout keeps OpenMP's default
        omp = ctypes.CDLL(str(lib))
        omp.omp_set_num_threads(TOOL_THREADS)
        # idle threads sleep at once instead of spinning 200 ms: two mlir workers of 2 threads on 2 cores ran
        # HRNet-W32 INT8 at 0.89 s a crop spinning, 0.64 s sleeping (speed only: the results do not change)
        omp.kmp_set_blocktime(0)
