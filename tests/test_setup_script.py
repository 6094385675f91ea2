"""scripts/setup.sh: finding Python 3.10 (or failing clearly), and the idempotency stamp. Machines without
Python 3.10 are simulated with a PATH that holds only the few tools the script needs, fake interpreters and a
fake `pyenv`; nothing here creates a venv or installs anything."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

SETUP = ROOT / "scripts" / "setup.sh"
REAL_PY310 = os.path.realpath(sys.executable)  # the interpreter the venv was made from


@pytest.fixture
def bare_path(tmp_path):
    """A bin dir with only what setup.sh needs before it looks for Python: no python, no pyenv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "sha256sum", "cut", "dirname"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return bin_dir


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def run_setup(bin_dir, tmp_path, *args, **env):
    base = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VENV": str(tmp_path / "venv")}
    return subprocess.run([str(bin_dir / "bash"), str(SETUP), *args], capture_output=True, text=True,
                          env={**base, **env}, timeout=60)


def test_no_python310_anywhere_exits_2_naming_what_to_install(bare_path, tmp_path):
    out = run_setup(bare_path, tmp_path)
    assert out.returncode == 2
    assert "Python 3.10 not found" in out.stderr and "pyenv install 3.10" in out.stderr
    assert not (tmp_path / "venv").exists()


def test_wrong_python_given_explicitly_exits_2(bare_path, tmp_path):
    fake311 = _script(tmp_path / "py311" / "python3", 'echo "Python 3.11.7"; exit 1')
    out = run_setup(bare_path, tmp_path, BMPOSE_PYTHON=str(fake311))
    assert out.returncode == 2 and f"BMPOSE_PYTHON={fake311} is not a working Python 3.10" in out.stderr


def test_python310_shim_that_refuses_is_not_enough(bare_path, tmp_path):
    # pyenv's python3.10 shim exists on PATH but refuses to run while pyenv's global version is 3.11.
    _script(bare_path / "python3.10", 'echo "pyenv: python3.10: command not found" >&2; exit 127')
    out = run_setup(bare_path, tmp_path)
    assert out.returncode == 2 and "Python 3.10 not found" in out.stderr


def test_pyenv_install_is_found_and_broken_ones_skipped(bare_path, tmp_path):
    root = tmp_path / "pyenv"
    _script(bare_path / "pyenv", f'[ "$1" = root ] && echo {root}')
    _script(root / "versions" / "3.10.0" / "bin" / "python3.10", "exit 1")  # a broken install comes first
    out = run_setup(bare_path, tmp_path, "--find-python")
    assert out.returncode == 2 and "Python 3.10 not found" in out.stderr
    good = root / "versions" / "3.10.99" / "bin" / "python3.10"
    good.parent.mkdir(parents=True)
    os.symlink(REAL_PY310, good)
    out = run_setup(bare_path, tmp_path, "--find-python")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(good)


def test_up_to_date_stamp_makes_a_second_run_a_no_op(bare_path, tmp_path):
    key = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in
                                  ("constraints.txt", "scripts/setup.sh", "pyproject.toml"))).hexdigest()
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".bmpose-setup").write_text(key + "\n")
    out = run_setup(bare_path, tmp_path)  # no Python on PATH at all: it must not even look for one
    assert out.returncode == 0 and "is up to date" in out.stdout
    assert os.listdir(venv) == [".bmpose-setup"]
    (venv / ".bmpose-setup").write_text("stale\n")
    assert run_setup(bare_path, tmp_path).returncode == 2  # a stale stamp runs setup (and here finds no Python)


def test_this_venv_was_set_up_from_the_current_pins():
    venv = Path(sys.prefix)
    key = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in
                                  ("constraints.txt", "scripts/setup.sh", "pyproject.toml"))).hexdigest()
    assert (venv / ".bmpose-setup").read_text().strip() == key, "run `make setup`"


FAKE_PY310 = r'''#!/bin/bash
# a stand-in Python 3.10: venv, pip (noisy, with pip's resolver "ERROR" lines) and the few -c calls of setup.sh
case "$*" in
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "-m pip show"*) exit 1 ;;
  "-m pip install"*) for i in $(seq 200); do echo "Collecting package$i"; done
                     echo "ERROR: pip's dependency resolver does not currently take into account all the packages"
                     echo "mmpose 1.3.2 requires chumpy, which is not installed." ;;
  *"print(os.path.join"*) mkdir -p "$HOME/tp" && echo "$HOME/tp" ;;
  *) exit 0 ;;
esac
'''


def test_setup_output_is_one_line_per_phase_and_the_pip_noise_goes_to_the_log(bare_path, tmp_path):
    """What a newcomer sees: no pip flood, no "ERROR" from pip's expected unmet requirements; all in the log."""
    for tool in ("mkdir", "cp", "seq", "tail", "mv", "rm", "df", "awk"):
        os.symlink(shutil.which(tool), bare_path / tool)
    fake = _script(tmp_path / "py" / "python3.10", FAKE_PY310.split("\n", 1)[1])
    fake.write_text(FAKE_PY310)
    r = run_setup(bare_path, tmp_path, BMPOSE_PYTHON=str(fake))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "ERROR" not in out and "Collecting" not in out, out
    assert len(out.splitlines()) <= 12 and "setup: TPU-MLIR, torch (" in out
    log = (tmp_path / "venv" / "setup.log").read_text()
    assert "ERROR: pip's dependency resolver" in log and log.count("Collecting") >= 200


def test_too_little_disk_for_a_fresh_venv_is_one_line_before_pip_starts(bare_path, tmp_path):
    """CI once died half-way through pip with "No space left on device"; now it stops first, saying where."""
    os.symlink(shutil.which("awk"), bare_path / "awk")
    fake = _script(tmp_path / "py" / "python3.10", FAKE_PY310.split("\n", 1)[1])
    fake.write_text(FAKE_PY310)
    # df -Pk: 3 GB available on every filesystem
    _script(bare_path / "df", 'echo "Filesystem 1024-blocks Used Available Capacity Mounted"; '
                              'echo "/dev/x 100000000 97000000 3145728 97% /"')
    r = run_setup(bare_path, tmp_path, BMPOSE_PYTHON=str(fake), TMPDIR=str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == f"setup: error: 3 GB free on {tmp_path}; a fresh {tmp_path / 'venv'} needs " \
                               "about 12 GB there (free space, or set TMPDIR)"
    assert not (tmp_path / "venv").exists()
