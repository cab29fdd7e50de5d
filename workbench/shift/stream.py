"""Continual test-time adaptation streams: the corruptions one after another, the stream repeated in rounds.

The continual CIFAR-10-C benchmark of CoTTA (Wang et al. 2022, arXiv 2203.13591, section 4.1), which
EcoTTA (Song et al., CVPR 2023, arXiv 2303.01904) follows: a model trained on clean CIFAR-10 meets the 15
corruptions of CIFAR-10-C at severity 5, one after another in a fixed order (:data:`CIFAR10C_ORDER`),
adapting as it goes and never reset. Long-term adaptation repeats that stream in *rounds* with the same
images (long streams are where continual methods are seen to collapse: Press et al. 2023, arXiv 2306.05401,
"RDumb"):

>>> domains = corruption_domains(continual_order(), severity=5, subset=192, seed=0)
>>> rows = run_rounds(wb.shift.Tent(model), domains, rounds=6, batch_size=32, seed=0)
>>> rows.groupby("round").acc.mean()          # does accuracy hold up round after round?

A method that keeps nothing from one batch to the next (:class:`~.tta.NoAdapt`, and
:class:`~.tta.BNAdapt` with ``momentum=0``) predicts every round alike, so :func:`run_rounds` runs it once
and repeats its rows (the test checks that this equals running it round after round).
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd
import torch

from ..data import ImageDataset, list_corruptions, load
from .tta import Adapter, BNAdapt, NoAdapt, evaluate_stream

__all__ = ["CIFAR10C_ORDER", "continual_order", "corruption_domains", "run_rounds"]

CIFAR10C_ORDER: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
"""The 15 corruptions of the continual CIFAR-10-C stream, in the order of CoTTA's and EcoTTA's tables."""


def continual_order(order: tuple[str, ...] | list[str] = CIFAR10C_ORDER) -> list[str]:
    """``order`` without the corruptions :mod:`wb.data` does not make (``frost``: it pastes photographs that
    ship inside the reference package), the rest kept in place: 14 of the paper's 15."""
    known = set(list_corruptions())
    return [c for c in order if c in known]


def corruption_domains(corruptions: list[str] | tuple[str, ...], severity: int = 5, *, dataset: str = "cifar10",
                       split: str = "test", subset: int | None = None, seed: int = 0,
                       device: torch.device | str | None = None) -> dict[str, ImageDataset]:
    """One dataset per corruption, in order: the same ``subset`` images (chosen by ``seed``) under each
    corruption, the corruption's random draws seeded by ``seed`` too, so one seed is one stream."""
    if isinstance(corruptions, str) or not corruptions:
        raise ValueError(f"corruptions is a non-empty list of names (valid: {', '.join(list_corruptions())}), "
                         f"got {corruptions!r}")
    if len(set(corruptions)) != len(corruptions):
        raise ValueError(f"each corruption appears once in a stream, got {list(corruptions)}; repeat the stream "
                         "with run_rounds(..., rounds=n) instead")
    return {c: load(dataset, split, subset=subset, seed=seed, corruption=c, severity=severity,
                    corruption_seed=seed, device=device) for c in corruptions}


def run_rounds(adapter: Adapter, domains: Mapping[str, ImageDataset], rounds: int = 1, *, batch_size: int = 128,
               seed: int = 0) -> pd.DataFrame:
    """Run ``adapter`` over ``domains`` in order, ``rounds`` times, never reset (the same images each round,
    in the same batches): :func:`~.tta.evaluate_stream` over the repeated stream.

    Returns:
        one row per (round, domain): ``method``, ``round`` (1-based), ``domain``, ``position`` (0-based, in
        the whole stream), ``acc``, ``loss``, ``n``, ``steps`` (the adapter's, cumulative).
    """
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds is a whole number >= 1 (how many times the stream repeats), got {rounds!r}")
    if not isinstance(domains, Mapping) or not domains:
        raise ValueError("domains is a non-empty mapping {name: dataset} in stream order, for example "
                         "corruption_domains(continual_order())")
    names = list(domains)
    stateless = isinstance(adapter, NoAdapt) or (isinstance(adapter, BNAdapt) and adapter.momentum == 0)
    runs = 1 if stateless else rounds
    stream = {(r, name): domains[name] for r in range(1, runs + 1) for name in names}
    start = adapter.steps
    df = evaluate_stream(adapter, {f"{r}/{name}": d for (r, name), d in stream.items()}, batch_size, seed=seed)
    df["round"] = [r for r, _ in stream]
    df["domain"] = [name for _, name in stream]
    if stateless and rounds > 1:  # the same predictions every round: repeat the rows, count the steps on
        per_round = adapter.steps - start
        df = pd.concat([df.assign(round=r, steps=df["steps"] + (r - 1) * per_round) for r in range(1, rounds + 1)])
        adapter.steps = start + rounds * per_round
    df["position"] = range(len(df))
    return df[["method", "round", "domain", "position", "acc", "loss", "n", "steps"]].reset_index(drop=True)
