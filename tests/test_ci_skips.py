"""Under CI=true a missing device-side Python or browser fails the run in one line instead of skipping
(helpers.skip_or_fail, used by pyenv_python, the cached Python 3.8 venvs and the report's chromium fixture);
run by hand, the same test skips, saying why."""
import os
import subprocess
import sys

from helpers import TESTS

PROBE = """
from helpers import pyenv_python

def test_needs_a_python_that_is_not_there():
    pyenv_python("1.1")
"""


def _pytest(tmp_path, ci: str | None):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "--rootdir",
                           str(tmp_path), str(tmp_path / "test_probe.py")], capture_output=True, text=True, env=env,
                          cwd=tmp_path)


def test_a_missing_tool_fails_under_ci_in_one_line(tmp_path):
    run = _pytest(tmp_path, "true")
    assert run.returncode == 1, run.stdout
    failed = [l for l in run.stdout.splitlines() if l.startswith("FAILED")]
    assert len(failed) == 1 and "CI=true and no Python 1.1 under" in failed[0], run.stdout
    assert "Traceback" not in run.stdout


def test_a_missing_tool_skips_elsewhere_saying_why(tmp_path):
    run = _pytest(tmp_path, None)
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout and "no Python 1.1 under" in run.stdout
