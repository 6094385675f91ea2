"""TPU-MLIR calibration tables (run_calibration's output): `op_name threshold min max` lines, `#` comments."""
from __future__ import annotations

from pathlib import Path


def thresholds(table: Path) -> dict[str, float]:
    """op name -> threshold of a calibration table."""
    out = {}
    for line in Path(table).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and not line.startswith("#"):
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out
