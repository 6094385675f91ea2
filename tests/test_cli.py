"""The `bmpose` entry point: usage, unknown commands, --version."""
from __future__ import annotations

from importlib import metadata

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
