"""A frozen copy of ``wb.fit`` as it was at commit 95817ce, before the loop was rewritten over a task
and a list of algorithms. It is not part of the package: tests/unit/test_fit_equivalence.py checks that
the new loop gives bit-identical weights and history, and benchmarks/bench_train.py times both.
Do not edit it except to keep it importable.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from workbench import config
from workbench.data import ImageDataset, Loader
from workbench.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from workbench.train.schedules import SCHEDULES, lr_at

__all__ = ["fit", "evaluate", "TrainResult", "NonFiniteLossError", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "auto")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and likely causes."""


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
        from workbench.viz import training_curves
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
        _check_data_fits_model(model, data)
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
            with _autocast(dev, precision):
                logits = model(x)
            loss_sum += _task_loss(logits, y, reduction="sum").double()
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


def _task_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0,
               reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy; for packed logits ``[batch, classes, members]`` the sum of the members' losses."""
    if logits.ndim == 3:
        members = logits.shape[2]
        loss = F.cross_entropy(logits.float(), y[:, None].expand(-1, members), label_smoothing=label_smoothing,
                               reduction=reduction)
        return loss * members if reduction == "mean" else loss
    return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing, reduction=reduction)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _use_channels_last(model: nn.Module, dev: torch.device) -> bool:
    return dev.type in ("cpu", "cuda") and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _autocast(dev: torch.device, precision: str):
    enabled = precision == "bf16"
    return torch.autocast(dev.type if dev.type in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16, enabled=enabled)


def _check_data_fits_model(model: nn.Module, data: ImageDataset) -> None:
    n_cls = getattr(model, "num_classes", None)
    if n_cls is not None and n_cls != data.num_classes:
        raise ValueError(
            f"the model predicts {n_cls} classes but {data.name} has {data.num_classes}; "
            f"create the model with num_classes={data.num_classes}"
        )
    chans = getattr(model, "in_chans", None)
    if chans is not None and chans != data.shape[0]:
        raise ValueError(
            f"the model takes {chans}-channel images but {data.name} has {data.shape[0]}; "
            f"create the model with in_chans={data.shape[0]}"
        )
    size = getattr(model, "img_size", None)
    if size is not None and tuple(data.shape[1:]) != (size, size):
        raise ValueError(f"the model was built for {size}x{size} images but {data.name} has "
                         f"{data.shape[1]}x{data.shape[2]}; create it with img_size={data.shape[2]}")


def _select_params(model: nn.Module, params) -> dict[str, nn.Parameter]:
    named = dict(model.named_parameters())
    if params is None:
        chosen = {n: p for n, p in named.items() if p.requires_grad}
    elif callable(params):
        chosen = {n: p for n, p in named.items() if params(n, p)}
    else:
        names = list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"params names {unknown[:5]} are not parameters of the model; "
                             f"valid names include {list(named)[:6]} ...")
        chosen = {n: named[n] for n in names}
    if not chosen:
        raise ValueError("no parameter is selected for training: check params= (or requires_grad flags)")
    return chosen


def _check_masks(masks: dict[str, torch.Tensor] | None, chosen: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in (masks or {}).items():
        if name not in chosen:
            raise ValueError(f"grad_masks names {name!r}, which is not a trained parameter; "
                             "mask only parameters selected by params=")
        p = chosen[name]
        if tuple(m.shape) != tuple(p.shape):
            raise ValueError(f"grad_masks[{name!r}] has shape {tuple(m.shape)} but the parameter has {tuple(p.shape)}")
        out[name] = m.to(device=p.device, dtype=p.dtype)
    return out


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


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return getattr(v, "__qualname__", None) or type(v).__name__


def fit(model: nn.Module, train: ImageDataset | Loader, test: ImageDataset | None = None, *,
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
    """Train ``model`` on ``train`` and evaluate on ``test`` each epoch.

    Args:
        model: any ``nn.Module`` mapping ``[B, C, H, W]`` float images to logits.
        train: an :class:`~workbench.data.ImageDataset` (batches are made here) or a ready
            :class:`~workbench.data.Loader`.
        test: evaluated every ``eval_every`` epochs and at the end.
        epochs, batch_size, lr, momentum, nesterov, weight_decay, betas: the usual.
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``, or ``fn(param_groups) -> Optimizer``.
            An optimizer with ``needs_closure = True`` (sharpness-aware minimization) gets
            the closure that recomputes loss and gradients.
        schedule, warmup, milestones, gamma: see :func:`~workbench.train.schedules.lr_at`.
        label_smoothing: for the cross-entropy.
        augment: ``"crop_flip"`` (CIFAR standard), ``"flip"``, ``"crop"`` or ``None``.
        params: which parameters train: ``None`` (those with ``requires_grad``), a list of
            names, or ``fn(name, param) -> bool``. The others are frozen for the run and
            their ``requires_grad`` flags restored afterwards.
        grad_masks: ``{name: 0/1 tensor}``; only entries where the mask is 1 change.
        extra_loss: ``fn(model, x, y, logits) -> tensor`` or ``-> (tensor, {name: float})``,
            added to the task loss; the logged values appear in the history.
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
    model.to(dev)
    if channels_last is None:
        channels_last = _use_channels_last(model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    if isinstance(train, Loader):
        loader = train
        _check_data_fits_model(model, loader.dataset)
    elif isinstance(train, ImageDataset):
        _check_data_fits_model(model, train)
        loader = Loader(train, batch_size=batch_size, shuffle=True, augment=augment, device=dev,
                        channels_last=channels_last, seed=seed)
    else:
        raise TypeError(f"train must be an ImageDataset (wb.data.load) or a Loader, got {type(train).__name__}")
    if test is not None:
        if not isinstance(test, ImageDataset):
            raise TypeError(f"test must be an ImageDataset or None, got {type(test).__name__}")
        _check_data_fits_model(model, test)
        test_loader = Loader(test, batch_size=eval_batch_size, shuffle=False, device=dev, channels_last=channels_last)

    chosen = _select_params(model, params)
    masks = _check_masks(grad_masks, chosen)
    spe = len(loader)
    total_steps = epochs * spe if max_steps is None else min(max_steps, epochs * spe)
    milestones = tuple(int(m) for m in milestones)

    cfg = {
        "model": getattr(model, "model_name", type(model).__name__), "model_kwargs": getattr(model, "model_kwargs", {}),
        "data": getattr(loader.dataset, "name", "?"), "n_train": len(loader.dataset), "epochs": epochs,
        "batch_size": loader.batch_size, "optimizer": _jsonable(optimizer), "lr": lr, "momentum": momentum,
        "nesterov": nesterov, "weight_decay": weight_decay, "betas": list(betas), "schedule": schedule,
        "warmup": warmup, "milestones": list(milestones), "gamma": gamma, "label_smoothing": label_smoothing,
        "augment": loader.augment, "precision": precision, "seed": seed, "max_steps": max_steps,
        "trainable": sorted(chosen), "masked": sorted(masks), "extra_loss": _jsonable(extra_loss) if extra_loss else None,
    }

    # which parameters train; masked ones get no decoupled decay (their L2 term is folded into the gradient)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in chosen)
    plain = [p for n, p in chosen.items() if n not in masks]
    masked = [chosen[n] for n in masks]
    groups = [{"params": plain, "weight_decay": weight_decay}]
    if masked:
        groups.append({"params": masked, "weight_decay": 0.0})
    groups = [g for g in groups if g["params"]]
    opt = _make_optimizer(optimizer, groups, lr, momentum, nesterov, betas)
    mask_pairs = [(chosen[n], m) for n, m in masks.items()]

    forward = model
    if compile:
        forward = torch.compile(model, mode=compile if isinstance(compile, str) else None)

    # --- resume -----------------------------------------------------------------------------------
    start_epoch, start_batch, global_step = 0, 0, 0
    rows: list[dict[str, Any]] = []
    acc_state = {"loss": 0.0, "correct": 0, "n": 0, "extra": {}, "data_time": 0.0, "time": 0.0}
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    last_ckpt = None
    torch.manual_seed(seed)
    if ckpt_dir is not None:
        found = latest_checkpoint(ckpt_dir)
        if found is not None and not resume:
            for p in list(ckpt_dir.glob("ckpt-*.json")) + list(ckpt_dir.glob("ckpt-*.safetensors")):
                p.unlink()
            found = None
        if found is not None:
            meta = json.loads(found.read_text())
            old = meta.get("config", {})
            diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != _jsonable(v)}
            if diff:
                lines = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in list(diff.items())[:6])
                raise CheckpointError(
                    f"{found} is from a different run ({lines}). Use another checkpoint_dir, or resume=False to start over"
                )
            meta, saved_masks, extra = load_checkpoint(found, model, opt)
            for (p, m), name in zip(mask_pairs, masks):
                if name in saved_masks and not torch.equal(saved_masks[name].to(m), m):
                    raise CheckpointError(f"grad_masks[{name!r}] differs from the mask saved in {found}; "
                                          "pass the same masks (same seed) or resume=False")
            start_epoch, start_batch, global_step = meta["epoch"], meta["next_batch"], meta["global_step"]
            rows = meta["history"]
            acc_state = meta["accumulators"]
            if "rng_cpu" in extra:
                torch.set_rng_state(extra["rng_cpu"])
            last_ckpt = found

    def write_checkpoint(epoch: int, next_batch: int) -> Path:
        stem = ckpt_dir / f"ckpt-{global_step:09d}"
        meta = {"config": _jsonable(cfg), "epoch": epoch, "next_batch": next_batch, "global_step": global_step,
                "history": rows, "accumulators": acc_state, "total_steps": total_steps}
        path = save_checkpoint(stem, model, opt, masks=masks, meta=meta,
                               extra_tensors={"rng_cpu": torch.get_rng_state()})
        olds = sorted(ckpt_dir.glob("ckpt-*.json"))[:-keep_checkpoints]
        for o in olds:
            o.unlink(missing_ok=True)
            o.with_suffix(".safetensors").unlink(missing_ok=True)
        return path

    plot = None
    if live:
        from workbench.viz import LivePlot
        plot = LivePlot(total_epochs=epochs)
        if rows:
            plot.update(rows)

    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=global_step, disable=not progress, desc="training", unit="step",
               leave=True, dynamic_ncols=True)
    steps_this_call = 0
    t_call = time.perf_counter()
    sync_each_step = dev.type == "cpu"
    sync_every = 10 if sync_each_step else 50
    bad_step = torch.full((), -1, dtype=torch.int64, device=dev)
    dev_acc: dict[str, Any] = {"loss": torch.zeros((), dtype=torch.float64, device=dev),
                               "correct": torch.zeros((), dtype=torch.int64, device=dev), "extra": {}}

    def raise_nonfinite(value: float, step: int, applied: bool) -> None:
        where = (f"at global step {step} (epoch {(step - 1) // spe + 1}, batch {(step - 1) % spe + 1}), "
                 f"learning rate {lr_at(step - 1, total_steps, lr, schedule, warmup, milestones, gamma, spe):.4g}")
        raise NonFiniteLossError(
            f"the loss became {value} {where}. Likely causes: a learning rate too high for this model "
            f"(try lr={lr / 10:g}), inputs with NaN/inf values, or an extra loss term that diverged. "
            + ("The steps after it ran on the GPU before the check, but " if applied else
               "The weights of this step were not applied and ")
            + "no checkpoint was written from it."
        )

    def flush() -> None:
        """Move the device-side running sums into acc_state (one sync) and check for a non-finite loss."""
        if not sync_each_step and int(bad_step) >= 0:
            raise_nonfinite(float("nan"), int(bad_step), applied=True)
        acc_state["loss"] += float(dev_acc["loss"])
        acc_state["correct"] += int(dev_acc["correct"])
        for k, v in dev_acc["extra"].items():
            acc_state["extra"][k] = acc_state["extra"].get(k, 0.0) + float(v)
        dev_acc["loss"].zero_()
        dev_acc["correct"].zero_()
        dev_acc["extra"] = {}

    model.train()
    if extra_loss is not None and hasattr(extra_loss, "attach"):  # e.g. Guidance: hooks on the target's layers
        extra_loss.attach(model)
    try:
        for epoch in range(start_epoch, epochs):
            if global_step >= total_steps:
                break
            loader.set_epoch(epoch)
            batches = loader.iter_from(start_batch)
            b = start_batch
            while global_step < total_steps and b < spe:
                t0 = time.perf_counter()
                x, y = next(batches)
                acc_state["data_time"] += time.perf_counter() - t0
                cur_lr = lr_at(global_step, total_steps, lr, schedule, warmup, milestones, gamma, spe)
                for g in opt.param_groups:
                    g["lr"] = cur_lr
                captured: dict[str, Any] = {}

                if extra_loss is not None and hasattr(extra_loss, "set_step"):
                    extra_loss.set_step(global_step)  # step-dependent terms stay exact across a resume

                def closure():
                    opt.zero_grad(set_to_none=True)
                    with _autocast(dev, precision):
                        logits = forward(x)
                        loss = _task_loss(logits, y, label_smoothing)
                        logs = {}
                        if extra_loss is not None:
                            out = extra_loss(model, x, y, logits)
                            term, logs = out if isinstance(out, tuple) else (out, {})
                            loss = loss + term
                    loss.backward()
                    pairs = [(p, m) for p, m in mask_pairs if p.grad is not None]
                    if pairs:  # fold in the L2 term, then zero the frozen entries: two fused launches
                        grads = [p.grad for p, _ in pairs]
                        if weight_decay:
                            torch._foreach_add_(grads, [p.detach() for p, _ in pairs], alpha=weight_decay)
                        torch._foreach_mul_(grads, [m for _, m in pairs])
                    if "loss" not in captured:
                        captured.update(loss=loss.detach(), logits=logits.detach(), logs=logs)
                    return loss

                closure()
                loss_t = captured["loss"]
                if sync_each_step:  # CPU: the check is free, and the broken step is never applied
                    if not torch.isfinite(loss_t):
                        raise_nonfinite(float(loss_t), global_step + 1, applied=False)
                else:  # GPU: remember the first bad step on the device, look every `sync_every` steps
                    bad_step.copy_(torch.where((bad_step < 0) & ~torch.isfinite(loss_t),
                                               torch.full_like(bad_step, global_step + 1), bad_step))
                if getattr(opt, "needs_closure", False):  # e.g. SAM: evaluates the loss again itself
                    opt.step(closure)
                else:
                    opt.step()
                bs = len(y)
                logits_t = captured["logits"]
                members = logits_t.shape[2] if logits_t.ndim == 3 else 1
                dev_acc["loss"] += loss_t.double() * bs  # packed: the sum over members, divided by members below
                dev_acc["correct"] += (logits_t.argmax(1) == (y[:, None] if members > 1 else y)).sum()
                acc_state["n"] += bs * members
                for k, v in captured["logs"].items():
                    v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
                    dev_acc["extra"][k] = dev_acc["extra"].get(k, 0.0) + v * bs
                global_step += 1
                steps_this_call += 1
                b += 1
                bar.update(1)
                if global_step % sync_every == 0 or b == spe:
                    flush()
                    bar.set_postfix(epoch=epoch + 1, loss=f"{acc_state['loss'] / acc_state['n']:.3f}",
                                    acc=f"{acc_state['correct'] / acc_state['n']:.3f}", refresh=False)
                acc_state["time"] += time.perf_counter() - t0
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    break
                if ckpt_dir is not None and checkpoint_every and global_step % checkpoint_every == 0 and b < spe:
                    flush()
                    last_ckpt = write_checkpoint(epoch, b)
            flush()
            if b < spe and global_step < total_steps:  # stopped early on purpose
                if ckpt_dir is not None:
                    last_ckpt = write_checkpoint(epoch, b)
                break
            n = max(acc_state["n"], 1)
            row = {"epoch": epoch + 1, "step": global_step, "lr": cur_lr, "train_loss": acc_state["loss"] / n,
                   "train_acc": acc_state["correct"] / n}
            row.update({k: v / n for k, v in acc_state["extra"].items()})
            if test is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs or global_step >= total_steps):
                t_eval = time.perf_counter()
                ev = evaluate(model, test_loader, device=dev, precision=precision)
                row["test_loss"], row["test_acc"] = ev["loss"], ev["acc"]
                acc_state["time"] += time.perf_counter() - t_eval
            else:
                row["test_loss"], row["test_acc"] = float("nan"), float("nan")
            row["seconds"] = acc_state["time"]
            row["data_seconds"] = acc_state["data_time"]
            rows.append(row)
            acc_state.update(loss=0.0, correct=0, n=0, extra={})
            start_batch = 0
            if ckpt_dir is not None:
                last_ckpt = write_checkpoint(epoch + 1, 0)
            if plot is not None:
                plot.update(rows)
            for cb in callbacks:
                cb(row, model)
            if stop_after_seconds is not None and time.perf_counter() - t_call > stop_after_seconds:
                break
    finally:
        bar.close()
        if extra_loss is not None and hasattr(extra_loss, "detach"):
            extra_loss.detach()
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    history = pd.DataFrame(rows)
    if plot is not None:
        plot.finish(rows)
    return TrainResult(model=model, history=history, config=cfg, checkpoint=last_ckpt, masks=masks)
