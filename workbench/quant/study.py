"""Studies built on the quantization tool: quantization-aware training over a grid of models and
formats (BitNet b1.58, Pareto-optimal bit widths) and the ternary scales a layer would use."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..data import ImageDataset
from ..train import TrainResult, model_fingerprint, train_model
from .formats import TernaryFormat
from .layers import QAT, cost, quant_layers, resolve_config
from .nas import RandomArch
from .search import RandomFormats

FLOAT = "float"


def qat_compare(name: str, variants: Mapping[str, Mapping], configs: Sequence[str] | Mapping[str, Any],
                train: ImageDataset, test: ImageDataset, *, seeds: Sequence[int] = (0,),
                finetune: Mapping[str, Any] | None = None, progress: bool = True, **fit_kwargs) -> tuple[pd.DataFrame, dict[tuple[str, str, int], TrainResult]]:
    """Train registry model ``name`` once per variant, config and seed, with one recipe for all.

    Args:
        name: a registered model (``"mlp"``, ``"resnet_cifar"``, ...).
        variants: a label per set of ``model_kwargs``, e.g. ``{"1x": {"width": 16}, "2x": {"width": 32}}``.
        configs: ``"float"`` (ordinary training) or a :func:`~workbench.quant.quantize` config trained
            with :class:`~workbench.quant.QAT` (``"w1.58a8"``, ``"w4a4"``, ...); or a dict from a label
            to such a config, e.g. ``{"b1.58 median": ("ternary_median", "uint8_asym")}``.
        train, test, seeds, **fit_kwargs: as :func:`workbench.train.train_model`; every run of the grid
            gets the same recipe, so budgets are equal. Each run is cached.
        finetune: ``None`` trains every run from scratch. Otherwise each variant and seed first trains
            in float with ``fit_kwargs``, once, and every config (``"float"`` too) continues from those
            weights with ``{**fit_kwargs, **finetune}`` (e.g. ``{"epochs": 1, "lr": 1e-3}``): quantized
            runs spend the last epochs in QAT, the float run the same epochs in float, so the budget
            stays equal. ``seconds`` then counts the fine-tuning only.

    Returns:
        ``(table, runs)``: one row per run (``variant, config, seed, params, weight_mb, gbops, test_acc,
        train_acc, seconds``; ``gbops``: giga bit-operations of one image's forward, a float layer at 32 bits) and the :class:`TrainResult` of each keyed by ``(variant, config, seed)``.
    """
    from tqdm.auto import tqdm

    if not variants:
        raise ValueError("qat_compare needs at least one variant, e.g. {'1x': {'width': 16}}")
    if not configs:
        raise ValueError("qat_compare needs at least one config, e.g. ['float', 'w1.58a8']")
    if not isinstance(configs, Mapping):
        bad = [c for c in configs if not isinstance(c, str)]
        if bad:
            raise ValueError(f"qat_compare: label the config {bad[0]!r} by passing configs as a dict, "
                             "e.g. {'b1.58 median': ('ternary_median', 'uint8_asym')}")
        configs = {c: c for c in configs}
    quantized = [c for c in configs.values() if c != FLOAT]
    if quantized:  # fail before any training on a config the model cannot take
        from ..models import create_model
        probe = create_model(name, **{"num_classes": train.num_classes, "in_chans": train.shape[0],
                                      **next(iter(variants.values()))})
        for config in quantized:
            resolve_config(probe, config)
    if finetune is not None and ("algorithms" in finetune or "algorithms" in fit_kwargs):
        raise ValueError("qat_compare adds the QAT algorithm itself; pass no algorithms= to it")
    grid = [(v, c, s) for v in variants for c in configs for s in seeds]
    rows, runs, starts = [], {}, {}
    bar = tqdm(grid, desc="runs", disable=not progress)
    for variant, config, seed in bar:
        bar.set_postfix(variant=variant, config=config, seed=seed)
        algorithms = [] if configs[config] == FLOAT else [QAT(configs[config])]
        if finetune is not None and (variant, seed) not in starts:  # one float run (cached) per variant and seed
            base = train_model(name, train, test, model_kwargs=dict(variants[variant]), seed=seed,
                               progress=False, **fit_kwargs).model
            starts[(variant, seed)] = dict(setup=_load_weights(base.state_dict()),
                                           setup_key=("from float weights", model_fingerprint(base)),
                                           **{**fit_kwargs, **finetune})
        res = train_model(name, train, test, model_kwargs=dict(variants[variant]), seed=seed,
                          algorithms=algorithms, progress=False, **starts.get((variant, seed), fit_kwargs))
        c = cost(res.model, train.normalize(train.images[:1]))
        rows.append({"variant": variant, "config": config, "seed": seed,
                     "params": sum(p.numel() for p in res.model.parameters()),
                     "weight_mb": c.attrs["weight_mb"], "gbops": c.attrs["gbops"], "test_acc": res.test_acc, "train_acc": res.train_acc,
                     "seconds": float(res.history["seconds"].iloc[-1])})
        runs[(variant, config, seed)] = res
    return pd.DataFrame(rows), runs


def train_supernet(name: str, start: nn.Module, train: ImageDataset, test: ImageDataset | None, choices, *,
                   config: Any = "w8a8", widths: Sequence[float] | None = None, model_kwargs: Mapping | None = None,
                   seed: int = 0, **fit_kwargs) -> TrainResult:
    """A shared-weight quantized supernet, trained from the float weights of ``start``: registry model
    ``name`` is quantized with ``config`` (:class:`~workbench.quant.QAT`) and before every batch each
    layer takes a format drawn from ``choices`` (:class:`~workbench.quant.RandomFormats`), so that one
    set of weights learns to work under every policy (FLIQS's one-shot supernet, Dotzel et al. 2024,
    https://arxiv.org/abs/2308.03290). Cached like :func:`~workbench.train.train_model`, which gets
    ``train, test, seed, **fit_kwargs``; ``config`` sets the formats the model holds after training
    and its activation quantizers (a layer left float by ``config`` gets none, so give every layer
    a format there). Then :func:`~workbench.quant.policy_search` looks for the best policy in it.

    ``widths`` (a CIFAR ResNet only), e.g. ``(0.5, 0.75, 1.0)``: the architecture is elastic too
    (:class:`~workbench.quant.RandomArch`: a depth and a width ratio per stage drawn before every
    batch), the supernet of SimQ-NAS that :func:`~workbench.quant.joint_search` searches."""
    elastic = [] if widths is None else [RandomArch(widths, seed=seed)]
    return train_model(name, train, test, model_kwargs=dict(model_kwargs or {}), seed=seed,
                       setup=_load_weights(start.state_dict()),
                       setup_key=("from float weights", model_fingerprint(start)),
                       algorithms=[QAT(config), *elastic, RandomFormats(choices, seed=seed)], **fit_kwargs)


def _load_weights(state: Mapping[str, torch.Tensor]):
    def setup(model: nn.Module) -> dict:
        model.load_state_dict(state)
        return {}
    return setup


@torch.no_grad()
def ternary_scales(model: nn.Module) -> pd.DataFrame:
    """For every convolution and linear layer, the two scales b1.58 could divide its weights by:
    ``absmean`` (BitNet b1.58: the mean of ``|W|``) and ``median`` (of ``|W|``, the variant of
    BitNet b1.58 Reloaded), and the share of weights each rounds to zero. A layer quantized by
    :func:`~workbench.quant.quantize` reports its float (latent) weights."""
    rows = []
    for layer in quant_layers(model):
        w = model.get_submodule(layer).weight.detach().float()
        row = {"layer": layer, "weights": w.numel()}
        for rule in ("absmean", "median"):
            fmt = TernaryFormat(rule)
            row[rule] = float(fmt.scale_of(w))
            row[f"zeros_{rule}"] = float((fmt.quantize(w) == 0).float().mean())
        rows.append(row)
    if not rows:
        raise ValueError("ternary_scales found no Conv2d or Linear layer in the model")
    return pd.DataFrame(rows)
