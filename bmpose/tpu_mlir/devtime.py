"""Simulated device time of a bmodel: the compiler's cycle estimate, read from the bmodel or a simulator run.

Where the numbers come from (TPU-MLIR 1.30.2, measured on the small HRNet):
  * At codegen TPU-MLIR estimates every TIU and GDMA command with its cycle model and, with model_deploy
    --debug (bmpose always passes it), embeds the estimate in the bmodel (`net_stat` in `model_tool --print`).
    It ends with `TCYC : N` and `flops: F, runtime: R ms`, R = N / clock (BM1684X 1000 MHz, BM1684 550).
  * With BMRUNTIME_ENABLE_PROFILE=1 the runtime (here: on the cmodel) writes `bmprofile_data-<n>/net_stat.sim`
    into its cwd: a byte-identical copy of that embedded estimate, not a measurement (the same for any input;
    profiling leaves the outputs bit-identical). So `read_embedded_stat` (model_tool, ~0.3 s) is what builds
    record; bmpose.runtime.simulate (a spawned simulator run, seconds) cross-checks it.
  * BM1684: the codegen writes its estimate to `_0.dat` in model_deploy's cwd but looks for
    compiler_profile_0.dat to embed; `link_bm1684_estimate` bridges the two before model_deploy runs.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.tpu_mlir.installed import model_tool

SOURCE = "compiler cycle estimate embedded in the bmodel (model_tool net_stat)"
# profile_helper/bm1684_defs.py: BM1684 TIU 550 MHz (its simulator's global.profile says 1000 all the same)
KNOWN_CLOCK_MHZ = {"BM1684": 550, "BM1684X": 1000}
NO_STAT_WHY = ("the bmodel embeds no cycle estimate (net_stat): built without model_deploy --debug, or a "
               "BM1684 bmodel built without the compiler_profile_0.dat -> _0.dat link")


class DevtimeError(BmposeError):
    pass


# ------------------------------------------------------------------------------------------------ parsing

_CMD = re.compile(r"(?P<layer>[^|\s]+)\|(?P<kind>[A-Za-z0-9_]+)\|s:\d+\|b:\d+\|g:\d+\|e:\d+\|t:(?P<t>\d+)"
                  r"(?P<rest>\|dr:\d+\|sz:\d+(?:\|bw:[\d.]+)?)?")


def parse_net_stat(text: str) -> dict:
    """The summary of a cycle-model dump: net_stat.sim, the bmodel's net_stat, compiler_profile_0.txt or
    BM1684's `_0.dat` (one format). -> cycles, runtime_ms, flops, tops, freq_mhz_implied (cycles / runtime),
    TIU/GDMA command counts and busy cycles, GDMA bytes, DDR BW usage, `lines` {field: (line number, line)}.
    Raises ValueError without a cycle total and runtime line (truncated, or not such a file)."""
    out: dict = {"lines": {}}
    tiu = gdma = tiu_busy = gdma_busy = 0
    for no, line in enumerate(text.splitlines(), 1):
        for m in _CMD.finditer(line):
            if m.group("rest"):          # GDMA commands carry direction and size; TIU (ENGINE_BD) ones do not
                gdma, gdma_busy = gdma + 1, gdma_busy + int(m.group("t"))
            else:
                tiu, tiu_busy = tiu + 1, tiu_busy + int(m.group("t"))
        s = line.strip()
        if s.startswith("API_END") and (m := re.search(r"total_cycle:(\d+)", s)):
            out["api_end_cycles"] = int(m.group(1))
            out["lines"]["api_end"] = (no, s)
        elif s.startswith("TCYC") and (m := re.match(r"TCYC\s*:\s*(\d+)", s)):
            out["cycles"] = int(m.group(1))
            out["lines"]["cycles"] = (no, s)
            for k in ("bdc_cycle", "gdma_cycle"):    # BM1688 appends "(bdc_cycle:.., gdma_cycle:..)"
                if mk := re.search(k + r"\s*:\s*(\d+)", s):
                    out[k] = int(mk.group(1))
        elif s.startswith("GDMA SUMMARY"):
            out["gdma_bytes"] = {k: int(v) for k, v in re.findall(r"\b(S2L|L2S|S2S|L2L):(\d+)", s)}
        elif s.startswith("DDR BW USAGE") and (m := re.search(r"([\d.]+)%", s)):
            out["ddr_bw_usage_pct"] = float(m.group(1))
        elif s.startswith("flops:") and (m := re.search(
                r"flops:\s*(\d+),\s*runtime:\s*([\d.]+)\s*ms(?:,\s*ComputationAbility:\s*([\d.]+)\s*T)?", s)):
            out.update(flops=int(m.group(1)), runtime_ms=float(m.group(2)),
                       tops=float(m.group(3)) if m.group(3) else None)
            out["lines"]["runtime"] = (no, s)
    if "cycles" not in out and "api_end_cycles" in out:
        out["cycles"] = out["api_end_cycles"]
    if "cycles" not in out or "runtime_ms" not in out:
        raise ValueError("no cycle total (TCYC / API_END) and runtime line: not a complete cycle-model dump")
    out.update(tiu_cmds=tiu, gdma_cmds=gdma, tiu_busy_cycles=tiu_busy, gdma_busy_cycles=gdma_busy)
    out["freq_mhz_implied"] = out["cycles"] / (out["runtime_ms"] * 1e3) if out["runtime_ms"] > 0 else None
    return out


def parse_global_profile(text: str) -> dict:
    """`[bmprofile] key=value` header lines of global.profile (arch, net_name, tpu_freq, ...) up to the
    `...Start Profile Log...` marker; tpu_freq also as int `tpu_freq_mhz`."""
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("...Start Profile Log"):
            break
        if m := re.match(r"\[bmprofile\]\s+(\w+)=(\S*)\s*$", line):
            out[m.group(1)] = m.group(2)
    if out.get("tpu_freq", "").isdigit():
        out["tpu_freq_mhz"] = int(out["tpu_freq"])
    return out


def compile_estimate(path) -> dict:
    """A codegen estimate file (BM1684's `_0.dat`, `compiler_profile_0.txt`), parsed, with its source."""
    path = Path(path)
    est = parse_net_stat(path.read_text(errors="replace"))
    est["source"] = {"file": str(path), "line": est["lines"]["runtime"][1]}
    return est


# ------------------------------------------------------------------------------------------------ bmodel

def link_bm1684_estimate(deploy_dir: Path, chip: str) -> None:
    """BM1684 (TPU-MLIR 1.30.2): codegen writes its estimate to `_0.dat` in model_deploy's cwd but embeds
    only `compiler_profile_0.dat`; a link from the second to the first, made before model_deploy, gets it
    embedded (+53 KB on the small HRNet, outputs bit-identical). Other chips: nothing to do."""
    if chip.upper() == "BM1684":
        link = Path(deploy_dir) / "compiler_profile_0.dat"
        if not link.is_symlink():
            link.symlink_to("_0.dat")


def read_embedded_stat(bmodel) -> dict | None:
    """The cycle estimate embedded in a bmodel (`net_stat` of its first net) parsed, with `text` and
    `source`; None when it has none. No simulator: model_tool --print, then --dump of that field."""
    bmodel = Path(bmodel).resolve()
    pr = model_tool("--print", bmodel)
    if pr.returncode != 0:
        raise DevtimeError(f"{bmodel}: model_tool --print failed: {pr.stderr.strip()[-200:]}")
    m = re.search(r"net_stat:\s*\{\s*start:\s*(\d+),\s*size:\s*(\d+)", pr.stdout)
    if not m or int(m.group(2)) == 0:
        return None
    start, size = m.group(1), m.group(2)
    with tempfile.TemporaryDirectory(prefix="bmpose-devtime-") as tmp:
        dst = Path(tmp) / "net_stat.sim"
        d = model_tool("--dump", bmodel, start, size, dst, cwd=tmp)
        if d.returncode != 0 or not dst.is_file():
            raise DevtimeError(f"{bmodel}: model_tool --dump of net_stat failed: {d.stderr.strip()[-200:]}")
        text = dst.read_text(errors="replace")
    stat = parse_net_stat(text)
    stat["text"] = text
    stat["source"] = {"file": str(bmodel), "field": f"net_stat (start {start}, size {size})",
                      "line": stat["lines"]["runtime"][1]}
    return stat


def _clock(chip: str, implied: float | None, where: str) -> int:
    """The clock behind the estimate's runtime line: cycles / runtime, checked against the chip's."""
    known = KNOWN_CLOCK_MHZ.get(chip.upper())
    if implied is None:
        raise DevtimeError(f"{where}: the estimate has a zero runtime")
    if known and abs(implied - known) > 0.01 * known:
        raise DevtimeError(f"{where}: the estimate implies {implied:.1f} MHz; {chip} runs at {known}")
    return known or round(implied)


def device_time(bmodel, chip: str, batch: int) -> dict:
    """What a build records (manifest checks.device_time): cycles, tpu_freq_mhz, runtime_ms (per batch),
    ms_per_person, flops, source; or {runtime_ms: None, why} for a bmodel that embeds no estimate."""
    stat = read_embedded_stat(bmodel)
    if stat is None:
        return {"runtime_ms": None, "ms_per_person": None, "why": NO_STAT_WHY}
    freq = _clock(chip, stat["freq_mhz_implied"], str(bmodel))
    ms = stat["cycles"] / (freq * 1e3)
    return {"cycles": stat["cycles"], "tpu_freq_mhz": freq, "runtime_ms": ms, "ms_per_person": ms / batch,
            "flops": stat["flops"], "source": SOURCE}
