"""Tasks of ``wb.fit`` for sequences that are not classified as a whole: a regression on the last step (the
adding problem) and a classification at every step (the copy task)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sequences import SequenceData
from ..train.tasks import Task

__all__ = ["LastStepRegression", "StepClassification"]


def _check_sequences(task: str, dataset: Any) -> None:
    if not isinstance(dataset, SequenceData):
        raise ValueError(f"{task} trains on sequences: pass a wb.data.SequenceLoader of wb.data.adding_problem(...) "
                         f"or copy_task(...), got {type(dataset).__name__}")


class LastStepRegression(Task):
    """Mean squared error between the model's output ``[B, 1]`` and the target ``[B]``; metric ``mse``."""

    metric_names = ("mse",)

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        _check_sequences(self.name, dataset)

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return F.mse_loss(outputs.float().reshape(-1), batch[1].float())

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[1])
        return {"mse": loss.detach().double() * n}, n


class StepClassification(Task):
    """Cross-entropy at every step (logits ``[B, T, C]``, targets ``[B, T]``, the mean over steps); metrics
    ``loss`` and ``acc``, the accuracy over the last ``scored`` steps (the copy task's answer)."""

    metric_names = ("loss", "acc")

    def __init__(self, scored: int = 10):
        if not (isinstance(scored, int) and scored >= 1):
            raise ValueError(f"scored is the number of final steps whose accuracy counts, >= 1, got {scored!r}")
        self.scored = scored

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        _check_sequences(self.name, dataset)
        if dataset.y.ndim != 2:
            raise ValueError(f"{self.name} needs a target per step [N, T] (copy_task), got shape "
                             f"{tuple(dataset.y.shape)}")

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return F.cross_entropy(outputs.float().flatten(0, 1), batch[1].flatten())

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        y = batch[1]
        hits = (outputs.detach()[:, -self.scored:].argmax(-1) == y[:, -self.scored:]).double().mean(1).sum()
        return {"loss": loss.detach().double() * len(y), "acc": hits}, len(y)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "scored": self.scored}
