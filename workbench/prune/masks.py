"""Pruning masks as data: ``{parameter name: 0/1 tensor of its shape}``, the criteria that choose
them, and the algorithm of ``wb.fit`` that keeps them applied while the network trains.

What is ours and why: ``torch.nn.utils.prune`` reparametrizes each pruned module (``weight_orig``
and a ``weight_mask`` buffer, the product recomputed in a forward pre-hook), which renames the
state dict's entries and costs a multiply per forward; here a mask zeroes the weights once and
:class:`Masked` keeps them exactly zero through training by masking the gradient (a zero weight with a
zero gradient stays zero under momentum and weight decay), so models, checkpoints and caches keep
their plain layout. The criteria (random uniform and ERK, magnitude per layer and global, SNIP) are a
few lines each on top of that.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..models.count import layer_macs
from ..train.algorithms import GradMask
from ..train.events import State

__all__ = ["prunable", "erk_densities", "random_masks", "magnitude_masks", "snip_masks", "apply_masks",
           "sparsity_report", "Masked"]


def prunable(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The weights pruning acts on, by parameter name: every conv and linear weight (``layers``: only
    those of the named modules)."""
    out = {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if layers is not None:
        wanted = {f"{n}.weight" if not n.endswith(".weight") else n for n in layers}
        unknown = sorted(wanted - set(out))
        if unknown:
            raise ValueError(f"layers {unknown[:4]} are not conv or linear layers of {type(model).__name__}; "
                             f"they are named like {[k[:-7] for k in list(out)[:5]]}")
        out = {n: p for n, p in out.items() if n in wanted}
    if not out:
        raise ValueError(f"{type(model).__name__} has no conv or linear layer to prune")
    return out


def _check_sparsity(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the share of weights removed, in [0, 1): got {sparsity!r} "
                         "(0.9 removes 90% of the weights)")
    return float(sparsity)


def erk_densities(shapes: Mapping[str, Sequence[int]], sparsity: float, power: float = 1.0) -> dict[str, float]:
    """Erdős-Rényi-Kernel layer densities (Evci et al. 2020, as used by Liu et al. 2022's random
    pruning): a layer of shape ``[out, in, kh, kw]`` gets a density proportional to
    ``(out + in + kh + kw) / (out * in * kh * kw)`` (``[out, in]`` for a linear layer), raised to
    ``power``, scaled so the network keeps ``1 - sparsity`` of its weights; a layer the scale would
    make denser than 1 is kept dense and the rest rescaled.
    """
    sparsity = _check_sparsity(sparsity)
    sizes = {n: int(torch.tensor(s).prod()) for n, s in shapes.items()}
    raw = {n: (sum(s) / sizes[n]) ** power for n, s in shapes.items()}
    total, keep = sum(sizes.values()), (1 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        budget = keep - sum(sizes[n] for n in dense)
        eps = budget / sum(raw[n] * sizes[n] for n in raw if n not in dense)
        over = {n for n in raw if n not in dense and eps * raw[n] > 1}
        if not over:
            break
        dense |= over
    out = {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
    assert abs(sum(out[n] * sizes[n] for n in out) - keep) <= 1e-6 * total
    return out


def _keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A 0/1 mask keeping the ``k`` largest scores (ties broken by position, so exactly ``k``)."""
    mask = torch.zeros(scores.numel(), dtype=torch.float32)
    if k > 0:
        idx = torch.sort(scores.flatten().double(), descending=True, stable=True).indices[:k]
        mask[idx] = 1.0
    return mask.view(scores.shape)


def random_masks(model: nn.Module, sparsity: float, distribution: str = "erk", seed: int = 0,
                 layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Random masks: each layer keeps a random ``density`` share of its weights, where the densities are
    ``"uniform"`` (every layer ``1 - sparsity``) or ``"erk"`` (:func:`erk_densities`)."""
    sparsity = _check_sparsity(sparsity)
    params = prunable(model, layers)
    if distribution == "uniform":
        dens = dict.fromkeys(params, 1 - sparsity)
    elif distribution == "erk":
        dens = erk_densities({n: tuple(p.shape) for n, p in params.items()}, sparsity)
    else:
        raise ValueError(f"distribution is 'uniform' or 'erk', got {distribution!r}")
    gen = torch.Generator().manual_seed(seed)
    return {n: _keep_top(torch.rand(p.shape, generator=gen), round(dens[n] * p.numel())) for n, p in params.items()}


def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                    layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Keep the largest weights by magnitude: ``scope="global"`` ranks all chosen weights together (the
    smallest ``round(sparsity * n)`` of the ``n`` go), ``"layer"`` prunes each layer by ``sparsity``."""
    return _by_score(model, {n: p.detach().abs() for n, p in prunable(model, layers).items()}, sparsity, scope)


def snip_masks(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, sparsity: float,
               layers: Sequence[str] | None = None, loss_fn=None) -> dict[str, torch.Tensor]:
    """SNIP (Lee et al. 2019): keep the weights of largest ``|w * dL/dw|`` on one batch, ranked globally.
    The model's gradients are left as they were."""
    if inputs is None or targets is None:
        raise ValueError("SNIP scores weights by their gradient: give a batch (inputs, targets), e.g. "
                         "train.normalize(train.images[:256]), train.labels[:256]")
    params = prunable(model, layers)
    saved = {n: p.grad for n, p in model.named_parameters()}
    was = model.training
    try:
        model.zero_grad(set_to_none=True)
        model.train()
        loss = (loss_fn or nn.functional.cross_entropy)(model(inputs), targets)
        grads = torch.autograd.grad(loss, list(params.values()))
    finally:
        model.train(was)
        for n, p in model.named_parameters():
            p.grad = saved[n]
    scores = {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads)}
    return _by_score(model, scores, sparsity, "global")


def _by_score(model: nn.Module, scores: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    sparsity = _check_sparsity(sparsity)
    if scope == "layer":
        return {n: _keep_top(s, s.numel() - round(sparsity * s.numel())) for n, s in scores.items()}
    if scope != "global":
        raise ValueError(f"scope is 'global' or 'layer', got {scope!r}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = _keep_top(flat, flat.numel() - round(sparsity * flat.numel()))
    out, at = {}, 0
    for n, s in scores.items():
        out[n] = keep[at:at + s.numel()].view(s.shape)
        at += s.numel()
    return out


def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    named = dict(model.named_parameters())
    for n, m in masks.items():
        if n not in named:
            raise ValueError(f"the mask names {n!r}, which is no parameter of {type(model).__name__}; "
                             f"see wb.prune.prunable(model) for the names")
        if tuple(m.shape) != tuple(named[n].shape):
            raise ValueError(f"the mask of {n!r} has shape {tuple(m.shape)}, the weight {tuple(named[n].shape)}")
    return {n: named[n] for n in masks}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the masked weights in place (once; :class:`Masked` keeps them zero while training). Returns ``model``."""
    for n, p in _check_masks(model, masks).items():
        p.mul_(masks[n].to(p))
    return model


def sparsity_report(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None,
                    example: torch.Tensor | None = None) -> pd.DataFrame:
    """Per prunable layer: ``params``, ``kept`` (nonzero, or 1s of ``masks`` when given), ``sparsity``,
    ``macs`` (one image, dense) and ``macs_kept`` (scaled by the layer's density, what a sparse kernel
    would compute). ``attrs`` holds the totals ``params``, ``kept``, ``sparsity``, ``macs``, ``macs_kept``."""
    params = prunable(model)
    if masks is not None:
        _check_masks(model, masks)
    macs = layer_macs(model, example)
    rows = []
    for n, p in params.items():
        kept = int((masks[n] != 0).sum()) if masks is not None and n in masks else int((p != 0).sum())
        layer = n[: -len(".weight")]
        m = int(macs.get(layer, 0))
        rows.append({"layer": layer, "params": p.numel(), "kept": kept, "sparsity": 1 - kept / p.numel(),
                     "macs": m, "macs_kept": m * kept / p.numel()})
    df = pd.DataFrame(rows)
    df.attrs.update(params=int(df.params.sum()), kept=int(df.kept.sum()), sparsity=float(1 - df.kept.sum() / df.params.sum()),
                    macs=int(df.macs.sum()), macs_kept=float(df.macs_kept.sum()))
    return df


def _digest(masks: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for n in sorted(masks):
        h.update(n.encode())
        h.update(masks[n].detach().to(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Masked(GradMask):
    """Sparse training as an algorithm of ``wb.fit``: at ``init`` the masked weights become zero, and they
    stay exactly zero (bit for bit, under momentum and weight decay) because their gradient is masked
    after backward: a zero weight with a zero gradient has a zero momentum and a zero decay term, so
    the optimizer's own (coupled or decoupled) weight decay can stay on, and one fused launch per step
    is all it costs (``GradMask``, which freezes entries at nonzero values, must also fold the decay in).
    The masks' digest is part of the run's configuration, so ``train_model`` caches runs with different
    masks apart; a resume with other masks is refused."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        super().__init__({n: m.detach().float() for n, m in masks.items()})
        self.digest = _digest(self.masks)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "masks": self.digest, "masked": len(self.masks)}

    def on_init(self, state: State) -> None:
        params = _check_masks(state.model, self.masks)
        if not state.trainable:  # fit's default, every parameter that requires a gradient
            state.trainable = {n: p for n, p in state.model.named_parameters() if p.requires_grad}
        apply_masks(state.model, self.masks)
        self.masks = {n: m.to(device=params[n].device, dtype=params[n].dtype) for n, m in self.masks.items()}
        self._pairs = [(params[n], m) for n, m in self.masks.items() if n in state.trainable]

    def on_after_backward(self, state: State) -> None:
        pairs = [(p, m) for p, m in self._pairs if p.grad is not None]
        if pairs:
            torch._foreach_mul_([p.grad for p, _ in pairs], [m for _, m in pairs])
