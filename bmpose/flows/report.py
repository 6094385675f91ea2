"""The report brought up to date: the pose pictures it shows (inference: bmpose.evaluate.pictures), then the
pages themselves (bmpose.report, which only reads)."""
from __future__ import annotations

import warnings
from pathlib import Path


def refresh_report(cfg, force: bool = False) -> Path:
    from bmpose.evaluate.pictures import ensure_pictures
    from bmpose.report.report import ensure_report

    for note in ensure_pictures(cfg):   # bmpose's entry point prints it as one "warning:" line
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return ensure_report(cfg, force=force)
