"""Run the paper's comparison: depths x policies, each training cached."""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from ..data import ImageDataset
from ..train import TrainResult, train_model
from .analysis import gamma_fractions
from .policies import configure, init_batchnorm


def compare(depths: Iterable[int], policies: Iterable[str], train: ImageDataset, test: ImageDataset, *,
            train_output: bool = False, bn_init: str = "pytorch", seed: int = 0, k: int = 2, width: int = 16,
            lr_by_policy: dict[str, float] | None = None, progress: bool = True, **fit_kwargs) -> tuple[pd.DataFrame, dict[tuple[int, str], TrainResult]]:
    """Train a CIFAR ResNet of each depth under each policy; results are cached per run.

    Args:
        depths: ResNet depths (6n+2).
        policies: names from :data:`~workbench.bn_only.POLICIES`.
        train, test: datasets.
        train_output, bn_init, seed, k: see :func:`configure` and :func:`init_batchnorm`.
        lr_by_policy: a learning rate per policy, overriding ``lr`` (short schedules favour a large
            rate when only a few parameters train).
        **fit_kwargs: the training recipe for :func:`workbench.train.fit`.

    Returns:
        ``(table, results)``: one row per run (depth, policy, trainable parameters, accuracies,
        fraction of |gamma| < 0.1, seconds), and the :class:`TrainResult` of each run keyed
        by ``(depth, policy)``.
    """
    from tqdm.auto import tqdm

    runs = [(d, p) for d in depths for p in policies]
    rows, results = [], {}
    bar = tqdm(runs, desc="runs", disable=not progress)
    for depth, policy in bar:
        bar.set_postfix(model=f"resnet{depth}", policy=policy)
        summary_box = {}

        def setup(model, policy=policy):
            init_batchnorm(model, bn_init, seed)
            s = configure(model, policy, train_output=train_output, seed=seed, k=k)
            summary_box["s"] = s
            return s.fit_kwargs()

        key = {"policy": policy, "train_output": train_output, "bn_init": bn_init, "k": k}
        kw = dict(fit_kwargs)
        if lr_by_policy and policy in lr_by_policy:
            kw["lr"] = lr_by_policy[policy]
        res = train_model("resnet_cifar", train, test, model_kwargs={"depth": depth, "width": width}, seed=seed,
                          setup=setup, setup_key=key, progress=False, **kw)
        s = summary_box["s"]
        g = gamma_fractions(res.model, thresholds=(0.1,))
        rows.append({"depth": depth, "policy": policy, "train_output": train_output, "trainable": s.trainable,
                     "lr": kw.get("lr"),
                     "test_acc": res.test_acc, "train_acc": res.train_acc,
                     "gamma_below_0.1": float(g[g.layer == "all"]["fraction"].iloc[0]),
                     "seconds": float(res.history["seconds"].iloc[-1])})
        results[(depth, policy)] = res
    return pd.DataFrame(rows), results
