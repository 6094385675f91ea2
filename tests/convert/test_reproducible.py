"""Same inputs, same bytes: a clean INT8 build (default model, BM1684, batch 1, from nothing in its own
artifacts root, in a process of its own) agrees with the run's shared build of the same model (conftest's
`small`, made in the test process beside the other chips and batches) on the content hash of every artifact its
manifests record: ONNX, calibration LMDB, contact sheet, top MLIR, calibration table, qtable, deployed tpu.mlir,
bmodel, compare files. The hashes leave out TPU-MLIR's build-time stamps (bmpose.manifest.STAMPS); the raw
bmodels are shown to differ in nothing else."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MODEL = "hrnet_small_128x96"
# per build dir: files that must be in the manifest's outputs (the list, by kind)
REQUIRED = {"onnx": r"\.onnx$", "calib": r"^calib\.lmdb$", "cali_table/kl_n100": r"_cali_table$",
            "mlir/b1": r"\.mlir$", "bm1684_int8_b1": r"(\.bmodel|_tpu\.mlir|^qtable)$"}


def _build(root: Path) -> Path:
    env = {**os.environ, "BMPOSE_ARTIFACTS": str(root)}
    r = subprocess.run([sys.executable, "-m", "bmpose", "build", "--precision", "int8", "--model", MODEL,
                        "--chips", "bm1684", "--batches", "1", "--no-report"], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / MODEL


def _outputs(art: Path) -> dict[str, dict]:
    out = {}
    for m in art.rglob("manifest.json"):
        doc = json.loads(m.read_text())
        # logs carry times; data_list.txt lists the crops by absolute path (run_calibration needs them so)
        out[str(m.parent.relative_to(art))] = {k: v for k, v in doc["outputs"].items()
                                               if not k.endswith(".log") and k != "data_list.txt"}
    return out


def test_a_clean_build_has_the_shared_builds_content_hashes(small, tmp_path):
    a, b = _build(tmp_path / "a"), small.artifacts
    out_a, out_b = _outputs(a), _outputs(b)
    assert set(out_a) <= set(out_b)   # the shared build has more: the other chip, batch 4, FP32, the report
    for d, pattern in REQUIRED.items():
        kinds = [f for f in out_a[d] if re.search(pattern, f)]
        assert kinds, f"{d}: no {pattern} among its outputs {sorted(out_a[d])}"
    diffs = {d: [f for f in out_a[d] if out_a[d][f] != out_b[d].get(f)] for d in out_a}
    assert not any(diffs.values()), diffs
    # what the bmodel hash leaves out is all that the raw bmodels differ in: the header's time and the unset
    # kernel-module word (model_tool --print of both), nothing in the binary payload
    import difflib
    import struct

    from bmpose.tpu_mlir.installed import tpu_mlir_root

    name = f"{MODEL}_bm1684_int8_b1.bmodel"
    x, y = (p / "bm1684_int8_b1" / name for p in (a, b))
    tool = str(tpu_mlir_root() / "bin" / "model_tool")
    px, py = (subprocess.run([tool, "--print", str(f)], capture_output=True, text=True).stdout for f in (x, y))
    changed = [l[1:].strip().split(":")[0] for l in difflib.unified_diff(px.splitlines(), py.splitlines(), n=0)
               if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert set(changed) <= {"time", "mode"}, changed
    bx, by = x.read_bytes(), y.read_bytes()
    _, header, fb, _ = struct.unpack("<IIII", bx[:16])
    assert bx[header + fb:] == by[header + fb:]
