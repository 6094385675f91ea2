"""Import shim that lets mmpose 1.3.2 import without compiled mmcv and without torchvision.

mmpose imports two things that top-down heatmap models never use:
- `mmcv.ops` (compiled CUDA/C++ ops: a 45-minute source build) from its EDPose/RTMO/DEKR code, and from
  mmdet's model registry (`mmcv.ops.nms` and others), which RTMPose's backbone (mmdet's CSPNeXt) pulls in;
- `torchvision` (a second torch build from PyPI) from its SimCC visualiser.
`install()` registers stand-ins for exactly those modules. Any attribute taken from them is a placeholder
that raises a clear error when it is called or instantiated, so a model that really needs them fails loudly
instead of silently. Call `install()` before the first `import mmpose`; `import_mmpose()` does both.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

SHIMMED = ("mmcv.ops", "torchvision", "torchvision.transforms")


class ShimmedDependencyError(ImportError):
    pass


def _placeholder(module: str, name: str):
    def fail(*_a, **_k):
        raise ShimmedDependencyError(
            f"{module}.{name} is not available in the bmpose environment: bmpose installs mmcv-lite (no compiled "
            f"mmcv.ops) and no torchvision; top-down heatmap models never need them")

    # A class, so both `isinstance` checks at import time and `X(...)` at run time behave: the latter fails.
    return type(name, (), {"__new__": lambda cls, *a, **k: fail(), "__call__": fail, "__module__": module})


def _stub(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    mod.__path__ = []
    mod.__bmpose_shim__ = True
    # mmengine's Runner logs `torchvision.__version__` (collect_env) at start-up: say what this is.
    mod.__version__ = "0+bmpose.shim"
    mod.__getattr__ = lambda attr: (_ for _ in ()).throw(AttributeError(attr)) if attr.startswith("__") \
        else _placeholder(name, attr)
    return mod


class _OpsSubmodules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`from mmcv.ops.nms import batched_nms` (mmdet): every submodule of the stand-in mmcv.ops is a stand-in."""

    def find_spec(self, name, path=None, target=None):
        ops = sys.modules.get("mmcv.ops")
        if name.startswith("mmcv.ops.") and getattr(ops, "__bmpose_shim__", False):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _stub(spec.name)

    def exec_module(self, module):
        pass


def install() -> None:
    """Register the stand-ins unless the real modules are importable (a full mmcv / torchvision wins)."""

    if not any(isinstance(f, _OpsSubmodules) for f in sys.meta_path):
        sys.meta_path.insert(0, _OpsSubmodules())
    for name in SHIMMED:
        if name in sys.modules:
            continue
        if name == "mmcv.ops" and importlib.util.find_spec("mmcv._ext") is not None:
            continue
        if name.startswith("torchvision") and _real_torchvision():
            continue
        sys.modules[name] = _stub(name)
        parent, _, child = name.rpartition(".")
        if parent and parent in sys.modules:
            setattr(sys.modules[parent], child, sys.modules[name])


def _real_torchvision() -> bool:
    mod = sys.modules.get("torchvision")
    if mod is not None:
        return not getattr(mod, "__bmpose_shim__", False)
    return importlib.util.find_spec("torchvision") is not None


def import_mmpose():
    """Install the shim, import mmpose's model registry, and return the `mmpose` package."""
    install()
    import mmpose  # noqa: F401
    import mmpose.models  # noqa: F401  (registers every model class)
    return sys.modules["mmpose"]
