"""Sparse training from initialization: a registry network, a mask chosen on its initial weights,
and ``wb.fit`` with :class:`~workbench.prune.masks.Masked`, cached like any ``train_model`` run.

:func:`train_sparse` is one run; :func:`sparse_run` is the same run as a record for ``wb.sweep``
(it loads its own data, so it can run on a Ray worker), which is how the random-pruning notebook
lays out its grid of widths x criteria x sparsities x seeds.
"""
from __future__ import annotations

from typing import Any

from ..data import ImageDataset, load
from ..train.cached import train_model
from ..train.trainer import TrainResult
from .masks import Masked, _check_sparsity, random_masks, snip_masks, sparsity_report

__all__ = ["METHODS", "initial_masks", "train_sparse", "sparse_run"]

# how a mask is chosen on the initial weights; "dense" trains without one
METHODS = ("dense", "uniform", "erk", "snip")


def _check_method(method: str, sparsity: float) -> None:
    if method not in METHODS:
        raise ValueError(f"method is one of {METHODS}, got {method!r}")
    if method == "dense" and sparsity:
        raise ValueError(f"a dense run has sparsity 0, got {sparsity!r}: use method 'erk', 'uniform' or 'snip'")
    _check_sparsity(sparsity)


def initial_masks(model, method: str, sparsity: float, train: ImageDataset | None = None, seed: int = 0,
                  snip_batch: int = 256) -> dict | None:
    """The mask ``method`` picks on ``model``'s current (initial) weights: ``"uniform"`` and ``"erk"``
    random masks (seeded by ``seed``), ``"snip"`` on the first ``snip_batch`` images of ``train``,
    ``None`` for ``"dense"``."""
    _check_method(method, sparsity)
    if method == "dense":
        return None
    if method == "snip":
        if train is None:
            raise ValueError("SNIP scores weights by their gradient on training data: pass train=")
        n = min(snip_batch, len(train))
        return snip_masks(model, train.normalize(train.images[:n]), train.labels[:n], sparsity)
    return random_masks(model, sparsity, method, seed=seed)


def train_sparse(name: str, train: ImageDataset, test: ImageDataset | None = None, *, method: str = "erk",
                 sparsity: float = 0.9, seed: int = 0, model_kwargs: dict | None = None, snip_batch: int = 256,
                 **fit_kwargs) -> TrainResult:
    """Build ``name`` with ``seed``, mask it by ``method`` at ``sparsity`` on its initial weights and
    train it sparse (the masked weights stay exactly zero). Cached on all of that by ``train_model``.
    The result's ``masks`` holds the mask (empty for ``"dense"``)."""
    _check_method(method, sparsity)  # bad input fails before any work
    chosen: dict[str, Any] = {}

    def setup(model):
        masks = initial_masks(model, method, sparsity, train, seed=seed, snip_batch=snip_batch)
        chosen["masks"] = masks or {}
        return {"algorithms": [*fit_kwargs.get("algorithms", ()), Masked(masks)]} if masks else {}

    res = train_model(name, train, test, seed=seed, model_kwargs=model_kwargs, setup=setup,
                      setup_key=["sparse", method, float(sparsity), snip_batch if method == "snip" else None],
                      **fit_kwargs)
    res.masks = chosen["masks"]
    return res


def sparse_run(model: str, width: int, method: str, sparsity: float, seed: int, *, dataset: str = "cifar10",
               train_subset: int | None = None, test_subset: int | None = None, **fit_kwargs) -> dict[str, Any]:
    """One configuration of a sparse-training study as a ``wb.sweep`` record: load the data, run
    :func:`train_sparse`, return the test accuracy, the remaining parameters and multiply-adds."""
    train = load(dataset, "train", subset=train_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    res = train_sparse(model, train, test, method=method, sparsity=sparsity, seed=seed,
                       model_kwargs={"width": width}, progress=False, **fit_kwargs)
    report = sparsity_report(res.model.cpu())
    return {"test_acc": res.test_acc, "train_acc": float(res.history["train_acc"].iloc[-1]),
            "params": report.attrs["params"], "kept": report.attrs["kept"],
            "achieved_sparsity": report.attrs["sparsity"], "macs": report.attrs["macs"],
            "macs_kept": report.attrs["macs_kept"], "epochs": int(res.history["epoch"].iloc[-1])}
