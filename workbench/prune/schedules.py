"""When to prune: gradual pruning during training, iterative pruning with rewinding, and one-shot
pruning with fine-tuning, all by weight magnitude on top of the masks of :mod:`workbench.prune.masks`.

* Gradual magnitude pruning (Zhu & Gupta 2017, https://arxiv.org/abs/1710.01878) raises the sparsity
  during one training run along a cubic schedule, pruning every ``Δt`` steps from ``t0`` to ``t1``::

      s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3

  fast at first, while many weights are redundant, and slowly near the end (:func:`cubic_sparsity`,
  :class:`GradualMagnitude`).
* Iterative magnitude pruning (Frankle & Carbin 2019, https://arxiv.org/abs/1803.03635; with
  rewinding, Frankle et al. 2020, https://arxiv.org/abs/1912.05671): train, remove the smallest
  share ``p`` of the weights still kept, reset the rest to their values at the rewind point (the
  initialization or an early step), train again; after ``k`` rounds the sparsity is
  ``1 - (1 - p) ** k`` (:func:`iterative_magnitude`).
* One-shot pruning of a trained network and fine-tuning with the masks fixed (Han et al. 2015,
  https://arxiv.org/abs/1506.02626) (:func:`one_shot`).

What is ours and why: a pruned weight is never revived. Each recomputation ranks only the weights
still kept (the pruned ones score ``-inf``), so the masks are nested and the sparsity never falls;
between pruning steps the gradient is masked as in :class:`~workbench.prune.masks.Masked`, and at a
pruning step the optimizer's per-weight buffers (SGD's momentum, Adam's moments) are zeroed with the
weights: a buffer left over would move a zeroed weight away from zero on the next step.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..data import ImageDataset, Loader
from ..train.cached import model_fingerprint, train_model
from ..train.checkpoint import CheckpointError
from ..train.events import Algorithm, State
from ..train.trainer import TrainResult, fit
from .masks import Masked, _by_score, _check_sparsity, magnitude_masks, prunable

__all__ = ["cubic_sparsity", "GradualMagnitude", "iterative_magnitude", "IterativeResult", "one_shot"]

SCOPES = ("global", "layer")


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope is 'global' (rank all weights together) or 'layer' (prune each layer alike), "
                         f"got {scope!r}")
    return scope


def cubic_sparsity(step: int, final: float, start_step: int, end_step: int, initial: float = 0.0,
                   every: int = 1) -> float:
    """The sparsity of Zhu & Gupta's gradual schedule at ``step``.

    ``initial`` before ``start_step``, ``final`` from ``end_step`` on, and in between
    ``final + (initial - final) * (1 - (t - start_step) / (end_step - start_step)) ** 3``, where ``t``
    is the last pruning step at or before ``step`` (pruning steps: ``start_step``, then every
    ``every`` steps), so the value is held constant between pruning steps.

    >>> round(cubic_sparsity(20, 0.8, start_step=10, end_step=30), 6)  # halfway: 0.8 * (1 - 0.5 ** 3)
    0.7
    """
    final = _check_sparsity(final)
    if not isinstance(initial, (int, float)) or not 0 <= initial <= final:
        raise ValueError(f"initial is the sparsity the schedule starts from, in [0, final={final}]: got {initial!r}")
    if end_step <= start_step:
        raise ValueError(f"end_step must come after start_step: got start_step={start_step}, end_step={end_step}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every is the number of steps between pruning steps, a positive integer: got {every!r}")
    if step < start_step:
        return float(initial)
    if step >= end_step:
        return final
    t = start_step + (step - start_step) // every * every  # the last pruning step
    return final + (initial - final) * (1 - (t - start_step) / (end_step - start_step)) ** 3


def _kept_magnitude_masks(model: nn.Module, sparsity: float, scope: str, layers: Sequence[str] | None,
                          kept: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Magnitude masks at ``sparsity`` that prune only among the weights ``kept`` marks 1: the pruned
    ones score ``-inf``, so they are the first to go and the new masks lie inside the old ones."""
    scores = {}
    for n, p in prunable(model, layers).items():
        s = p.detach().abs().cpu().double()
        scores[n] = s if kept is None else s.masked_fill(kept[n].cpu() == 0, float("-inf"))
    return _by_score(model, scores, sparsity, scope)


def _optimizer_states(optimizer: torch.optim.Optimizer | None) -> list[dict]:
    """The per-parameter state tables of ``optimizer`` (and of the base optimizer a SAM wraps)."""
    out = []
    while optimizer is not None:
        out.append(optimizer.state)
        base = getattr(optimizer, "base", None)
        optimizer = base if isinstance(base, torch.optim.Optimizer) else None
    return out


class GradualMagnitude(Algorithm):
    """Gradual magnitude pruning (Zhu & Gupta 2017) as an algorithm of ``wb.fit``.

    From ``start`` to ``end`` (fractions of the run's steps) the sparsity follows
    :func:`cubic_sparsity` up to ``final_sparsity``, with a pruning step every ``every`` steps; at a
    pruning step (before that step's forward pass) the masks are recomputed by magnitude among the
    weights still kept and the newly pruned weights, and their optimizer buffers, are zeroed. After
    each backward pass the pruned weights' gradients are masked, so they stay exactly zero under
    momentum and weight decay. The last pruning step falls at most on the run's last step, so the run
    always ends at ``final_sparsity``.

    Args:
        final_sparsity: the share of the chosen weights removed at the end, in [0, 1).
        start, end: where pruning begins and ends, as fractions of ``state.total_steps``
            (``0 <= start < end <= 1``); Zhu & Gupta stop early to let the network recover.
        every: steps between pruning steps; an ``int`` is a step count, a ``float`` in (0, 1] a
            fraction of the run (at least one step).
        scope: ``"global"`` ranks all chosen weights together, ``"layer"`` prunes each layer alike.
        layers: the modules to prune (default every conv and linear layer, see :func:`prunable`).

    ``.masks`` holds the masks (``{name: 0/1 tensor}``, on the weights' device) after the run;
    ``.sparsity`` the schedule's value they realize. The history gains a ``sparsity`` column.

    >>> alg = GradualMagnitude(0.9, start=0.1, end=0.7)
    >>> wb.fit(model, train, epochs=10, algorithms=[alg])          # doctest: +SKIP
    >>> wb.prune.sparsity_report(model, alg.masks).attrs["sparsity"]  # doctest: +SKIP
    0.9
    """

    def __init__(self, final_sparsity: float, start: float = 0.0, end: float = 0.75, every: int | float = 0.05,
                 scope: str = "global", layers: Sequence[str] | None = None):
        final_sparsity = _check_sparsity(final_sparsity)
        if not (isinstance(start, (int, float)) and isinstance(end, (int, float)) and 0 <= start < end <= 1):
            raise ValueError(f"start and end are fractions of the run's steps with 0 <= start < end <= 1 "
                             f"(end must come after start): got start={start!r}, end={end!r}")
        if isinstance(every, bool) or not (isinstance(every, int) and every >= 1
                                           or isinstance(every, float) and 0 < every <= 1):
            raise ValueError(f"every is a step count (an int >= 1) or a fraction of the run (a float in (0, 1]): "
                             f"got {every!r}")
        super().__init__(final_sparsity=final_sparsity, start=start, end=end, every=every, scope=_check_scope(scope),
                         layers=None if layers is None else list(layers))
        self.final, self.start, self.end, self.every = final_sparsity, float(start), float(end), every
        self.scope, self.layers = scope, None if layers is None else list(layers)
        self.masks: dict[str, torch.Tensor] = {}
        self.sparsity = 0.0
        self._params: dict[str, nn.Parameter] = {}
        self._pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._t0 = self._t1 = self._every = 0

    def steps(self, total_steps: int) -> tuple[int, int, int]:
        """``(t0, t1, every)`` in steps for a run of ``total_steps`` steps."""
        t0, t1 = round(self.start * total_steps), min(round(self.end * total_steps), total_steps - 1)
        every = self.every if isinstance(self.every, int) else max(1, round(self.every * total_steps))
        if t1 <= t0:
            raise ValueError(f"GradualMagnitude: the run has {total_steps} steps, so start={self.start} and "
                             f"end={self.end} fall on steps {t0} and {t1}, leaving no room to prune gradually; "
                             "train longer or move start and end apart")
        return t0, t1, every

    def on_init(self, state: State) -> None:
        self._params = prunable(state.model, self.layers)
        self._t0, self._t1, self._every = self.steps(state.total_steps)
        self._set_masks({n: torch.ones(p.shape) for n, p in self._params.items()}, 0.0)

    def _set_masks(self, masks: Mapping[str, torch.Tensor], sparsity: float) -> None:
        self.masks = {n: masks[n].to(device=p.device, dtype=p.dtype) for n, p in self._params.items()}
        self.sparsity = float(sparsity)
        self._pairs = [(p, self.masks[n]) for n, p in self._params.items()]

    def sparsity_at(self, step: int) -> float:
        """The schedule's sparsity at ``step`` of the current run."""
        return cubic_sparsity(step, self.final, self._t0, self._t1, every=self._every)

    @torch.no_grad()
    def on_batch_loaded(self, state: State) -> None:
        target = self.sparsity_at(state.step)
        if target > self.sparsity:  # a pruning step that removes weights
            new = _kept_magnitude_masks(state.model, target, self.scope, self.layers, self.masks)
            self._set_masks(new, target)
            states = _optimizer_states(state.optimizer)
            for p, m in self._pairs:
                p.mul_(m)
                for table in states:  # momentum and moments of the pruned weights: zero, or they move again
                    for v in table.get(p, {}).values():
                        if isinstance(v, torch.Tensor) and v.shape == p.shape:
                            v.mul_(m)
        state.logs["sparsity"] = self.sparsity

    def on_after_backward(self, state: State) -> None:
        pairs = [(p, m) for p, m in self._pairs if p.grad is not None]
        if pairs:
            torch._foreach_mul_([p.grad for p, _ in pairs], [m for _, m in pairs])

    def state_dict(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, **{f"mask.{n}": m.detach().float().cpu() for n, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [n for n in self._params if f"mask.{n}" not in state]
        if missing:
            raise CheckpointError(f"the checkpoint holds no GradualMagnitude mask for {missing[:3]}: it pruned other "
                                  "layers; use another checkpoint_dir or resume=False")
        self._set_masks({n: state[f"mask.{n}"] for n in self._params}, state["sparsity"])


class _WeightsAt(Algorithm):
    """Ends the run with the weights (the whole state dict) it had after ``step`` steps: ``train_model``
    then caches exactly the rewind point of a run, however far the loop went past it."""

    name = "WeightsAt"

    def __init__(self, step: int):
        super().__init__(step=step)
        self.step = step
        self.saved: dict[str, torch.Tensor] | None = None

    def _take(self, state: State) -> None:
        if state.step == self.step and self.saved is None:
            self.saved = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    on_fit_start = _take  # step 0, or a resume from exactly the rewind point
    on_after_step = _take

    def on_fit_end(self, state: State) -> None:
        if state.error is not None:
            return
        if self.saved is None:
            raise ValueError(f"the run ended at step {state.step}, before the rewind point {self.step}")
        state.model.load_state_dict(self.saved)

    def state_dict(self) -> dict[str, Any]:
        return {"taken": self.saved is not None, **{f"w.{k}": v for k, v in (self.saved or {}).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = {k[2:]: v for k, v in state.items() if k.startswith("w.")} if state.get("taken") else None


@dataclass
class IterativeResult:
    """What :func:`iterative_magnitude` returns.

    ``rounds``: one row per round (0 is the dense run): ``round``, ``target`` (``1 - (1 - p) ** round``),
    ``sparsity`` (realized, over the pruned layers), ``kept``, ``train_acc``, ``test_acc``.
    ``masks`` and ``model``: the last round's. ``round_masks[k]``: the masks round ``k`` trained with.
    ``rewind_state``: the state dict every round starts from (before masking). ``runs[k]``: round
    ``k``'s :class:`TrainResult` (its history)."""

    rounds: pd.DataFrame
    masks: dict[str, torch.Tensor]
    model: nn.Module
    rewind_state: dict[str, torch.Tensor]
    rewind_step: int
    round_masks: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    runs: list[TrainResult] = field(default_factory=list)


def _fit_default(name: str) -> Any:
    return inspect.signature(fit).parameters[name].default


def _dense_steps(train: ImageDataset, fit_kwargs: Mapping[str, Any]) -> tuple[int, int]:
    """``(total steps, steps per epoch)`` of ``fit(model, train, **fit_kwargs)``, as fit counts them."""
    epochs = fit_kwargs.get("epochs", _fit_default("epochs"))
    spe = len(Loader(train, batch_size=fit_kwargs.get("batch_size", _fit_default("batch_size")), shuffle=False,
                     device=train.images.device))
    max_steps = fit_kwargs.get("max_steps")
    return (epochs * spe if max_steps is None else min(max_steps, epochs * spe)), spe


def _rewind_step(rewind: int | str, total: int, spe: int) -> int:
    """``rewind`` as a step count: an int is steps, a string ``"<n>ep"`` is ``n`` epochs."""
    if isinstance(rewind, str) and re.fullmatch(r"\d+ep", rewind.strip()):
        step = int(rewind.strip()[:-2]) * spe
    elif isinstance(rewind, int) and not isinstance(rewind, bool) and rewind >= 0:
        step = rewind
    else:
        raise ValueError(f"rewind is a step count (an int >= 0; 0 is the initialization) or a number of epochs "
                         f"such as '1ep': got {rewind!r}")
    if step > total:
        raise ValueError(f"rewind={rewind!r} is step {step}, beyond the dense training's {total} steps: rewind to "
                         f"a step <= {total} (early, a few percent of the run, as in Frankle et al. 2020)")
    return step


def _sparsity_of(masks: Mapping[str, torch.Tensor]) -> tuple[float, int]:
    n = sum(m.numel() for m in masks.values())
    kept = sum(int((m != 0).sum()) for m in masks.values())
    return 1 - kept / n, kept


def iterative_magnitude(name: str, train: ImageDataset, test: ImageDataset | None = None, *, sparsity: float,
                        rounds: int, rewind: int | str = 0, seed: int = 0, model_kwargs: dict | None = None,
                        scope: str = "global", layers: Sequence[str] | None = None, prune=None,
                        **fit_kwargs) -> IterativeResult:
    """Iterative magnitude pruning with rewinding (the lottery-ticket procedure).

    Train the dense network; then ``rounds`` times: remove the share ``p = 1 - (1 - sparsity) **
    (1 / rounds)`` of the weights still kept, by magnitude after the previous round's training, reset
    every weight to its value at the rewind point, and train again with the masks
    (:class:`~workbench.prune.masks.Masked`). After round ``k`` the sparsity is ``1 - (1 - p) ** k``;
    after the last it is ``sparsity``. Each round retrains with the same arguments as the dense run
    (its full schedule, from the rewound weights).

    Every training run goes through :func:`~workbench.train.train_model` and its cache: the dense run,
    the rewind point (the same run stopped at step ``rewind``, cached apart), and each round (its key
    holds the masks' digest through ``Masked``'s config and the rewind weights' fingerprint through
    ``setup_key``), so a run killed mid-way recomputes only the unfinished rounds.

    Args:
        name, model_kwargs, seed: the registry model, as for ``train_model``.
        train, test, **fit_kwargs: passed to every run (``algorithms=`` run in every round before the
            masking; with ``checkpoint_dir=`` each run checkpoints in a subfolder of it).
        sparsity: the share of the chosen weights removed after the last round, in [0, 1).
        rounds: the number of prune-and-retrain rounds (>= 1).
        rewind: the rewind point, a step count of the dense run (0: the initialization, Frankle &
            Carbin 2019) or epochs as ``"1ep"`` (late rewinding, Frankle et al. 2020).
        scope, layers: which weights are ranked together (see :func:`magnitude_masks`).
        prune: how a round chooses its masks, ``prune(trained, rewind_state, target, kept) -> masks``
            (``trained``: the model after the previous round; ``kept``: the previous masks or
            ``None``); default magnitude among the weights still kept. Its masks enter the cache
            key through ``Masked``'s digest. :func:`~workbench.prune.iterative_ap` passes AP's.

    Returns:
        :class:`IterativeResult`: the per-round table, the final masks and model, and what each round
        started from.
    """
    sparsity = _check_sparsity(sparsity)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds is the number of prune-and-retrain rounds, an integer >= 1: got {rounds!r}")
    _check_scope(scope)
    for k in ("setup", "setup_key", "stop_after_steps", "stop_after_seconds"):
        if k in fit_kwargs:
            raise ValueError(f"iterative_magnitude sets {k}= itself (each round starts from the rewind point and "
                             "trains the whole schedule); leave it out")
    total, spe = _dense_steps(train, fit_kwargs)
    rewind_step = _rewind_step(rewind, total, spe)
    user_algs = list(fit_kwargs.pop("algorithms", ()))
    ckpt_root = fit_kwargs.pop("checkpoint_dir", None)

    def run(tag: str, algorithms: list, **extra) -> TrainResult:
        if ckpt_root is not None:  # one folder per run: a checkpoint of another run would be refused
            extra["checkpoint_dir"] = Path(ckpt_root) / tag
        return train_model(name, train, test, seed=seed, model_kwargs=model_kwargs,
                           algorithms=user_algs + algorithms, **fit_kwargs, **extra)

    dense = run("dense", [])
    if rewind_step == total:  # rewinding to the end: every round fine-tunes the dense weights
        start = dense.model
    else:  # the dense run again, stopped at the rewind point (stop_after_steps saves the steps after it)
        start = run("rewind", [_WeightsAt(rewind_step)], stop_after_steps=max(rewind_step, 1)).model
    rewind_state = {k: v.detach().clone() for k, v in start.state_dict().items()}
    digest = {"rewind_step": rewind_step, "weights": model_fingerprint(start)}

    def setup(model: nn.Module) -> dict:
        model.load_state_dict(rewind_state)  # Masked then zeroes the pruned weights at init
        return {}

    p = 1 - (1 - sparsity) ** (1 / rounds)
    runs, round_masks, masks = [dense], {}, None
    n_weights = sum(w.numel() for w in prunable(dense.model, layers).values())
    rows = [{"round": 0, "target": 0.0, "sparsity": 0.0, "kept": n_weights, "train_acc": dense.train_acc,
             "test_acc": dense.test_acc}]
    for k in range(1, rounds + 1):
        target = sparsity if k == rounds else 1 - (1 - p) ** k
        if prune is None:
            masks = _kept_magnitude_masks(runs[-1].model, target, scope, layers, masks)
        else:
            masks = prune(runs[-1].model, rewind_state, target, masks)
        res = run(f"round{k}", [Masked(masks)], setup=setup, setup_key={"iterative_magnitude": digest})
        s, kept = _sparsity_of(masks)
        rows.append({"round": k, "target": target, "sparsity": s, "kept": kept, "train_acc": res.train_acc,
                     "test_acc": res.test_acc})
        runs.append(res)
        round_masks[k] = masks
    return IterativeResult(rounds=pd.DataFrame(rows), masks=masks, model=runs[-1].model, rewind_state=rewind_state,
                           rewind_step=rewind_step, round_masks=round_masks, runs=runs)


def one_shot(model: nn.Module, train: ImageDataset, test: ImageDataset | None, sparsity: float,
             scope: str = "global", layers: Sequence[str] | None = None,
             **fit_kwargs) -> tuple[TrainResult, dict[str, torch.Tensor]]:
    """Prune a trained ``model`` once by magnitude and fine-tune it with the masks fixed (in place).

    Returns ``(fit result, masks)``; ``fit_kwargs`` go to :func:`~workbench.train.fit` (its
    ``algorithms=`` run before the masking)."""
    masks = magnitude_masks(model, sparsity, _check_scope(scope), layers)
    algorithms = [*fit_kwargs.pop("algorithms", ()), Masked(masks)]
    return fit(model, train, test, algorithms=algorithms, **fit_kwargs), masks
