"""A deployed `*_tpu.mlir` (what model_deploy lowers to before code generation) through TPU-MLIR's MLIR
interpreter `pymlir`, on the CPU.

TPU-MLIR validates every bmodel against this file, so its output stands for the bmodel's at a fraction of the
simulator's cost; tests/runtime/test_backends.py checks it against the cmodel run of the bmodel on fixture crops (see
docs/inference.md for the bound and the speed). The weights npz named in the file's
`module.weight_file` must sit beside it (model_deploy's layout).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import time

import numpy as np

from bmpose import procs
from bmpose.errors import BmposeError
from bmpose.pose.pipeline import join_outputs
from bmpose.runtime.backends.base import Backend, check_chip
from bmpose.tpu_mlir import kernels
from bmpose.tpu_mlir.installed import mlir_chip, mlir_weight_file, runtime_module, tpu_mlir_root


@contextlib.contextmanager
def _in_dir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class MlirBackend(Backend):
    kind = "mlir"

    def __init__(self, path, chip: str | None = None, workers: int | None = None):
        super().__init__(path)
        self.workers = workers or int(os.environ.get("BMPOSE_WORKERS") or os.cpu_count() or 1)
        self.pool_worth_s = POOL_WORTH_S
        self.last_workers = 1   # processes the last run_many used (tests check the pool really ran)
        actual = mlir_chip(path)
        weights = mlir_weight_file(path)
        if weights is not None and not (self.path.resolve().parent / weights).is_file():
            # pymlir aborts the whole process on a missing weight file: say it first, on one line
            raise BmposeError(f"{path}: its weight file {weights} is missing beside it (model_deploy deletes "
                              f"it unless run with --debug)")
        if actual is None:
            raise BmposeError(f"{path}: not a deployed tpu.mlir (no module.chip attribute); pass the "
                              f"*_tpu.mlir that model_deploy wrote")
        check_chip(path, actual, chip)
        self.chip = actual.lower()
        pymlir = runtime_module("pymlir")
        kernels.pin_runtime_threads(tpu_mlir_root())

        pymlir.set_mem_mode("value_mem")
        self.module = pymlir.module()
        # the weight file is named relative to the mlir's folder (read at load and at invoke)
        with _in_dir(self.path.resolve().parent):
            try:
                self.module.load(self.path.name)
            except Exception as e:
                raise BmposeError(f"{path}: pymlir cannot load it ({e})") from None
        self.module.set_progress_silent(True)  # no per-op progress bar on stdout (segfaults before load)
        if len(self.module.input_names) != 1:
            raise BmposeError(f"{path}: expected one input, the model has {len(self.module.input_names)}")
        self.input_name = self.module.input_names[0]
        self.output_names = tuple(self.module.output_names)
        self.input_shape = _input_shape(self.path)
        self.batch_size = self.input_shape[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        # several outputs (SimCC's simcc_x, simcc_y) come back end to end, as every backend returns them
        return join_outputs(self.run_outputs(x))

    def run_outputs(self, x: np.ndarray) -> list:
        """Each output as float32 (dequantised), in the graph's order."""
        x = self.check_input(x)
        self.module.set_tensor(self.input_name, x, x.shape)
        with _in_dir(self.path.resolve().parent):  # pymlir reads the weights lazily, by relative name
            self.module.invoke(True)  # True: dequantised float outputs, as the bmodel runtime returns them
        return [np.array(self.module.get_tensor(n), dtype=np.float32) for n in self.output_names]

    def run_many(self, batches: list[np.ndarray]):
        """pymlir runs INT8 ops on one core (HRNet-W32 INT8: 0.69 s per crop with 1 or 2 OpenMP threads), so a
        long run is spread over `workers` spawned processes (env BMPOSE_WORKERS, default: all cores), each with
        its own copy of the model: same outputs, bit for bit. The first batch runs here and decides: the pool
        is started only when the rest would take longer than starting it does."""
        if not batches:
            return
        t0 = time.perf_counter()
        yield self.run(batches[0])
        rest = batches[1:]
        workers = min(self.workers, len(rest))
        if workers < 2 or (time.perf_counter() - t0) * len(rest) < self.pool_worth_s:
            self.last_workers = 1
            for x in rest:
                yield self.run(x)
            return
        self.last_workers = workers
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: pymlir state is not fork-safe
        with procs.quiet_sigint():   # Ctrl-C is this process's to answer: it terminates the pool
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(str(self.path), self.chip))
        with pool:
            yield from pool.imap(_run_in_worker, [self.check_input(x) for x in rest])


POOL_WORTH_S = 20.0   # seconds of sequential work above which spawning workers pays (each loads the model)
_WORKER: MlirBackend | None = None


def _init_worker(path: str, chip: str) -> None:
    global _WORKER
    os.environ["OMP_NUM_THREADS"] = "1"   # one process per core: the worker's other libraries stay on it too
    _WORKER = MlirBackend(path, chip, workers=1)


def _run_in_worker(x: np.ndarray) -> np.ndarray:
    return _WORKER.run(x)


def _input_shape(path) -> tuple[int, ...]:
    """The main function's input tensor shape, e.g. (1, 3, 128, 96), from the mlir text."""
    import re

    with open(path, errors="replace") as fh:
        for line in fh:
            m = re.search(r"func\.func @main\(%arg0: tensor<([0-9x]+)x[a-z0-9]+>", line)
            if m:
                return tuple(int(d) for d in m.group(1).split("x"))
    raise BmposeError(f"{path}: no main function input found")
