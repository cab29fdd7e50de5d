"""Which parameters train: BatchNorm only, everything, or equally many random weights.

Frankle, Schwab & Morcos, *Training BatchNorm and Only BatchNorm: On the Expressive
Power of Random Features in CNNs*, ICLR 2021, https://arxiv.org/abs/2003.00152.

With every convolution frozen at its random initialization, a BatchNorm layer
computes, per channel ``c``::

    y_c = gamma_c * (x_c - mean_c) / sqrt(var_c + eps) + beta_c

so training only ``gamma`` and ``beta`` can rescale, shift, or (with ``gamma`` near 0)
switch off each random feature. The controls train the same number of randomly
chosen convolution weights instead: ``k`` per output channel (``k = 2`` matches the
BatchNorm count, because each convolution's output channel feeds one BatchNorm
channel with two parameters), or the same count anywhere.

The output layer: the paper's abstract describes the setting as training only
gamma and beta "and freezing all weights at their random initializations"; the
output layer's weights are among them, so the headline numbers correspond to
``train_output=False`` (the default here). The open_lth code base the paper used
has a separate switch for freezing the output layer, and ``train_output=True``
adds the output layer (weights and bias) to any policy; the notebook shows both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

POLICIES = ("bn_only", "full", "random_per_channel", "random_anywhere")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class PolicySummary:
    """What :func:`configure` set up.

    Attributes:
        policy, train_output, k, seed: the arguments.
        trainable: the number of parameter entries that will change in training.
        total: all parameter entries.
        params: names of the parameter tensors that train (for ``fit(params=...)``).
        masks: ``{name: 0/1 tensor}`` for partly trained tensors (for ``fit(grad_masks=...)``).
        per_layer: one row per parameter tensor: name, kind, entries, trainable entries.
    """

    policy: str
    train_output: bool
    k: int
    seed: int
    trainable: int
    total: int
    params: list[str]
    masks: dict[str, torch.Tensor] = field(repr=False)
    per_layer: pd.DataFrame = field(repr=False)

    def fit_kwargs(self) -> dict:
        """The arguments that make :func:`workbench.train.fit` respect this policy."""
        return {"params": list(self.params), "grad_masks": dict(self.masks)}

    def __str__(self) -> str:
        return (f"{self.policy}{' + output layer' if self.train_output else ''}: {self.trainable:,} of "
                f"{self.total:,} parameters train ({self.trainable / max(self.total, 1):.3%})")


def batchnorm_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _BN) and m.affine}


def output_layer(model: nn.Module) -> str:
    """Name of the output layer: the last ``nn.Linear`` in module order."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear output layer")
    return linears[-1]


def _weight_layers(model: nn.Module, out_name: str) -> dict[str, torch.Tensor]:
    """Convolution and hidden linear weights: where the random controls choose from."""
    return {f"{n}.weight": m.weight for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and n != out_name}


def _per_channel_masks(weights: dict[str, torch.Tensor], k: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    masks = {}
    for name, w in weights.items():
        out, fan_in = w.shape[0], w[0].numel()
        if k > fan_in:
            raise ValueError(f"k={k} weights per output channel is more than the fan-in of {name} "
                             f"({fan_in} inputs per channel, weight shape {tuple(w.shape)}); use k <= {fan_in}")
        order = torch.rand(out, fan_in, generator=g).argsort(dim=1)[:, :k]  # k distinct inputs per channel
        m = torch.zeros(out, fan_in)
        m.scatter_(1, order, 1.0)
        masks[name] = m.view_as(w).to(device=w.device, dtype=w.dtype)
    return masks


def _anywhere_masks(weights: dict[str, torch.Tensor], count: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    sizes = [w.numel() for w in weights.values()]
    total = sum(sizes)
    if count > total:
        raise ValueError(f"cannot choose {count} weights among {total}")
    flat = torch.zeros(total)
    flat[torch.randperm(total, generator=g)[:count]] = 1.0
    masks, start = {}, 0
    for (name, w), n in zip(weights.items(), sizes):
        masks[name] = flat[start:start + n].view_as(w).to(device=w.device, dtype=w.dtype)
        start += n
    return masks


def configure(model: nn.Module, policy: str, train_output: bool = False, seed: int = 0, k: int = 2) -> PolicySummary:
    """Prepare ``model`` for a training policy and say how many parameters will change.

    Sets ``requires_grad`` on every parameter to match the policy and returns the
    masks for the partly trained weights; pass ``summary.fit_kwargs()`` to
    :func:`workbench.train.fit`, which keeps every masked entry bit-identical.

    Args:
        model: a network with BatchNorm layers (for ``bn_only``) and a final ``nn.Linear``.
        policy: ``"bn_only"`` (gamma and beta of every BatchNorm, stem and shortcuts
            included), ``"full"``, ``"random_per_channel"`` (``k`` random weights per output
            channel of every convolution and hidden linear layer), or ``"random_anywhere"``
            (as many weights as ``random_per_channel``, uniformly over those layers).
            Under the random policies BatchNorm's affine parameters stay frozen.
        train_output: also train the output layer.
        seed: chooses the random weights.
        k: weights per output channel for the random policies.

    Returns:
        :class:`PolicySummary`; ``summary.trainable`` is the number of entries that change.

    Example:
        >>> model = wb.create_model("resnet20")                    # doctest: +SKIP
        >>> s = wb.bn_only.configure(model, "bn_only")              # doctest: +SKIP
        >>> wb.fit(model, train, test, **s.fit_kwargs())            # doctest: +SKIP
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    out_name = output_layer(model)
    out_params = {f"{out_name}.{n}" for n, _ in model.get_submodule(out_name).named_parameters()}
    bns = batchnorm_modules(model)
    bn_params = {f"{n}.{p}" for n, m in bns.items() for p, _ in m.named_parameters()}
    named = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(seed)
    if policy == "bn_only":
        if not bns:
            raise ValueError(f"{type(model).__name__} has no BatchNorm layer with affine parameters, so 'bn_only' "
                             "would train nothing; use a model with BatchNorm (resnet20, plain20, mlp(norm='bn')) "
                             "or another policy")
        chosen = set(bn_params)
    elif policy == "full":
        chosen = set(named)
    else:
        weights = _weight_layers(model, out_name)
        if not weights:
            raise ValueError(f"{type(model).__name__} has no convolution or hidden linear weights to choose from")
        masks = _per_channel_masks(weights, k, g)
        if policy == "random_anywhere":
            masks = _anywhere_masks(weights, int(sum(m.sum() for m in masks.values())), g)
        chosen = set(masks)
    if train_output:
        chosen |= out_params
    for n, p in named.items():
        p.requires_grad_(n in chosen)
    rows = []
    for n, p in named.items():
        kind = "batchnorm" if n in bn_params else "output" if n in out_params else "weight" if p.ndim > 1 else "bias"
        t = int(masks[n].sum()) if n in masks else (p.numel() if n in chosen else 0)
        rows.append({"name": n, "kind": kind, "shape": tuple(p.shape), "entries": p.numel(), "trainable": t})
    table = pd.DataFrame(rows)
    return PolicySummary(policy=policy, train_output=train_output, k=k, seed=seed,
                         trainable=int(table["trainable"].sum()), total=int(table["entries"].sum()),
                         params=[n for n in named if n in chosen], masks=masks, per_layer=table)


def init_batchnorm(model: nn.Module, scheme: str = "pytorch", seed: int = 0) -> nn.Module:
    """Initialize BatchNorm's affine parameters.

    * ``"pytorch"``: gamma = 1, beta = 0 (PyTorch's default).
    * ``"open_lth"``: gamma ~ U[0, 1], beta = 0 (the option in the open_lth code base used by
      Frankle et al.; with frozen random features it starts some channels near "off").
    """
    if scheme not in ("pytorch", "open_lth"):
        raise ValueError(f"unknown BatchNorm init {scheme!r}; choose 'pytorch' or 'open_lth'")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in batchnorm_modules(model).values():
            if scheme == "pytorch":
                m.weight.fill_(1.0)
            else:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g).to(m.weight))
            m.bias.zero_()
    return model


def configure_packed(model: nn.Module, policies: list[str], train_output: bool = False, seed: int = 0,
                     k: int = 2) -> tuple[list[PolicySummary], dict]:
    """Give each member of a :class:`~workbench.models.PackedCifarResNet` its own policy.

    Member ``g`` trains exactly the entries :func:`configure` would train on a lone copy of it
    (the same random choices for the same ``seed``). Returns the per-member summaries and
    the ``fit`` arguments (``params``, ``grad_masks``) for the packed model.
    """
    members = getattr(model, "members", None)
    if members is None or not hasattr(model, "member_masks"):
        raise TypeError(f"configure_packed needs a PackedCifarResNet, got {type(model).__name__}; use configure()")
    if len(policies) != members:
        raise ValueError(f"{members} members but {len(policies)} policies: give one policy per member")
    summaries, total = [], None
    for g, policy in enumerate(policies):
        s = configure(model.member(g), policy, train_output=train_output, seed=seed, k=k)
        summaries.append(s)
        m = model.member_masks(g, s.masks, set(s.params))
        total = m if total is None else {n: total[n] + m[n] for n in m}
    params = [n for n, m in total.items() if bool(m.any())]
    masks = {n: total[n] for n in params if not bool(total[n].all())}
    for n, p in model.named_parameters():
        p.requires_grad_(n in params)
    return summaries, {"params": params, "grad_masks": masks}
