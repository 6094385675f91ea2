"""The `bmpose` entry point: usage, unknown commands, --version, warnings as one line, progress bars that
never share a line with a log line."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import warnings
from importlib import metadata

import pytest

from bmpose import cli


def test_version_names_bmpose_and_the_tools_that_decide_its_outputs(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    for name in ("bmpose", "tpu_mlir", "torch", "mmpose"):
        assert f"{name} {metadata.version(name)}" in out


def test_unknown_command_is_one_error_line_and_exit_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmpose: error: unknown command 'frobnicate'") and "Traceback" not in err


# ---- warnings: one `bmpose <cmd>: warning: ...` line, from any source --------------------------------------

def _stub_command(monkeypatch, body):
    """`bmpose calib` replaced by body(): the entry point's handling, not the command, is under test."""
    from bmpose.cli import calib

    monkeypatch.setattr(calib, "main", lambda argv: body() or 0)


def test_a_real_warning_is_one_bmpose_line(tmp_path, monkeypatch, capsys, coco_train):
    """The bundled calibration set has 71 eligible persons: --num 500 warns, as bmpose's line, not Python's
    format. The default (the config's num, 100, an upper bound) says nothing: a default build is quiet."""
    shown = warnings.showwarning
    assert cli.main(["calib", "--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["calib", "--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path), "--num", "500"]) == 0
    err = capsys.readouterr().err
    assert f"bmpose calib: warning: {coco_train[0]}: --num 500 but only 71 eligible persons: using all 71\n" in err
    assert "Warning:" not in err and ".py:" not in err and "warnings.warn" not in err
    assert warnings.showwarning is shown   # restored: the handler lives only while a command runs


@pytest.mark.parametrize("command", ["build", "nntc"])
def test_build_and_nntc_say_the_calibration_warning_once_through_the_same_printer(command, tmp_path, monkeypatch,
                                                                                 capsys):
    """They no longer catch CalibWarning themselves: the entry point's printer says it, once per run."""
    from bmpose.calib import calibset
    from bmpose.calib.select import CalibWarning
    from bmpose.errors import BmposeError

    def calib(*args, **kwargs):
        warnings.warn("ann.json: --num 100 but only 3 eligible persons: using all 3", CalibWarning, stacklevel=2)
        raise BmposeError("stop here")   # the rest of the command is not under test

    from bmpose.cli import nntc

    monkeypatch.setattr(calibset, "ensure_calib", calib)   # build imports it when it runs, nntc at its import
    monkeypatch.setattr(nntc, "ensure_calib", calib)
    # nothing built in tmp_path: build reaches its calibration step
    argv = [command, "--model", "hrnet_small_128x96", "--artifacts-dir", str(tmp_path), "--calib", "coco"] + \
        (["--precision", "int8"] if command == "build" else [])
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == (f"bmpose {command}: warning: ann.json: --num 100 but only 3 eligible persons: using all 3\n"
                   f"bmpose {command}: error: stop here\n")


def test_a_library_warning_is_one_line_too(monkeypatch, capsys):
    def body():
        warnings.warn("deprecated thing\n  use the other thing", RuntimeWarning)

    _stub_command(monkeypatch, body)
    assert cli.main(["calib"]) == 0
    assert capsys.readouterr().err == "bmpose calib: warning: deprecated thing use the other thing\n"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _segments(text: str) -> list[str]:
    """What a log viewer that ignores carriage returns would show as separate pieces."""
    return [s.strip() for s in re.split(r"[\r\n]+", text) if s.strip()]


# a tqdm frame, with or without its bar (no bar when the terminal width is unknown)
FRAME = re.compile(r"[\w ]+: +\d+%(\|[^|]*\|)? *\d+/\d+ \[[^\]]*\]")


def _check_no_shared_lines(text: str, logs: tuple[str, ...]) -> list[str]:
    """Every piece is a whole bar frame or a log line, never both; returns the frames."""
    frames = []
    for s in _segments(text):
        if FRAME.fullmatch(s):
            frames.append(s)
        else:
            assert not re.search(r"\d+%\||\d+/\d+ \[", s), f"bar frame and log text on one line: {s!r}"
            assert s.startswith(logs), f"unexpected output line: {s!r}"
    return frames


def test_a_warning_during_a_bar_gets_its_own_line(monkeypatch):
    """In a terminal a warning raised while a bar is drawn erases the bar, prints, and redraws it."""
    from bmpose.progress import bar

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)

    def body():
        with bar(4, "crops", "crop") as b:
            b.update(2)
            warnings.warn("half way", UserWarning)
            b.update(2)

    _stub_command(monkeypatch, body)
    assert cli.main(["calib"]) == 0
    frames = _check_no_shared_lines(term.getvalue(), ("bmpose calib: warning: half way",))
    assert frames and "bmpose calib: warning: half way" in _segments(term.getvalue())


# ---- progress bars and log lines never share a line ----------------------------------------------------------

LOGS = ("infer: ", "bmpose calib: warning: ", "contact sheet: ", "/")   # "/": the calib LMDB's path line


@pytest.fixture(scope="module")
def private_env(tmp_path_factory):
    return {**os.environ, "BMPOSE_ARTIFACTS": str(tmp_path_factory.mktemp("artifacts"))}


def _run(args, env, terminal: bool) -> str:
    """stdout and stderr of `bmpose ARGS`: through pipes, or through one pseudo-terminal 100 columns wide."""
    cmd = [sys.executable, "-m", "bmpose", *args]
    if not terminal:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout + p.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen(cmd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:   # EIO: the command has closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(timeout=300) == 0, out.decode(errors="replace")
    return out.decode()


@pytest.mark.parametrize("terminal", [False, True], ids=["captured", "terminal"])
def test_calib_bar_and_log_lines(private_env, terminal):
    seed = str(int(terminal))   # a new selection for each run: a set that is up to date draws no bar
    out = _run(["calib", "--model", "hrnet_small_128x96", "--num", "500", "--seed", seed, "--workers", "1"],
               private_env, terminal)
    frames = _check_no_shared_lines(out, LOGS)
    assert any(s.startswith("bmpose calib: warning: ") for s in _segments(out))
    if terminal:   # progress stays visible where someone watches it
        assert any(f.startswith("calib crops:") for f in frames)
    else:          # captured output gets no carriage-return frames at all
        assert not frames and "\r" not in out


@pytest.mark.parametrize("terminal", [False, True], ids=["captured", "terminal"])
def test_infer_bar_and_log_lines(private_env, tmp_path, terminal):
    out = _run(["infer", "--backend", "onnx", "--no-vis", "--out", str(tmp_path / "vis")], private_env, terminal)
    frames = _check_no_shared_lines(out, LOGS)
    assert any(re.match(r"infer: \d+ persons in ", s) for s in _segments(out))
    if terminal:
        assert any(f.startswith("infer:") for f in frames)
    else:
        assert not frames and "\r" not in out


@pytest.mark.parametrize("argv, message", [
    (["infer", "--limit", "-1"], "--limit: -1: must be 1 or more"),      # read as "no frames could be read"
    (["infer", "--limit", "0"], "--limit: 0: must be 1 or more"),        # ran everything (the box: nothing)
    (["eval", "--subset", "0"], "--subset: 0: must be 1 or more"),       # ran 12 persons
    (["build", "--batches", "0"], "--batches: 0: must be 1 or more"),
    (["deploy", "--precisions", "fp64"], "--precisions: invalid choice: 'fp64'"),   # printed build's usage
])
def test_a_count_or_choice_that_means_nothing_is_refused_by_its_own_command(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and f"bmpose {argv[0]}" in err and "Traceback" not in err


@pytest.mark.parametrize("code, reason", [(30, "Read-only file system"), (28, "No space left on device")])
def test_a_read_only_or_full_disk_is_one_line_naming_the_file(monkeypatch, capsys, code, reason):
    """Was a traceback (OSError ... .report.lock, [Errno 28] in the tool runner)."""
    def body():
        raise OSError(code, reason, "/some/artifacts/hrnet_small_128x96/.report.lock")

    _stub_command(monkeypatch, body)
    assert cli.main(["calib"]) == 1
    err = capsys.readouterr().err
    assert err == f"bmpose calib: error: /some/artifacts/hrnet_small_128x96/.report.lock: {reason}\n"


def test_compare_on_a_file_that_is_not_an_npz_is_one_line(tmp_path, capsys):
    """Was numpy's ValueError (a pickle question) as a traceback."""
    import numpy as np

    garbage, good = tmp_path / "garbage.npz", tmp_path / "good.npz"
    garbage.write_bytes(b"\x00\x01 not a zip archive at all" * 10)
    np.savez(good, a=np.ones(3, np.float32))
    assert cli.main(["compare", str(garbage), str(good)]) == 1
    assert capsys.readouterr().err == f"bmpose compare: error: {garbage}: not an npz file (numpy's .npz is a zip " \
                                      f"archive of arrays)\n"


def test_an_unreadable_image_alone_is_named_not_no_boxes(tmp_path, capsys):
    """Was "no person boxes to run (check --images ...)", naming neither the file nor its problem."""
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli.main(["infer", "--images", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"bmpose infer: error: {bad}: not a decodable image: no person boxes to run\n"
    assert not (tmp_path / "out").exists()
