"""One bmodel run on the cmodel simulator with the runtime's profiling on, in a spawned process: its output
and the profile it writes (`bmprofile_data-*/net_stat.sim`), checked against the estimate the bmodel embeds
(bmpose.tpu_mlir.devtime). Slow (seconds): builds read the embedded estimate instead."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bmpose import procs
from bmpose.tpu_mlir.devtime import (NO_STAT_WHY, DevtimeError, _clock, parse_global_profile, parse_net_stat,
                                     read_embedded_stat)
from bmpose.tpu_mlir.installed import bmodel_chip

SIM_SOURCE = "runtime profile net_stat.sim of one simulator (cmodel) run"


def _worker(bmodel: str, chip: str, x, workdir: str, want_output: bool, q) -> None:
    """In the spawned process: cwd = workdir (the runtime writes bmprofile_data-N/ there), one forward through
    the cmodel backend (its chip binding, simulator lock and dtype conversions)."""
    try:
        os.chdir(workdir)
        log = os.open(os.path.join(workdir, "simulator.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)      # the simulator prints from C: keep the caller's console quiet
        os.dup2(log, 2)
        os.environ["BMRUNTIME_ENABLE_PROFILE"] = "1"
        from bmpose.runtime.backends.cmodel import CmodelBackend

        backend = CmodelBackend(bmodel, chip)
        shape = backend.input_shape
        x = np.zeros(shape, np.float32) if x is None else np.ascontiguousarray(x, np.float32)
        t0 = time.monotonic()
        y = backend.run(x)
        forward_s = time.monotonic() - t0
        del backend          # the runtime finishes its profile files at teardown
        q.put({"ok": True, "batch": shape[0], "forward_s": forward_s, "output": y if want_output else None})
    except BaseException as e:  # report, never leave the parent waiting
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}"})
        raise


def _run_spawned(bmodel: Path, chip: str, x, want_output: bool, timeout: float) -> dict:
    """One simulator run in a fresh spawned process (one chip per process) whose cwd is a temporary dir,
    removed afterwards: the caller's cwd is never touched. -> the worker's result + profile texts."""
    ctx = mp.get_context("spawn")
    work = tempfile.mkdtemp(prefix="bmpose-devtime-")
    p = None
    try:
        q = ctx.Queue()
        p = ctx.Process(target=_worker, args=(str(bmodel), chip, x, work, want_output, q), daemon=True)
        t0 = time.monotonic()
        with procs.quiet_sigint():   # Ctrl-C is this process's to answer: it kills p below
            p.start()
        res = None
        while res is None:      # get before join (a large result blocks the child's exit); notice a dead child
            try:
                res = q.get(timeout=1.0)
            except queue.Empty:
                if not p.is_alive() or time.monotonic() - t0 > timeout:
                    try:
                        res = q.get(timeout=1.0)
                    except queue.Empty:
                        res = {"ok": False, "error": f"no result (exit code {p.exitcode}, {timeout:.0f} s limit)"}
        p.join(30)
        if p.is_alive():
            p.kill()
            p.join()
        res["wall_s"] = time.monotonic() - t0
        if not res["ok"]:
            log = Path(work, "simulator.log")
            res["error"] += " | simulator.log: " + (log.read_text(errors="replace")[-600:] if log.is_file() else "")
        res["texts"] = {f"{f.parent.name}/{f.name}": f.read_text(errors="replace")
                        for f in sorted(Path(work).glob("bmprofile_data-*/*"))
                        if f.name in ("net_stat.sim", "global.profile")}
        return res
    except BaseException:   # an interrupt: stop the simulator before its folder goes
        if p is not None and p.is_alive():
            p.kill()
            p.join()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def simulate_time(bmodel, chip: str | None = None, x=None, *, timeout: float = 600,
                  want_output: bool = False) -> dict:
    """Run `bmodel` once on the cmodel with profiling on; -> chip, batch, cycles, tpu_freq_mhz,
    runtime_ms (per batch), ms_per_person, flops, source, matches_embedded (the runtime's net_stat.sim is
    byte-identical to the bmodel's embedded estimate), wall_s, and `output` with want_output.
    chip: expected chip (checked); x: NCHW float32 input (default zeros: the estimate does not depend on it).
    Without an estimate: runtime_ms None and `why`. Slow (seconds): builds use `device_time` instead."""
    bmodel = Path(bmodel).resolve()
    if not bmodel.is_file():
        raise DevtimeError(f"{bmodel}: no such bmodel")
    actual = bmodel_chip(bmodel).upper()
    if chip and chip.upper() != actual:
        raise DevtimeError(f"{bmodel}: built for {actual}, not {chip.upper()}")
    res = _run_spawned(bmodel, actual, x, want_output, timeout)
    if not res["ok"]:
        raise DevtimeError(f"{bmodel.name}: simulator run failed: {res['error']}")
    out = {"bmodel": str(bmodel), "chip": actual, "batch": res["batch"], "wall_s": round(res["wall_s"], 3),
           "forward_s": round(res["forward_s"], 3), "profile_files": sorted(res["texts"])}
    if want_output:
        out["output"] = res["output"]
    g_name = next((n for n in res["texts"] if n.endswith("global.profile")), None)
    out["profile_tpu_freq_mhz"] = parse_global_profile(res["texts"][g_name]).get("tpu_freq_mhz") if g_name else None
    s_name = next((n for n in res["texts"] if n.endswith("net_stat.sim")), None)
    if s_name is None:
        out.update(runtime_ms=None, ms_per_person=None, why=f"the simulator wrote no net_stat.sim: {NO_STAT_WHY}")
        return out
    text = res["texts"][s_name]
    stat = parse_net_stat(text)
    freq = _clock(actual, stat["freq_mhz_implied"], f"{bmodel.name} {s_name}")
    ms = stat["cycles"] / (freq * 1e3)
    out.update({k: stat.get(k) for k in ("cycles", "flops", "tops", "tiu_cmds", "gdma_cmds", "gdma_bytes")})
    out.update(tpu_freq_mhz=freq, runtime_ms=ms, ms_per_person=ms / res["batch"], source=SIM_SOURCE,
               source_line=stat["lines"]["runtime"][1])
    emb = read_embedded_stat(bmodel)
    out["matches_embedded"] = emb is not None and emb["text"] == text
    return out
