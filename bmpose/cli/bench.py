"""`bmpose bench`: benchmarks (bmpose.bench), each measured within one run so ratios are comparable;
rows printed and kept in artifacts/<model>/bench/bench.json."""
from __future__ import annotations

import argparse
import json
import os
import platform

from bmpose.device.inputs import positive_int
from bmpose.chips import PRECISIONS
from bmpose import bench
from bmpose.cli.args import add_model, load_model


def main(argv=None) -> int:
    from bmpose import manifest
    from bmpose.errors import BmposeError

    p = argparse.ArgumentParser(prog="bmpose bench", description="benchmarks: " + ", ".join(sorted(bench.BENCHMARKS)))
    add_model(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--only", action="append", default=None, metavar="NAME", help="run only these (repeatable)")
    p.add_argument("--chips", nargs="+", default=None, help="estimate: chips (default: the config's)")
    p.add_argument("--precisions", nargs="+", default=None, choices=PRECISIONS,
                   help="estimate: precisions (default: every one the chip has)")
    p.add_argument("--batches", nargs="+", type=positive_int, default=None,
                   help="estimate: batch sizes (default: the config's)")
    a = p.parse_args(argv)
    cfg = load_model(a)
    names = a.only or list(bench.BENCHMARKS)
    unknown = [n for n in names if n not in bench.BENCHMARKS]
    if unknown:
        raise BmposeError(f"--only {', '.join(unknown)}: unknown benchmark (known: {', '.join(sorted(bench.BENCHMARKS))})")
    req = bench.BenchRequest(checkpoint=a.checkpoint, chips=tuple(a.chips) if a.chips else None,
                             precisions=tuple(a.precisions) if a.precisions else None,
                             batches=tuple(a.batches) if a.batches else None)
    rows = []
    for name in names:  # "benchmark" is always the registered name (first column; merge key below)
        rows += [{"benchmark": name, **{k: v for k, v in r.items() if k != "benchmark"}}
                 for r in bench.BENCHMARKS[name](cfg, req)]
    print(bench.format_table(rows))
    out = cfg.layout.bench() / "bench.json"
    # keep other benchmarks' rows from earlier runs (`--only` refreshes just its own)
    old = json.loads(out.read_text()).get("rows", []) if out.is_file() else []
    rows = [r for r in old if r.get("benchmark") not in names] + rows
    doc = {"model": cfg.name,
           "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform(), "load_avg_1min": os.getloadavg()[0]},
           "tools": manifest.tool_versions(), "rows": rows}
    with manifest.atomic_file(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{out}")
    return 0
