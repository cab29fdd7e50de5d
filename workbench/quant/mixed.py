"""Mixed precision: the cost of each layer's options, allocation under a budget by integer programming,
brute force for checking it, and the Pareto frontier.

The allocation problem (as in ZeroQ's Pareto search and Hubara et al.'s integer program, arXiv
2006.10518 section 4): each layer ``l`` picks one option ``o`` (a format), with a loss ``s[l, o]``
(sensitivity, or the accuracy it costs) and a size ``c[l, o]`` (bits of weights, or bit-operations);
minimize ``sum s`` subject to ``sum c <= budget``. As a binary program: ``x[l, o]`` in {0, 1},
``sum_o x[l, o] = 1`` for each layer, solved exactly by HiGHS through ``scipy.optimize.milp``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from .._allocate import choose, choose_brute_force
from .formats import get_format
from .layers import cost, quant_layers, quantize

__all__ = ["option_costs", "allocate", "allocate_brute_force", "policy_cost", "pareto_front", "dominators"]


def option_costs(model: nn.Module, formats: Sequence[str], metric: str = "weight_bits", acts=None,
                 layers: list[str] | None = None) -> pd.DataFrame:
    """``[layer x format]`` table of each layer's ``metric`` (``"weight_bits"`` or ``"bops"``) when its
    weights take that format (activations ``acts``, float when ``None``)."""
    if metric not in ("weight_bits", "bops"):
        raise ValueError(f"metric is 'weight_bits' or 'bops', got {metric!r}")
    names = quant_layers(model) if layers is None else list(layers)
    cols = {}
    for fmt in formats:
        f = get_format(fmt)
        c = cost(quantize(model, {"default": None, **{n: (f, acts) for n in names}})).set_index("layer")
        cols[f.name if f is not None else "fp32"] = c.loc[names, metric].astype(float)
    return pd.DataFrame(cols)


def _check(loss: pd.DataFrame, size: pd.DataFrame) -> None:
    if list(loss.index) != list(size.index) or list(loss.columns) != list(size.columns):
        raise ValueError("the loss and size tables must have the same layers (rows) and options (columns); "
                         f"got {list(loss.columns)} against {list(size.columns)}")
    if loss.isna().to_numpy().any() or size.isna().to_numpy().any():
        raise ValueError("the loss and size tables hold NaN: give every layer a value for every option")


def allocate(loss: pd.DataFrame, size: pd.DataFrame, budget: float) -> dict[str, str]:
    """The option per layer (``{layer: column}``) that minimizes the summed ``loss`` with the summed
    ``size`` at most ``budget``; exact (mixed-integer linear programming, HiGHS: :mod:`workbench._allocate`,
    shared with :func:`workbench.prune.allocate`)."""
    _check(loss, size)
    return {layer: loss.columns[j] for layer, j in zip(loss.index, choose(loss, size, budget))}


def allocate_brute_force(loss: pd.DataFrame, size: pd.DataFrame, budget: float) -> dict[str, str]:
    """The same as :func:`allocate` by trying every combination (options ** layers; a few layers only)."""
    _check(loss, size)
    return {layer: loss.columns[j] for layer, j in zip(loss.index, choose_brute_force(loss, size, budget))}


def policy_cost(table: pd.DataFrame, policy: Mapping[str, str]) -> float:
    """The sum over layers of ``table[layer, policy[layer]]``."""
    return float(sum(table.loc[layer, opt] for layer, opt in policy.items()))


def pareto_front(df: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """A boolean mask of the rows of ``df`` on the Pareto frontier: no other row has a ``cost`` as
    low or lower and a ``score`` as high or higher, with one of the two strictly better."""
    _columns(df, cost, score)
    c, s = df[cost].to_numpy(float), df[score].to_numpy(float)
    keep = np.ones(len(df), bool)
    for i in range(len(df)):
        dominated = (c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))
        keep[i] = not dominated.any()
    return pd.Series(keep, index=df.index, name="pareto")


def _columns(df: pd.DataFrame, *cols: str) -> None:
    for col in cols:
        if col not in df:
            raise ValueError(f"no column {col!r}; columns are {list(df.columns)}")


def dominators(df: pd.DataFrame, cost: str, score: str, among) -> pd.Series:
    """For each row of ``df``, the row among ``among`` (a boolean mask over ``df``) that beats it: a
    ``score`` strictly higher at a ``cost`` no higher, the highest such score (``None`` where no row of
    ``among`` beats it). The question of Abdolrashidi et al. 2021 (https://arxiv.org/abs/2105.03536):
    is every float or 8-bit model beaten by a 4-bit one that costs no more?"""
    _columns(df, cost, score)
    among = pd.Series(among, index=df.index).astype(bool)
    c, s = df[cost].to_numpy(float), df[score].to_numpy(float)
    cand = np.flatnonzero(among.to_numpy())
    out = []
    for i in range(len(df)):
        beats = cand[(c[cand] <= c[i]) & (s[cand] > s[i])]
        out.append(df.index[beats[np.argmax(s[beats])]] if len(beats) else None)
    return pd.Series(out, index=df.index, name="beaten_by", dtype=object)


def hypervolume(df: pd.DataFrame, cost: str, score: str, ref_cost: float) -> float:
    """The area of the (cost, score) plane the rows of ``df`` dominate up to ``ref_cost`` and down to a
    score of 0: the union of the rectangles ``[cost_i, ref_cost] x [0, score_i]``. One number for a
    whole front (larger is better); rows costing more than ``ref_cost`` add nothing."""
    _columns(df, cost, score)
    pts = sorted(zip(df[cost].to_numpy(float), df[score].to_numpy(float)))
    area, best = 0.0, 0.0
    for i, (c, s) in enumerate(pts):  # sweep from cheap to dear: each strip's height is the best score so far
        if c >= ref_cost:
            break
        best = max(best, s)
        right = min(pts[i + 1][0], ref_cost) if i + 1 < len(pts) else ref_cost
        area += (right - c) * best
    return float(area)
