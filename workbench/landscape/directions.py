"""Directions in weight space: ``{parameter name: tensor}`` dictionaries shaped like the model.

* :func:`random_direction`: Gaussian, filter-normalized (Li, Xu, Taylor, Studer & Goldstein,
  *Visualizing the Loss Landscape of Neural Nets*, NeurIPS 2018): each filter (a row of a
  weight along its first dimension) of the direction gets the norm of the same filter of the
  model, so distances are comparable between networks of different scale. One-dimensional
  parameters (biases, normalization gains) are set to zero by default, as in the paper's code.
* :func:`interpolation`: ``theta_b - theta_a``: moving 1 along it from model a reaches model b.
* :func:`pca_directions`: the top principal components of a training trajectory about its end.
* :func:`hessian_directions`: the top Hessian eigenvectors.

Directions cover parameters only; buffers (BatchNorm running statistics) stay the model's.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

Direction = dict  # {parameter name: tensor}


def _named(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters()}


def check_direction(model: nn.Module, direction: Mapping[str, torch.Tensor], what: str = "direction") -> None:
    """Raise a ``ValueError`` naming the first mismatch between ``direction`` and ``model``'s parameters."""
    if not isinstance(direction, Mapping):
        raise ValueError(f"{what} must be a dict {{parameter name: tensor}} (from wb.landscape.random_direction), "
                         f"got {type(direction).__name__}")
    named = _named(model)
    unknown = [k for k in direction if k not in named]
    if unknown:
        raise ValueError(f"{what} names {len(unknown)} parameters the model does not have, e.g. {unknown[:3]}; "
                         f"was it made for another model? Build it from this model")
    missing = [k for k in named if k not in direction]
    if missing:
        raise ValueError(f"{what} lacks {len(missing)} of the model's parameters, e.g. {missing[:3]}; "
                         "give every parameter an entry (zeros to keep one fixed)")
    for k, d in direction.items():
        if not isinstance(d, torch.Tensor) or d.shape != named[k].shape:
            raise ValueError(f"{what}[{k!r}] has shape {tuple(getattr(d, 'shape', ()))} but the parameter has "
                             f"shape {tuple(named[k].shape)}: the direction does not match this model")
        if not torch.isfinite(d).all():
            raise ValueError(f"{what}[{k!r}] has non-finite entries")


def norm(direction: Mapping[str, torch.Tensor]) -> float:
    """The Euclidean norm of a direction over all its entries."""
    return float(torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values())))


def filter_normalize(direction: Mapping[str, torch.Tensor], model: nn.Module, ignore: str | None = "biasbn") -> Direction:
    """Rescale each filter of ``direction`` to the norm of the model's filter (Li et al. 2018).

    ``ignore="biasbn"`` zeroes one-dimensional entries (biases, BatchNorm/LayerNorm gains);
    ``ignore=None`` sets them to the model's own values (the paper code's other option).
    """
    if ignore not in ("biasbn", None):
        raise ValueError(f"ignore must be 'biasbn' or None, got {ignore!r}")
    check_direction(model, direction)
    named = _named(model)
    out = {}
    for k, d in direction.items():
        w = named[k]
        if w.dim() <= 1:
            out[k] = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
            continue
        d = d.to(w)
        dn = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-12)
        wn = w.reshape(len(w), -1).norm(dim=1)
        out[k] = d * (wn / dn).view(-1, *([1] * (d.dim() - 1)))
    return out


def random_direction(model: nn.Module, seed: int = 0, normalize: str | None = "filter",
                     ignore: str | None = "biasbn") -> Direction:
    """A Gaussian direction (zero mean), filter-normalized by default (``normalize=None``: raw)."""
    if normalize not in ("filter", None):
        raise ValueError(f"normalize must be 'filter' or None, got {normalize!r}")
    gen = torch.Generator().manual_seed(seed)
    d = {n: torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p) for n, p in _named(model).items()}
    return filter_normalize(d, model, ignore) if normalize == "filter" else d


def interpolation(model_a: nn.Module, model_b: nn.Module) -> Direction:
    """``theta_b - theta_a`` (the two models must have the same parameter names and shapes)."""
    b = _named(model_b)
    a = _named(model_a)
    check_direction(model_a, b, "model_b's parameters")
    return {k: b[k] - a[k] for k in a}


def _flat(params: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    return torch.cat([params[k].detach().reshape(-1).double().cpu() for k in names])


def pca_directions(model: nn.Module, trajectory: Iterable[Mapping[str, torch.Tensor] | nn.Module], k: int = 2
                   ) -> tuple[list[Direction], np.ndarray, np.ndarray]:
    """The top ``k`` principal directions of a trajectory of weights about the final ``model``
    (Li et al. 2018, section 7).

    Args:
        trajectory: state dicts or models saved during training (for example every epoch's
            checkpoint); parameters only are used.

    Returns:
        ``(directions, explained, coords)``: unit-norm directions, the fraction of the
        trajectory's variance each explains, and each snapshot's coordinates ``(n, k)`` along
        them (the path to draw on a landscape).
    """
    names = [n for n, _ in model.named_parameters()]
    end = _flat(_named(model), names)
    rows = []
    for i, snap in enumerate(trajectory):
        sd = _named(snap) if isinstance(snap, nn.Module) else snap
        missing = [n for n in names if n not in sd]
        if missing:
            raise ValueError(f"trajectory[{i}] lacks parameters {missing[:3]}: pass state dicts of this model")
        rows.append(_flat(sd, names) - end)
    if len(rows) < k:
        raise ValueError(f"pca_directions needs at least k={k} snapshots, got {len(rows)}")
    M = torch.stack(rows)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    explained = (S ** 2 / (S ** 2).sum()).numpy()[:k]
    coords = (M @ Vh[:k].T).numpy()
    dirs = []
    shapes = dict(model.named_parameters())
    for v in Vh[:k]:
        d, i = {}, 0
        for n in names:
            p = shapes[n]
            d[n] = v[i:i + p.numel()].view(p.shape).to(p)
            i += p.numel()
        dirs.append(d)
    return dirs, explained, coords


def hessian_directions(model: nn.Module, loss_fn: Callable, batches, k: int = 2, **kwargs
                       ) -> tuple[list[Direction], np.ndarray]:
    """The top ``k`` Hessian eigenvectors (unit norm) and their eigenvalues, over all parameters
    (``kwargs`` go to :func:`workbench.hessian.eigenvalues`; the BatchNorm mode with ``bn=``)."""
    from ..hessian import eigenvalues

    if kwargs.get("params") is not None:
        raise ValueError("hessian_directions works over all trainable parameters; leave params= out")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    res = eigenvalues(model, loss_fn, batches, top_k=k, vectors=True, **kwargs)
    dirs = []
    shapes = dict(model.named_parameters())
    for v in res.vectors:
        d, i = {}, 0
        for n, p in shapes.items():
            if n in names:
                d[n] = v[i:i + p.numel()].view(p.shape).to(p)
                i += p.numel()
            else:
                d[n] = torch.zeros_like(p)
        dirs.append(d)
    return dirs, res.values
