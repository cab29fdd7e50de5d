"""Sparse recurrent weights: which hidden unit reads which, as a mask on the hidden-to-hidden matrices.

Two ways to choose a mask of a given **density** (the kept fraction of the ``H x H`` connections):

* :func:`magnitude_recurrent_masks`: keep the largest recurrent weights of a (trained) model, per matrix
  (every gate's block of an LSTM or GRU on its own: the ``4H x H`` or ``3H x H`` matrix keeps its largest
  entries);
* :func:`graph_recurrent_masks`: the connections of a random graph on the ``H`` hidden units: ``"erdos_renyi"``
  (exactly ``round(density * H^2)`` directed connections drawn uniformly, self-connections included),
  ``"watts_strogatz"`` (a ring lattice of ``k`` neighbours with 10% of the edges rewired: local and a few
  long-range connections) or ``"barabasi_albert"`` (preferential attachment: a few hub units read and are
  read by many) from networkx, undirected, each unit also keeping its own recurrence. The same ``H x H``
  pattern is used by every gate block. Watts-Strogatz and Barabasi-Albert graphs hit a density only
  approximately (their parameters are integers); the achieved density is in :func:`mask_density`.

Density 1 is the dense network for every kind. The masks train through ``wb.prune.Masked``
(``fit(algorithms=[wb.prune.Masked(masks)])``): the masked weights are zero from the start and stay zero.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

__all__ = ["GRAPHS", "recurrent_weights", "graph_mask", "graph_recurrent_masks", "magnitude_recurrent_masks",
           "mask_density"]

GRAPHS = ("erdos_renyi", "watts_strogatz", "barabasi_albert")


def _check_density(density: float) -> float:
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise ValueError(f"density is the kept fraction of connections, in (0, 1], got {density!r}")
    return float(density)


def recurrent_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The hidden-to-hidden matrices (``weight_hh_l*``) of every ``nn.RNN``/``nn.LSTM``/``nn.GRU`` in ``model``."""
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, nn.RNNBase):
            for pname, p in m.named_parameters(recurse=False):
                if pname.startswith("weight_hh"):
                    out[f"{mname}.{pname}" if mname else pname] = p
    if not out:
        raise ValueError(f"{type(model).__name__} has no recurrent layer (nn.RNN, nn.LSTM, nn.GRU)")
    return out


def graph_mask(units: int, density: float, graph: str = "erdos_renyi", seed: int = 0) -> torch.Tensor:
    """A 0/1 ``[units, units]`` connection pattern (row ``i`` lists the units that unit ``i`` reads)."""
    density = _check_density(density)
    if graph not in GRAPHS:
        raise ValueError(f"graph is one of {', '.join(GRAPHS)}, got {graph!r}")
    if not (isinstance(units, int) and units >= 2):
        raise ValueError(f"units must be an integer >= 2, got {units!r}")
    n = units
    if density == 1.0:
        return torch.ones(n, n)
    if graph == "erdos_renyi":
        keep = round(density * n * n)
        g = torch.Generator().manual_seed(int(seed))
        flat = torch.zeros(n * n)
        flat[torch.randperm(n * n, generator=g)[:keep]] = 1.0
        return flat.view(n, n)
    import networkx as nx
    # undirected edges plus the diagonal: density = (2 E + n) / n^2
    edges = max(0.0, (density * n * n - n) / 2)
    if graph == "watts_strogatz":
        k = int(round(2 * edges / n / 2) * 2)                      # an even number of ring neighbours
        k = min(max(k, 2), n - 1 - (n - 1) % 2)
        G = nx.watts_strogatz_graph(n, k, 0.1, seed=int(seed))
    else:
        # E = m (n - m) edges for Barabasi-Albert: solve for the integer m nearest the target
        m = min(range(1, n), key=lambda m: abs(m * (n - m) - edges))
        G = nx.barabasi_albert_graph(n, m, seed=int(seed))
    a = torch.as_tensor(nx.to_numpy_array(G, nodelist=range(n)), dtype=torch.float32)
    return ((a > 0).float() + torch.eye(n)).clamp(max=1.0)


def graph_recurrent_masks(model: nn.Module, density: float, graph: str = "erdos_renyi",
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-graph mask for every hidden-to-hidden matrix (one pattern per matrix, repeated over its gate
    blocks; each matrix its own draw, from ``seed``)."""
    out = {}
    for i, (name, w) in enumerate(recurrent_weights(model).items()):
        hidden = w.shape[1]
        pattern = graph_mask(hidden, density, graph, seed * 1_000 + i)
        out[name] = pattern.repeat(w.shape[0] // hidden, 1).to(w.device)
    return out


def magnitude_recurrent_masks(model: nn.Module, density: float) -> dict[str, torch.Tensor]:
    """Keep the ``round(density * n)`` largest-magnitude entries of each hidden-to-hidden matrix."""
    density = _check_density(density)
    out = {}
    for name, w in recurrent_weights(model).items():
        keep = round(density * w.numel())
        mask = torch.zeros(w.numel(), device=w.device)
        mask[w.detach().abs().flatten().topk(keep).indices] = 1.0
        out[name] = mask.view_as(w)
    return out


def mask_density(masks: Mapping[str, torch.Tensor]) -> float:
    """The kept fraction over all masked entries."""
    if not masks:
        raise ValueError("no masks given")
    return float(sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))
