"""Interrupts, with real signals: Ctrl-C (SIGINT to the process group, as a terminal sends it) and `kill PID`
(SIGTERM to bmpose alone) in the middle of a real `bmpose build` of the small model, while TPU-MLIR's
model_deploy.py runs. Either way: one `interrupted` line and exit 130, no traceback and no "failed", no report
refresh, no tool process left, no half artifact (the stage's temporary dir gone, no `.failed`, nothing under
the final name), and the next run reuses every stage that was complete (the stages before the deploy are
copies of the run's shared build, so only the deploy is redone here)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import copy_stages

MODEL = "hrnet_small_128x96"
BMPOSE = str(Path(sys.executable).parent / "bmpose")
DONE_STAGES = ("onnx", "mlir/b1", "calib", "cali_inputs")   # complete before model_deploy starts


def test_a_child_stopped_by_a_signal_is_an_interrupt_not_a_failure():
    from bmpose import procs

    assert procs.run(["sh", "-c", "exit 3"]) == 3
    for sig in ("INT", "TERM"):
        with pytest.raises(KeyboardInterrupt):
            procs.run(["sh", "-c", f"kill -{sig} $$"])


def test_an_interrupted_parent_stops_the_childs_whole_process_group(tmp_path):
    """The grandchild matters: TPU-MLIR's tools start tools of their own (tpuc-opt, npz_tool.py)."""
    from bmpose import procs

    pids = tmp_path / "pids"

    def interrupt(*_):   # KeyboardInterrupt inside procs.run's wait, as Ctrl-C or the CLI's SIGTERM handler
        if not pids.exists():   # not before the grandchild runs
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            return
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            procs.run(["sh", "-c", f"sleep 300 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert int(pids.read_text()) not in _live_processes()


@pytest.fixture(scope="module")
def artifacts(small, tmp_path_factory) -> Path:
    """A root holding copies of the stages before model_deploy (export, calibration set, transform) from the
    run's shared build (conftest's `small`): the builds interrupted here redo only their deploy."""
    root = tmp_path_factory.mktemp("interrupt") / "artifacts"
    copy_stages(small.root, root, MODEL, DONE_STAGES)
    return root


def _env(artifacts: Path) -> dict:
    return {**os.environ, "BMPOSE_ARTIFACTS": str(artifacts),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _build_args(chip: str) -> list[str]:
    return [BMPOSE, "build", "--precision", "fp32", "--model", MODEL, "--chips", chip, "--batches", "1"]


def _live_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process that is not a zombie."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            out[int(d)] = (int(ppid), cmd)
    return out


def _descendants(root: int) -> dict[int, str]:
    procs = _live_processes()
    found, todo = {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, cmd) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = cmd
                todo.append(pid)
    return found


def _working_in(folder: Path) -> list[int]:
    """Live processes whose cwd is inside folder (the tools run in the stage's temporary dir)."""
    pids = []
    for pid in _live_processes():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(folder)):
            pids.append(pid)
    return pids


def _interrupt_during_deploy(artifacts: Path, chip: str, send) -> tuple[int, str, str, dict]:
    """Start the build, wait until model_deploy.py (and its own children) run, `send(proc)`; -> exit code,
    stdout, stderr, the tool processes seen before the signal."""
    out, err = artifacts.parent / f"{chip}.out", artifacts.parent / f"{chip}.err"
    report = _report_state(artifacts)
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(_build_args(chip), env=_env(artifacts), stdout=fo, stderr=fe,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 600   # the copied stages are checked first
            while not any("model_deploy.py" in c for c in _descendants(proc.pid).values()):
                assert proc.poll() is None, f"build ended before model_deploy ran: {err.read_text()}"
                assert time.monotonic() < deadline, "model_deploy.py never started"
                time.sleep(0.1)
            time.sleep(1.0)   # well inside the deploy (about 12 s), its own tools started
            tools = _descendants(proc.pid)
            send(proc)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert _report_state(artifacts) == report, "the report was refreshed"
    return rc, out.read_text(), err.read_text(), tools


def _assert_interrupted_cleanly(artifacts: Path, chip: str, rc: int, out: str, err: str, tools: dict) -> None:
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "bmpose build: interrupted", err
    assert err.count("interrupted") == 1
    assert "Traceback" not in out + err and "failed" not in (out + err).lower(), out + err
    assert "build: report" not in out
    assert not [p for p in tools if p in _live_processes()], "a tool process outlived bmpose"
    assert not _working_in(artifacts), "a process still works in the artifacts dir"
    model = artifacts / MODEL
    stage = f"{chip}_fp32_b1"
    assert not (model / stage).exists() and not (model / f"{stage}.failed").exists()
    leftovers = [p for p in model.rglob("*") if p.name.endswith((".tmp", ".failed"))]
    assert not leftovers, leftovers


def _report_state(artifacts: Path) -> str | None:
    f = artifacts / MODEL / "report" / "manifest.json"
    return f.read_text() if f.is_file() else None


def _created(model: Path) -> dict[str, str]:
    return {s: json.loads((model / s / "manifest.json").read_text())["created"] for s in DONE_STAGES}


@pytest.mark.slow
def test_ctrl_c_during_deploy_stops_cleanly_and_the_rerun_resumes(artifacts):
    rc, out, err, tools = _interrupt_during_deploy(
        artifacts, "bm1684", lambda proc: os.killpg(proc.pid, signal.SIGINT))   # what a terminal's Ctrl-C does
    assert any("model_deploy.py" in c for c in tools.values())
    _assert_interrupted_cleanly(artifacts, "bm1684", rc, out, err, tools)
    model = artifacts / MODEL
    before = _created(model)   # the stages finished before the interrupt are complete, manifests and all

    again = subprocess.run(_build_args("bm1684"), env=_env(artifacts), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "onnx is up to date (skipped)" in again.stdout
    assert "hrnet_small_128x96_bm1684_fp32_b1.bmodel: built" in again.stdout
    assert _created(model) == before   # reused, not rebuilt
    m = json.loads((model / "bm1684_fp32_b1" / "manifest.json").read_text())
    bmodel = f"{MODEL}_bm1684_fp32_b1.bmodel"
    assert m["status"] == "ok" and bmodel in m["outputs"] and (model / "bm1684_fp32_b1" / bmodel).is_file()


@pytest.mark.slow
def test_sigterm_to_bmpose_alone_stops_its_tools_too(artifacts):
    """`kill PID`: the tools get no signal from anyone but bmpose, which must stop them itself."""
    rc, out, err, tools = _interrupt_during_deploy(
        artifacts, "bm1684x", lambda proc: proc.send_signal(signal.SIGTERM))   # bmpose alone
    assert any("model_deploy.py" in c for c in tools.values())
    _assert_interrupted_cleanly(artifacts, "bm1684x", rc, out, err, tools)
    assert all((artifacts / MODEL / s / "manifest.json").is_file() for s in DONE_STAGES)
