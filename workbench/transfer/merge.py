"""Merging two trained networks: permutation alignment, the interpolation path, REPAIR and PLeaS.

Nasery, Hayase, Koh & Oh, *PLeaS -- Merging Models with Permutations and Least Squares*, 2024,
https://arxiv.org/abs/2407.02447.

Two networks of one architecture trained from different seeds learn similar features in different
channel orders, so averaging their weights mixes unrelated channels ("naive averaging" fails).
Permuting the channels of a hidden layer (its output rows, the next layer's input columns, the
BatchNorm parameters and running statistics between) leaves the function unchanged
(:func:`permute`), so B is first aligned to A:

* **weight matching** (Ainsworth, Hayase & Srinivasa, *Git Re-Basin*, ICLR 2023, arXiv 2209.04836):
  for one group of channels at a time, the permutation ``P`` maximizing ``sum_l <W_A^l, P W_B^l>``
  (every tensor that has those channels on an axis, the other groups' permutations held fixed) is a
  linear assignment (``scipy.optimize.linear_sum_assignment``); sweeps repeat until none changes;
* **activation matching**: per group, the permutation maximizing the summed correlation between A's
  channels and B's on a batch of images (one linear assignment per group).

A residual stream adds each block's output to its input, so the stem (or a stage's shortcut) and
every block output of a stage share **one** permutation: the *groups* of :func:`channel_groups`
(``stream1..3`` for a CIFAR ResNet; a plain network's blocks each have their own).

**Interpolation and REPAIR.** :func:`interpolation_path` evaluates ``(1 - t) A + t B`` for ``t`` in
[0, 1], before or after alignment. Averaging shrinks the variance of the features (Jordan et al.,
*REPAIR*, ICLR 2023, arXiv 2211.08403); in a BatchNorm network re-estimating the running statistics on
training batches (:func:`reset_bn_stats`) undoes most of that.

**PLeaS.** After matching, a :class:`MergePlan` says what each of the merged layer's ``k`` channels
is: the average ``(A_i + B_p(i)) / 2`` of a matched pair, or one channel of A or of B kept alone
(``merge``, a ``k x 2d`` matrix applied to the stacked features ``[A; B]``). Then, layer by layer in
forward order, the merged layer's weights solve the least-squares problem

    W_l, b_l = argmin || W X_l^merged + b - M_l [Z_l^A ; Z_l^B] ||^2 + ridge ||W||^2

where ``X_l^merged`` are the inputs that the *merged* network (its earlier layers already solved)
feeds layer ``l`` on the given images and ``Z_l^A``, ``Z_l^B`` the original networks' pre-activation
outputs (after BatchNorm, before the ReLU; a block's sum with its shortcut). The merged network so
follows the aligned average of the two networks' features and corrects its own earlier layers'
errors. For a residual block the solution covers the second convolution and the shortcut together;
an identity shortcut's share is subtracted from the target. The BatchNorm after a solved layer holds
the solution's bias and the true statistics of its input on these images (eval mode computes
exactly ``W x + b``). The output layer fits the mean of the two networks' logits.

**The width of the merged model** (``width``, a multiple of one network's width). PLeaS merges
partially: at ``1 <= width <= 2`` each group merges its ``(2 - width) d`` best-matched pairs and keeps
the other pairs' channels of A and B apart (``width = 2`` keeps everything: the two networks side by
side, whose output is exactly their ensemble). We extend the same rule below one model's width:
at ``width < 1`` the ``width * d`` best-matched pairs are merged and the rest are dropped; the least
squares of the next layer then makes up for the dropped channels as well as it can. "Best matched"
ranks the pairs by their activation correlation (``scores`` of :func:`activation_matching`). The
paper lets the share differ from layer to layer; here it is the same in every layer.

>>> perms, scores = wb.transfer.activation_matching(a, b, train, return_scores=True)   # doctest: +SKIP
>>> plan = wb.transfer.merge_plan(a, b, perms, width=1.0, scores=scores)              # doctest: +SKIP
>>> averaged = wb.transfer.reset_bn_stats(wb.transfer.merge_weights(a, b, plan), train)  # doctest: +SKIP
>>> merged = wb.transfer.pleas_merge(a, b, train, plan)                               # doctest: +SKIP
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..data import ImageDataset
from ..models.mlp import MLP
from ..models.resnet_cifar import CifarResNet
from ..probe import run_with_cache
from ..train import evaluate

__all__ = ["channel_groups", "merge_spec", "check_mergeable", "permute", "weight_matching", "activation_matching",
           "interpolate", "reset_bn_stats", "interpolation_path", "loss_barrier", "MergePlan", "merge_plan",
           "merge_weights", "least_squares", "pleas_merge", "compare_merges"]

INPUT, OUTPUT = "input", "output"  # the axes no permutation touches: the images' channels and the classes
SUPPORTED = "CIFAR ResNets and plain networks (resnet8, resnet14, resnet20, ..., plainN, resnet_cifar) and mlp"
Axes = tuple  # per axis of a tensor: its group of channels, INPUT, OUTPUT or None (kernel axes)


@dataclass
class _Arch:
    spec: dict[str, Axes]          # state-dict entry -> the group of each axis
    widths: dict[str, int]         # group -> channels
    points: dict[str, list[str]]   # group -> module names whose outputs carry the group (activation matching)
    base: int                      # the model's width knob


def _bn(spec: dict, name: str, g: str) -> None:
    for k in ("weight", "bias", "running_mean", "running_var"):
        spec[f"{name}.{k}"] = (g,)
    spec[f"{name}.num_batches_tracked"] = ()


def _resnet_arch(m: CifarResNet) -> _Arch:
    spec, widths, points = {}, {}, {}
    g = "stream1" if m.layer1[0].skip else "stem"
    widths[g] = m.width
    spec["stem.0.weight"] = (g, INPUT, None, None)
    _bn(spec, "stem.1", g)
    points[g] = ["stem"]
    prev = g
    for s in (1, 2, 3):
        for i, block in enumerate(getattr(m, f"layer{s}")):
            if not block.active:
                raise ValueError(f"layer{s}.{i} is dropped (active=False); merge networks with every block active")
            name = f"layer{s}.{i}"
            mid, out = f"{name}.conv1", (f"stream{s}" if block.skip else f"{name}.conv2")
            widths[mid] = widths[out] = block.conv1.out_channels
            spec[f"{name}.conv1.weight"] = (mid, prev, None, None)
            _bn(spec, f"{name}.bn1", mid)
            spec[f"{name}.conv2.weight"] = (out, mid, None, None)
            _bn(spec, f"{name}.bn2", out)
            if block.shortcut is not None:
                spec[f"{name}.shortcut.0.weight"] = (out, prev, None, None)
                _bn(spec, f"{name}.shortcut.1", out)
            points[mid] = [f"{name}.hook_relu1"]
            points.setdefault(out, []).append(name)
            prev = out
    spec["fc.weight"], spec["fc.bias"] = (OUTPUT, prev), (OUTPUT,)
    return _Arch(spec, widths, points, m.width)


def _mlp_arch(m: MLP) -> _Arch:
    spec, widths, points, prev = {}, {}, {}, INPUT
    for i, layer in enumerate(m.layers):
        g = f"layers.{i}"
        widths[g], points[g] = layer[0].out_features, [g]
        spec[f"{g}.0.weight"], spec[f"{g}.0.bias"] = (g, prev), (g,)
        if isinstance(layer[1], nn.BatchNorm1d):
            _bn(spec, f"{g}.1", g)
        prev = g
    spec["fc.weight"], spec["fc.bias"] = (OUTPUT, prev), (OUTPUT,)
    return _Arch(spec, widths, points, m.width)


def _arch(model: nn.Module) -> _Arch:
    if isinstance(model, CifarResNet):
        arch = _resnet_arch(model)
    elif isinstance(model, MLP):
        arch = _mlp_arch(model)
    else:
        raise ValueError(f"merging knows the channel groups of {SUPPORTED}; got a {type(model).__name__}")
    missing = set(model.state_dict()) ^ set(arch.spec)
    if missing:  # a variant this module does not describe: refuse rather than merge half of it
        raise ValueError(f"{type(model).__name__} has state entries merging does not know: {sorted(missing)[:4]}")
    return arch


def merge_spec(model: nn.Module) -> dict[str, Axes]:
    """For every entry of ``model.state_dict()``, the channel group of each axis (``"input"``, ``"output"``
    for the images' channels and the classes, ``None`` for kernel axes)."""
    return dict(_arch(model).spec)


def channel_groups(model: nn.Module) -> dict[str, int]:
    """The groups of channels that permute together, and their widths: ``{"stream1": 16, "layer1.0.conv1": 16,
    ...}`` for a CIFAR ResNet (one group per residual stream and one inside each block), ``{"layers.0": 512,
    ...}`` for the MLP."""
    return dict(_arch(model).widths)


def check_mergeable(a: nn.Module, b: nn.Module) -> None:
    """Raise ``ValueError`` naming the first difference when ``a`` and ``b`` are not the same architecture
    with the same shapes (and ``TypeError`` when one is not a module)."""
    _pair(a, b)


def _pair(a: nn.Module, b: nn.Module) -> _Arch:
    for what, m in (("a", a), ("b", b)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{what} must be a trained network (an nn.Module), got {type(m).__name__}")
    if type(a) is not type(b):
        raise ValueError(f"cannot merge a {type(a).__name__} with a {type(b).__name__}: both networks must have "
                         "the same architecture")
    arch = _arch(a)
    for attr in ("depth", "width", "num_classes", "in_chans", "img_size"):
        va, vb = getattr(a, attr, None), getattr(b, attr, None)
        if va != vb:
            raise ValueError(f"the networks differ in {attr}: {va} against {vb}; merge two networks built with the "
                             "same arguments")
    sa, sb = a.state_dict(), b.state_dict()
    only = [k for k in sa if k not in sb] + [k for k in sb if k not in sa]
    if only:
        raise ValueError(f"the networks differ in structure: {only[0]} is in {'a' if only[0] in sa else 'b'} only "
                         "(skip connections, BatchNorm?); merge two networks built with the same arguments")
    for k, t in sa.items():
        if t.shape != sb[k].shape:
            raise ValueError(f"{k} has shape {tuple(t.shape)} in a and {tuple(sb[k].shape)} in b")
    return arch


def _check_perms(perms: Mapping[str, torch.Tensor] | None, widths: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Every group's permutation as a long tensor (identity where none is given), checked."""
    if perms is not None and not isinstance(perms, Mapping):
        raise TypeError(f"perms must be a dict {{group: permutation}}, got {type(perms).__name__}")
    perms = dict(perms or {})
    unknown = sorted(set(perms) - set(widths))
    if unknown:
        raise ValueError(f"unknown channel group(s) {unknown}; this network's groups: {', '.join(widths)}")
    out = {}
    for g, d in widths.items():
        p = torch.as_tensor(perms.get(g, range(d))).long().cpu()
        if p.shape != (d,) or not torch.equal(torch.sort(p).values, torch.arange(d)):
            raise ValueError(f"perms[{g!r}] must be a permutation of 0..{d - 1} ({d} channels), "
                             f"got {p.tolist()[:8]}...")
        out[g] = p
    return out


def _permute_tensor(t: torch.Tensor, axes: Axes, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    for ax, g in enumerate(axes):
        if g in perms:
            t = t.index_select(ax, perms[g].to(t.device))
    return t


def permute(model: nn.Module, perms: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose channel ``j`` of each group is the original's channel ``perms[group][j]``:
    the same function (groups left out keep their order).

    Args:
        model: a network of :func:`channel_groups`.
        perms: ``{group: permutation}`` (index tensors or lists), as :func:`weight_matching` returns them.
    """
    arch = _arch(model)
    perms = _check_perms(perms, arch.widths)
    out = copy.deepcopy(model)
    out.load_state_dict({k: _permute_tensor(v, arch.spec[k], perms) for k, v in model.state_dict().items()})
    return out


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """The permutation ``p`` maximizing ``sum_i cost[i, p[i]]``."""
    _, col = linear_sum_assignment(cost.detach().cpu().double().numpy(), maximize=True)
    return torch.as_tensor(col, dtype=torch.long)


@torch.no_grad()
def weight_matching(a: nn.Module, b: nn.Module, max_iter: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
    """Git Re-Basin's weight matching: permutations of ``b``'s channels that bring its weights closest to ``a``'s.

    Coordinate ascent over the groups in a random order (``seed``): each step solves one group's linear
    assignment of ``sum <W_A, W_B permuted>`` over every parameter with the group on an axis (weights,
    biases, BatchNorm's gamma and beta); stops when a sweep changes nothing or after ``max_iter`` sweeps.

    Returns:
        ``{group: perm}``: ``permute(b, perms)`` is ``b`` aligned to ``a`` (``perm[i]`` is b's channel matched
        to a's channel ``i``).
    """
    arch = _pair(a, b)
    pa = {k: v.detach().double().cpu() for k, v in a.named_parameters()}
    pb = {k: v.detach().double().cpu() for k, v in b.named_parameters()}
    uses = {g: [(k, ax) for k in pa for ax, h in enumerate(arch.spec[k]) if h == g] for g in arch.widths}
    perms = {g: torch.arange(d) for g, d in arch.widths.items()}
    rng = np.random.default_rng(seed)
    groups = list(arch.widths)
    for _ in range(max_iter):
        changed = False
        for g in (groups[i] for i in rng.permutation(len(groups))):
            d = arch.widths[g]
            others = {h: p for h, p in perms.items() if h != g}
            cost = torch.zeros(d, d, dtype=torch.float64)
            for k, ax in uses[g]:
                wb = _permute_tensor(pb[k], arch.spec[k], others)
                cost += pa[k].movedim(ax, 0).reshape(d, -1) @ wb.movedim(ax, 0).reshape(d, -1).T
            new, idx = _assign(cost), torch.arange(d)
            if cost[idx, new].sum() > cost[idx, perms[g]].sum() + 1e-12 * cost.abs().sum():
                perms[g], changed = new, True
        if not changed:
            break
    return perms


def _batches(data, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Normalized float images in batches: from an ImageDataset or a float tensor [n, c, h, w]."""
    if isinstance(data, ImageDataset):
        if len(data) == 0:
            raise ValueError("data is empty; give at least one image")
        for i in range(0, len(data), batch_size):
            yield data.normalize(data.images[i:i + batch_size]).to(device)
    elif isinstance(data, torch.Tensor) and data.is_floating_point() and data.ndim == 4 and len(data):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size].to(device)
    else:
        raise TypeError("data must be an ImageDataset (wb.load(...)) or a float tensor of normalized images "
                        f"[n, channels, height, width], got {type(data).__name__}"
                        + (f" of shape {tuple(data.shape)} and dtype {data.dtype}"
                           if isinstance(data, torch.Tensor) else ""))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _rows(t: torch.Tensor) -> torch.Tensor:
    """Features as rows: [n, c, h, w] -> [n*h*w, c]; [n, c] stays."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) if t.ndim == 4 else t.reshape(len(t), -1)


@torch.no_grad()
def _correlations(a: nn.Module, b: nn.Module, data, batch_size: int) -> dict[str, torch.Tensor]:
    arch = _pair(a, b)
    names = sorted({n for ns in arch.points.values() for n in ns})
    sums: dict[str, list] = {}
    modes = (a.training, b.training)
    a.eval(), b.eval()
    try:
        for x in _batches(data, batch_size, _device(a)):
            ca = run_with_cache(a, x, names)[1]
            cb = run_with_cache(b, x.to(_device(b)), names)[1]
            for g, ns in arch.points.items():
                for n in ns:
                    fa, fb = _rows(ca[n]).double().cpu(), _rows(cb[n]).double().cpu()
                    s = [len(fa), fa.sum(0), fb.sum(0), fa.pow(2).sum(0), fb.pow(2).sum(0), fa.T @ fb]
                    sums[g] = s if g not in sums else [u + v for u, v in zip(sums[g], s)]
    finally:
        a.train(modes[0]), b.train(modes[1])
    corr = {}
    for g, (n, sa, sb, saa, sbb, sab) in sums.items():
        ma, mb = sa / n, sb / n
        cov = sab / n - torch.outer(ma, mb)
        sd = torch.outer((saa / n - ma * ma).clamp_min(0).sqrt(), (sbb / n - mb * mb).clamp_min(0).sqrt())
        corr[g] = torch.where(sd > 1e-12, cov / sd.clamp_min(1e-12), torch.zeros_like(cov))
    return corr


def activation_matching(a: nn.Module, b: nn.Module, data, batch_size: int = 256, return_scores: bool = False):
    """Permutations of ``b``'s channels that maximize their correlation with ``a``'s on ``data``.

    For each group, the Pearson correlation of every channel of ``a`` with every channel of ``b`` over the
    images and positions (a residual stream pools the stem's or shortcut's and every block's output of the
    stage), then one linear assignment. Both networks run in eval mode.

    Args:
        data: an ImageDataset (its images are normalized here) or a float tensor of normalized images.
        return_scores: also return ``{group: correlation of each matched pair}`` (A's channel order), which
            :func:`merge_plan` uses to choose the pairs to merge at a width other than 1.

    Returns:
        ``{group: perm}`` (``permute(b, perms)`` is aligned to ``a``), or ``(perms, scores)``.
    """
    corr = _correlations(a, b, data, batch_size)
    perms = {g: _assign(c) for g, c in corr.items()}
    scores = {g: c[torch.arange(len(c)), perms[g]].float() for g, c in corr.items()}
    return (perms, scores) if return_scores else perms


def interpolate(a: nn.Module, b: nn.Module, t: float = 0.5) -> nn.Module:
    """A new network whose every floating-point parameter and buffer is ``(1 - t) a + t b`` (BatchNorm's
    running statistics too; integer buffers from ``a``)."""
    _pair(a, b)
    sb = b.state_dict()
    out = copy.deepcopy(a)
    out.load_state_dict({k: (1 - t) * v + t * sb[k].to(v.device) if v.is_floating_point() else v
                         for k, v in a.state_dict().items()})
    return out


@torch.no_grad()
def reset_bn_stats(model: nn.Module, data, batch_size: int = 256) -> nn.Module:
    """REPAIR for a BatchNorm network: forget every BatchNorm's running statistics and recompute them as the
    plain average over ``data``'s batches in train mode (in place; the mode is restored). Returns ``model``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer whose statistics could be re-estimated; "
                         "use a network with BatchNorm (for the MLP: mlp(norm='bn'))")
    was, moms = model.training, [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    try:
        for x in _batches(data, batch_size, _device(model)):
            model(x)
    finally:
        for m, mom in zip(bns, moms):
            m.momentum = mom
        model.train(was)
    return model


def interpolation_path(a: nn.Module, b: nn.Module, test: ImageDataset, ts: Sequence[float] | None = None, *,
                       perms: Mapping[str, torch.Tensor] | None = None, repair=None,
                       batch_size: int = 1000) -> pd.DataFrame:
    """Test loss and accuracy of ``(1 - t) a + t b`` along ``ts`` (default 0, 0.1, ..., 1).

    Args:
        perms: align ``b`` to ``a`` first (:func:`weight_matching` or :func:`activation_matching`).
        repair: training images to re-estimate the BatchNorm statistics on at every ``t`` (:func:`reset_bn_stats`).

    Returns:
        A DataFrame with columns ``t``, ``loss``, ``acc``.
    """
    ts = np.linspace(0, 1, 11) if ts is None else np.asarray(ts, dtype=float)
    if ts.ndim != 1 or len(ts) == 0 or ((ts < 0) | (ts > 1)).any():
        raise ValueError(f"ts must be a list of numbers in [0, 1], got {ts}")
    _pair(a, b)
    b = permute(b, perms) if perms is not None else b
    rows = []
    for t in ts:
        m = interpolate(a, b, float(t))
        if repair is not None:
            reset_bn_stats(m, repair)
        r = evaluate(m, test, batch_size=batch_size)
        rows.append({"t": float(t), "loss": r["loss"], "acc": r["acc"]})
    return pd.DataFrame(rows)


def loss_barrier(path: pd.DataFrame, metric: str = "loss") -> float:
    """The largest rise of ``metric`` along a path above the straight line between its ends (Frankle et al.
    2020, arXiv 1912.05671); for ``acc`` the largest fall below it."""
    if metric not in path or "t" not in path:
        raise ValueError(f"path needs the columns t and {metric!r} (interpolation_path's), got {list(path.columns)}")
    p = path.sort_values("t")
    t, v = p["t"].to_numpy(), p[metric].to_numpy()
    line = (1 - t) * v[0] + t * v[-1]
    return float(np.max(v - line) if metric != "acc" else np.max(line - v))


@dataclass
class MergePlan:
    """What each channel of the merged network is, per group (see the module docstring).

    Attributes:
        width: the merged network's width as a multiple of one network's.
        perms: ``{group: perm}`` the matching (``perm[i]``: b's channel matched to a's ``i``).
        merge: ``{group: [k, 2d]}`` rows combine the stacked channels ``[a; b]`` into the merged layer's ``k``
            (``0.5, 0.5`` for a matched pair, one ``1`` for a channel kept alone); ``"output"`` averages the logits.
        unmerge: ``{group: [2d, k]}`` which merged channel stands in for each channel of a and b (zero rows for
            dropped pairs); ``"input"`` feeds the images to both.
        merged_pairs: ``{group: how many of its k channels average a matched pair}``.
    """

    width: float
    perms: dict[str, torch.Tensor]
    merge: dict[str, torch.Tensor]
    unmerge: dict[str, torch.Tensor]
    merged_pairs: dict[str, int]

    @property
    def widths(self) -> dict[str, int]:
        return {g: int(m.shape[0]) for g, m in self.merge.items() if g != OUTPUT}


def _in_features(model: nn.Module) -> int:
    return model.in_chans if isinstance(model, CifarResNet) else model.in_chans * model.img_size ** 2


def merge_plan(a: nn.Module, b: nn.Module, perms: Mapping[str, torch.Tensor] | None = None, *, width: float = 1.0,
               scores: Mapping[str, torch.Tensor] | None = None) -> MergePlan:
    """The merge matrices for merging ``b`` (aligned by ``perms``; none: channel ``i`` with channel ``i``,
    naive averaging) into ``a`` at ``width`` times one network's width.

    Args:
        width: 1 merges every matched pair (the same width as a and b); between 1 and 2 merges the
            ``(2 - width) d`` best-matched pairs of each group and keeps the others' channels of a and b apart;
            below 1 merges the ``width * d`` best-matched pairs and drops the others. ``width * base width``
            must be a whole number.
        scores: ``{group: match quality of each pair}`` (:func:`activation_matching` with
            ``return_scores=True``); needed when ``width != 1`` to rank the pairs.
    """
    arch = _pair(a, b)
    perms = _check_perms(perms, arch.widths)
    base = arch.base
    new_base = round(width * base)
    if not (0 < width <= 2) or abs(width * base - new_base) > 1e-6 or new_base < 1:
        ok = [f"{w / base:g}" for w in range(1, 2 * base + 1)]
        raise ValueError(f"width {width} gives {width * base:g} base channels; width times the base width {base} "
                         f"must be a whole number from 1 to {2 * base}: width in {', '.join(ok[:6])}, ..., {ok[-1]}")
    if new_base != base and scores is None:
        raise ValueError(f"width {width} != 1 merges or drops pairs by how well they match: pass "
                         "scores= from activation_matching(a, b, data, return_scores=True)")
    merge, unmerge, merged_pairs = {}, {}, {}
    for g, d in arch.widths.items():
        k, p = d * new_base // base, perms[g]
        if new_base == base:
            order = torch.arange(d)
        else:
            s = torch.as_tensor(scores.get(g) if isinstance(scores, Mapping) else None).float().cpu()
            if s.shape != (d,):
                raise ValueError(f"scores[{g!r}] must hold one number per channel ({d}), got shape {tuple(s.shape)}")
            order = torch.sort(-s, stable=True).indices
        n_merge = min(k, 2 * d - k)
        pairs, alone = sorted(order[:n_merge].tolist()), sorted(order[n_merge:].tolist()) if k > d else []
        cols = [[(i, 0.5), (d + int(p[i]), 0.5)] for i in pairs] + [[(i, 1.0)] for i in alone] \
            + [[(d + int(p[i]), 1.0)] for i in alone]
        m, u = torch.zeros(k, 2 * d), torch.zeros(2 * d, k)
        for r, entries in enumerate(cols):
            for c, v in entries:
                m[r, c], u[c, r] = v, 1.0
        merge[g], unmerge[g], merged_pairs[g] = m, u, n_merge
    c, f = a.num_classes, _in_features(a)
    merge[OUTPUT] = torch.cat([torch.eye(c), torch.eye(c)], 1) / 2
    unmerge[INPUT] = torch.cat([torch.eye(f), torch.eye(f)], 0)
    return MergePlan(width=new_base / base, perms=perms, merge=merge, unmerge=unmerge, merged_pairs=merged_pairs)


def _build_like(model: nn.Module, width: float) -> nn.Module:
    """A fresh network of ``model``'s architecture at ``width`` times its width (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        if isinstance(model, CifarResNet):
            new = CifarResNet(model.depth, num_classes=model.num_classes, in_chans=model.in_chans,
                              width=round(model.width * width), skip=model.layer1[0].skip)
        else:
            norm = "bn" if isinstance(model.layers[0][1], nn.BatchNorm1d) else None
            new = MLP(model.num_classes, model.in_chans, model.img_size, model.depth, round(model.width * width), norm)
    return new.to(_device(model)).eval()


def _check_plan(plan: MergePlan, arch: _Arch) -> None:
    if not isinstance(plan, MergePlan):
        raise TypeError(f"plan must be a MergePlan (from merge_plan(a, b, ...)), got {type(plan).__name__}")
    for g, d in arch.widths.items():
        if g not in plan.merge or plan.merge[g].shape[1] != 2 * d:
            raise ValueError(f"the plan does not fit these networks (group {g!r} of {d} channels); "
                             "make it with merge_plan(a, b, ...) for the same a and b")


@torch.no_grad()
def merge_weights(a: nn.Module, b: nn.Module, plan: MergePlan) -> nn.Module:
    """Merge in weight space, without least squares: every weight ``W_M = merge_out [[W_A, 0], [0, W_B]] unmerge_in``
    (ZipIt!'s rule, Stoica et al. 2023, arXiv 2305.03053); every per-channel vector (biases, BatchNorm's
    parameters and running statistics) ``merge [v_A; v_B]``.

    At width 1 this is the average of ``a`` and ``b`` permuted by the plan (naive averaging for identity
    permutations); at width 2 it is the two networks side by side (their ensemble). Re-estimate the
    BatchNorm statistics afterwards (:func:`reset_bn_stats`, REPAIR).
    """
    arch = _pair(a, b)
    _check_plan(plan, arch)
    new = _build_like(a, plan.width)
    sa, sb, state = a.state_dict(), b.state_dict(), {}
    for key, axes in arch.spec.items():
        ta, tb = sa[key], sb[key].to(sa[key].device)
        if not ta.is_floating_point():
            state[key] = ta.clone()
        elif len(axes) == 1:
            state[key] = plan.merge[axes[0]].to(ta) @ torch.cat([ta, tb])
        else:
            do, di = ta.shape[:2]
            block = ta.new_zeros((2 * do, 2 * di) + tuple(ta.shape[2:]))
            block[:do, :di], block[do:, di:] = ta, tb
            state[key] = torch.einsum("ko,oi...,il->kl...", plan.merge[axes[0]].to(ta), block,
                                      plan.unmerge[axes[1]].to(ta))
    new.load_state_dict(state)
    return new


class _Normal:
    """Running sums of a least-squares problem over chunks of rows (float64, shifted by the first chunk's
    means for accuracy): ``X^T X``, ``X^T T`` and the column sums."""

    def __init__(self, bias: bool = True):
        self.bias, self.n = bias, 0

    def add(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if self.n == 0:
            self.sx = x.mean(0) if self.bias else torch.zeros_like(x[0])
            self.st = t.mean(0) if self.bias else torch.zeros_like(t[0])
            self.xx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
            self.xt = torch.zeros(x.shape[1], t.shape[1], dtype=torch.float64, device=x.device)
            self.cx = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
            self.ct = torch.zeros(t.shape[1], dtype=torch.float64, device=x.device)
        xc, tc = x - self.sx, t - self.st
        self.xx += (xc.T @ xc).double()
        self.xt += (xc.T @ tc).double()
        self.cx += xc.sum(0).double()
        self.ct += tc.sum(0).double()
        self.n += len(x)

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W [D, k], b [k], mean of x [D], covariance of x [D, D])``, all float64 on the CPU."""
        n = self.n
        mx, mt = (self.cx / n).cpu(), (self.ct / n).cpu()
        if not self.bias:
            mx, mt = torch.zeros_like(mx), torch.zeros_like(mt)
        cxx = (self.xx / n).cpu() - torch.outer(mx, mx)
        cxt = (self.xt / n).cpu() - torch.outer(mx, mt)
        lam = ridge * float(torch.diagonal(cxx).mean()) if ridge > 0 else 0.0
        if lam > 0:
            w = torch.linalg.solve(cxx + lam * torch.eye(len(cxx), dtype=cxx.dtype), cxt)
        else:  # the least-norm solution, also where x has dependent columns
            w = torch.linalg.lstsq(cxx, cxt, driver="gelsd").solution
        sx, st = self.sx.double().cpu(), self.st.double().cpu()
        b = (mt + st) - (mx + sx) @ w if self.bias else torch.zeros(w.shape[1], dtype=w.dtype)
        return w, b, mx + sx, cxx


def least_squares(x: torch.Tensor, t: torch.Tensor, ridge: float = 0.0, bias: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``W, b`` minimizing ``||x W + b - t||^2 + lam ||W||^2`` (the PLeaS step for one linear layer), in float64.

    Args:
        x: inputs ``[n, d]``; t: targets ``[n, k]`` (same n).
        ridge: ``lam`` relative to the mean variance of x's columns (0: the least-norm exact solution).
        bias: fit ``b`` (else ``b = 0``).
    Returns:
        ``W [d, k]`` and ``b [k]``.
    """
    if x.ndim != 2 or t.ndim != 2 or len(x) != len(t) or len(x) == 0:
        raise ValueError(f"x must be [n, d] and t [n, k] with the same n > 0, got {tuple(x.shape)} and "
                         f"{tuple(t.shape)}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    acc = _Normal(bias)
    acc.add(x.double(), t.double())
    w, b, _, _ = acc.solve(ridge)
    return w, b


def _regressors(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows a layer multiplies by its weight: im2col patches of a convolution, inputs of a linear layer."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # [n, cin*kh*kw, L]
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(len(x), -1)


@torch.no_grad()
def _solve_layer(parts: list, target: Callable[[int, int], torch.Tensor], n: int, chunk: int, ridge: float) -> None:
    """Fit the layers ``parts`` (``(module, its input [N, ...], its BatchNorm or None)``, summed) to
    ``target(i, j)`` (the pre-activation of images ``i:j``) and write the solution into the modules."""
    acc = _Normal()
    for i in range(0, n, chunk):
        xs = [_regressors(mod, inp[i:i + chunk]) for mod, inp, _ in parts]
        acc.add(torch.cat(xs, 1), _rows(target(i, min(i + chunk, n))))
    w, bias, mean, cov = acc.solve(ridge)
    start = 0
    for p, (mod, _, bn) in enumerate(parts):
        size = mod.weight[0].numel()
        wp, sl = w[start:start + size], slice(start, start + size)
        start += size
        mod.weight.copy_(wp.T.reshape(mod.weight.shape))
        b = bias if p == 0 else torch.zeros_like(bias)
        if bn is None:
            mod.bias.copy_(b)
            continue
        if getattr(mod, "bias", None) is not None:
            mod.bias.zero_()
        mu = mean[sl] @ wp                                             # the mean of this layer's output
        var = ((cov[sl, sl] @ wp) * wp).sum(0).clamp_min(0)            # and its variance, channel by channel
        bn.running_mean.copy_(mu), bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt()), bn.bias.copy_(mu + b)  # eval mode: exactly W x + b


def _run(fn: Callable, n: int, chunk: int, *ts: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(*(t[i:i + chunk] for t in ts)) for i in range(0, n, chunk)])


@torch.no_grad()
def _pleas_resnet(a, b, m, x, plan: MergePlan, arch: _Arch, ridge: float, chunk: int) -> None:
    n = len(x)

    def mix(g, ta, tb):  # the merged channels of the two networks' features: merge [A; B]
        return torch.einsum("kc,nc...->nk...", plan.merge[g].to(ta), torch.cat([ta, tb], 1))

    pa, pb = (_run(lambda z, net=net: net.stem[1](net.stem[0](z)), n, chunk, x) for net in (a, b))
    g = arch.spec["stem.0.weight"][0]
    _solve_layer([(m.stem[0], x, m.stem[1])], lambda i, j: mix(g, pa[i:j], pb[i:j]), n, chunk, ridge)
    ha, hb, hm = F.relu(pa), F.relu(pb), _run(m.stem, n, chunk, x)
    for s in (1, 2, 3):
        stages = (getattr(net, f"layer{s}") for net in (a, b, m))
        for k, (ba, bb, bm) in enumerate(zip(*stages)):
            name = f"layer{s}.{k}"
            g_mid, g_out = arch.spec[f"{name}.conv1.weight"][0], arch.spec[f"{name}.conv2.weight"][0]
            p1a, p1b = (_run(lambda z, blk=blk: blk.bn1(blk.conv1(z)), n, chunk, h) for blk, h in ((ba, ha), (bb, hb)))
            _solve_layer([(bm.conv1, hm, bm.bn1)], lambda i, j: mix(g_mid, p1a[i:j], p1b[i:j]), n, chunk, ridge)
            rm = _run(lambda z: F.relu(bm.bn1(bm.conv1(z))), n, chunk, hm)

            def pre2(blk, p1, h):  # the block's pre-ReLU output: branch plus shortcut
                out = blk.bn2(blk.conv2(F.relu(p1)))
                return out if not blk.skip else out + (h if blk.shortcut is None else blk.shortcut(h))

            p2a, p2b = (_run(lambda p, h, blk=blk: pre2(blk, p, h), n, chunk, p1, h) for blk, p1, h in
                        ((ba, p1a, ha), (bb, p1b, hb)))
            parts = [(bm.conv2, rm, bm.bn2)]
            if bm.shortcut is not None:  # solved together with the branch: one target for their sum
                parts.append((bm.shortcut[0], hm, bm.shortcut[1]))
            identity = bm.skip and bm.shortcut is None  # the input passes unchanged: fit what is left

            def target(i, j):
                t = mix(g_out, p2a[i:j], p2b[i:j])
                return t - hm[i:j] if identity else t

            _solve_layer(parts, target, n, chunk, ridge)
            hm = _run(bm, n, chunk, hm)
            ha, hb = F.relu(p2a), F.relu(p2b)
    la, lb = a.fc(ha.mean((2, 3))), b.fc(hb.mean((2, 3)))
    _solve_layer([(m.fc, hm.mean((2, 3)), None)], lambda i, j: mix(OUTPUT, la[i:j], lb[i:j]), n, chunk, ridge)


@torch.no_grad()
def _pleas_mlp(a, b, m, x, plan: MergePlan, arch: _Arch, ridge: float, chunk: int) -> None:
    n = len(x)
    ha = hb = hm = x.flatten(1)

    def mix(g, ta, tb):
        return torch.cat([ta, tb], 1) @ plan.merge[g].to(ta).T

    for li, (la, lb, lm) in enumerate(zip(a.layers, b.layers, m.layers)):
        bn, g = isinstance(lm[1], nn.BatchNorm1d), f"layers.{li}"
        pa, pb = ((layer[1](layer[0](h)) if bn else layer[0](h)) for layer, h in ((la, ha), (lb, hb)))
        _solve_layer([(lm[0], hm, lm[1] if bn else None)], lambda i, j: mix(g, pa[i:j], pb[i:j]), n, chunk, ridge)
        hm, ha, hb = lm(hm), F.relu(pa), F.relu(pb)
    _solve_layer([(m.fc, hm, None)], lambda i, j: mix(OUTPUT, a.fc(ha[i:j]), b.fc(hb[i:j])), n, chunk, ridge)


def pleas_merge(a: nn.Module, b: nn.Module, data, plan: MergePlan, *, ridge: float = 1e-4,
                chunk: int = 100) -> nn.Module:
    """PLeaS: a new network of ``plan.width`` times ``a``'s width whose layers, in forward order, are the
    least-squares fits of the plan's merged features of ``a`` and ``b`` on ``data`` (module docstring).

    Args:
        a, b: the two networks (on one device), of one architecture.
        data: the images the layers are fitted on (an ImageDataset or normalized float images); every image
            is held in memory with its activations, so a few hundred to a few thousand.
        plan: :func:`merge_plan` (the matching and the width).
        ridge: Tikhonov damping relative to the mean variance of each layer's inputs (0: exact least squares).
        chunk: images per step of the accumulation (memory).

    Returns:
        The merged network in eval mode; its BatchNorms already hold the statistics of ``data``.
    """
    arch = _pair(a, b)
    _check_plan(plan, arch)
    if ridge < 0 or chunk < 1:
        raise ValueError(f"ridge must be >= 0 and chunk >= 1, got {ridge} and {chunk}")
    dev = _device(a)
    x = torch.cat(list(_batches(data, 1024, dev)))
    modes = (a.training, b.training)
    a.eval(), b.eval()
    m = _build_like(a, plan.width)
    try:
        (_pleas_resnet if isinstance(a, CifarResNet) else _pleas_mlp)(a, b, m, x, plan, arch, ridge, chunk)
    finally:
        a.train(modes[0]), b.train(modes[1])
    return m


def compare_merges(a: nn.Module, b: nn.Module, data, test: ImageDataset, width: float = 1.0, *,
                   ridge: float = 1e-4) -> pd.DataFrame:
    """Every merge of ``a`` and ``b`` at ``width``, evaluated on ``test``; all use the same images ``data`` for the
    matching (:func:`activation_matching`), REPAIR and the least squares.

    Rows (``method, width, acc, loss, params``): at width 1 ``naive`` (the plain average), ``naive + REPAIR``,
    ``aligned``, ``aligned + REPAIR`` and ``PLeaS``; at another width ``aligned + REPAIR`` (the plan's merge
    in weight space, :func:`merge_weights`) and ``PLeaS``, the same plan with least squares.
    """
    perms, scores = activation_matching(a, b, data, return_scores=True)
    plan = merge_plan(a, b, perms, width=width, scores=scores)
    nets: dict[str, nn.Module] = {}
    if plan.width == 1:
        naive = merge_weights(a, b, merge_plan(a, b))
        nets["naive"], nets["naive + REPAIR"] = naive, reset_bn_stats(copy.deepcopy(naive), data)
        nets["aligned"] = merge_weights(a, b, plan)
    nets["aligned + REPAIR"] = reset_bn_stats(merge_weights(a, b, plan), data)
    nets["PLeaS"] = pleas_merge(a, b, data, plan, ridge=ridge)
    rows = []
    for name, net in nets.items():
        r = evaluate(net, test)
        rows.append({"method": name, "width": plan.width, "acc": r["acc"], "loss": r["loss"],
                     "params": sum(p.numel() for p in net.parameters())})
    return pd.DataFrame(rows)
