"""Knowledge distillation (Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network*,
2015, https://arxiv.org/abs/1503.02531) as a task of :func:`workbench.fit`.

The student minimizes::

    (1 - alpha) * CE(student(x), y)  +  alpha * T^2 * KL( softmax(teacher(x) / T) || softmax(student(x) / T) )

The ``T^2`` keeps the soft term's gradient the same size as the temperature changes: the gradient
of ``T^2 KL`` with respect to the student's logits is ``T (softmax(s / T) - softmax(t / T))`` per
example (divided by the batch size for the mean).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..train import Task, model_fingerprint
from ..train.tasks import check_data_fits_model, check_image_batch, classification_loss

__all__ = ["Distillation", "distillation_loss"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
                      ) -> torch.Tensor:
    """``T^2 KL(softmax(t / T) || softmax(s / T))``, the batch mean (float32)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return t * t * F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


class Distillation(Task):
    """A student learns from a frozen teacher's softened outputs and the labels.

    Args:
        teacher: the trained teacher (kept in eval mode without gradients; moved to the device).
        temperature: ``T`` of the softmax of both networks in the soft term.
        alpha: weight of the soft term; ``1 - alpha`` weighs the cross-entropy on the labels.

    The history gains ``train_kl`` (the soft term) and ``train_agree`` (how often the student's top
    class is the teacher's); the test set reports the student's loss, accuracy and agreement.
    """

    metric_names = ("loss", "acc", "kl", "agree")

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha weighs the soft term and must be in [0, 1], got {alpha}")
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module (a trained network), got {type(teacher).__name__}")
        self.teacher, self.temperature, self.alpha = teacher, float(temperature), float(alpha)
        for p in teacher.parameters():
            p.requires_grad_(False)

    def config(self) -> dict[str, Any]:
        return {"name": "Distillation", "teacher": model_fingerprint(self.teacher),
                "temperature": self.temperature, "alpha": self.alpha}

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.teacher.to(device).eval()

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)
        check_data_fits_model(self.teacher, dataset)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        self.teacher.eval()
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return model(x), teacher_logits

    def parts(self, outputs, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The hard term (cross-entropy on labels) and the soft term, both batch means."""
        student, teacher = outputs
        return classification_loss(student, batch[1]), distillation_loss(student, teacher, self.temperature)

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        hard, soft = self.parts(outputs, batch)
        return (1 - self.alpha) * hard + self.alpha * soft

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        student, teacher = (o.detach() for o in outputs)
        n = len(batch[1])
        _, soft = self.parts((student, teacher), batch)
        top = student.argmax(1)
        return {"loss": loss.detach().double() * n, "acc": (top == batch[1]).sum().double(),
                "kl": soft.double() * n, "agree": (top == teacher.argmax(1)).sum().double()}, n
