"""Layer-adaptive sparsities by joint optimization (Xu, Wang, Geng, Lin, Wu, Li & Lin, ICCV 2023, "Efficient
Joint Optimization of Layer-Adaptive Weight Pruning in Deep Neural Networks", arXiv 2308.10438).

How much of each layer to prune, under one global budget? The paper measures, for every layer and
every candidate sparsity of that layer alone, the *output distortion*: the mean squared change of
the network's logits on a calibration batch when that layer is magnitude-pruned. It observes that
distortions from several layers approximately *add up*, so the best allocation minimizes the sum
of per-layer distortions subject to the total number of pruned weights: a knapsack-like problem
that the paper solves by a dynamic program over layers on a discretized budget.

Here: :func:`layer_distortion` measures the curves, :func:`allocate` solves the knapsack exactly (to the weight),
:func:`joint_distortion` measures a whole allocation at once (to check additivity), and
:func:`adaptive_masks` turns an allocation into per-layer magnitude masks. All ours (a few dozen
lines on the masks of :mod:`workbench.prune.masks`); the paper's own code was not used.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._allocate import choose
from ..cache import cached
from ..train.cached import model_fingerprint
from .masks import _check_sparsity, _keep_top, prunable

__all__ = ["LEVELS", "layer_distortion", "joint_distortion", "allocate", "adaptive_masks", "layer_masks"]

# candidate per-layer sparsities: fine steps where accuracy is fragile (high sparsity)
LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99)


def layer_masks(model: nn.Module, sparsities: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Per-layer magnitude masks: layer ``name`` loses the ``round(s * n)`` smallest of its ``n`` weights."""
    params = prunable(model, [n for n in sparsities])
    out = {}
    for n, p in params.items():
        s = _check_sparsity(sparsities[n])
        out[n] = _keep_top(p.detach().abs(), p.numel() - round(s * p.numel()))
    return out


@torch.no_grad()
def _logits(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])


@torch.no_grad()
def _distortion(model: nn.Module, inputs: torch.Tensor, reference: torch.Tensor, masks: Mapping[str, torch.Tensor],
                batch_size: int) -> float:
    """Mean over examples of the squared logit change when ``masks`` are applied (weights restored after)."""
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in masks}
    try:
        for n, m in masks.items():
            params[n].mul_(m.to(params[n]))
        out = _logits(model, inputs, batch_size)  # [examples, classes]
    finally:
        for n, w in saved.items():
            params[n].copy_(w)
    return float(((out - reference) ** 2).sum(1).mean())


def layer_distortion(model: nn.Module, inputs: torch.Tensor, levels: Sequence[float] = LEVELS,
                     layers: Sequence[str] | None = None, batch_size: int = 256, progress: bool = True,
                     cache: bool = True) -> pd.DataFrame:
    """The output distortion of pruning each layer alone by magnitude at each level.

    Args:
        model: evaluated in eval mode (its mode is restored).
        inputs: a calibration batch, normalized as the model expects (``train.normalize(train.images[:256])``).
        levels: candidate sparsities of one layer; 0 is added when missing.
        cache: keep the curves on disk (``wb.cached``), keyed on the model's weights, the inputs,
            the levels and the layers: one forward pass per layer and level is the expensive step.
    Returns:
        One row per (layer, level): ``layer`` (parameter name), ``sparsity``, ``params``, ``pruned``
        (weights removed) and ``distortion`` (mean squared change of the logits per example).
    """
    levels = sorted({0.0, *(_check_sparsity(s) for s in levels)})
    params = prunable(model, layers)
    if cache:
        key = {"model": model_fingerprint(model), "inputs": inputs.detach().cpu(), "levels": levels,
               "layers": list(params), "batch_size": batch_size}
        rows = cached(lambda: layer_distortion(model, inputs, levels, list(params), batch_size, progress,
                                               cache=False).to_dict("list"), key=key, name="layer_distortion")
        return pd.DataFrame(rows)
    was = model.training
    model.eval()
    try:
        reference = _logits(model, inputs, batch_size)
        rows = []
        bar = tqdm(total=len(params) * (len(levels) - 1), desc="layer distortion", disable=not progress, leave=False)
        for n, p in params.items():
            order = torch.sort(p.detach().abs().flatten().double(), stable=True).indices  # smallest first
            for s in levels:
                k = round(s * p.numel())
                d = 0.0
                if k:
                    mask = torch.ones(p.numel())
                    mask[order[:k]] = 0.0
                    d = _distortion(model, inputs, reference, {n: mask.view(p.shape)}, batch_size)
                    bar.update(1)
                rows.append({"layer": n, "sparsity": s, "params": p.numel(), "pruned": k, "distortion": d})
        bar.close()
    finally:
        model.train(was)
    return pd.DataFrame(rows)


def joint_distortion(model: nn.Module, inputs: torch.Tensor, sparsities: Mapping[str, float],
                     batch_size: int = 256) -> float:
    """The output distortion of pruning every layer of ``sparsities`` at once (compare with the sum of
    the single-layer distortions of :func:`layer_distortion`: the paper's additivity)."""
    was = model.training
    model.eval()
    try:
        reference = _logits(model, inputs, batch_size)
        return _distortion(model, inputs, reference, layer_masks(model, sparsities), batch_size)
    finally:
        model.train(was)


def allocate(curves: pd.DataFrame, sparsity: float) -> dict[str, float]:
    """Per-layer sparsities that minimize the summed distortion while pruning at least ``sparsity`` of
    all the curves' weights (``round(sparsity * total)`` of them), one level of its curve per layer.

    The paper solves this knapsack by a dynamic program over layers on a discretized budget; here it
    is solved exactly, to the weight, as the binary program that :func:`workbench.quant.allocate`
    solves for formats (:mod:`workbench._allocate`: each layer's kept weights are its size, the budget
    is the weights kept overall).

    Raises:
        ValueError: a budget that even the highest level in every layer cannot reach (the message gives
            the most the levels allow), or curves without the columns of :func:`layer_distortion`.
    """
    sparsity = _check_sparsity(sparsity)
    missing = {"layer", "sparsity", "pruned", "params", "distortion"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves need the columns of wb.prune.layer_distortion; missing {sorted(missing)}")
    groups = [(n, g.sort_values("pruned")) for n, g in curves.groupby("layer", sort=False)]
    total = sum(int(g.params.iloc[0]) for _, g in groups)
    need = round(sparsity * total)
    most = sum(int(g.pruned.max()) for _, g in groups)
    if most < need:
        raise ValueError(f"sparsity {sparsity:.4g} needs {need:,} pruned weights, but the levels allow at most "
                         f"{most:,} ({most / total:.2%} overall, every layer at its highest level): add higher "
                         "levels to layer_distortion or lower the sparsity")
    loss = np.full((len(groups), max(len(g) for _, g in groups)), np.nan)
    kept = loss.copy()
    for i, (_, g) in enumerate(groups):
        loss[i, :len(g)] = g.distortion.to_numpy(float)
        kept[i, :len(g)] = (g.params - g.pruned).to_numpy(float)
    picks = choose(loss, kept, total - need)
    return {n: float(g.sparsity.iloc[k]) for (n, g), k in zip(groups, picks)}


def adaptive_masks(model: nn.Module, curves: pd.DataFrame, sparsity: float) -> dict[str, torch.Tensor]:
    """Per-layer magnitude masks at the sparsities :func:`allocate` chooses from ``curves``."""
    return layer_masks(model, allocate(curves, sparsity))
