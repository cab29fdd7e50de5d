"""Where a model looks: captum attributions as per-pixel maps.

Kokhlikyan et al., *Captum: A unified and generic model interpretability library for
PyTorch*, https://arxiv.org/abs/2009.07896. Integrated Gradients (Sundararajan et al.
2017, https://arxiv.org/abs/1703.01365) integrates the gradient along the straight
line from a baseline (here the all-zero normalized image, the dataset mean) to the
input; Saliency is the absolute gradient.
"""
from __future__ import annotations

import torch
from torch import nn

METHODS = ("integrated_gradients", "saliency")


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None,
              method: str = "integrated_gradients", n_steps: int = 32) -> torch.Tensor:
    """Per-pixel attribution maps ``[batch, H, W]`` (absolute values summed over channels, each map scaled to max 1).

    Args:
        model: a classifier; evaluated in eval mode (its train flag is restored).
        x: normalized images ``[batch, C, H, W]``.
        target: the class to explain per image (default: the model's prediction).
        method: ``"integrated_gradients"`` or ``"saliency"``.
        n_steps: integration steps for Integrated Gradients.
    """
    from captum.attr import IntegratedGradients, Saliency

    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    was = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(1)
        if method == "saliency":
            attr = Saliency(model).attribute(x, target=target, abs=True)
        else:
            attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                        n_steps=n_steps)
    finally:
        model.train(was)
    maps = attr.detach().abs().sum(1)  # [batch, H, W]
    return maps / maps.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
