"""`bmpose fixture`: deterministic random-init checkpoints, so every stage runs with no download.

The weights are random but not degenerate: convolutions get Kaiming-normal weights, and every BatchNorm gets
random affine parameters AND running statistics measured on seeded, image-like inputs. mmpose's own init
leaves BN at mean 0 / var 1 / weight 1 / bias 0, an identity that would let a parity test pass even with BN
folding broken; measured statistics are far from identity yet keep activations at a sane scale through ~50
layers, so absolute tolerances (1e-4) mean what they would for a trained model.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from bmpose.config import mmpose_config_inputs
from bmpose.weights.model import build_untrained, save_checkpoint
from bmpose.manifest import locked, up_to_date, write_manifest

SEED = 0
RECIPE = "kaiming-conv+random-bn-affine+measured-bn-stats+scaled-head/v1"  # bump to regenerate every fixture
CALIB_IMAGES = 8
HEATMAP_STD = 0.25


def realistic_inputs(cfg, n: int, seed: int = SEED) -> np.ndarray:
    """n seeded image-like inputs, normalised as the model expects: float32 [n,3,H,W].

    Smooth colour blobs plus pixel noise, as uint8 in the network's channel order, then (x - mean) / std:
    the same value range and spatial correlation as real crops, without reading any data files.
    """
    import cv2

    h, w = cfg.input_hw
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, h, w), np.float32)
    for i in range(n):
        coarse = rng.uniform(0, 255, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 12, size=img.shape), 0, 255).round()
        out[i] = ((img - np.float32(cfg.mean)) / np.float32(cfg.std)).transpose(2, 0, 1)
    return out


def randomise(model, cfg, seed: int = SEED) -> None:
    """Deterministic weights for `model` (see the module docstring)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for conv in convs:
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if conv.bias is not None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.05)
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)        # U(0.5, 1.5)
            bn.bias.copy_((torch.rand(bn.bias.shape, generator=gen) - 0.5) * 0.4)    # U(-0.2, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        x = torch.from_numpy(realistic_inputs(cfg, CALIB_IMAGES, seed + 1))
        model.train()
        model(x, None, mode="tensor")
        model.eval()
        # Scale the final layer so heatmaps spread about as a trained model's do (std ~0.25, peaks ~1),
        # not O(10): an absolute tolerance then means the same as it will on real weights. SimCC (RTMCCHead):
        # its two final linear layers likewise, since it is trained towards gaussians of peak 1 (SimCCLabel,
        # normalize=False); as initialised its vectors span +-11.
        out = model(x, None, mode="tensor")
        finals = [(convs[-1], out)] if not isinstance(out, (tuple, list)) else \
            [(model.head.cls_x, out[0]), (model.head.cls_y, out[1])]
        for final, y in finals:
            final.weight.mul_(HEATMAP_STD / y.std())
            if final.bias is not None:
                final.bias.zero_()
        for bn in norms:
            bn.momentum = 0.1  # mmpose's value, for anyone fine-tuning from the fixture
            bn.num_batches_tracked.zero_()


def make_fixture(cfg, force: bool = False) -> Path:
    """Write (or reuse) artifacts/<name>/checkpoint/fixture_random.pth and its manifest; return the path."""
    import torch

    path = cfg.layout.fixture_checkpoint()
    out_dir = path.parent
    inputs = mmpose_config_inputs(cfg.mmpose_config)
    options = {"model": cfg.name, "seed": SEED, "recipe": RECIPE}
    with locked(out_dir):
        if not force and up_to_date(out_dir, inputs, options):
            return path
        torch.manual_seed(SEED)  # mmpose's constructors draw default inits from the global generator
        model = build_untrained(cfg)
        randomise(model, cfg, SEED)
        meta = {
            "bmpose_fixture": {"model": cfg.name, "seed": SEED, "recipe": RECIPE,
                               "note": "random weights, not trained: for pipeline tests only"},
            "config": cfg.mmpose_config.name,
            "mmpose_version": metadata.version("mmpose"),
            "torch_version": torch.__version__,
        }
        save_checkpoint(model.state_dict(), path, meta)
        stats = [float(m.running_var.mean()) for m in model.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        write_manifest(out_dir, stage="fixture", inputs=inputs, options=options, outputs=[path.name],
                       checks={"bn_layers": len(stats), "bn_running_var_mean_min": min(stats),
                               "bn_running_var_mean_max": max(stats),
                               "params": sum(p.numel() for p in model.parameters())})
    print(f"fixture: wrote {path}")
    return path
