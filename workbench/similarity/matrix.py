"""Layer-by-layer similarity of two models over a dataset, streamed over batches."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ..data import ImageDataset, Loader
from ..probe import resolve_names, run_with_cache
from .cka import flatten_examples, gram_linear, hsic_unbiased

MEASURES = ("minibatch_cka",)


@torch.no_grad()
def similarity_matrix(model_a: nn.Module, model_b: nn.Module, data: ImageDataset, layers_a: Sequence[str] | None = None,
                      layers_b: Sequence[str] | None = None, measure: str = "minibatch_cka", batch_size: int = 256,
                      max_examples: int | None = None, device: torch.device | str | None = None) -> pd.DataFrame:
    """Linear CKA between every layer of ``model_a`` and every layer of ``model_b``.

    Each batch contributes unbiased HSIC estimates (Nguyen et al. 2021), so memory stays at one
    batch's Gram matrices however large ``data`` is. The Gram products run in float32 (they are
    nearly all of the work); centring and accumulation run in float64. Against a float64 Gram the
    values differ by less than 1e-5 (tested). Both models run in eval mode; their
    train flags are restored.

    Returns:
        A DataFrame indexed by ``layers_a`` with columns ``layers_b``.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    if batch_size < 4:
        raise ValueError(f"batch_size must be at least 4 for the unbiased HSIC estimator, got {batch_size}")
    layers_a = resolve_names(model_a, layers_a)
    layers_b = resolve_names(model_b, layers_b)
    dev = torch.device(device) if device is not None else next(model_a.parameters()).device
    data = data.subset(max_examples) if max_examples else data
    loader = Loader(data, batch_size=batch_size, shuffle=False, device=dev)
    na, nb = len(layers_a), len(layers_b)
    xy = torch.zeros(na, nb, dtype=torch.float64)
    xx = torch.zeros(na, dtype=torch.float64)
    yy = torch.zeros(nb, dtype=torch.float64)
    flags = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    try:
        for x, _ in loader:
            if len(x) < 4:  # a last batch too small for the unbiased estimator adds nothing
                continue
            _, ca = run_with_cache(model_a, x, layers_a)
            _, cb = run_with_cache(model_b, x, layers_b)
            # the Gram products are the cost: float32 there, centring and sums in float64
            ka = [gram_linear(flatten_examples(ca[n]).float()).double() for n in layers_a]
            kb = [gram_linear(flatten_examples(cb[n]).float()).double() for n in layers_b]
            for i, k in enumerate(ka):
                xx[i] += hsic_unbiased(k, k).cpu()
                for j, l in enumerate(kb):
                    xy[i, j] += hsic_unbiased(k, l).cpu()
            for j, l in enumerate(kb):
                yy[j] += hsic_unbiased(l, l).cpu()
    finally:
        model_a.train(flags[0])
        model_b.train(flags[1])
    den = torch.sqrt((xx[:, None] * yy[None, :]).clamp_min(0))
    values = torch.where(den > 0, xy / den.clamp_min(1e-300), torch.zeros_like(xy))
    return pd.DataFrame(values.numpy(), index=list(layers_a), columns=list(layers_b))
