"""Deploy configs: which mmpose model, its preprocessing and codec, and how bmpose builds and checks it.

A deploy config is `configs/<name>.yaml`. It names an mmpose model config (`mmpose::<path>` for the configs
mmpose ships, or a file path, relative to the yaml or absolute) and adds what only deployment needs (chips,
batches, tolerances, calibration, qtable). Everything the model itself defines — input size, heatmap size,
mean/std, colour order, codec, flip test — is read from the mmpose config, so it is stated in one place.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from bmpose.config_checks import MAX_BATCH, check_common, check_keys, read_yaml  # noqa: F401  (others read them here)
from bmpose.errors import BmposeError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
DATA_DIR = ROOT / "data"   # the bundled COCO samples (data/README.md): product data the tests read too
DEFAULT_MODEL = os.environ.get("BMPOSE_DEFAULT_MODEL", "hrnet_small_128x96")

DEFAULT_TOLERANCES = {
    "onnx_max_abs": 1e-4,   # ONNX Runtime vs PyTorch, heatmaps
    "fp32_cos": 0.99999,    # FP32 bmodel vs ONNX, final heatmaps
    "int8_cos": 0.99,       # INT8 bmodel vs ONNX, final heatmaps
    # FP16/BF16 bmodels (BM1684X) vs ONNX, final heatmaps. Measured on the trained small fixture over all 32
    # bundled crops (tpu.mlir) and the b1/b4 builds: worst fp16 0.9999955, bf16 0.99949; each gate leaves
    # 5-10x the worst error (1 - cos) as margin. See docs/building.md.
    "fp16_cos": 0.99995,
    "bf16_cos": 0.997,
    # INT8 gate when the checkpoint is bmpose's random-init fixture: random weights have no realistic
    # activation statistics, so their INT8 heatmaps sit at cos 0.94-0.99 whatever the calibration (measured on
    # HRNet-W32: BM1684 b1 0.968, b4 0.939). There the gate only catches a broken build; accuracy needs
    # trained weights (the small model's trained fixture, or a real checkpoint).
    "int8_cos_random": 0.90,
    # The same for FP16/BF16: random weights lose more in half precision. Worst of 32 crops, HRNet-W32 random
    # init: fp16 0.99952, bf16 0.9825 (median 0.99909); margins 6x the worst error.
    "fp16_cos_random": 0.997,
    "bf16_cos_random": 0.90,
    # `--precision auto` keeps the fastest build whose keypoints agree with ONNX FP32's to this mean OKS (on the
    # bundled val persons): BlazePose's AP cost of agreement x was about a third of 1 - x (INT8 0.823 -> AP
    # -0.057; FP16 0.9995 -> -0.002), so 0.98 aims at half a point (bmpose.convert.pose_auto)
    "auto_target": 0.98,
}
DEFAULT_CALIBRATION = {"method": "kl", "num": 100, "seed": 0}
# what a deploy yaml may say besides its network (mmpose_config:, or onnx: with onnx_config.ONNX_KEYS)
DEPLOY_KEYS = frozenset({"name", "checkpoint", "chips", "batches", "tolerances", "calibration", "qtable"})


def artifacts_root() -> Path:
    """The default artifacts root: $BMPOSE_ARTIFACTS when set (read when asked, not at import), else artifacts/
    in the repository. A config carries its own root (`load(..., artifacts=DIR)`, the CLI's --artifacts-dir)."""
    return Path(os.environ.get("BMPOSE_ARTIFACTS") or ROOT / "artifacts").absolute()


@dataclass(frozen=True)
class DeployConfig:
    name: str
    path: Path
    mmpose_config: Path | None         # None for an `onnx:` config
    checkpoint: str                    # "fixture" (random init from `bmpose fixture`), a path, or a URL
    input_size: tuple[int, int]        # (w, h), mmpose's order
    heatmap_size: tuple[int, int] | None   # (w, h); None for a SimCC codec (two vectors, no heatmap)
    mean: tuple[float, float, float]   # in the network's channel order (RGB when bgr_to_rgb)
    std: tuple[float, float, float]
    bgr_to_rgb: bool
    codec: dict
    flip_test: bool
    shift_heatmap: bool
    chips: tuple[str, ...] = ("bm1684", "bm1684x")
    batches: tuple[int, ...] = (1, 4)
    tolerances: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    calibration: dict = field(default_factory=lambda: dict(DEFAULT_CALIBRATION))
    qtable: Path | None = None         # user's extra FP32 layers (added to the automatic tail)
    padding: float = 1.25              # GetBBoxCenterScale padding
    root: Path = field(default_factory=artifacts_root)   # the artifacts root; this model's are under root/name
    # An `onnx:` config (a trained network as an ONNX file, no mmpose config): the file, its keypoint set (a
    # name of mmpose's dataset metainfo files, or inline), CocoMetric overrides and the detection score floor.
    onnx: Path | None = None
    dataset: str | dict | None = None
    evaluator: dict = field(default_factory=dict)
    bbox_score_thr: float = 0.0
    output: str | None = None           # of an ONNX file with several outputs, the one bmpose reads
    extra_outputs: dict = field(default_factory=dict)   # the others ({name: what it is}), cut off at import
    shift_coords: bool = True           # a regression head's flip test (mmpose's RegressionHead test_cfg)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's output names: one heatmap tensor, SimCC's two vectors (RTMPose's RTMCCHead), or a
        regression head's coordinates."""
        kind = self.codec.get("type")
        return {"SimCCLabel": ("simcc_x", "simcc_y"), "RegressionLabel": ("keypoints",)}.get(kind, ("heatmaps",))

    def require_heatmaps(self, what: str) -> None:
        """What bmpose does only for heatmap models (the NNTC bundle): one line for a SimCC model instead of a
        shape error."""
        if self.outputs != ("heatmaps",):
            raise BmposeError(f"{self.path}: {what} of a {self.codec.get('type')} model (output "
                              f"{', '.join(self.outputs)}) is not supported: build its bmodels with TPU-MLIR "
                              f"instead (make fp32 / make int8, make deploy)")

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[0]

    @property
    def input_name(self) -> str:
        """The network input's name (bmpose's exporter and ONNX door both name it so)."""
        return "input"

    @property
    def artifacts(self) -> Path:
        return self.root / self.name

    @property
    def layout(self):
        """Where each stage of this model writes (bmpose.layout)."""
        from bmpose.layout import Layout

        return Layout(self.artifacts, self.name)

    def summary(self) -> dict:
        """What manifests record about the config (resolved values, not just file names)."""
        return {
            "name": self.name, "mmpose_config": str(self.mmpose_config), "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size) if self.heatmap_size else None, "mean": list(self.mean),
            "std": list(self.std),
            "bgr_to_rgb": self.bgr_to_rgb, "codec": self.codec, "flip_test": self.flip_test,
            "shift_heatmap": self.shift_heatmap, "padding": self.padding,
            **({"onnx": str(self.onnx), "dataset": self.dataset, "output": self.output} if self.onnx else {}),
        }


def mmpose_config_root() -> Path:
    spec = importlib.util.find_spec("mmpose")
    if spec is None or not spec.submodule_search_locations:
        raise BmposeError("mmpose is not installed in this environment (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs"


def resolve_mmpose_config(ref: str, base: Path = CONFIG_DIR) -> Path:
    if ref.startswith("mmpose::"):
        path = mmpose_config_root() / ref[len("mmpose::"):]
    else:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = (base / path) if (base / path).exists() else path.resolve()
    if not path.is_file():
        raise BmposeError(f"{ref}: mmpose config not found")
    return path


def list_models() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load(model: str | os.PathLike | None = None, artifacts: str | os.PathLike | None = None) -> DeployConfig:
    """Load a deploy config by name (`configs/<name>.yaml`) or by path to a yaml file; its artifacts go under
    `artifacts` (default: `artifacts_root()`)."""
    model = str(model or DEFAULT_MODEL)
    path = Path(model)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{model}.yaml"
    if not path.is_file():
        raise BmposeError(f"{path}: no such deploy config (known models: {', '.join(list_models())})")
    raw = read_yaml(path, "mmpose_config: or onnx:, chips:, ...")
    root = Path(artifacts).expanduser().absolute() if artifacts else artifacts_root()
    check_common(raw, path, DEFAULT_TOLERANCES, DEFAULT_CALIBRATION)
    if "onnx" in raw:
        from bmpose.onnx_config import NESTED_KEYS, ONNX_KEYS, onnx_facts

        check_keys(path, raw, DEPLOY_KEYS | ONNX_KEYS)
        for key, known in NESTED_KEYS.items():
            if isinstance(raw.get(key), dict):
                check_keys(path, raw[key], known, key)
        mm_path, facts = None, onnx_facts(raw, path)
        checkpoint = str(facts["onnx"])   # the weights are in the file
    elif "mmpose_config" in raw:
        check_keys(path, raw, DEPLOY_KEYS | {"mmpose_config"})
        try:
            mm_path = resolve_mmpose_config(raw["mmpose_config"], path.parent)
        except BmposeError as e:
            raise BmposeError(f"{path}: {e}") from None
        facts = mmpose_facts(mm_path, cache=root / ".cache")
        checkpoint = _checkpoint_ref(str(raw.get("checkpoint", "fixture")), path.parent)
    else:
        raise BmposeError(f"{path}: missing key 'mmpose_config' (an mmpose model) or 'onnx' (an ONNX file)")
    codec = facts["codec"]
    qtable = raw.get("qtable")
    return DeployConfig(
        name=raw.get("name", path.stem),
        path=path.resolve(),
        mmpose_config=mm_path,
        checkpoint=checkpoint,
        input_size=tuple(codec["input_size"]),
        heatmap_size=tuple(codec["heatmap_size"]) if "heatmap_size" in codec else None,
        mean=tuple(facts["mean"]),
        std=tuple(facts["std"]),
        bgr_to_rgb=facts["bgr_to_rgb"],
        codec=codec,
        flip_test=facts["flip_test"],
        shift_heatmap=facts["shift_heatmap"],
        chips=tuple(raw.get("chips", ("bm1684", "bm1684x"))),
        batches=tuple(int(b) for b in raw.get("batches", (1, 4))),
        tolerances={**DEFAULT_TOLERANCES, **(raw.get("tolerances") or {})},
        calibration={**DEFAULT_CALIBRATION, **(raw.get("calibration") or {})},
        qtable=(path.parent / qtable).resolve() if qtable else None,
        root=root,
        **{k: facts[k] for k in ("onnx", "dataset", "evaluator", "bbox_score_thr", "output", "extra_outputs",
                                 "shift_coords") if k in facts},
    )


def _checkpoint_ref(ref: str, base: Path) -> str:
    """"fixture" and URLs as they are; a relative path is relative to the yaml's folder, like its other paths."""
    if ref == "fixture" or "://" in ref:
        return ref
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def config_files(mm_path: Path) -> list[Path]:
    """An mmpose config and its local `_base_` files, recursively (`mmpose::` bases are fixed by the pinned
    mmpose version). A build that reads the config depends on all of them."""
    import re

    todo, seen = [Path(mm_path)], []
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.append(f)
        for ref in re.findall(r"""['"]([^'"]+\.py)['"]""", f.read_text(errors="replace")):
            if not ref.startswith("mmpose::"):
                todo.append((f.parent / ref).resolve())
    return seen


def mmpose_config_inputs(mm_path: Path) -> dict[str, Path]:
    """Manifest inputs for an mmpose config: the file itself, then each local base as mmpose_config_base<i>."""
    files = config_files(mm_path)
    return {"mmpose_config": Path(mm_path), **{f"mmpose_config_base{i}": f for i, f in enumerate(files[1:], 1)}}


def mmpose_facts(mm_path: Path, cache: Path | None = None) -> dict:
    """What bmpose reads from an mmpose config (codec, mean/std, colour order, flip test), cached.

    mmengine's Config.fromfile takes 0.4 s (it scans mmpose's metafiles to resolve `mmpose::` bases), which
    every command paid. The facts are cached under `cache` (default: the artifacts root's .cache/), keyed on
    the config's text, the text of its local `_base_` files, and the mmpose and mmengine versions (which fix
    the `mmpose::` bases)."""
    import hashlib
    import json
    from importlib import metadata

    h = hashlib.sha256(b"facts v1\0")
    for name in ("mmpose", "mmengine"):
        try:
            h.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=none\0".encode())
    for f in config_files(mm_path):
        h.update(str(f).encode() + b"\0" + f.read_bytes() + b"\0")
    cache = Path(cache or artifacts_root() / ".cache") / "mmpose_facts" / f"{h.hexdigest()[:32]}.json"
    if cache.is_file():
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            pass
    mm = _read_mmpose_config(Path(mm_path))
    codec = dict(mm.codec) if "codec" in mm else dict(mm.model.head.decoder)
    codec.pop("_scope_", None)
    pre = mm.model.data_preprocessor
    test_cfg = mm.model.get("test_cfg", {}) or {}
    facts = json.loads(json.dumps({
        "codec": codec, "mean": [float(x) for x in pre.mean], "std": [float(x) for x in pre.std],
        "bgr_to_rgb": bool(pre.get("bgr_to_rgb", False)), "flip_test": bool(test_cfg.get("flip_test", False)),
        "shift_heatmap": bool(test_cfg.get("shift_heatmap", False))}))
    try:
        from bmpose.manifest import atomic_write_text

        atomic_write_text(cache, json.dumps(facts))
    except OSError:
        pass   # a read-only artifacts dir only costs the 0.4 s again
    return facts


def _read_mmpose_config(path: Path):
    from mmengine.config import Config

    try:
        return Config.fromfile(str(path))
    except Exception as e:  # mmengine raises many types for a broken config
        raise BmposeError(f"{path}: cannot read mmpose config ({type(e).__name__}: {e})") from None
