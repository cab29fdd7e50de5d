"""The one training loop of the workbench: a task, a list of algorithms, and named events.

>>> import workbench as wb
>>> train, test = wb.data.load("shapes", "train"), wb.data.load("shapes", "test")
>>> model = wb.models.create_model("resnet8")
>>> result = wb.train.fit(model, train, test, epochs=2, lr=0.1)   # doctest: +SKIP
>>> result.history[["epoch", "train_loss", "test_acc"]]             # doctest: +SKIP

The **task** says what a batch is and how it becomes a loss and metrics (default:
:class:`~workbench.train.tasks.Classification`); **algorithms** change training at named
**events** (:mod:`workbench.train.events`). Where each event fires::

    init                          choose what trains, change the model; then the optimizer is built
                                  and a checkpoint, if any, restores model, optimizer and algorithms
    fit_start
    for epoch:
        epoch_start
        for batch:
            batch_loaded          state.batch; the learning rate is set; state.peek_batch() is the next one
            before_forward        \\
            after_forward          | compute(): outputs = task.forward, loss = task.loss,
            after_loss             | algorithms add terms to state.loss, backward,
            after_backward        /  then edit gradients (masks, noise)
            optimizer step        (or the one algorithm with replaces_step, which may call compute() again)
            after_step            state.step counts the steps taken; a mid-epoch checkpoint may follow
        evaluation of the test set, the epoch's history row
        epoch_end                 then the epoch's checkpoint
    fit_end                       always, also after an error (state.error)

A task in ten lines (a regression on the label's value, say)::

    class Regression(wb.train.Task):
        metric_names = ("loss",)
        def loss(self, outputs, batch, state):
            return F.mse_loss(outputs[:, 0], batch[1].float())
        def metrics(self, outputs, batch, loss):      # sums over the batch, and their count
            return {"loss": loss.detach().double() * len(batch[1])}, len(batch[1])
        def config(self):
            return {"name": "Regression"}

    wb.fit(model, train, task=Regression())

An algorithm in ten lines (Gaussian gradient noise with its own generator, resumable)::

    class GradientNoise(wb.train.Algorithm):
        def __init__(self, std=0.01, seed=0):
            super().__init__(std=std, seed=seed)          # recorded in the run's configuration
            self.std, self.gen = std, torch.Generator().manual_seed(seed)
        def on_after_backward(self, state):
            for p in state.trainable.values():
                p.grad += self.std * torch.randn(p.shape, generator=self.gen).to(p.grad)
        def state_dict(self):                              # saved in every checkpoint
            return {"gen": self.gen.get_state()}
        def load_state_dict(self, d):
            self.gen.set_state(d["gen"])

    wb.fit(model, train, algorithms=[GradientNoise(0.01)])

``params=``, ``grad_masks=``, ``extra_loss=``, a sharpness-aware ``optimizer=``, ``live=`` and
``progress=`` are shorthands for the algorithms of :mod:`workbench.train.algorithms`.

Design notes:

* Data randomness is a pure function of ``(seed, epoch, batch)`` and the learning rate a pure
  function of the step; algorithm state, the optimizer and the CPU RNG are checkpointed, so a
  run resumed from any checkpoint, even one taken mid-epoch, ends bitwise equal on the CPU.
* A non-finite loss stops training with the step and the likely causes, before any checkpoint
  of the broken weights is written.
* The recorded configuration (``TrainResult.config``, every checkpoint, ``train_model``'s cache
  key) holds the task and every algorithm with its arguments; a checkpoint of another
  configuration is refused.
* With no algorithm listening, an event is a loop over an empty list.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
import torch
from torch import nn

from .. import config
from ..data import ImageDataset, Loader
from .algorithms import ClosureStep, EpochFunctions, ExtraLoss, GradMask, LiveCurves, ProgressBar, SelectParams
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .events import State, _jsonable, check_algorithms, describe, handlers
from .schedules import SCHEDULES, lr_at
from .tasks import Classification, autocast, check_data_fits_model, classification_loss

__all__ = ["fit", "evaluate", "TrainResult", "NonFiniteLossError", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "auto")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and likely causes (``.step``: the
    global step whose loss was not finite)."""

    step: int | None = None


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    model: nn.Module
    history: pd.DataFrame
    config: dict[str, Any]
    checkpoint: Path | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def test_acc(self) -> float:
        """Final test accuracy (NaN when there was no test set)."""
        return float(self.history["test_acc"].iloc[-1]) if len(self.history) else float("nan")

    @property
    def train_acc(self) -> float:
        return float(self.history["train_acc"].iloc[-1]) if len(self.history) else float("nan")

    def plot(self, metrics: Iterable[str] = ("loss", "acc")):
        """A plotly figure of the training curves."""
        from ..viz import training_curves
        return training_curves(self.history, metrics=metrics)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset | Loader, batch_size: int = 1000,
             device: torch.device | str | None = None, precision: str = "fp32",
             channels_last: bool | None = None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (eval mode; the train flag is restored).

    Returns:
        ``{"loss": float, "acc": float, "n": int}``; for a packed model (logits
        ``[batch, classes, members]``) the means over members and ``"acc_members"``.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    if isinstance(data, ImageDataset):
        check_data_fits_model(model, data)
        loader = Loader(data, batch_size=batch_size, shuffle=False, device=dev,
                        channels_last=_use_channels_last(model, dev) if channels_last is None else channels_last)
    else:
        loader = data
    was_training = model.training
    model.eval()
    try:
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        correct = None
        n = 0
        for x, y in loader:
            with autocast(dev, precision):
                logits = model(x)
            loss_sum += classification_loss(logits, y, reduction="sum").double()
            hits = (logits.argmax(1) == (y[:, None] if logits.ndim == 3 else y)).sum(0)  # [] or [members]
            correct = hits if correct is None else correct + hits
            n += len(y)
    finally:
        model.train(was_training)
    members = correct.numel() if correct is not None else 1
    out = {"loss": float(loss_sum) / max(n * members, 1),
           "acc": float(correct.sum()) / max(n * members, 1) if correct is not None else float("nan"), "n": n}
    if members > 1:
        out["acc_members"] = [float(c) / n for c in correct]
    return out


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _use_channels_last(model: nn.Module, dev: torch.device) -> bool:
    return dev.type in ("cpu", "cuda") and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _make_optimizer(kind, groups, lr, momentum, nesterov, betas):
    if callable(kind):
        return kind(groups)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)} or pass a function "
                     "that builds an optimizer from parameter groups")


def _build_algorithms(algorithms, params, grad_masks, extra_loss, live, progress, callbacks) -> list:
    """The shorthand arguments as algorithms, in the order they act: selection, masks, the extra loss,
    the caller's algorithms, then the observers (a closure step joins once the optimizer exists)."""
    given = list(algorithms)
    out: list[Any] = [] if params is None else [SelectParams(params)]
    if grad_masks:
        out.append(GradMask(grad_masks))
    if extra_loss is not None:  # an algorithm (wb.guidance.Guidance) or fn(model, x, y, logits)
        out.append(extra_loss if callable(getattr(extra_loss, "on_after_loss", None)) else ExtraLoss(extra_loss))
    out += given
    if progress:
        out.append(ProgressBar())
    if live:
        out.append(LiveCurves())
    if callbacks:
        out.append(EpochFunctions(callbacks))
    return check_algorithms(out)


class _Checkpoints:
    """Write, find, prune and restore a run's checkpoints (model, optimizer, algorithms, CPU RNG)."""

    def __init__(self, folder: Path, keep: int, stateful: list[tuple[str, Any]]):
        self.folder, self.keep, self.stateful = folder, keep, stateful

    def write(self, s: State, cfg: dict, epoch: int, next_batch: int, acc: dict) -> Path:
        tensors, plain = {"rng_cpu": torch.get_rng_state()}, {}
        for key, alg in self.stateful:
            for k, v in (alg.state_dict() or {}).items():
                if isinstance(v, torch.Tensor):
                    tensors[f"alg.{key}.{k}"] = v
                else:
                    plain.setdefault(key, {})[k] = v
        meta = {"config": _jsonable(cfg), "epoch": epoch, "next_batch": next_batch, "global_step": s.step,
                "history": s.rows, "accumulators": acc, "total_steps": s.total_steps, "algorithm_state": plain}
        path = save_checkpoint(self.folder / f"ckpt-{s.step:09d}", s.model, s.optimizer, meta=meta,
                               extra_tensors=tensors)
        for old in sorted(self.folder.glob("ckpt-*.json"))[:-self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
        return path

    def clear(self) -> None:
        for p in list(self.folder.glob("ckpt-*.json")) + list(self.folder.glob("ckpt-*.safetensors")):
            p.unlink()

    def resume(self, s: State, cfg: dict) -> tuple[Path, dict] | None:
        found = latest_checkpoint(self.folder)
        if found is None:
            return None
        old = json.loads(found.read_text()).get("config", {})
        diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != _jsonable(v)}
        if diff:
            lines = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in list(diff.items())[:6])
            raise CheckpointError(f"{found} is from a different run ({lines}). Use another checkpoint_dir, "
                                  "or resume=False to start over")
        meta, _, extra = load_checkpoint(found, s.model, s.optimizer)
        saved = dict(meta.get("algorithm_state", {}))
        for k, v in extra.items():
            if k.startswith("alg."):
                key, name = k[4:].split(".", 1)
                saved.setdefault(key, {})[name] = v
        have = {key: alg for key, alg in self.stateful}
        for key, state in saved.items():
            if key not in have:
                raise CheckpointError(f"{found} holds state for algorithm {key}, which has no state to take it "
                                      "(its state_dict() returns None): give it state_dict/load_state_dict, "
                                      "or resume=False to start over")
            have[key].load_state_dict(state)
        missing = [key for key in have if key not in saved]
        if missing:
            raise CheckpointError(f"{found} holds no state for algorithm {missing[0]}: it was saved by another "
                                  "version of it; use another checkpoint_dir or resume=False")
        if "rng_cpu" in extra:
            torch.set_rng_state(extra["rng_cpu"])
        return found, meta


class _Lookahead:
    """An epoch's batches with one of look-ahead: ``peek()`` draws the next batch early (``None`` at the end),
    and ``next()`` then hands over that same batch."""

    def __init__(self, batches: Iterator):
        self.batches, self.ahead = batches, []

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> Any:
        return self.ahead.pop() if self.ahead else next(self.batches)

    def peek(self) -> Any:
        if not self.ahead:
            try:
                self.ahead.append(next(self.batches))
            except StopIteration:
                return None
        return self.ahead[0]


def _scalar_loss(loss: Any, who: str) -> None:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        got = f"a tensor of shape {list(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"{who} gave {got} as the loss; it must be a scalar tensor (reduce it with .mean() "
                         "or .sum())")


def fit(model: nn.Module, train: ImageDataset | Loader, test: ImageDataset | Loader | None = None, *,
        task=None, algorithms: Iterable[Any] = (),
        epochs: int = 1, batch_size: int = 128, optimizer: str | Callable = "sgd", lr: float = 0.1,
        momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 5e-4,
        betas: tuple[float, float] = (0.9, 0.999), schedule: str = "onecycle", warmup: float = 0.15,
        milestones: Iterable[int] = (), gamma: float = 0.1, label_smoothing: float = 0.0,
        augment: str | None = "crop_flip", params=None, grad_masks: dict[str, torch.Tensor] | None = None,
        extra_loss: Callable | None = None, precision: str = "fp32", channels_last: bool | None = None,
        compile: bool | str = False, max_steps: int | None = None,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = True,
        keep_checkpoints: int = 2, eval_every: int = 1, eval_batch_size: int = 1000, live: bool = False,
        progress: bool = True, seed: int | None = None, device: torch.device | str | None = None,
        callbacks: Iterable[Callable] = (), stop_after_steps: int | None = None,
        stop_after_seconds: float | None = None) -> TrainResult:
    """Train ``model`` on ``train`` with ``task`` and ``algorithms``; evaluate on ``test`` each epoch.

    Args:
        model: any ``nn.Module`` the task can call (for classification: ``[B, C, H, W]`` images to logits).
        train: an :class:`~workbench.data.ImageDataset` (batches are made here) or a ready
            :class:`~workbench.data.Loader`.
        test: evaluated by the task every ``eval_every`` epochs and at the end (an ``ImageDataset``, or a
            ready ``Loader``, e.g. a ``wb.data.SequenceLoader`` without shuffling).
        task: what a batch is and how it becomes a loss (:class:`~workbench.train.tasks.Task`);
            default classification with ``label_smoothing``.
        algorithms: :class:`~workbench.train.events.Algorithm` objects acting at the loop's events,
            in this order at each event (after the shorthands below that come before them).
        epochs, batch_size, lr, momentum, nesterov, weight_decay, betas: the usual.
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``, or ``fn(param_groups) -> Optimizer``.
            An optimizer with ``needs_closure = True`` (sharpness-aware minimization) gets
            the closure that recomputes loss and gradients.
        schedule, warmup, milestones, gamma: see :func:`~workbench.train.schedules.lr_at`.
        label_smoothing: for the default classification task.
        augment: ``"crop_flip"`` (CIFAR standard), ``"flip"``, ``"crop"`` or ``None``.
        params: which parameters train: ``None`` (those with ``requires_grad``), a list of
            names, or ``fn(name, param) -> bool``. The others are frozen for the run and
            their ``requires_grad`` flags restored afterwards.
        grad_masks: ``{name: 0/1 tensor}``; only entries where the mask is 1 change.
        extra_loss: ``fn(model, x, y, logits) -> tensor`` or ``-> (tensor, {name: float})``,
            added to the task loss (or an algorithm acting at ``after_loss``); the logged values
            appear in the history.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 on a CUDA GPU that
            supports it, else fp32).
        channels_last: memory format for convolutions; default on for conv nets.
        compile: ``torch.compile`` the model (``True`` or a mode such as ``"reduce-overhead"``).
        max_steps: stop after this many steps in total (the schedule spans them).
        checkpoint_dir: save a checkpoint there after every epoch (and every
            ``checkpoint_every`` steps); with ``resume=True`` a run finds its last
            checkpoint and continues exactly where it stopped.
        live: show a live loss/accuracy plot (a widget in Jupyter).
        progress: show a progress bar.
        seed: data order, augmentation and dropout (default ``WORKBENCH_SEED``).
        device: default :func:`workbench.config.device`.
        callbacks: ``fn(row: dict, model)`` called after each epoch's row is recorded.
        stop_after_steps: return early after this many steps of this call (for demos and tests of
            resuming); the schedule is unchanged.
        stop_after_seconds: return at the end of the first epoch that ends after this much
            wall-clock time in this call (the history then has fewer rows than ``epochs``).

    Returns:
        :class:`TrainResult` with the trained model and a history table (one row per epoch).
    """
    seed = config.default_seed() if seed is None else int(seed)
    dev = torch.device(device) if device is not None else config.device()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if task is None:
        task = Classification(label_smoothing)
    elif label_smoothing:
        raise ValueError("label_smoothing= belongs to the default classification task; with task= given, "
                         "set it on the task (wb.train.Classification(label_smoothing=...))")
    algs = _build_algorithms(algorithms, params, grad_masks, extra_loss, live, progress, callbacks)
    model.to(dev)
    if channels_last is None:
        channels_last = _use_channels_last(model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    if isinstance(train, Loader):
        loader = train
    elif isinstance(train, ImageDataset):
        loader = Loader(train, batch_size=batch_size, shuffle=True, augment=augment, device=dev,
                        channels_last=channels_last, seed=seed)
    else:
        raise TypeError(f"train must be an ImageDataset (wb.data.load) or a Loader, got {type(train).__name__}")
    task.check_data(model, loader.dataset)
    if test is not None:
        if isinstance(test, Loader):  # a ready loader (sequences, say): evaluated as it comes
            task.check_data(model, test.dataset)
            test_loader = test
        elif isinstance(test, ImageDataset):
            task.check_data(model, test)
            test_loader = Loader(test, batch_size=eval_batch_size, shuffle=False, device=dev,
                                 channels_last=channels_last)
        else:
            raise TypeError(f"test must be an ImageDataset, a Loader or None, got {type(test).__name__}")

    spe = len(loader)
    total_steps = epochs * spe if max_steps is None else min(max_steps, epochs * spe)
    milestones = tuple(int(m) for m in milestones)
    forward = torch.compile(model, mode=compile if isinstance(compile, str) else None) if compile else model
    s = State(model=model, forward=forward, task=task, device=dev, precision=precision, seed=seed, epochs=epochs,
              steps_per_epoch=spe, total_steps=total_steps, weight_decay=weight_decay)
    on = handlers(algs)

    def fire(event: str) -> None:
        for h in on[event]:
            h(s)

    try:
        fire("init")
        if not s.trainable:
            s.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if not s.trainable:
                raise ValueError("no parameter is selected for training: check params= (or requires_grad flags)")
        # masked parameters get no decoupled decay (their L2 term is folded into the gradient)
        groups = [{"params": [p for n, p in s.trainable.items() if n not in s.no_decay], "weight_decay": weight_decay},
                  {"params": [s.trainable[n] for n in s.no_decay], "weight_decay": 0.0}]
        s.optimizer = opt = _make_optimizer(optimizer, [g for g in groups if g["params"]], lr, momentum, nesterov,
                                            betas)
        if getattr(opt, "needs_closure", False):  # e.g. SAM: its step evaluates the loss again itself
            algs = check_algorithms([*[a for a in algs if not getattr(a, "observer", False)], ClosureStep(),
                                     *[a for a in algs if getattr(a, "observer", False)]])
            on.update(handlers(algs))
        stepper = next((a for a in algs if getattr(a, "replaces_step", False)), None)
        recorded = [a for a in algs if not getattr(a, "observer", False)]
        cfg = {
            "model": getattr(model, "model_name", type(model).__name__),
            "model_kwargs": getattr(model, "model_kwargs", {}), "data": getattr(loader.dataset, "name", "?"),
            "n_train": len(loader.dataset), "epochs": epochs, "batch_size": loader.batch_size,
            "optimizer": _jsonable(optimizer), "lr": lr, "momentum": momentum, "nesterov": nesterov,
            "weight_decay": weight_decay, "betas": list(betas), "schedule": schedule, "warmup": warmup,
            "milestones": list(milestones), "gamma": gamma, "label_smoothing": label_smoothing,
            "augment": loader.augment, "precision": precision, "seed": seed, "max_steps": max_steps,
            "trainable": sorted(s.trainable), "masked": sorted(s.no_decay),
            "extra_loss": _jsonable(extra_loss) if extra_loss else None,
            "task": describe(task), "algorithms": [describe(a) for a in recorded],
        }
        task.setup(model, dev)

        start_epoch, start_batch = 0, 0
        acc: dict[str, Any] = {"sums": {}, "logs": {}, "n": 0, "data_time": 0.0, "time": 0.0}
        last_ckpt = None
        torch.manual_seed(seed)
        ckpts = None
        if checkpoint_dir is not None:
            stateful = [(f"{i}", a) for i, a in enumerate(recorded) if a.state_dict() is not None]
            ckpts = _Checkpoints(Path(checkpoint_dir), keep_checkpoints, stateful)
            if not resume:
                ckpts.clear()
            got = ckpts.resume(s, cfg)
            if got is not None:
                last_ckpt, meta = got
                start_epoch, start_batch, s.step = meta["epoch"], meta["next_batch"], meta["global_step"]
                s.rows, acc = meta["history"], meta["accumulators"]

        steps_this_call, t_call, checked = 0, time.perf_counter(), False
        sync_each_step = dev.type == "cpu"
        sync_every = 10 if sync_each_step else 50
        bad_step = torch.full((), -1, dtype=torch.int64, device=dev)
        dev_sums: dict[str, torch.Tensor] = {}

        def raise_nonfinite(value: float, step: int, applied: bool) -> None:
            where = (f"at global step {step} (epoch {(step - 1) // spe + 1}, batch {(step - 1) % spe + 1}), "
                     f"learning rate {lr_at(step - 1, total_steps, lr, schedule, warmup, milestones, gamma, spe):.4g}")
            err = NonFiniteLossError(
                f"the loss became {value} {where}. Likely causes: a learning rate too high for this model "
                f"(try lr={lr / 10:g}), inputs with NaN/inf values, or an extra loss term that diverged. "
                + ("The steps after it ran on the GPU before the check, but " if applied else
                   "The weights of this step were not applied and ")
                + "no checkpoint was written from it.")
            err.step = step
            raise err

        def flush() -> None:
            """Move the device-side running sums into ``acc`` (one sync); check for a non-finite loss."""
            if not sync_each_step and int(bad_step) >= 0:
                raise_nonfinite(float("nan"), int(bad_step), applied=True)
            for k, v in dev_sums.items():
                part = acc["logs"] if k.startswith("log:") else acc["sums"]
                name = k[4:] if k.startswith("log:") else k
                part[name] = part.get(name, 0.0) + float(v)
            dev_sums.clear()
            s.running = {k: v / max(acc["n"], 1) for k, v in acc["sums"].items()}

        def check_finite(loss: torch.Tensor) -> None:
            if sync_each_step:  # CPU: the check is free, and the broken step is never applied
                if not torch.isfinite(loss):
                    raise_nonfinite(float(loss), s.step + 1, applied=False)
            else:  # GPU: remember the first bad step on the device, look every `sync_every` steps
                bad_step.copy_(torch.where((bad_step < 0) & ~torch.isfinite(loss),
                                           torch.full_like(bad_step, s.step + 1), bad_step))

        def accumulate(sums: dict, logs: dict, count: int) -> None:
            """Add a step's metric sums and its logged means (weighted by the count) on the device."""
            items = list(sums.items()) + [("log:" + k, (v.detach().double() if isinstance(v, torch.Tensor)
                                                        else float(v)) * count) for k, v in logs.items()]
            for key, value in items:
                dev_sums[key] = dev_sums[key] + value if key in dev_sums else value
            acc["n"] += count

        def epoch_row(epoch: int) -> dict[str, Any]:
            """The epoch's history row: training means, logged means, the test set by the task, times."""
            n = max(acc["n"], 1)
            row = {"epoch": epoch + 1, "step": s.step, "lr": s.lr}
            row.update({f"train_{k}": v / n for k, v in acc["sums"].items()})
            row.update({k: v / n for k, v in acc["logs"].items()})
            if test is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs or s.step >= total_steps):
                t_eval = time.perf_counter()
                row.update({f"test_{k}": v for k, v in task.evaluate(model, test_loader, precision).items()})
                acc["time"] += time.perf_counter() - t_eval
            else:
                row.update({f"test_{k}": float("nan") for k in task.metric_names})
            row["seconds"], row["data_seconds"] = acc["time"], acc["data_time"]
            return row

        def compute() -> torch.Tensor:
            """One forward and backward pass on ``s.batch`` (a step-replacing algorithm may call it again)."""
            opt.zero_grad(set_to_none=True)
            fire("before_forward")
            with autocast(dev, precision):
                s.outputs = task.forward(forward, s.batch, s)
                fire("after_forward")
                s.loss = task.loss(s.outputs, s.batch, s)
                _scalar_loss(s.loss, f"task {task.name}")
                fire("after_loss")
            _scalar_loss(s.loss, "an algorithm at after_loss")
            s.loss.backward()
            fire("after_backward")
            s.pass_index += 1
            return s.loss

        fire("fit_start")
        for epoch in range(start_epoch, epochs):
            if s.step >= total_steps:
                break
            s.epoch = epoch
            loader.set_epoch(epoch)
            batches, b = _Lookahead(loader.iter_from(start_batch)), start_batch
            s.peek = batches.peek
            fire("epoch_start")
            while s.step < total_steps and b < spe:
                t0 = time.perf_counter()
                s.batch = next(batches)
                acc["data_time"] += time.perf_counter() - t0
                if not checked:
                    task.check_batch(s.batch)
                    checked = True
                s.batch_index, s.logs, s.pass_index = b, {}, 0
                s.lr = lr_at(s.step, total_steps, lr, schedule, warmup, milestones, gamma, spe)
                for g in opt.param_groups:
                    g["lr"] = s.lr
                fire("batch_loaded")
                loss = compute()
                with torch.no_grad():
                    sums, count = task.metrics(s.outputs, s.batch, loss)
                logs = dict(s.logs)
                check_finite(loss.detach())
                if stepper is not None:
                    stepper.optimizer_step(s, compute)
                else:
                    opt.step()
                accumulate(sums, logs, count)
                s.step, b, steps_this_call = s.step + 1, b + 1, steps_this_call + 1
                if s.step % sync_every == 0 or b == spe:
                    flush()
                fire("after_step")
                acc["time"] += time.perf_counter() - t0
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    break
                if ckpts is not None and checkpoint_every and s.step % checkpoint_every == 0 and b < spe:
                    flush()
                    last_ckpt = ckpts.write(s, cfg, epoch, b, acc)
            flush()
            if b < spe and s.step < total_steps:  # stopped early on purpose
                if ckpts is not None:
                    last_ckpt = ckpts.write(s, cfg, epoch, b, acc)
                break
            s.rows.append(epoch_row(epoch))
            acc.update(sums={}, logs={}, n=0)
            start_batch = 0
            fire("epoch_end")
            if ckpts is not None:
                last_ckpt = ckpts.write(s, cfg, epoch + 1, 0, acc)
            if stop_after_seconds is not None and time.perf_counter() - t_call > stop_after_seconds:
                break
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:  # the stop fell on an epoch's end
                break
    except BaseException as e:
        s.error = e
        raise
    finally:
        fire("fit_end")
    masks = next((a.masks for a in algs if isinstance(a, GradMask)), {})
    return TrainResult(model=model, history=pd.DataFrame(s.rows), config=cfg, checkpoint=last_ckpt, masks=masks)
