"""One option per layer under a budget: the multiple-choice knapsack that the tools allocating per
layer share (:func:`workbench.quant.mixed.allocate`, a number format per layer under a size budget;
:func:`workbench.prune.adaptive.allocate`, a sparsity per layer under a count of kept weights)::

    minimize  sum_l loss[l, o_l]   subject to   sum_l size[l, o_l] <= budget,   one option o_l per layer l

As a binary program (``x[l, o]`` in {0, 1}, ``sum_o x[l, o] = 1``) it is solved exactly by HiGHS
through ``scipy.optimize.milp`` with a relative gap of 0 (HiGHS stops at 1e-4 of the optimum by
default); :func:`choose_brute_force` tries every combination, to check it on a few layers. A layer
with fewer options than the others marks the missing ones NaN in both tables.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["choose", "choose_brute_force"]


def _tables(loss, size, budget: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s, c = np.asarray(loss, dtype=float), np.asarray(size, dtype=float)
    if s.ndim != 2 or s.shape != c.shape:
        raise ValueError(f"loss and size must be [layers, options] tables of one shape, got {s.shape} and {c.shape}")
    ok = ~(np.isnan(s) | np.isnan(c))
    empty = np.flatnonzero(~ok.any(1))
    if len(empty):
        raise ValueError(f"layer(s) {empty.tolist()} have no option with both a loss and a size: give each layer one")
    smallest = np.where(ok, c, np.inf).min(1).sum()
    if budget < smallest:
        raise ValueError(f"budget {budget:,.0f} is below the smallest possible model ({smallest:,.0f}, every layer at "
                         f"its cheapest option); raise the budget or add a cheaper option")
    return np.where(ok, s, 0.0), np.where(ok, c, 0.0), ok


def choose(loss, size, budget: float) -> np.ndarray:
    """The option index per layer minimizing the summed ``loss`` with the summed ``size`` at most
    ``budget`` (exact). ``loss`` and ``size`` are ``[layers, options]``; NaN marks an option a layer lacks."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    s, c, ok = _tables(loss, size, budget)
    n_l, n_o = s.shape
    one_each = np.kron(np.eye(n_l), np.ones((1, n_o)))  # row l sums layer l's indicators
    constraints = [LinearConstraint(one_each, 1, 1), LinearConstraint(c.reshape(1, -1), -np.inf, budget)]
    res = milp(s.reshape(-1), constraints=constraints, integrality=np.ones(n_l * n_o),
               bounds=Bounds(0, ok.reshape(-1).astype(float)), options={"mip_rel_gap": 0.0})
    if not res.success:
        raise RuntimeError(f"the integer program found no allocation: {res.message}")
    return res.x.reshape(n_l, n_o).argmax(1)


def choose_brute_force(loss, size, budget: float) -> np.ndarray:
    """The same as :func:`choose` by trying every combination (options ** layers: a few layers only)."""
    s, c, ok = _tables(loss, size, budget)
    n_l, n_o = s.shape
    if n_o ** n_l > 2_000_000:
        raise ValueError(f"{n_o}^{n_l} combinations are too many to enumerate; use choose()")
    best, pick, rows = np.inf, None, np.arange(n_l)
    for combo in itertools.product(range(n_o), repeat=n_l):
        combo = np.array(combo)
        if ok[rows, combo].all() and c[rows, combo].sum() <= budget and s[rows, combo].sum() < best:
            best, pick = s[rows, combo].sum(), combo
    return pick
