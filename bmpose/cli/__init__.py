"""One entry point: `bmpose <command> [options]`. Each command is a module of this package with a
`main(argv) -> int`: argument parsing, printing, and the calls into the stages (convert, calib, runtime,
evaluate, report), which never import this layer. Modules are imported only when their command runs, so
`bmpose --help` stays fast."""
from __future__ import annotations

import importlib
import os
import signal
import sys
import warnings

from bmpose.errors import BmposeError

COMMANDS = {
    "fixture": ("bmpose.cli.fixture", "write deterministic random-init checkpoints for the bundled configs"),
    "export": ("bmpose.cli.export", "mmpose config + checkpoint -> ONNX (batch 1/4), checked against PyTorch"),
    "calib": ("bmpose.cli.calib", "COCO person crops -> LMDB calibration set (+ contact sheet)"),
    "build": ("bmpose.cli.build", "ONNX -> bmodels with TPU-MLIR (fp32/int8, chips, batches), compare files"),
    "detector": ("bmpose.cli.detector", "person detector bmodels (fp32/fp16/int8 per chip), boxes scored vs ONNX"),
    "nntc": ("bmpose.cli.nntc", "NNTC (BMNNSDK2 2.7) bundle for BM1684: opset-12 ONNX, ufw LMDB, build scripts"),
    "compare": ("bmpose.cli.compare", "per-layer similarity between two npz files"),
    "deploy": ("bmpose.cli.deploy", "device bundle per chip: bmodels, deploy.json, pose core, bmodel.py, README"),
    "infer": ("bmpose.cli.infer", "images/boxes -> keypoints, vis_results/ pictures and COCO results json"),
    "eval": ("bmpose.cli.eval", "COCO keypoint AP of an artifact, or of an existing results file"),
    "report": ("bmpose.cli.report", "HTML/MD/JSON report of every built artifact"),
    "train": ("bmpose.cli.train", "train the small fixture model on the bundled COCO persons"),
    "study": ("bmpose.cli.study", "INT8 calibration study: methods x fp32 layers x chips"),
    "bench": ("bmpose.cli.bench", "benchmarks (speed ratios measured in one run)"),
}


def usage() -> str:
    lines = ["usage: bmpose <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`bmpose <command> --help` for a command's options; `bmpose --version` for the versions."]
    return "\n".join(lines)


def versions() -> str:
    """bmpose and the tools that decide its outputs (read from the installed metadata: nothing imported)."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return "  ".join(f"{n} {version(n)}" for n in ("bmpose", "tpu_mlir", "torch", "mmpose"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(versions())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"bmpose: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # mmengine and tpu_mlir import pkg_resources (setuptools<81 is pinned for it); its deprecation notices
    # say nothing a bmpose user can act on.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="Deprecated call to `pkg_resources", category=DeprecationWarning)
    # RTMPose's ScaleNorm/RTMCCBlock use torch.cuda.amp.autocast, deprecated in torch 2.4: mmpose's to change
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
    old_show, warnings.showwarning = warnings.showwarning, _warning_printer(name)
    # SIGTERM (`kill PID`) and SIGHUP end a run as Ctrl-C does: children stopped, temporary outputs removed
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return int(importlib.import_module(COMMANDS[name][0]).main(rest) or 0)
    except BmposeError as e:
        print(f"bmpose {name}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # a read-only folder, a full disk, a permission: the file and the system's reason
        where = e.filename if e.filename is not None else "bmpose"
        print(f"bmpose {name}: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not os.environ.get("BMPOSE_NESTED"):   # a bmpose started by bmpose leaves the line to its parent
            print(f"bmpose {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = old_show
        for s, handler in old.items():
            signal.signal(s, handler)


def _warning_printer(name: str):
    """Any warning (bmpose's or a library's) as one `bmpose <cmd>: warning: ...` line, not Python's file:line
    format; written through bmpose.progress so it never lands on an open progress bar's line."""
    def show(message, category, filename, lineno, file=None, line=None):
        from bmpose.progress import say

        say(f"bmpose {name}: warning: {' '.join(str(message).split())}", file=sys.stderr)
    return show


def _interrupt(signum, frame):
    raise KeyboardInterrupt
