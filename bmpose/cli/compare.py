"""`bmpose compare`: per-layer similarity between two npz files (bmpose.compare)."""
from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from bmpose.compare import compare_npz, write_csv
from bmpose.errors import BmposeError


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bmpose compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path, help="npz under test (e.g. a *_tpu_outputs.npz)")
    ap.add_argument("reference", type=Path, help="reference npz (e.g. *_top_outputs.npz)")
    ap.add_argument("--csv", type=Path, help="also write the rows as CSV")
    args = ap.parse_args(argv)
    for p in (args.target, args.reference):
        if not p.is_file():
            raise BmposeError(f"{p}: no such npz file")
        if not zipfile.is_zipfile(p):   # numpy's own error is a ValueError about pickles
            raise BmposeError(f"{p}: not an npz file (numpy's .npz is a zip archive of arrays)")
    rows = compare_npz(args.target, args.reference)
    if not rows:
        raise BmposeError(f"{args.target}: no tensor names in common with {args.reference}")
    width = min(70, max(len(r["layer"]) for r in rows))
    for r in rows:
        print(f"{r['layer'][-width:]:<{width}}  cos {r['cosine']:.6f}  euclid {r['euclidean']:.6f}  "
              f"sqnr {r['sqnr_db']:.2f} dB")
    if args.csv:
        write_csv(rows, args.csv)
    return 0
