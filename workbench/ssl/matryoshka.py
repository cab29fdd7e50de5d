"""Matryoshka representations: one embedding whose every prefix is a representation of its own.

Kusupati, Bhatt, Rege, Wallingford, Sinha, Ramanujan, Howard-Snyder, Chen, Kakade, Jain & Farhadi,
*Matryoshka Representation Learning*, NeurIPS 2022, https://arxiv.org/abs/2205.13147.

An encoder maps an image to ``z`` in ``R^D``. For nested sizes ``m_1 < m_2 < ... < m_K <= D`` the first
``m_k`` coordinates ``z[:m_k]`` get a linear classifier ``W_k`` of their own, and training minimizes
the weighted sum of the cross-entropies (section 3, the paper's ``c_m = 1``)::

    L(x, y) = sum_k  c_k * CE(W_k z[:m_k] + b_k, y)

so that ``z[:8]`` must classify on its own, ``z[:16]`` must add to it, and so on: the information
is ordered coarse to fine and any prefix can be cut off after training. MRL-E (``efficient=True``)
shares one weight among the prefixes, ``W_k = W[:, :m_k]``.

A prefix is used the way a separately trained small embedding would be: k-NN, linear probes, and
**adaptive retrieval** (section 4.3): shortlist the ``K`` nearest database items with the cheap
``d_s``-dimensional prefix, then rerank the shortlist with ``d_r`` dimensions. Per query it costs
``N d_s + K d_r`` multiply-adds against ``N d_r`` for a search with ``d_r`` dimensions over all
``N`` items (the MFLOPs of the paper's adaptive-retrieval figures: the authors' plotting data count
exactly this).

Here: the registered model ``matryoshka_net`` (a registered backbone's pooled features, an optional
linear embedding, one head per prefix; logits ``[batch, classes, len(sizes)]``), the ``fit`` task
:class:`Matryoshka`, :class:`Truncated` (a prefix as a model that ``wb.ssl``'s evaluation reads) and
the retrieval functions :func:`retrieve`, :func:`retrieval_metrics`, :func:`retrieval_cost` and
:func:`adaptive_retrieval`; :func:`matryoshka_run` trains one model and measures every prefix (a
``wb.sweep`` record).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load
from ..models import create_model, register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..models.summary import summary
from ..train import Task, train_model
from ..train.tasks import check_data_fits_model, check_image_batch

__all__ = ["MatryoshkaNet", "matryoshka_net", "Matryoshka", "matryoshka_loss", "check_sizes", "Truncated",
           "retrieve", "retrieval_metrics", "retrieval_cost", "adaptive_retrieval", "matryoshka_run"]


def check_sizes(sizes: Sequence[int], dim: int | None = None) -> tuple[int, ...]:
    """The nested sizes as a tuple of ints, or a clear error: at least one, positive, strictly
    increasing (each prefix holds the one before it), the largest at most ``dim``."""
    try:
        out = tuple(int(m) for m in sizes)
    except (TypeError, ValueError):
        raise ValueError(f"sizes must be a list of nested prefix sizes such as [8, 16, 32, 64], "
                         f"got {sizes!r}") from None
    if not out or any(isinstance(m, bool) or int(m) != m for m in sizes):
        raise ValueError(f"sizes must be a non-empty list of integers such as [8, 16, 32, 64], got {sizes!r}")
    if out[0] < 1:
        raise ValueError(f"nested sizes must be at least 1, got {list(out)}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"nested sizes must be strictly increasing (each prefix contains the one before it), got "
                         f"{list(out)}; sort them and drop repeats: {sorted(set(out))}")
    if dim is not None and out[-1] > dim:
        raise ValueError(f"nested sizes must be at most the embedding size {dim}, got {list(out)}; drop the larger "
                         f"sizes or give the model embed_dim >= {out[-1]}")
    return out


class MatryoshkaNet(WorkbenchModel):
    """A backbone's pooled features, an embedding ``z`` of size ``embed_dim``, one classifier per prefix.

    Args:
        backbone: a registered classifier with ``forward_features`` (its own ``fc`` is dropped).
        sizes: the nested prefix sizes, strictly increasing, the largest at most ``embed_dim``.
        embed_dim: the embedding's size ``D``; default the largest size.
        projection: ``True``: ``z`` is a linear map of the pooled features; ``False``: ``z`` is the
            pooled features themselves (the paper's ResNet-50 set-up; ``embed_dim`` must then be the
            feature size or ``None``).
        efficient: MRL-E, one classifier weight shared by the prefixes (``W[:, :m]``).

    ``forward(x)`` returns logits ``[batch, classes, len(sizes)]`` (column ``k``: the head on
    ``z[:sizes[k]]``); ``embed(x, dims)`` and ``features(x)`` the embedding ``[batch, D]`` (or its
    first ``dims`` coordinates). Hook points: ``hook_features`` (pooled), ``hook_embed`` (``z``).
    """

    hook_layers = ("hook_features", "hook_embed")

    def __init__(self, backbone: nn.Module, sizes: Sequence[int] = (8, 16, 32, 64), embed_dim: int | None = None,
                 projection: bool = True, efficient: bool = False):
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise TypeError(f"{type(backbone).__name__} has no forward_features(x); pick a registered classifier "
                            "(resnet20, vgg11, ...) as the backbone")
        self.in_chans, self.num_classes = backbone.in_chans, backbone.num_classes
        self.img_size = getattr(backbone, "img_size", None)
        fc = getattr(backbone, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"{type(backbone).__name__} has no linear `fc` whose input size is its feature size; "
                            "pick a backbone such as resnet20")
        feature_dim = fc.in_features
        backbone.fc = nn.Identity()  # unused: the prefixes have their own heads
        self.backbone, self.feature_dim = backbone, feature_dim
        if projection:
            dim = int(embed_dim) if embed_dim is not None else check_sizes(sizes)[-1]
            if dim < 1:
                raise ValueError(f"embed_dim must be positive, got {embed_dim}")
            self.embedding: nn.Module = nn.Linear(feature_dim, dim)
        else:
            if embed_dim not in (None, feature_dim):
                raise ValueError(f"with projection=False the embedding is the backbone's {feature_dim} pooled "
                                 f"features, so embed_dim must be None or {feature_dim}, got {embed_dim}")
            dim = feature_dim
            self.embedding = nn.Identity()
            wanted = check_sizes(sizes)[-1]
            if wanted > dim:
                raise ValueError(f"nested sizes must be at most the embedding size {dim} (the backbone's pooled "
                                 f"features, projection=False), got {list(sizes)}; drop the larger sizes, widen the "
                                 "backbone or use projection=True with embed_dim")
        self.sizes, self.embed_dim = check_sizes(sizes, dim), dim
        self.projection, self.efficient = bool(projection), bool(efficient)
        if efficient:
            self.head = nn.Linear(self.sizes[-1], self.num_classes)  # W[:, :m] for the prefix of size m
        else:
            self.heads = nn.ModuleList(nn.Linear(m, self.num_classes) for m in self.sizes)
        self.hook_features, self.hook_embed = HookPoint(), HookPoint()

    def embed(self, x: torch.Tensor, dims: int | None = None) -> torch.Tensor:
        """The embedding ``[batch, D]``, or its first ``dims`` coordinates."""
        if dims is not None and not 1 <= dims <= self.embed_dim:
            raise ValueError(f"dims must be between 1 and the embedding size {self.embed_dim}, got {dims}")
        z = self.hook_embed(self.embedding(self.hook_features(self.backbone.forward_features(x))))  # [batch, D]
        return z if dims is None else z[:, :dims]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding ``[batch, D]`` (what ``wb.ssl.encode``, ``knn_accuracy`` and ``linear_probe`` read)."""
        return self.embed(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, classes, len(sizes)]`` of an embedding ``z`` ``[batch, D]``."""
        if self.efficient:
            w, b = self.head.weight, self.head.bias
            cols = [F.linear(z[:, :m], w[:, :m], b) for m in self.sizes]
        else:
            cols = [head(z[:, :m]) for head, m in zip(self.heads, self.sizes)]
        return torch.stack(cols, dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))  # [batch, classes, len(sizes)]

    def truncated(self, dims: int) -> "Truncated":
        """The first ``dims`` coordinates of the embedding as a model of their own (:class:`Truncated`)."""
        return Truncated(self, dims)


@register_model
def matryoshka_net(backbone: str = "resnet20", backbone_kwargs: dict | None = None,
                   sizes: Sequence[int] = (8, 16, 32, 64), embed_dim: int | None = None, projection: bool = True,
                   efficient: bool = False, num_classes: int = 10, in_chans: int = 3) -> MatryoshkaNet:
    """A registered ``backbone`` (built with ``backbone_kwargs``) with nested prefix classifiers.

    ``matryoshka_net(sizes=[m])`` is the separately trained ("fixed feature") model of size ``m``.
    """
    if backbone == "matryoshka_net":
        raise ValueError("backbone must be a classifier such as resnet20, not matryoshka_net itself")
    net = create_model(backbone, num_classes=num_classes, in_chans=in_chans, **dict(backbone_kwargs or {}))
    return MatryoshkaNet(net, sizes=sizes, embed_dim=embed_dim, projection=projection, efficient=efficient)


class Truncated(nn.Module):
    """The first ``dims`` coordinates of a :class:`MatryoshkaNet`'s embedding, as a model whose
    ``features(x)`` the evaluation tools read (``wb.ssl.knn_accuracy(Truncated(net, 8), train, test)``).
    """

    def __init__(self, model: MatryoshkaNet, dims: int):
        super().__init__()
        if not callable(getattr(model, "embed", None)) or not hasattr(model, "embed_dim"):
            raise TypeError(f"Truncated needs a model with embed(x, dims) and embed_dim (a MatryoshkaNet), "
                            f"got {type(model).__name__}")
        if isinstance(dims, bool) or int(dims) != dims or not 1 <= dims <= model.embed_dim:
            raise ValueError(f"dims must be an integer between 1 and the embedding size {model.embed_dim}, "
                             f"got {dims!r}")
        self.model, self.dims = model, int(dims)
        self.in_chans, self.num_classes = model.in_chans, model.num_classes
        self.img_size = getattr(model, "img_size", None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x, self.dims)  # [batch, dims]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _weights(weights: Sequence[float] | None, k: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * k
    w = tuple(float(v) for v in weights)
    if len(w) != k:
        raise ValueError(f"weights must have one entry per nested size ({k}), got {len(w)}: {list(w)}")
    if any(v < 0 or v != v for v in w) or not any(v > 0 for v in w):
        raise ValueError(f"weights must be non-negative with at least one positive, got {list(w)}")
    return w


def matryoshka_loss(logits: torch.Tensor, y: torch.Tensor, weights: Sequence[float] | None = None,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """``sum_k weights[k] * CE(logits[:, :, k], y)`` for logits ``[batch, classes, K]`` (weights default 1)."""
    if logits.ndim != 3:
        raise ValueError(f"matryoshka_loss expects logits [batch, classes, sizes] (one column per nested size), "
                         f"got shape {list(logits.shape)}")
    w = _weights(weights, logits.shape[2])
    total = None
    for k, c in enumerate(w):
        term = c * F.cross_entropy(logits[:, :, k].float(), y, label_smoothing=label_smoothing)
        total = term if total is None else total + term
    return total


class Matryoshka(Task):
    """Cross-entropy on every nested prefix, weighted and summed (the paper's section 3), as a ``fit`` task.

    Args:
        sizes: the model's nested sizes (checked against ``model.sizes`` before training).
        weights: one non-negative weight per size (default all 1, as the paper).
        label_smoothing: for every prefix's cross-entropy.

    Metrics: ``loss``, ``acc`` (the largest prefix's accuracy) and ``acc_<m>`` for every size ``m``.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | None = None, label_smoothing: float = 0.0):
        self.sizes = check_sizes(sizes)
        self.weights = _weights(weights, len(self.sizes))
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.metric_names = ("loss", "acc", *(f"acc_{m}" for m in self.sizes))

    def config(self) -> dict[str, Any]:
        return {"name": "Matryoshka", "sizes": list(self.sizes), "weights": list(self.weights),
                "label_smoothing": self.label_smoothing}

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)
        have = getattr(model, "sizes", None)
        if have is not None and tuple(have) != self.sizes:
            raise ValueError(f"the task's nested sizes {list(self.sizes)} differ from the model's {list(have)}; "
                             f"give the task Matryoshka(sizes={list(have)})")

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> torch.Tensor:
        logits = model(batch[0])
        if logits.ndim != 3 or logits.shape[2] != len(self.sizes):
            raise ValueError(f"{self.name} needs logits [batch, classes, {len(self.sizes)}] (one column per nested "
                             f"size), got shape {list(logits.shape)}; use wb.create_model('matryoshka_net', ...)")
        return logits

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return matryoshka_loss(outputs, batch[1], self.weights, self.label_smoothing)

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        y = batch[1]
        hits = (outputs.detach().argmax(1) == y[:, None]).sum(0).double()  # [sizes]
        out = {"loss": loss.detach().double() * len(y), "acc": hits[-1]}
        out.update({f"acc_{m}": hits[k] for k, m in enumerate(self.sizes)})
        return out, len(y)


# -- retrieval ------------------------------------------------------------------------------------------

def _check_embeddings(z_db: torch.Tensor, z_query: torch.Tensor) -> None:
    if z_db.ndim != 2 or z_query.ndim != 2 or z_db.shape[1] != z_query.shape[1]:
        raise ValueError(f"retrieval needs database and query embeddings [N, D] and [Q, D] of one D, got "
                         f"{list(z_db.shape)} and {list(z_query.shape)}")


def _check_dims(name: str, dims: int, full: int) -> int:
    if isinstance(dims, bool) or int(dims) != dims or not 1 <= dims <= full:
        raise ValueError(f"{name} must be an integer between 1 and the embedding size {full}, got {dims!r}")
    return int(dims)


def retrieve(z_db: torch.Tensor, z_query: torch.Tensor, dims: int | None = None, k: int = 10,
             candidates: torch.Tensor | None = None, batch_size: int = 512) -> torch.Tensor:
    """The ``k`` nearest database items of each query by cosine similarity of the first ``dims`` coordinates.

    Args:
        z_db, z_query: embeddings ``[N, D]`` and ``[Q, D]``.
        dims: the prefix compared (default all ``D``); each prefix is normalized on its own.
        k: neighbours returned per query.
        candidates: ``[Q, K]`` database indices: rank only these for each query (a shortlist).

    Returns:
        ``[Q, k]`` database indices, nearest first; equal similarities go to the lower index, so a
        shortlist that holds the whole database ranks exactly as the full search.
    """
    _check_embeddings(z_db, z_query)
    dims = z_db.shape[1] if dims is None else _check_dims("dims", dims, z_db.shape[1])
    pool = z_db.shape[0] if candidates is None else candidates.shape[1]
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= pool:
        raise ValueError(f"k must be an integer between 1 and the {pool} items searched, got {k!r}")
    if candidates is not None and (candidates.ndim != 2 or len(candidates) != len(z_query)):
        raise ValueError(f"candidates must be [Q, K] = [{len(z_query)}, K] database indices, "
                         f"got {list(candidates.shape)}")
    db = F.normalize(z_db[:, :dims].float(), dim=1)
    out = []
    for start in range(0, len(z_query), batch_size):
        q = F.normalize(z_query[start:start + batch_size, :dims].float(), dim=1)
        sim = q @ db.T  # [b, N]; a shortlist reads its entries from here, so both rank on identical numbers
        if candidates is None:
            out.append(_top_k(sim, k))
        else:
            idx = candidates[start:start + batch_size].to(sim.device).sort(dim=1).values  # ties: lower index first
            out.append(idx.gather(1, _top_k(sim.gather(1, idx), k)))
    return torch.cat(out)


def _top_k(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Columns of the ``k`` largest entries of each row, largest first, equal values in column order:
    what a stable descending sort gives, without sorting whole rows."""
    kth = sim.topk(k, dim=1).values[:, -1:]  # [b, 1]
    above, tie = sim > kth, sim == kth
    need = k - above.sum(1, keepdim=True)  # how many of the tied entries make the cut: the first ones
    chosen = above | tie
    crowded = (tie.sum(1, keepdim=True) > need).squeeze(1).nonzero().squeeze(1)  # rows with more ties than room
    if len(crowded):
        t = tie[crowded]
        chosen[crowded] = above[crowded] | (t & (t.cumsum(1) <= need[crowded]))  # exactly k per row
    cols = chosen.nonzero()[:, 1].view(len(sim), k)  # ascending within each row
    return cols.gather(1, sim.gather(1, cols).sort(dim=1, descending=True, stable=True).indices)


def retrieval_metrics(neighbours: torch.Tensor, y_db: torch.Tensor, y_query: torch.Tensor) -> dict[str, float]:
    """Class-level retrieval quality of ranked neighbours ``[Q, k]`` (database indices, nearest first).

    Returns:
        ``top1``: the share of queries whose nearest item has the query's class (1-NN accuracy);
        ``precision``: the mean share of same-class items among the ``k``;
        ``map``: mAP@k as the paper's code computes it, the mean over queries of
        ``sum over ranks i <= k holding a same-class item of precision@i``, divided by ``k``.
    """
    if neighbours.ndim != 2 or len(neighbours) != len(y_query):
        raise ValueError(f"neighbours must be [Q, k] = [{len(y_query)}, k], got {list(neighbours.shape)}")
    rel = (y_db.to(neighbours.device)[neighbours] == y_query.to(neighbours.device)[:, None]).double()  # [Q, k]
    k = rel.shape[1]
    prec_at = rel.cumsum(1) / torch.arange(1, k + 1, dtype=torch.float64, device=rel.device)
    return {"top1": float(rel[:, 0].mean()), "precision": float(rel.mean()),
            "map": float(((prec_at * rel).sum(1) / k).mean())}


def retrieval_cost(n_db: int, shortlist_dims: int, rerank_dims: int, shortlist: int) -> dict[str, int | float]:
    """Multiply-adds per query: adaptive ``n_db * shortlist_dims + shortlist * rerank_dims`` against
    ``n_db * rerank_dims`` for the full search (similarities only; the sort is not counted).

    >>> retrieval_cost(1000, 8, 64, 50)
    {'macs': 11200, 'full_macs': 64000, 'fraction': 0.175}
    """
    for name, v in (("n_db", n_db), ("shortlist_dims", shortlist_dims), ("rerank_dims", rerank_dims),
                    ("shortlist", shortlist)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if shortlist > n_db:
        raise ValueError(f"shortlist ({shortlist}) cannot exceed the database size ({n_db})")
    macs, full = n_db * shortlist_dims + shortlist * rerank_dims, n_db * rerank_dims
    return {"macs": int(macs), "full_macs": int(full), "fraction": macs / full}


def adaptive_retrieval(z_db: torch.Tensor, y_db: torch.Tensor, z_query: torch.Tensor, y_query: torch.Tensor,
                       shortlist_dims: int = 8, rerank_dims: int | None = None, shortlist: int = 200,
                       k: int = 10) -> dict[str, float]:
    """Adaptive retrieval (section 4.3): shortlist with the first ``shortlist_dims`` coordinates, rerank
    the shortlist with the first ``rerank_dims``; against the full search with ``rerank_dims``.

    Args:
        z_db, y_db: database embeddings ``[N, D]`` and classes ``[N]``.
        z_query, y_query: query embeddings ``[Q, D]`` and classes ``[Q]``.
        shortlist_dims, rerank_dims: ``d_s <= d_r <= D`` (``rerank_dims`` default ``D``).
        shortlist: ``K`` candidates kept by the first stage, ``k <= K <= N``.
        k: neighbours scored (mAP@k, precision@k).

    Returns:
        ``top1``, ``precision``, ``map`` of the adaptive search (see :func:`retrieval_metrics`), the same
        for the full search as ``full_top1``, ``full_precision``, ``full_map``, and the cost per query
        from :func:`retrieval_cost`: ``macs``, ``full_macs``, ``fraction``.
    """
    _check_embeddings(z_db, z_query)
    d = z_db.shape[1]
    rerank_dims = d if rerank_dims is None else _check_dims("rerank_dims", rerank_dims, d)
    shortlist_dims = _check_dims("shortlist_dims", shortlist_dims, d)
    if shortlist_dims > rerank_dims:
        raise ValueError(f"shortlist_dims ({shortlist_dims}) must be at most rerank_dims ({rerank_dims}): the "
                         "shortlist is made with the cheaper prefix")
    if len(y_db) != len(z_db) or len(y_query) != len(z_query):
        raise ValueError(f"one class per embedding: {len(z_db)} database embeddings with {len(y_db)} classes, "
                         f"{len(z_query)} queries with {len(y_query)}")
    if isinstance(shortlist, bool) or int(shortlist) != shortlist or not k <= shortlist <= len(z_db):
        raise ValueError(f"shortlist must be an integer from k ({k}) to the database size ({len(z_db)}), "
                         f"got {shortlist!r}")
    cost = retrieval_cost(len(z_db), shortlist_dims, rerank_dims, int(shortlist))
    short = retrieve(z_db, z_query, shortlist_dims, int(shortlist))
    adaptive = retrieval_metrics(retrieve(z_db, z_query, rerank_dims, k, candidates=short), y_db, y_query)
    full = retrieval_metrics(retrieve(z_db, z_query, rerank_dims, k), y_db, y_query)
    return {**adaptive, **{f"full_{n}": v for n, v in full.items()}, **cost}


def matryoshka_run(sizes: Sequence[int], seed: int, *, dims: Sequence[int] | None = None, backbone: str = "resnet20",
                   backbone_kwargs: dict | None = None, embed_dim: int | None = None, projection: bool = True,
                   efficient: bool = False, dataset: str = "cifar10", train_subset: int | None = None,
                   test_subset: int | None = None, weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                   knn_k: int = 20,
                   shortlist_dims: int = 8, rerank_dims: int | None = None, shortlists: Sequence[int] = (200,),
                   k: int = 10, **fit_kwargs) -> dict[str, Any]:
    """Train ``matryoshka_net(sizes=sizes)`` once (cached by ``wb.train_model``) and measure its prefixes.

    The training images are the k-NN and retrieval database and the probe's training set; the test
    images are the queries and the probe's test set (the paper's ImageNet train / validation split).

    Args:
        sizes: the nested sizes trained (``[m]``: the separately trained model of size ``m``).
        seed: initialization and data order.
        dims: the prefixes measured (default ``sizes``; those above the embedding size are skipped), so a
            fixed model can be measured cut short too.
        backbone, backbone_kwargs, embed_dim, projection, efficient: the model (:func:`matryoshka_net`).
        dataset, train_subset, test_subset: the data (the same subsets for every seed).
        weights, label_smoothing: the :class:`Matryoshka` task.
        knn_k: neighbours of the k-NN vote (``wb.ssl.knn_features``).
        shortlist_dims, rerank_dims, shortlists, k: adaptive retrieval with each shortlist size in
            ``shortlists`` (done when ``shortlist_dims < rerank_dims <= `` the embedding size, the default
            ``rerank_dims``).
        **fit_kwargs: the training recipe, for ``wb.fit``.

    Returns:
        A JSON-ready record: ``sizes``, ``embed_dim``, ``test_acc`` (the largest head), ``params``,
        ``macs``, ``seconds``; ``per_size``, one entry per measured prefix with ``dims``, ``head_acc``
        (the test accuracy of that prefix's own head, ``None`` without one), ``knn``, ``probe`` (linear
        probe test accuracy), ``top1`` and ``map`` (retrieval with that prefix over the whole database);
        ``adaptive``, one :func:`adaptive_retrieval` result per shortlist size (with ``shortlist``), or ``[]``.
    """
    from .evaluate import encode, knn_features, linear_probe_features

    start = time.perf_counter()
    train = load(dataset, "train", subset=train_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    kwargs = {"backbone": backbone, "backbone_kwargs": dict(backbone_kwargs or {}), "sizes": list(check_sizes(sizes)),
              "embed_dim": embed_dim, "projection": projection, "efficient": efficient}
    res = train_model("matryoshka_net", train, test, seed=seed, model_kwargs=kwargs, progress=False,
                      task=Matryoshka(sizes, weights, label_smoothing), **fit_kwargs)
    net = res.model
    z_db, y_db = encode(net, train)
    z_q, y_q = encode(net, test)
    dev = next(net.parameters()).device  # retrieval on the model's device (a GPU in paper mode)
    r_db, r_q = z_db.to(dev), z_q.to(dev)
    last = res.history.iloc[-1]
    per_size = []
    for m in [m for m in (dims or net.sizes) if m <= net.embed_dim]:
        a, b = z_db[:, :m], z_q[:, :m]
        found = retrieval_metrics(retrieve(r_db, r_q, m, k), y_db, y_q)
        per_size.append({"dims": int(m), "head_acc": float(last[f"test_acc_{m}"]) if m in net.sizes else None,
                         "knn": knn_features(a, y_db, b, y_q, k=knn_k, num_classes=train.num_classes),
                         "probe": linear_probe_features(a, y_db, b, y_q, num_classes=train.num_classes)["test_acc"],
                         "top1": found["top1"], "map": found["map"]})
    adaptive = []
    rerank = net.embed_dim if rerank_dims is None else rerank_dims
    if shortlist_dims < rerank <= net.embed_dim:
        adaptive = [{"shortlist": int(s), **adaptive_retrieval(r_db, y_db, r_q, y_q, shortlist_dims, rerank, int(s), k)}
                    for s in shortlists]
    cost = summary(net, tuple(train.shape))
    return {"sizes": list(net.sizes), "embed_dim": net.embed_dim, "test_acc": float(last["test_acc"]),
            "params": cost.params, "macs": cost.macs, "per_size": per_size, "adaptive": adaptive,
            "seconds": time.perf_counter() - start}
