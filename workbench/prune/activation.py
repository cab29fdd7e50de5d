"""Dead units after ReLU, and Activate-while-Pruning (AP), which prunes so as to revive them.

Liu, Ghosh, Tan & Motani, *AP: Selective Activation for De-sparsifying Pruned Neural Networks*,
TMLR 2023, https://arxiv.org/abs/2212.06145.

* The **dynamic dead neuron rate** (DNR) of a ReLU layer on an input is the share of its units
  whose output is zero on that input; averaged over the inputs it measures how sparse the layer's
  representation is (a unit zero on *every* input is dead in the static sense too). The paper
  finds that the harder a network is pruned, the lower the DNR its training settles at: a pruned
  network has little to spare, and a zeroed unit passes nothing on. :func:`dead_neuron_rate`
  measures it on data, per ReLU layer and pooled; :class:`TrackDeadNeurons` logs it during
  training (a ``dnr`` column in the history).
* **AP** works in tandem with a pruning method. In every pruning round the host method (here
  magnitude, as in iterative magnitude pruning) removes its share of the weights; AP then removes a
  further share ``ap_rate`` of the weights kept before the round, chosen among the **negative**
  weights that **moved least** during the round's training (smallest ``|w_trained - w_start|``,
  where ``w_start`` is what the round's training started from, the rewind point). A negative
  weight pushes its unit's pre-activation down, towards ReLU's zero; removing the ones training
  did not bother to change raises the pre-activations and so *selectively activates* units: the
  DNR of the pruned network falls (how much of that survives retraining is what notebook 14
  measures). The weights are then rewound and retrained as usual. That is the whole method (the
  authors' code splits a 20% round into 18% magnitude and 2% AP); no activation function is
  changed, so models, state dicts and caches keep their plain layout.

:func:`ap_masks` is one such round as masks (usable with :class:`~workbench.prune.masks.Masked`
after any training run) and :func:`iterative_ap` is iterative magnitude pruning with rewinding
with AP in every round, cached run by run like
:func:`~workbench.prune.schedules.iterative_magnitude` (with ``ap_rate=0`` it *is* that
procedure, and shares its cache entries).
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..data import ImageDataset, Loader
from ..models.hooks import HookPoint
from ..train.events import Algorithm, State
from .masks import _check_masks, _check_sparsity, _keep_top, apply_masks, prunable
from .schedules import IterativeResult, _check_scope, iterative_magnitude

__all__ = ["relu_points", "dead_neuron_rate", "TrackDeadNeurons", "ap_masks", "iterative_ap"]


def relu_points(model: nn.Module) -> list[str]:
    """The module names whose output is a ReLU's output, in forward order: every ``nn.ReLU`` module,
    and the hook points a block puts right after a functional ReLU (``hook_relu*``, and ``hook_out`` of a
    block that also has ``hook_relu1``: the CIFAR ResNets' basic blocks end in ``relu(out + shortcut)``)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU):
            out.append(name)
        elif isinstance(m, HookPoint):
            parent, _, leaf = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            if leaf.startswith("hook_relu") or (leaf == "hook_out" and isinstance(getattr(owner, "hook_relu1", None),
                                                                                    HookPoint)):
                out.append(name)
    return out


def _resolve(model: nn.Module, names: Iterable[str] | str | None) -> list[str]:
    if names is None:
        names = relu_points(model)
        if not names:
            raise ValueError(f"{type(model).__name__} has no nn.ReLU module and no hook point after a ReLU; name the "
                             "modules whose outputs are ReLU outputs with names=[...]")
        return names
    names = [names] if isinstance(names, str) else list(names)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        raise ValueError(f"no module named {unknown[:4]} in {type(model).__name__}; its ReLU outputs are "
                         f"{relu_points(model)[:6]}")
    if not names:
        raise ValueError("names= is empty: give at least one module whose output is a ReLU output (or None for all)")
    return names


class _ZeroCounter:
    """Forward hooks that add up, per named module, the outputs ``<= 0`` and the outputs seen."""

    def __init__(self, model: nn.Module, names: Sequence[str], per_unit: bool = False):
        self.names, self.per_unit = list(names), per_unit
        self.zeros: dict[str, torch.Tensor] = {}
        self.seen: dict[str, int] = dict.fromkeys(self.names, 0)
        self.units: dict[str, int] = {}
        self.always: dict[str, torch.Tensor] = {}   # per unit: zero on every example so far
        self.active = True
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def fn(_module, _inputs, output):
            if not self.active:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            dead = out.detach() <= 0                                   # [batch, *unit shape]
            z = dead.sum(dtype=torch.float64)
            self.zeros[name] = self.zeros[name] + z if name in self.zeros else z
            self.seen[name] += dead.numel()
            self.units[name] = dead[0].numel()
            if self.per_unit:
                a = dead.all(0)
                self.always[name] = self.always[name] & a if name in self.always else a
        return fn

    def reset(self) -> None:
        self.zeros, self.seen, self.always = {}, dict.fromkeys(self.names, 0), {}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@torch.no_grad()
def dead_neuron_rate(model: nn.Module, data: ImageDataset | torch.Tensor, names: Iterable[str] | str | None = None,
                     masks: Mapping[str, torch.Tensor] | None = None, batch_size: int = 500,
                     max_examples: int | None = None,
                     device: torch.device | str | None = None) -> pd.DataFrame:
    """The dynamic dead neuron rate (DNR) of each ReLU layer of ``model`` on ``data``.

    A unit is one entry of a layer's output (a channel at one position, for a convolution); it is dead
    on an input when its output is zero (``<= 0``, so a pre-activation hook point counts the units a
    ReLU *would* zero). The model runs in eval mode (BatchNorm on its running statistics); its mode is
    restored.

    Args:
        model: any module with ReLUs (see :func:`relu_points` for the layers found by default).
        data: an :class:`~workbench.data.ImageDataset` (normalized as for training) or a tensor of
            model inputs ``[N, ...]``.
        names: the modules whose outputs to count (default: :func:`relu_points`).
        masks: measure the network with these masks applied (on a copy: ``model`` is left as it is),
            for instance a pruning round's masks before any retraining.
        batch_size, max_examples: batches of ``batch_size``; only the first ``max_examples`` inputs.
        device: where to run (default: the model's device).

    Returns:
        One row per layer: ``layer``, ``units`` (per input), ``dnr`` (the share of unit-input pairs
        that are zero) and ``dead_always`` (the share of units zero on every input). ``attrs`` holds
        ``dnr`` (pooled over every unit of every layer), ``mean_layer_dnr`` and ``n`` (inputs seen).

    >>> wb.prune.dead_neuron_rate(model, test).attrs["dnr"]   # doctest: +SKIP
    0.41
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples is a positive number of inputs (or None for all), got {max_examples!r}")
    names = _resolve(model, names)
    if masks is not None:
        _check_masks(model, masks)
        model = apply_masks(copy.deepcopy(model), masks)
    p = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (p.device if p is not None else torch.device("cpu"))
    if isinstance(data, ImageDataset):
        if max_examples is not None and max_examples < len(data):
            data = data._replace(data.images[:max_examples], data.labels[:max_examples])
        batches = (x for x, _ in Loader(data, batch_size=batch_size, shuffle=False, device=dev))
    elif isinstance(data, torch.Tensor):
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"data as a tensor is a batch of model inputs [N, ...] with N >= 1, got shape "
                             f"{tuple(data.shape)}")
        x = data[:max_examples] if max_examples is not None else data
        batches = (x[i:i + batch_size].to(dev) for i in range(0, len(x), batch_size))
    else:
        raise TypeError(f"data is an ImageDataset (wb.load(...)) or a tensor of inputs, got {type(data).__name__}")
    counter = _ZeroCounter(model, names, per_unit=True)
    was = model.training
    model.eval()
    n = 0
    try:
        for xb in batches:
            model(xb)
            n += len(xb)
    finally:
        counter.remove()
        model.train(was)
    silent = [nm for nm in names if counter.seen[nm] == 0]
    if silent:
        raise ValueError(f"the modules {silent[:4]} never ran in the forward pass (a dropped block?); leave them out "
                         "of names=")
    rows = [{"layer": nm, "units": counter.units[nm], "dnr": float(counter.zeros[nm]) / counter.seen[nm],
             "dead_always": float(counter.always[nm].double().mean())} for nm in names]
    df = pd.DataFrame(rows)
    df.attrs.update(dnr=float(sum(float(counter.zeros[nm]) for nm in names) / sum(counter.seen[nm] for nm in names)),
                    mean_layer_dnr=float(df.dnr.mean()), n=n)
    return df


class TrackDeadNeurons(Algorithm):
    """Log the dynamic DNR of the training batches as ``dnr`` in ``wb.fit``'s history (the epoch's mean
    over its batches, counted on each step's first forward pass in training mode), and per layer as
    ``dnr:<layer>`` when ``per_layer=True``. Changes nothing else; the counts stay on the device, so it
    costs one comparison and one sum per ReLU layer per step.

    >>> wb.fit(model, train, algorithms=[TrackDeadNeurons()]).history["dnr"]   # doctest: +SKIP
    """

    def __init__(self, names: Sequence[str] | None = None, per_layer: bool = False):
        super().__init__(names=None if names is None else list(names), per_layer=bool(per_layer))
        self.names, self.per_layer = (None if names is None else list(names)), bool(per_layer)
        self._counter: _ZeroCounter | None = None

    def on_fit_start(self, state: State) -> None:
        self._counter = _ZeroCounter(state.model, _resolve(state.model, self.names))

    def on_before_forward(self, state: State) -> None:
        self._counter.active = state.pass_index == 0  # a re-evaluation (SAM's second pass) is not counted again
        if state.pass_index == 0:
            self._counter.reset()

    def on_after_forward(self, state: State) -> None:
        c = self._counter
        if state.pass_index != 0 or not c.zeros:
            return
        seen = sum(c.seen[n] for n in c.names if n in c.zeros)
        state.logs["dnr"] = sum(c.zeros.values()) / seen
        if self.per_layer:
            state.logs.update({f"dnr:{n}": z / c.seen[n] for n, z in c.zeros.items()})

    def on_fit_end(self, state: State) -> None:
        if self._counter is not None:
            self._counter.remove()
            self._counter = None


def _reference_tensors(reference: nn.Module | Mapping[str, torch.Tensor], params: Mapping[str, nn.Parameter]
                       ) -> dict[str, torch.Tensor]:
    ref = reference.state_dict() if isinstance(reference, nn.Module) else reference
    if not isinstance(ref, Mapping):
        raise TypeError(f"reference is the weights the round's training started from (a model or a state dict), "
                        f"got {type(reference).__name__}")
    missing = [n for n in params if n not in ref]
    if missing:
        raise ValueError(f"reference has no weights {missing[:3]}: give the state dict (or model) the round's training "
                         "started from, e.g. the rewind point")
    for n, p in params.items():
        if tuple(ref[n].shape) != tuple(p.shape):
            raise ValueError(f"reference[{n!r}] has shape {tuple(ref[n].shape)}, the weight {tuple(p.shape)}")
    return {n: ref[n].detach().cpu().double() for n in params}


def _check_rate(ap_rate: float) -> float:
    if isinstance(ap_rate, bool) or not isinstance(ap_rate, (int, float)) or not 0 <= ap_rate < 1:
        raise ValueError(f"ap_rate is the share of the weights kept before the round that AP removes, in [0, 1): got "
                         f"{ap_rate!r} (the paper's code: 0.02 of a 0.2 round)")
    return float(ap_rate)


@torch.no_grad()
def ap_masks(model: nn.Module, reference: nn.Module | Mapping[str, torch.Tensor], sparsity: float,
             ap_rate: float = 0.02, kept: Mapping[str, torch.Tensor] | None = None, scope: str = "global",
             layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One pruning round of magnitude pruning with Activate-while-Pruning (AP).

    Of the weights ``kept`` marks 1 (all, when ``None``), say ``K``, the round ends with the
    ``round((1 - sparsity) * N)`` of all ``N`` chosen weights that are left after two cuts:

    1. magnitude (the host method) keeps the largest ``round((1 - sparsity) * N) + a`` of the kept
       weights, where ``a = round(ap_rate * K)``;
    2. AP removes ``a`` more among the **negative** weights still kept: those with the smallest
       ``|w - reference|``, the ones training moved least (ties broken by position).

    With ``scope="layer"`` both cuts are made in each layer alike (``N`` and ``K`` per layer).

    Args:
        model: the trained network (its current weights are ranked).
        reference: the weights the round's training started from (the rewind point): a model or a
            state dict.
        sparsity: the share of the chosen weights removed after the round, in [0, 1).
        ap_rate: AP's share, of the weights kept before the round (the authors' code: 0.02 per
            round of 0.2); 0 gives plain magnitude masks.
        kept: the previous round's masks (pruned weights stay pruned).
        scope, layers: as for :func:`~workbench.prune.magnitude_masks`.

    Returns:
        ``{parameter name: 0/1 float tensor}`` on the CPU, nested inside ``kept``.
    """
    sparsity, ap_rate = _check_sparsity(sparsity), _check_rate(ap_rate)
    _check_scope(scope)
    params = prunable(model, layers)
    if kept is not None:
        _check_masks(model, kept)
        absent = [n for n in params if n not in kept]
        if absent:
            raise ValueError(f"kept has no mask for {absent[:3]}: give the previous round's masks of every pruned "
                             "layer (or None before the first round)")
    ref = _reference_tensors(reference, params)
    w = {n: p.detach().cpu().double() for n, p in params.items()}
    alive = {n: (torch.ones_like(w[n], dtype=torch.bool) if kept is None else kept[n].detach().cpu() != 0)
             for n in params}
    groups = [list(params)] if scope == "global" else [[n] for n in params]
    out: dict[str, torch.Tensor] = {}
    for group in groups:
        total = sum(w[n].numel() for n in group)
        before = sum(int(alive[n].sum()) for n in group)
        target = total - round(sparsity * total)
        if target > before:
            where = group[0] if scope == "layer" else "the network"
            raise ValueError(f"sparsity={sparsity} keeps {target} weights of {where}, "
                             f"but only {before} are kept before this round: pruning never revives a weight")
        a = round(ap_rate * before)
        if target + a > before:
            raise ValueError(f"ap_rate={ap_rate} asks AP for {a} weights but this round removes only "
                             f"{before - target}: lower ap_rate below {(before - target) / max(before, 1):.4f} "
                             "or raise sparsity")
        mag = torch.cat([w[n].abs().masked_fill(~alive[n], float("-inf")).flatten() for n in group])
        host = _keep_top(mag, target + a).bool()                                    # step 1, flat over the group
        neg = torch.cat([(w[n] < 0).flatten() for n in group]) & host
        if int(neg.sum()) < a:
            raise ValueError(f"AP should remove {a} negative weights but only {int(neg.sum())} negative weights "
                             "survive the magnitude cut: lower ap_rate")
        moved = torch.cat([(w[n] - ref[n]).abs().flatten() for n in group])
        # the a least-moved negative weights go: rank the others out of reach with -inf on the negated movement
        drop = _keep_top((-moved).masked_fill(~neg, float("-inf")), a).bool()     # step 2
        keep = host & ~drop
        at = 0
        for n in group:
            out[n] = keep[at:at + w[n].numel()].view(w[n].shape).float()
            at += w[n].numel()
    return {n: out[n] for n in params}


def iterative_ap(name: str, train: ImageDataset, test: ImageDataset | None = None, *, sparsity: float, rounds: int,
                 ap_rate: float = 0.02, rewind: int | str = 0, seed: int = 0, model_kwargs: dict | None = None,
                 scope: str = "global", layers: Sequence[str] | None = None, **fit_kwargs) -> IterativeResult:
    """Iterative magnitude pruning with rewinding, with Activate-while-Pruning in every round.

    The procedure of :func:`~workbench.prune.iterative_magnitude` (train dense; ``rounds`` times:
    prune, rewind to the rewind point, retrain with the masks fixed), except that each round's masks
    come from :func:`ap_masks`: magnitude removes all but ``ap_rate`` of the weights kept before the
    round that the round's cut takes, and AP removes those among the negative weights that moved
    least from the rewind point in the round just trained. The sparsity after round ``k`` is the
    same as without AP, ``1 - (1 - p) ** k``; only which weights go differs. With ``ap_rate=0`` the
    masks, and the cached runs, are exactly those of ``iterative_magnitude``; with AP the dense run
    and the rewind point are still shared with it through the cache, so a comparison pays only for
    the rounds.

    Args and Returns: as :func:`~workbench.prune.iterative_magnitude`, plus ``ap_rate`` (see
    :func:`ap_masks`; it must be below every round's cut ``p``).
    """
    sparsity, ap_rate = _check_sparsity(sparsity), _check_rate(ap_rate)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds is the number of prune-and-retrain rounds, an integer >= 1: got {rounds!r}")
    _check_scope(scope)
    p = 1 - (1 - sparsity) ** (1 / rounds)
    if ap_rate >= p:
        raise ValueError(f"ap_rate={ap_rate} is AP's share of the weights kept before a round, but each of the "
                         f"{rounds} rounds removes only {p:.4f} of them: choose ap_rate < {p:.4f} "
                         "(the paper: 0.02 of 0.2)")

    def prune(trained: nn.Module, rewind_state: dict, target: float, kept: dict | None) -> dict:
        return ap_masks(trained, rewind_state, target, ap_rate, kept, scope, layers)

    return iterative_magnitude(name, train, test, sparsity=sparsity, rounds=rounds, rewind=rewind, seed=seed,
                               model_kwargs=model_kwargs, scope=scope, layers=layers, prune=prune, **fit_kwargs)
