"""The environment `make setup` promises: pins, no GUI OpenCV, the glibc fix, TPU-MLIR tools on PATH, the
mmpose import shim, and mmpose building HRNet-W32."""
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from helpers import ROOT

# Requirements mmpose/mmengine/mmcv-lite declare but that setup.sh leaves out on purpose (see scripts/setup.sh):
# chumpy does not build, opencv-python is the GUI build that breaks cv2 under TPU-MLIR, torchvision would
# pull a second torch. Nothing else may be unmet.
KNOWN_UNMET = {"chumpy", "opencv-python", "torchvision"}
TPU_MLIR_GLIBC = ("libc.so.6", "libm.so.6", "libpthread.so.0")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert line.count("==") == 1, f"constraints.txt: not an exact pin: {line!r}"
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_pin_is_installed_at_its_version():
    wrong = {}
    for name, version in _pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong, f"pinned -> installed: {wrong}"


def test_pyproject_dependencies_are_the_pins():
    """pyproject.toml's dependencies name exactly constraints.txt's versions, and every third-party package
    bmpose imports at top level is either listed there or one of the documented --no-deps four."""
    import ast
    import sys

    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
    deps = re.findall(r'"([^"]+)"', block)   # Python 3.10 has no tomllib; the list is one string per line
    pins = {_norm(k): v for k, v in _pins().items()}
    listed = {}
    for d in deps:
        name, _, version = d.partition("==")
        listed[_norm(name)] = version
        assert pins.get(_norm(name)) == version, (d, pins.get(_norm(name)))
    imported = set()
    for p in (ROOT / "bmpose").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    module_to_dist = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "tpu_mlir": "tpu-mlir"}
    no_deps = {"mmengine", "mmcv", "mmpose", "mmdet"}
    # TPU-MLIR's own top-level modules (its python/ dir: tools, utils, pyruntime_bm, pymlir, mlir), torch's
    # filelock, and the SDK's sophon.sail (on the device) come with those packages
    bundled = {"tools", "utils", "pyruntime_bm", "pymlir", "mlir", "filelock", "sophon", "bmpose", "__future__"}
    third = {m for m in imported if m not in sys.stdlib_module_names and m not in bundled}
    missing = {m for m in third if _norm(module_to_dist.get(m, m)) not in listed and m not in no_deps}
    assert not missing, f"imported but not in pyproject's dependencies: {sorted(missing)}"


def test_numpy_and_headless_opencv_pins():
    import cv2
    import numpy

    assert numpy.__version__ == "1.24.3"
    assert metadata.version("opencv-python-headless") == "4.8.0.74"
    assert cv2.__version__.startswith("4.8.0")


def test_gui_opencv_is_not_installed():
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("opencv-python")


def test_pip_check_only_known_unmet_requirements():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in out.stdout.splitlines() if line.strip()]
    unmet = set()
    for line in problems:
        m = re.fullmatch(r"(\S+) \S+ requires (\S+), which is not installed\.", line)
        assert m, f"pip check reports more than missing packages: {line!r}"
        unmet.add(_norm(m.group(2)))
    assert unmet == KNOWN_UNMET, problems


def test_bundled_glibc_is_moved_aside():
    import importlib.util

    tp = Path(importlib.util.find_spec("tpu_mlir").origin).parent / "lib" / "third_party"
    for lib in TPU_MLIR_GLIBC:
        assert not (tp / lib).exists(), f"{tp / lib} would be loaded and crash TPU-MLIR on a newer glibc"
        assert (tp / f"{lib}.bundled-disabled").exists()


def test_import_tpu_mlir():
    out = subprocess.run([sys.executable, "-c", "import tpu_mlir, os; print(os.environ['TPUC_ROOT'])"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()).is_dir()


def test_tpu_mlir_tool_runs_with_venv_bin_on_path():
    venv_bin = Path(sys.executable).parent
    assert os.environ["PATH"].split(os.pathsep)[0] == str(venv_bin)  # conftest puts it first, as the Makefile
    out = subprocess.run(["model_transform.py", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--model_name" in out.stdout and "--mlir" in out.stdout


def test_cv2_imports_under_tpu_mlir_library_path():
    # TPU-MLIR puts its bundled libs first on LD_LIBRARY_PATH for every tool; cv2 must still load there
    # (the GUI build would pull TPU-MLIR's old glib and fail on libpcre.so.3).
    code = "import tpu_mlir, os, subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', 'import cv2']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_pythons_started_after_tpu_mlir_loads_run_the_venvs_python():
    """`import tpu_mlir` puts its bundled libpython (3.10.12) on LD_LIBRARY_PATH; bmpose keeps it out of its own
    environment, so a bmpose started later (by a test, a crop worker) keys its manifests on the same Python."""
    code = ("import platform, subprocess, sys\n"
            "from bmpose.tpu_mlir.installed import tpu_mlir_root\n"
            "tpu_mlir_root()\n"
            "child = subprocess.run([sys.executable, '-c', 'import platform; print(platform.python_version())'],"
            " capture_output=True, text=True).stdout.strip()\n"
            "print(platform.python_version(), child)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    mine, child = out.stdout.split()
    assert mine == child == platform.python_version()


def test_shim_raises_clear_error_when_a_shimmed_thing_is_called():
    from bmpose.weights import mmpose_shim

    mmpose_shim.import_mmpose()
    import mmcv.ops
    import torchvision.transforms

    for mod, name in ((mmcv.ops, "RoIAlign"), (torchvision.transforms, "Resize")):
        thing = getattr(mod, name)  # taking the name works (mmpose does this at import time)...
        with pytest.raises(mmpose_shim.ShimmedDependencyError, match="not available in the bmpose environment"):
            thing(7)  # ...using it fails loudly
    assert getattr(mmcv.ops, "__bmpose_shim__", False)


def test_mmpose_builds_rtmpose_through_the_shim():
    """RTMPose's backbone is mmdet's CSPNeXt: importing mmdet's registry takes `mmcv.ops.nms` and other
    submodules, stood in for; building and running RTMPose-t needs none of them (issue 24)."""
    import torch
    from bmpose.config import mmpose_config_root
    from bmpose.weights import mmpose_shim

    mmpose_shim.import_mmpose()
    from mmcv.ops.nms import batched_nms
    from mmengine.config import Config
    from mmpose.apis import init_model

    with pytest.raises(mmpose_shim.ShimmedDependencyError):
        batched_nms(None, None, None, {})
    cfg = Config.fromfile(str(mmpose_config_root() / "body_2d_keypoint/rtmpose/coco/"
                                                      "rtmpose-t_8xb256-420e_coco-256x192.py"))
    model = init_model(cfg, None, device="cpu").eval()
    assert type(model.backbone).__name__ == "CSPNeXt" and type(model.head).__name__ == "RTMCCHead"
    with torch.no_grad():
        x, y = model.head(model.backbone(torch.zeros(1, 3, 256, 192)))
    assert tuple(x.shape) == (1, 17, 384) and tuple(y.shape) == (1, 17, 512)   # split ratio 2


def test_mmpose_builds_hrnet_w32():
    from bmpose import config
    from bmpose.weights.model import build_untrained

    model = build_untrained(config.load("hrnet_w32_256x192"))
    assert type(model).__name__ == "TopdownPoseEstimator"
    assert type(model.backbone).__name__ == "HRNet"
    assert model.backbone.stage4[0].in_channels == [32, 64, 128, 256]
    n = sum(p.numel() for p in model.parameters())
    assert 28_000_000 < n < 29_000_000  # HRNet-W32 + heatmap head: 28.5 M
