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

A study of both (H. Darji, *Investigating Sparsity in Recurrent Neural Networks*, Master's thesis, Passau 2021,
`arXiv 2407.20601 <https://arxiv.org/abs/2407.20601>`_) is one run per ``structure`` (``"magnitude"`` or a graph
of :data:`GRAPHS`), density and seed: :func:`train_sparse_rnn` trains one network and :func:`sparse_rnn_run` is
the same run as a record for ``wb.sweep``. Every sparse network gets the same number of epochs in total: a
graph network trains ``epochs`` epochs sparse from its initialization; a magnitude-pruned one trains
``pretrain`` epochs dense, is pruned once and retrains ``epochs - pretrain`` epochs with the mask fixed.
:func:`graph_properties` measures the connection pattern (clustering, average path length, degree spread)
and :func:`epochs_to_regain` counts the retraining epochs until the pre-pruning accuracy is back.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = ["GRAPHS", "STRUCTURES", "recurrent_weights", "graph_mask", "graph_recurrent_masks",
           "magnitude_recurrent_masks", "mask_density", "unit_pattern", "graph_properties", "epochs_to_regain",
           "train_sparse_rnn", "sparse_rnn_run"]

GRAPHS = ("erdos_renyi", "watts_strogatz", "barabasi_albert")
STRUCTURES = ("magnitude", *GRAPHS)   # how a sparse recurrent network chooses its connections


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


def unit_pattern(mask: torch.Tensor) -> torch.Tensor:
    """The ``[H, H]`` unit-to-unit pattern of a hidden-to-hidden mask ``[G * H, H]`` (``G`` gate blocks): unit
    ``i`` reads unit ``j`` when any gate block keeps the entry ``(i, j)``."""
    if not (isinstance(mask, torch.Tensor) and mask.ndim == 2 and mask.shape[1] >= 1
            and mask.shape[0] % mask.shape[1] == 0):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a hidden-to-hidden mask [gates * H, H], got {got}")
    h = mask.shape[1]
    return (mask.detach().reshape(-1, h, h) != 0).any(dim=0).float().cpu()


def graph_properties(pattern: torch.Tensor) -> dict[str, float]:
    """Graph measures of a unit-to-unit pattern ``[H, H]`` (0/1; a gate-stacked mask is reduced by
    :func:`unit_pattern` first).

    The pattern is read as an undirected graph on the ``H`` units (``i`` and ``j`` linked when either reads the
    other), self-connections left out. Returns ``density`` (kept fraction of the ``H x H`` entries, diagonal
    included), ``edges``, ``mean_degree``, ``degree_cv`` (standard deviation over mean of the degrees: 0 for a
    regular lattice, large with hubs), ``clustering`` (networkx's average clustering coefficient),
    ``path_length`` (average shortest path between the units of the largest connected component) and
    ``components`` (the number of connected components; isolated units count).

    >>> ring = torch.eye(6).roll(1, 1) + torch.eye(6).roll(-1, 1)
    >>> graph_properties(ring)["path_length"]   # distances 1, 1, 2, 2, 3 from every unit
    1.8
    """
    if isinstance(pattern, torch.Tensor) and pattern.ndim == 2 and pattern.shape[0] != pattern.shape[1]:
        pattern = unit_pattern(pattern)
    if not (isinstance(pattern, torch.Tensor) and pattern.ndim == 2 and pattern.shape[0] == pattern.shape[1]
            and pattern.shape[0] >= 2):
        got = tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern).__name__
        raise ValueError(f"pattern must be a square [H, H] 0/1 tensor with H >= 2, got {got}")
    import networkx as nx
    a = pattern.detach().cpu() != 0
    n = a.shape[0]
    und = (a | a.T) & ~torch.eye(n, dtype=torch.bool)
    G = nx.from_numpy_array(und.numpy().astype("int8"))
    degrees = und.sum(1).double()
    mean = float(degrees.mean())
    giant = G.subgraph(max(nx.connected_components(G), key=len))
    return {"density": float(a.float().mean()), "edges": int(und.sum()) // 2, "mean_degree": mean,
            "degree_cv": float(degrees.std(unbiased=False)) / mean if mean > 0 else 0.0,
            "clustering": float(nx.average_clustering(G)),
            "path_length": float(nx.average_shortest_path_length(giant)) if len(giant) > 1 else 0.0,
            "components": nx.number_connected_components(G)}


def epochs_to_regain(curve: Sequence[float], target: float) -> int | None:
    """The first retraining epoch (1-based) whose accuracy in ``curve`` reaches ``target``; ``None`` if none
    does."""
    for i, v in enumerate(curve, start=1):
        if float(v) >= target:
            return i
    return None


def _check_structure(structure: str) -> None:
    if structure not in STRUCTURES:
        raise ValueError(f"structure is one of {', '.join(STRUCTURES)}, got {structure!r}")


def train_sparse_rnn(train, test, structure: str, density: float, seed: int = 0, *, epochs: int = 6,
                     pretrain: int = 3, model: str = "seq_rnn", model_kwargs: dict | None = None,
                     **fit_kwargs):
    """One sparse recurrent network at a stated budget of ``epochs`` epochs in total, cached by ``train_model``.

    Args:
        train, test: image datasets (``test`` is evaluated after every epoch).
        structure: ``"magnitude"``: ``pretrain`` dense epochs, one-shot pruning of the hidden-to-hidden weights by
            magnitude (:func:`magnitude_recurrent_masks`), ``epochs - pretrain`` epochs of retraining with the mask
            fixed; a graph of :data:`GRAPHS`: the random-graph mask (:func:`graph_recurrent_masks`, drawn with
            ``seed``) from the initialization, ``epochs`` sparse epochs.
        density: the kept fraction of the recurrent connections, in (0, 1]; at 1 every structure is the dense
            network trained ``epochs`` epochs.
        seed: initialization, data order and graph draw.
        model, model_kwargs: a registry model with ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layers (``seq_rnn``).
        **fit_kwargs: passed to ``wb.fit`` (``lr``, ``optimizer``, ``batch_size``, ...), the same for every phase.

    Returns:
        the ``TrainResult`` of the last phase with ``masks`` (empty when dense), ``curve`` (test accuracy after
        each of the ``epochs`` epochs, the dense phase included), and for ``"magnitude"`` ``before`` (accuracy of
        the dense network when it was pruned) and ``after`` (right after pruning, before retraining).
    """
    from ..prune import Masked
    from ..train import evaluate, model_fingerprint, train_model

    _check_structure(structure)
    density = _check_density(density)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if structure == "magnitude" and density < 1 and not (isinstance(pretrain, int) and 1 <= pretrain < epochs):
        raise ValueError(f"pretrain (dense epochs before pruning) must be an integer in [1, epochs - 1] = "
                         f"[1, {epochs - 1}], got {pretrain!r}")
    if test is None:
        raise ValueError("train_sparse_rnn records the test accuracy after every epoch: pass test=")
    kw = dict(model_kwargs=model_kwargs, seed=seed, progress=False, **fit_kwargs)
    if density == 1.0:
        res = train_model(model, train, test, epochs=epochs, **kw)
        res.masks, res.curve = {}, res.history["test_acc"].astype(float).tolist()
        return res
    chosen: dict[str, Any] = {}
    if structure == "magnitude":
        dense = train_model(model, train, test, epochs=pretrain, **kw)
        state = {k: v.detach().clone() for k, v in dense.model.state_dict().items()}

        def setup(m):
            m.load_state_dict(state)
            chosen["masks"] = magnitude_recurrent_masks(m, density)
            return {"algorithms": [*fit_kwargs.get("algorithms", ()), Masked(chosen["masks"])]}

        key = ["sparse_rnn", "magnitude", density, pretrain, model_fingerprint(dense.model)]
        res = train_model(model, train, test, epochs=epochs - pretrain, setup=setup, setup_key=key, **kw)
        res.before = dense.test_acc
        pruned = dense.model
        with torch.no_grad():
            for name, p in pruned.named_parameters():
                if name in chosen["masks"]:
                    p.mul_(chosen["masks"][name].to(p.device, p.dtype))
        res.after = evaluate(pruned, test)["acc"]
        res.curve = dense.history["test_acc"].astype(float).tolist() + res.history["test_acc"].astype(float).tolist()
    else:
        def setup(m):
            chosen["masks"] = graph_recurrent_masks(m, density, structure, seed)
            return {"algorithms": [*fit_kwargs.get("algorithms", ()), Masked(chosen["masks"])]}

        key = ["sparse_rnn", structure, density]
        res = train_model(model, train, test, epochs=epochs, setup=setup, setup_key=key, **kw)
        res.curve = res.history["test_acc"].astype(float).tolist()
    res.masks = chosen["masks"]
    return res


def sparse_rnn_run(structure: str, density: float, seed: int, *, dataset: str = "fashion_mnist",
                   train_subset: int | None = None, test_subset: int | None = None, **kwargs) -> dict[str, Any]:
    """:func:`train_sparse_rnn` as a ``wb.sweep`` record: it loads its own data (so it can run on a Ray worker)
    and returns the final test accuracy, the accuracy curve, the achieved density, the graph properties of the
    unit-to-unit pattern (:func:`graph_properties`; the complete graph when dense) and, for ``"magnitude"``,
    the accuracy before and right after pruning."""
    from ..data import load

    train = load(dataset, "train", subset=train_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    res = train_sparse_rnn(train, test, structure, density, seed, **kwargs)
    weights = recurrent_weights(res.model)
    masks = res.masks or {n: torch.ones_like(w) for n, w in weights.items()}
    first = next(iter(masks.values()))
    zero = all(float(w.detach().abs().mul(masks[n].to(w.device) == 0).max()) == 0.0 for n, w in weights.items())
    return {"test_acc": float(res.curve[-1]), "curve": res.curve, "achieved_density": mask_density(masks),
            "masked_stay_zero": zero, "before": getattr(res, "before", None), "after": getattr(res, "after", None),
            **{f"graph_{k}": v for k, v in graph_properties(unit_pattern(first)).items()}}
