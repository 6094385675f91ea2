"""Where every stage writes: each directory under a config's `artifacts/<name>/` is named here, once.

The root is the config's own (`config.load(..., artifacts=DIR)`, `--artifacts-dir`). Each directory holds a
`manifest.json` and is written atomically (under a temporary name, renamed when complete):

  checkpoint/                     the random-init fixture checkpoint (`bmpose fixture`)
  calib/                          calibration LMDB and contact sheet
  cali_inputs/                    normalised real crops as npz (calibration input, transform test input)
  onnx/  onnx_opset<N>/           the exported ONNX per batch; another opset (NNTC's 12) is its own build
  mlir/b<batch>/                  model_transform: top MLIR, weights, ONNX/top reference tensors
  cali_table/<method>_n<num>/     run_calibration on the batch-1 MLIR (serves every batch)
      search_<chip>/              optional search_qtable result
  <chip>_<precision>_b<batch>/    model_deploy: the bmodel, the deployed *_tpu.mlir + its weight npz, qtable,
                                  compare.csv/compare.npz, logs; `<...>.failed/` when the build failed
  estimate/<chip>_<precision>_b<batch>/   compiled only for the device-time estimate (`bmpose bench`)
  eval/  study/  bench/  pictures/<chip>/  report/  deploy/<name>_<chip>/  nntc/  train/

Import-light (no torch, no TPU-MLIR): the report, the CLI and the backends read it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bmpose.chips import CHIPS, PRECISIONS
from bmpose.manifest import read_manifest

ONNX_OPSET = 13                       # the opset of onnx/; any other opset gets onnx_opset<N>/
FAILED_OPTIONS = "options.json"       # what a failed bmodel build was asked for (its gate, for the verdict)
_FAILED = re.compile(r"^(?P<chip>.+)_(?P<precision>[a-z0-9]+)_b(?P<batch>\d+)\.failed$")


class Layout:
    def __init__(self, artifacts: Path, name: str):
        self.root, self.name = Path(artifacts), name

    def fixture_checkpoint(self) -> Path:
        return self.root / "checkpoint" / "fixture_random.pth"

    def calib(self) -> Path:
        return self.root / "calib"

    def cali_inputs(self) -> Path:
        return self.root / "cali_inputs"

    def onnx(self, opset: int = ONNX_OPSET) -> Path:
        return self.root / ("onnx" if opset == ONNX_OPSET else f"onnx_opset{int(opset)}")

    def onnx_file(self, batch: int | None, opset: int = ONNX_OPSET) -> Path:
        """batch None: the dynamic-batch file."""
        return self.onnx(opset) / f"{self.name}_{'dynamic' if batch is None else f'b{int(batch)}'}.onnx"

    def mlir(self, batch: int) -> Path:
        return self.root / "mlir" / f"b{batch}"

    def cali_table(self, method: str, num: int) -> Path:
        return self.root / "cali_table" / f"{method}_n{num}"

    def bmodel(self, chip: str, precision: str, batch: int) -> Path:
        return self.root / f"{chip}_{precision}_b{batch}"

    def bmodel_name(self, chip: str, precision: str, batch: int) -> str:
        return f"{self.name}_{chip}_{precision}_b{int(batch)}.bmodel"

    def estimate(self, chip: str, precision: str, batch: int) -> Path:
        return self.root / "estimate" / f"{chip}_{precision}_b{batch}"

    def eval(self) -> Path:
        return self.root / "eval"

    def auto(self, chip: str) -> Path:
        """`--precision auto`'s trials for a chip and its choice.json (bmpose.convert.auto)."""
        return self.root / "auto" / chip

    def auto_choices(self) -> dict[str, Path]:
        """{chip: its choice.json} for every chip `--precision auto` has chosen a build for."""
        return {p.parent.name: p for p in sorted(self.root.glob("auto/*/choice.json"))}

    def study(self) -> Path:
        return self.root / "study"

    def bench(self) -> Path:
        return self.root / "bench"

    def pictures(self, chip: str) -> Path:
        return self.root / "pictures" / chip

    def report(self) -> Path:
        return self.root / "report"

    def bundle(self, chip: str) -> Path:
        return self.root / "deploy" / f"{self.name}_{chip}"

    def nntc(self) -> Path:
        return self.root / "nntc"

    def train(self) -> Path:
        return self.root / "train"


def list_bmodels(cfg, auto: bool = False) -> list[dict]:
    """Every complete bmodel build of this config: path, chip, precision, batch, tpu_mlir (+ manifest facts),
    `name` (its folder's), `file` (its bundle name). `auto`: each chip's `--precision auto` winner carries
    `variant` (the winner's label): a winner built in the search's own folder (an INT8 build with float layers or
    calibration tools) is added at every batch built, named `<chip>_auto_b<N>`, bundled as
    `<model>_<chip>_auto_b<N>.bmodel`; a float or plain-INT8 winner is the normal build, marked where it is listed."""
    out = [b for b in map(lambda d: _bmodel(cfg, d), sorted(cfg.artifacts.glob("*_*_b*"))) if b]
    for chip, choice in (cfg.layout.auto_choices() if auto else {}).items():
        c = json.loads(choice.read_text())
        winner = c.get("winner")
        if not winner:
            continue
        if Path(c.get("winner_dir") or "").parent != choice.parent:   # the normal build of that precision
            out = [{**b, "variant": winner} if (b["chip"], b["precision"]) == (chip, winner) else b for b in out]
            continue
        for b in filter(None, map(lambda d: _bmodel(cfg, d), sorted(choice.parent.glob(f"{winner}_b*")))):
            out.append({**b, "name": f"{chip}_auto_b{b['batch']}", "variant": winner,
                        "file": cfg.layout.bmodel_name(chip, "auto", b["batch"])})
    order = {c: i for i, c in enumerate(CHIPS)}
    return sorted(out, key=lambda b: (order.get(b["chip"], 9), PRECISIONS.index(b["precision"]), b["batch"],
                                      b["name"]))


def _bmodel(cfg, d: Path) -> dict | None:
    if d.name.startswith(".") or d.name.endswith(".failed"):   # builds in progress or failed
        return None
    m = read_manifest(d)
    if not d.is_dir() or m is None or m.get("stage") != "deploy" or m.get("status") != "ok":
        return None
    o = m["options"]
    path = d / cfg.layout.bmodel_name(o["chip"], o["precision"], o["batch"])
    if not path.is_file():
        return None
    return {"path": path, "chip": o["chip"], "precision": o["precision"], "batch": int(o["batch"]),
            "tpu_mlir": d / m["tpu_mlir"], "dir": d, "manifest": m, "name": d.name, "file": path.name}


def failed_builds(cfg) -> list[Path]:
    """Bmodel builds that failed (kept as `<dir>.failed/`, with their logs)."""
    return [d for d in sorted(cfg.artifacts.glob("*_*_b*.failed")) if d.is_dir() and _FAILED.match(d.name)]


def failed_build_target(d: Path) -> tuple[str, str, int]:
    """(chip, precision, batch) of a failed build's directory."""
    m = _FAILED.match(d.name)
    return m["chip"], m["precision"], int(m["batch"])
