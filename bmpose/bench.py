"""`bmpose bench`: a registry of benchmarks, each measured within one run so ratios are comparable.

To add one, in your own module:

    from . import bench

    @bench.register("name")
    def bench_name(cfg, args) -> list[dict]:   # rows: {"case": ..., then any numbers}
        ...

and add the module to PROVIDERS below (imported only when `bmpose bench` runs).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from typing import Callable

BENCHMARKS: dict[str, Callable] = {}
PROVIDERS = ("bmpose.calib", "bmpose.infer")


def register(name: str):
    def deco(fn):
        BENCHMARKS[name] = fn
        return fn
    return deco


def load_providers() -> None:
    for mod in PROVIDERS:
        importlib.import_module(mod)


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def main(argv=None) -> int:
    from . import config, manifest
    from .errors import BmposeError

    load_providers()
    p = argparse.ArgumentParser(prog="bmpose bench", description="benchmarks: " + ", ".join(sorted(BENCHMARKS)))
    p.add_argument("--model", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--only", action="append", default=None, metavar="NAME", help="run only these (repeatable)")
    a = p.parse_args(argv)
    cfg = config.load(a.model)
    names = a.only or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise BmposeError(f"--only {', '.join(unknown)}: unknown benchmark (known: {', '.join(sorted(BENCHMARKS))})")
    rows = []
    for name in names:  # "benchmark" is always the registered name (first column; merge key below)
        rows += [{"benchmark": name, **{k: v for k, v in r.items() if k != "benchmark"}}
                 for r in BENCHMARKS[name](cfg, a)]
    print(format_table(rows))
    out = cfg.artifacts / "bench" / "bench.json"
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
