"""Tasks: what a batch is, how it becomes a loss, what is logged, how a model is evaluated.

A task has four methods (the base class gives defaults for the first and the last two)::

    class Regression(wb.train.Task):
        metric_names = ("loss",)
        def loss(self, outputs, batch, state):               # outputs = self.forward(model, batch, state)
            return F.mse_loss(outputs.squeeze(1), batch[1].float())
        def metrics(self, outputs, batch, loss):             # sums over the batch, and how many they count
            return {"loss": loss.detach().double() * len(batch[1])}, len(batch[1])

* ``forward(model, batch, state)``: the model's outputs (default ``model(batch[0])``);
* ``loss(outputs, batch, state)``: a scalar tensor to minimize;
* ``metrics(outputs, batch, loss)``: ``({name: sum over the batch}, count)``; the history shows
  ``train_<name>`` = total sum / total count per epoch;
* ``evaluate(model, loader, precision)``: ``{name: float}``, shown as ``test_<name>``;
* ``check_data(model, dataset)`` and ``check_batch(batch)``: clear errors before training goes wrong;
* ``config()``: what tells this task apart from another (recorded in checkpoints and cache keys).

Tasks of a paper group live in the group's subpackage (distillation in :mod:`workbench.transfer`,
two-view contrastive learning in :mod:`workbench.ssl`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Task", "StepRandomness", "Classification", "classification_loss", "check_image_batch", "check_data_fits_model"]


class Task:
    """Base class of tasks; see the module docstring."""

    metric_names: tuple[str, ...] = ("loss",)

    @property
    def name(self) -> str:
        return type(self).__name__

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once when ``fit`` starts (move a teacher to the device, say)."""

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        """Refuse data that cannot fit the model, with the fix."""

    def check_batch(self, batch: Any) -> None:
        """Refuse a batch of the wrong shape (called on the first batch of a run)."""

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        return model(batch[0])

    def loss(self, outputs: Any, batch: Any, state: Any = None) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} must define loss(outputs, batch, state)")

    def metrics(self, outputs: Any, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[0])
        return {"loss": loss.detach().double() * n}, n

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        """Mean of ``metrics`` over ``loader`` in eval mode (no gradients); the train flag is restored."""
        was = model.training
        model.eval()
        sums: dict[str, float] = {}
        count = 0
        try:
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    with autocast(_device_of(batch), precision):
                        out = self.forward(model, batch, None)
                        loss = self.loss(out, batch, None)
                    s, n = self.metrics(out, batch, loss)
                    for k, v in s.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    count += n
        finally:
            model.train(was)
        return {k: v / max(count, 1) for k, v in sums.items()}

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class StepRandomness:
    """For a task whose forward pass draws random numbers (noise levels, masks): :meth:`generator` gives a CPU
    generator that is a pure function of ``(fit's seed, stream, step)`` in training, so a resumed run draws what
    the uninterrupted one did, and of a call counter in evaluation, reset at every :meth:`evaluate`, so every
    evaluation of a model sees the same draws for the same batches. Put it before :class:`Task` in the bases."""

    eval_seed: int = 4242
    _eval_calls: int = 0

    def generator(self, state: Any, stream: int) -> torch.Generator:
        from ..data.loader import random_stream

        if state is not None:
            return random_stream(state.seed, stream, state.step)
        self._eval_calls += 1
        return random_stream(self.eval_seed, stream, self._eval_calls)

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        self._eval_calls = 0
        return super().evaluate(model, loader, precision)


def autocast(dev: torch.device, precision: str):
    return torch.autocast(dev.type if dev.type in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16,
                          enabled=precision == "bf16")


def _device_of(batch: Any) -> torch.device:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return first.device if isinstance(first, torch.Tensor) else torch.device("cpu")


def classification_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0,
                        reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy; for packed logits ``[batch, classes, members]`` the sum of the members' losses."""
    if logits.ndim == 3:
        members = logits.shape[2]
        loss = F.cross_entropy(logits.float(), y[:, None].expand(-1, members), label_smoothing=label_smoothing,
                               reduction=reduction)
        return loss * members if reduction == "mean" else loss
    return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing, reduction=reduction)


def check_data_fits_model(model: nn.Module, data: Any) -> None:
    """A registry model's classes, channels and image size against an image dataset's."""
    n_cls, n_data = getattr(model, "num_classes", None), getattr(data, "num_classes", None)
    if n_cls is not None and n_data is not None and n_cls != n_data:
        raise ValueError(f"the model predicts {n_cls} classes but {data.name} has {n_data}; "
                         f"create the model with num_classes={n_data}")
    shape = getattr(data, "shape", None)
    chans = getattr(model, "in_chans", None)
    if chans is not None and shape is not None and chans != shape[0]:
        raise ValueError(f"the model takes {chans}-channel images but {data.name} has {shape[0]}; "
                         f"create the model with in_chans={shape[0]}")
    size = getattr(model, "img_size", None)
    if size is not None and shape is not None and tuple(shape[1:]) != (size, size):
        raise ValueError(f"the model was built for {size}x{size} images but {data.name} has "
                         f"{shape[1]}x{shape[2]}; create it with img_size={shape[2]}")


def check_image_batch(task: str, batch: Any) -> None:
    """``(x [B, C, H, W] float, y [B] integer)``, or an error naming the task and what was seen."""
    seen = (f"{type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list))
            else type(batch).__name__)
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"{task} expects batches (images [B, C, H, W], labels [B]) but got a {seen}; "
                         "train on a wb.data ImageDataset or a Loader, or give fit() a task that reads this batch")
    x, y = batch
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        got = f"shape {list(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{task} expects float images [B, C, H, W] but the batch holds {got}; "
                         "check the data (wb.data.load) or give fit() a task that reads this batch")
    if not (isinstance(y, torch.Tensor) and y.ndim == 1 and not y.is_floating_point() and len(y) == len(x)):
        got = f"shape {list(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{task} expects integer labels [{len(x)}] beside the images but got {got}; "
                         "class labels are int64 class indices")


class Classification(Task):
    """Cross-entropy on class labels (with label smoothing), accuracy; the default task of ``fit``.

    Packed models (logits ``[batch, classes, members]``) train every member on the same labels.
    """

    metric_names = ("loss", "acc")

    def __init__(self, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return classification_loss(outputs, batch[1], self.label_smoothing)

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        y = batch[1]
        members = outputs.shape[2] if outputs.ndim == 3 else 1
        hits = (outputs.detach().argmax(1) == (y[:, None] if members > 1 else y)).sum()
        # loss is the members' sum for packed logits; divided by the count it is their mean
        return {"loss": loss.detach().double() * len(y), "acc": hits.double()}, len(y) * members

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        from .trainer import evaluate
        out = evaluate(model, loader, precision=precision)
        return {"loss": out["loss"], "acc": out["acc"]}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "label_smoothing": self.label_smoothing}
