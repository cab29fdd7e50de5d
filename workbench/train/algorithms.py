"""The algorithms every group shares: which parameters train, gradient masks, an extra loss term,
an optimizer step that needs a closure. ``fit``'s ``params=``, ``grad_masks=``, ``extra_loss=`` and a
sharpness-aware ``optimizer=`` become these; a paper group's own algorithms live in its subpackage.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .events import Algorithm, Callback, State

__all__ = ["SelectParams", "GradMask", "ExtraLoss", "ClosureStep", "ProgressBar", "LiveCurves", "EpochFunctions"]


def select_params(model: nn.Module, params) -> dict[str, nn.Parameter]:
    """``None`` (those with ``requires_grad``), a list of names, or ``fn(name, param) -> bool``."""
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


class SelectParams(Algorithm):
    """Train only the chosen parameters; the others are frozen for the run and their
    ``requires_grad`` flags restored at the end (also after an error)."""

    def __init__(self, params):
        super().__init__()
        self.params = params
        self._flags: dict[str, bool] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name}  # the chosen names are recorded as the run's "trainable"

    def on_init(self, state: State) -> None:
        state.trainable = select_params(state.model, self.params)
        self._flags = {n: p.requires_grad for n, p in state.model.named_parameters()}
        for n, p in state.model.named_parameters():
            p.requires_grad_(n in state.trainable)

    def on_fit_end(self, state: State) -> None:
        for n, p in state.model.named_parameters():
            if n in self._flags:
                p.requires_grad_(self._flags[n])


class GradMask(Algorithm):
    """Only entries where ``masks[name]`` is 1 change: after backward the L2 term is folded into the
    gradient and the frozen entries' gradient zeroed; the masked parameters get no decoupled decay.
    The masks are saved in the checkpoint, and a resume with other masks is refused."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        super().__init__()
        self.masks = dict(masks)
        self._pairs: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._wd = 0.0

    def config(self) -> dict[str, Any]:
        return {"name": self.name}  # the masked names are recorded as the run's "masked"; the masks are checked

    def on_init(self, state: State) -> None:
        out = {}
        for name, m in self.masks.items():
            if name not in state.trainable:
                raise ValueError(f"grad_masks names {name!r}, which is not a trained parameter; "
                                 "mask only parameters selected by params=")
            p = state.trainable[name]
            if tuple(m.shape) != tuple(p.shape):
                raise ValueError(f"grad_masks[{name!r}] has shape {tuple(m.shape)} but the parameter has "
                                 f"{tuple(p.shape)}")
            out[name] = m.to(device=p.device, dtype=p.dtype)
        self.masks = out
        state.no_decay.extend(n for n in out if n not in state.no_decay)
        self._pairs = [(state.trainable[n], m) for n, m in out.items()]
        self._wd = state.weight_decay

    def on_after_backward(self, state: State) -> None:
        pairs = [(p, m) for p, m in self._pairs if p.grad is not None]
        if pairs:  # fold in the L2 term, then zero the frozen entries: two fused launches
            grads = [p.grad for p, _ in pairs]
            if self._wd:
                torch._foreach_add_(grads, [p.detach() for p, _ in pairs], alpha=self._wd)
            torch._foreach_mul_(grads, [m for _, m in pairs])

    def state_dict(self) -> dict[str, Any]:
        return {f"mask.{n}": m for n, m in self.masks.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from .checkpoint import CheckpointError
        for name, m in self.masks.items():
            saved = state.get(f"mask.{name}")
            if saved is not None and not torch.equal(saved.to(m), m):
                raise CheckpointError(f"grad_masks[{name!r}] differs from the mask saved in the checkpoint; "
                                      "pass the same masks (same seed) or resume=False")


class ExtraLoss(Algorithm):
    """``fn(model, x, y, outputs) -> tensor`` or ``-> (tensor, {name: value})`` added to the task's loss
    (``fit(extra_loss=fn)``); the logged values appear in the history. An object with ``attach``,
    ``set_step`` and ``detach`` methods has them called at the start, before each step and at the end."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__name__

    def config(self) -> dict[str, Any]:
        return {"name": "ExtraLoss", "fn": getattr(self.fn, "cache_key", None) or self.name}

    def on_fit_start(self, state: State) -> None:
        if hasattr(self.fn, "attach"):
            self.fn.attach(state.model)

    def on_batch_loaded(self, state: State) -> None:
        if hasattr(self.fn, "set_step"):
            self.fn.set_step(state.step)  # step-dependent terms stay exact across a resume

    def on_after_loss(self, state: State) -> None:
        x, y = state.batch[0], state.batch[1]
        out = self.fn(state.model, x, y, state.outputs)
        term, logs = out if isinstance(out, tuple) else (out, {})
        state.loss = state.loss + term
        state.logs.update(logs)

    def on_fit_end(self, state: State) -> None:
        if hasattr(self.fn, "detach"):
            self.fn.detach()


class ClosureStep(Algorithm):
    """For an optimizer with ``needs_closure = True`` (sharpness-aware minimization): its ``step`` gets
    the closure that runs the forward and backward pass again (with every algorithm acting in it)."""

    replaces_step = True

    def __init__(self):
        super().__init__()

    @property
    def name(self) -> str:
        return "ClosureStep (the optimizer's closure step)"

    def config(self) -> dict[str, Any]:
        return {"name": "ClosureStep"}

    def optimizer_step(self, state: State, compute: Callable[[], torch.Tensor]) -> None:
        state.optimizer.step(compute)


class ProgressBar(Callback):
    """A tqdm bar over the steps, with the running training loss and accuracy."""

    def __init__(self, desc: str = "training"):
        super().__init__()
        self.desc = desc
        self.bar = None
        self._shown = None

    def on_fit_start(self, state: State) -> None:
        from tqdm.auto import tqdm
        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=self.desc, unit="step", leave=True,
                        dynamic_ncols=True)

    def on_after_step(self, state: State) -> None:
        self.bar.update(1)
        if state.running is not self._shown:  # new running means after each sync of the loop
            self._shown = state.running
            shown = {k: f"{v:.3f}" for k, v in state.running.items() if k in ("loss", "acc")}
            self.bar.set_postfix(epoch=state.epoch + 1, **shown, refresh=False)

    def on_fit_end(self, state: State) -> None:
        if self.bar is not None:
            self.bar.close()


class LiveCurves(Callback):
    """The live loss/accuracy plot (a widget in Jupyter; a static figure at the end elsewhere)."""

    def __init__(self):
        super().__init__()
        self.plot = None

    def on_fit_start(self, state: State) -> None:
        from ..viz import LivePlot
        self.plot = LivePlot(total_epochs=state.epochs)
        if state.rows:
            self.plot.update(state.rows)

    def on_epoch_end(self, state: State) -> None:
        self.plot.update(state.rows)

    def on_fit_end(self, state: State) -> None:
        if state.error is None and self.plot is not None:
            self.plot.finish(state.rows)


class EpochFunctions(Callback):
    """``fit(callbacks=[fn])``: ``fn(row, model)`` after each epoch's row is recorded."""

    def __init__(self, fns):
        super().__init__()
        self.fns = list(fns)

    def on_epoch_end(self, state: State) -> None:
        for fn in self.fns:
            fn(state.rows[-1], state.model)
