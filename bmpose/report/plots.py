"""The report's figures (bmpose.report.report): a per-layer similarity plot per quantised (INT8, FP16, BF16)
bmodel and per calibration study default, and one crop's heatmaps per chip, ONNX vs each precision's bmodel side
by side (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bmpose.chips import PRECISIONS
from bmpose.compare import read_csv


def make_plots(cfg, data: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = _bmodel_layer_plots(plt, cfg, data, out) + _study_plots(plt, cfg, data, out)
    if data.get("auto") and auto_plot(plt, data["auto"], "mean OKS vs ONNX FP32", "ms per person", out / "auto.png"):
        data["auto_plot"] = {"file": "auto.png", "title": "--precision auto: every trial's agreement with float "
                                                          "against its simulated time, per chip"}
        files.append("auto.png")
    # One crop's heatmaps, ONNX vs each precision's bmodel (same test crop: every build of a batch shares it).
    data["heatmap_plots"] = []
    for chip in sorted({b["chip"] for b in data["bmodels"]}):
        name = f"heatmaps_{chip}.png"
        if _heatmap_plot(plt, cfg, [b for b in data["bmodels"] if b["chip"] == chip], chip, out / name):
            data["heatmap_plots"].append({"chip": chip, "file": name})
            files.append(name)
    return files


def _bmodel_layer_plots(plt, cfg, data: dict, out: Path) -> list[str]:
    files = []
    for b in data["bmodels"]:
        b["plots"] = {}
        if b["precision"] == "fp32":   # FP32 layers match the top MLIR to rounding: nothing to see
            continue
        rows = [r for r in read_csv(Path(b["dir"]) / "compare.csv") if r["op"] != "bmodel"]
        if not rows:
            continue
        name = f"layers_{Path(b['dir']).name}.png"
        tol = next(iter(b["tolerance"].values())) if b["tolerance"] else cfg.tolerances[f"{b['precision']}_cos"]
        _layer_plot(plt, rows, f"{b['name']}: per-layer similarity (deployed TPU MLIR vs top MLIR)", tol, out / name)
        b["plots"]["layers"] = name
        files.append(name)
    return files


def _study_plots(plt, cfg, data: dict, out: Path) -> list[str]:
    """The calibration study's default variant per chip (built under study/, see bmpose.experiments.study) and
    its AP-against-time plot."""
    files = []
    study = data.get("study") if isinstance(data.get("study"), dict) else {}
    for p in study.get("layer_plots", []):
        csv = Path(p["csv"])
        rows = [r for r in read_csv(csv) if r["op"] != "bmodel"] if csv.is_file() else []
        if rows:
            name = f"study_layers_{p['chip']}.png"
            _layer_plot(plt, rows, f"study default ({p['title']}): per-layer similarity vs top MLIR",
                        cfg.tolerances["int8_cos"], out / name)
            p["file"] = name
            files.append(name)
    name = _speed_plot(plt, study.get("rows", []), out / "study_speed.png")
    if name:
        study["speed_plot"] = {"title": "study: fidelity (agreement with float) against simulated device time per "
                                        "person", "file": name}
        files.append(name)
    return files


def _heatmap_plot(plt, cfg, bmodels: list[dict], chip: str, path: Path) -> bool:
    """The chip's smallest batch: the input crop, ONNX's heatmaps and each precision's, |INT8 - FP32|."""
    batch = min(b["batch"] for b in bmodels)
    by = {b["precision"]: b for b in bmodels if b["batch"] == batch}
    if not by:
        return False
    first = next(iter(by.values()))
    with np.load(Path(first["dir"]) / "compare.npz") as z:
        panels = [("ONNX FP32", z["onnx"][0])]
    for prec in PRECISIONS:
        if prec in by:
            with np.load(Path(by[prec]["dir"]) / "compare.npz") as z:
                panels.append((f"{prec.upper()} bmodel", z["bmodel"][0]))
    if cfg.codec.get("type") == "RegressionLabel":
        return _keypoint_plot(plt, cfg, panels, _test_crop(cfg, Path(first["dir"])), chip, path)
    vmax = max(float(p[1].max()) for p in panels)
    got = dict(panels)
    if "FP32 bmodel" in got and "INT8 bmodel" in got:
        panels.append(("|INT8 - FP32|", np.abs(got["INT8 bmodel"] - got["FP32 bmodel"])))
    crop = _test_crop(cfg, Path(first["dir"]))
    ncol = len(panels) + (crop is not None)
    fig, axes = plt.subplots(1, ncol, figsize=(2.3 * ncol, 3.0))
    axes = np.atleast_1d(axes)
    i = 0
    if crop is not None:
        axes[0].imshow(crop)
        axes[0].set_title("input crop", fontsize=9)
        i = 1
    simcc = panels[0][1].ndim == 2   # SimCC: [K, Wx + Wy], keypoints by bins, shown as they are
    for ax, (title, hm) in zip(axes[i:], panels):
        ax.imshow(hm if simcc else hm.max(axis=0), cmap="magma", vmin=0 if not simcc else None,
                  vmax=vmax if "|" not in title else None, aspect="auto" if simcc else None)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{chip}: " + (f"SimCC x | y vectors of {panels[0][1].shape[0]} keypoints" if simcc else
                                f"max over {panels[0][1].shape[0]} keypoint heatmaps"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _keypoint_plot(plt, cfg, panels: list, crop, chip: str, path: Path) -> bool:
    """A regression model has no heatmaps: its keypoints from ONNX and each precision, on the input crop."""
    from bmpose.pose.regression import decode_regression

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    if crop is not None:
        ax.imshow(crop)
    for (title, out), marker in zip(panels, ("o", "x", "+", "^", "s")):
        xy, _ = decode_regression(np.asarray(out).reshape(1, -1), cfg.codec)
        ax.scatter(xy[0, :, 0], xy[0, :, 1], marker=marker, s=28, label=title,
                   facecolors="none" if marker == "o" else None, edgecolors="w" if marker == "o" else None)
    ax.legend(fontsize=7, loc="lower right")
    ax.axis("off")
    ax.set_title(f"{chip}: {cfg.codec['num_keypoints']} keypoints, ONNX vs each precision's bmodel", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _speed_plot(plt, rows: list[dict], path: Path) -> str | None:
    """Every study variant with a simulated time: its agreement with float (mean OKS against ONNX FP32's
    keypoints; AP drop vs ONNX in studies made before that was kept) against device ms per person, a panel per
    chip, points labelled by method: what the FP32 layers cost in time."""
    fidelity = all(r.get("oks_vs_float") is not None for r in rows if r.get("dAP") is not None)
    key, label = ("oks_vs_float", "mean OKS vs ONNX FP32 keypoints") if fidelity else ("dAP", "AP drop vs ONNX FP32")
    rows = [r for r in rows if r.get("device_ms") and r.get(key) is not None]
    chips = sorted({r["chip"] for r in rows})
    if not chips:
        return None
    colours = {"none": "tab:red", "auto": "tab:blue", "search": "tab:green"}
    floats = {"FP32": "grey", "FP16": "tab:purple", "BF16": "tab:brown"}
    fig, axes = plt.subplots(1, len(chips), figsize=(5.2 * len(chips), 3.8), squeeze=False)
    for ax, chip in zip(axes[0], chips):
        for r in (r for r in rows if r["chip"] == chip):
            float_ = r["precision"] != "INT8"
            y = r[key] if fidelity else -r[key]
            ax.scatter(r["device_ms"], y, marker="s" if float_ else "o",
                       color=floats.get(r["precision"], "grey") if float_ else colours.get(r["fp32_layers"], "black"))
            ax.annotate(r["precision"] if float_ else r["method"], (r["device_ms"], y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if not fidelity:
            ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlabel("simulated device ms per person")
        ax.set_ylabel(label)
        ax.set_title(chip, fontsize=10)
        ax.grid(True, alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"INT8, FP32 layers: {k}")
               for k, c in colours.items()] + [plt.Line2D([], [], marker="s", ls="", color=c, label=k)
                                               for k, c in floats.items()]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def auto_plot_chips(choices: dict) -> list[str]:
    """The chips whose auto search has a trial to draw."""
    return [c for c in sorted(choices) if any(t["ms"] and t["fidelity"] is not None for t in choices[c]["trials"])]


def _int8_label(t: dict) -> str:
    """An INT8 trial on the plot: its calibration tools and float layers ('st', '+8', 'bc+4'), 'int8' for none."""
    tools = "+".join({"search_threshold": "st"}.get(x, x) for x in t.get("tools") or [])
    layers = f"+{t['float_layers']}" if t["float_layers"] else ""
    return (tools + layers) or "int8"


def auto_plot(plt, choices: dict, measure: str, unit: str, path: Path) -> bool:
    """Each chip's --precision auto trials (bmpose.convert.auto): fidelity against simulated ms, floats as
    squares, INT8 trials labelled by their float layers, the target as a line and the winner ringed."""
    chips = auto_plot_chips(choices)
    if not chips:
        return False
    fig, axes = plt.subplots(1, len(chips), figsize=(5.2 * len(chips), 3.8), squeeze=False)
    for ax, chip in zip(axes[0], chips):
        choice = choices[chip]
        for t in (t for t in choice["trials"] if t["ms"] and t["fidelity"] is not None):
            float_ = t["precision"] != "int8"
            ax.scatter(t["ms"], t["fidelity"], marker="s" if float_ else "o",
                       color="tab:purple" if float_ else ("tab:green" if t["meets"] else "tab:red"))
            ax.annotate(t["precision"].upper() if float_ else _int8_label(t), (t["ms"], t["fidelity"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
            if t["variant"] == choice["winner"]:
                ax.scatter(t["ms"], t["fidelity"], s=160, facecolors="none", edgecolors="black")
        ax.axhline(choice["target"], color="tab:green", ls="--", lw=0.8)
        ax.set_xlabel(f"simulated device {unit}")
        ax.set_ylabel(measure)
        ax.set_title(f"{chip}: chose {choice['winner']}", fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
    return True


def _layer_plot(plt, rows: list[dict], title: str, tol: float, path: Path) -> None:
    """Cosine of every layer (program order) vs the top FP32 MLIR; FP32 layers in red; the heatmap tolerance."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(rows))
    cos = np.array([r["cosine"] for r in rows])
    f32 = np.array([r["quant"] == "F32" for r in rows])
    quant = [r["quant"] for r in rows if r["quant"] not in ("F32", "")]
    mode = max(set(quant), key=quant.count) if quant else "quantised"   # INT8, F16, BF16
    ax.plot(x, cos, "-", color="#999", lw=0.8)
    ax.scatter(x[~f32], cos[~f32], s=10, label=f"{mode} layer", color="#1f77b4")
    ax.scatter(x[f32], cos[f32], s=18, label="F32 layer", color="#d62728")
    ax.axhline(tol, color="#2ca02c", ls="--", lw=0.8, label="heatmap tolerance")
    lo = min(float(cos.min()), tol)   # the scale of what there is to see: 0.9 for INT8, 0.99995 for FP16
    ax.set_ylim(max(0.0, lo - 0.25 * (1 - lo)), 1 + 0.05 * (1 - lo))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("layer (program order)")
    ax.set_ylabel("cosine vs top FP32 MLIR")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _test_crop(cfg, build_dir: Path):
    """The build's test input (normalised) back to a uint8 RGB picture, for the heatmap figure."""
    try:
        with np.load(build_dir / f"{cfg.name}_in_f32.npz") as z:
            x = z[z.files[0]][0]
    except (OSError, KeyError, IndexError):
        return None
    img = x.transpose(1, 2, 0) * np.array(cfg.std) + np.array(cfg.mean)   # network channel order (RGB)
    return np.clip(img, 0, 255).astype(np.uint8)
