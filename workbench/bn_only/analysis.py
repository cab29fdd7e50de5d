"""How BatchNorm uses random features: near-zero gammas and switched-off channels."""
from __future__ import annotations

from typing import Iterable

import pandas as pd
import torch
from torch import nn

from ..data import ImageDataset, Loader
from ..probe import hooks
from .policies import batchnorm_modules

DEFAULT_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def gammas(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{batchnorm layer name: gamma}`` (detached, on the CPU)."""
    return {n: m.weight.detach().float().cpu() for n, m in batchnorm_modules(model).items()}


def gamma_fractions(model: nn.Module, thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Fraction of BatchNorm channels with ``|gamma| < t`` for each threshold, per layer and overall.

    Returns a long table: ``layer`` (``"all"`` for the whole network), ``threshold``,
    ``channels``, ``fraction``.
    """
    g = gammas(model)
    if not g:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer")
    rows = []
    everything = torch.cat(list(g.values())).abs()
    for t in thresholds:
        rows.append({"layer": "all", "threshold": t, "channels": len(everything),
                     "fraction": float((everything < t).float().mean())})
        for name, v in g.items():
            rows.append({"layer": name, "threshold": t, "channels": len(v), "fraction": float((v.abs() < t).float().mean())})
    return pd.DataFrame(rows)


def relu_outputs(model: nn.Module) -> list[str]:
    """Module names whose outputs are post-ReLU feature maps (stem, each block's two ReLUs)."""
    names = [n for n, _ in model.named_modules() if n.endswith(("hook_relu1", "hook_out"))]
    if "stem" in dict(model.named_modules()):
        names.insert(0, "stem")
    if not names:
        raise ValueError(f"{type(model).__name__} names no post-ReLU outputs (hook_relu1/hook_out hook points)")
    return names


@torch.no_grad()
def disabled_features(model: nn.Module, data: ImageDataset, zero_fraction: float = 0.99, batch_size: int = 500,
                      max_examples: int | None = 2000, names: list[str] | None = None) -> pd.DataFrame:
    """Fraction of post-ReLU channels that are (almost) always zero on ``data``.

    A channel counts as disabled when its output is exactly zero at no less than
    ``zero_fraction`` of all (example, position) places. Activations are streamed
    over batches: memory stays at one batch. The model's train/eval flag is restored.

    Returns:
        One row per post-ReLU layer: ``layer``, ``channels``, ``disabled``, ``fraction``,
        and a final row ``layer="all"``.
    """
    if not 0 < zero_fraction <= 1:
        raise ValueError(f"zero_fraction must lie in (0, 1], got {zero_fraction}")
    names = names or relu_outputs(model)
    data = data.subset(max_examples) if max_examples else data
    dev = next(model.parameters()).device
    loader = Loader(data, batch_size=batch_size, shuffle=False, device=dev)
    zeros: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make(name):
        def fn(_m, _i, out):  # out: [batch, channels, h, w]
            z = (out == 0).sum(dim=tuple(d for d in range(out.ndim) if d != 1)).double()
            zeros[name] = zeros.get(name, 0) + z
            counts[name] = counts.get(name, 0) + out.numel() // out.shape[1]
        return fn

    was = model.training
    model.eval()
    try:
        with hooks(model, {n: make(n) for n in names}):
            for x, _ in loader:
                model(x)
    finally:
        model.train(was)
    rows = []
    for n in names:
        frac_zero = zeros[n] / counts[n]
        disabled = int((frac_zero >= zero_fraction).sum())
        rows.append({"layer": n, "channels": len(frac_zero), "disabled": disabled, "fraction": disabled / len(frac_zero)})
    total_c = sum(r["channels"] for r in rows)
    total_d = sum(r["disabled"] for r in rows)
    rows.append({"layer": "all", "channels": total_c, "disabled": total_d, "fraction": total_d / max(total_c, 1)})
    return pd.DataFrame(rows)


def parameter_table(depths: Iterable[int] = (14, 20, 32, 56, 110, 218, 434, 866), width: int = 16,
                    num_classes: int = 10) -> pd.DataFrame:
    """Parameter counts of the CIFAR ResNet family: all, BatchNorm only, output layer.

    Models are built on the ``meta`` device, so even ResNet-866 costs no memory.
    """
    from ..models import count_parameters, create_model

    rows = []
    for d in depths:
        with torch.device("meta"):
            m = create_model("resnet_cifar", depth=d, width=width, num_classes=num_classes)
        bn = sum(p.numel() for mod in batchnorm_modules(m).values() for p in mod.parameters())
        out = sum(p.numel() for p in m.fc.parameters())
        total = count_parameters(m)
        rows.append({"model": f"resnet{d}", "depth": d, "total": total, "bn_only": bn, "output_layer": out,
                     "bn_fraction": bn / total})
    return pd.DataFrame(rows)
