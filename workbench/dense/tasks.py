"""Restoration as a ``wb.fit`` task: a batch is ``(degraded, clean)`` (``wb.data.PairLoader``), the model maps
the degraded image to the clean one, the loss is L1 or L2, and the metrics are the loss and the PSNR in dB
(computed in the images' [0, 1] range from the normalized tensors)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.degrade import PairedImages
from ..train.tasks import Task
from .metrics import psnr

__all__ = ["Restoration"]


class Restoration(Task):
    """``loss`` ``"l1"`` or ``"l2"`` between the model's output and the clean image (normalized units);
    metrics ``loss`` and ``psnr`` (dB, per image, averaged)."""

    metric_names = ("loss", "psnr")

    def __init__(self, loss: str = "l1"):
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss is 'l1' or 'l2', got {loss!r}")
        self.loss_name = loss
        self.std: torch.Tensor | None = None

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(dataset, PairedImages):
            raise ValueError(f"{self.name} trains on (degraded, clean) pairs: pass a wb.data.PairLoader of "
                             f"wb.data.paired(...), got {type(dataset).__name__}")
        self.std = torch.tensor(dataset.std).view(1, -1, 1, 1)

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        clean = batch[1]
        if outputs.shape != clean.shape:
            raise ValueError(f"the model returned {tuple(outputs.shape)} for clean images of {tuple(clean.shape)}: "
                             "a restoration model outputs the clean image's shape")
        fn = F.l1_loss if self.loss_name == "l1" else F.mse_loss
        return fn(outputs.float(), clean.float())

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        clean = batch[1]
        std = self.std.to(clean.device)
        # normalized difference times std is the difference in [0, 1] units; PSNR of (clean + d) against clean
        diff = (outputs.detach().float() - clean.float()) * std
        db = psnr((0.5 + diff).clamp(-10, 10), torch.full_like(diff, 0.5)) if diff.numel() else torch.zeros(0)
        return {"loss": loss.detach().double() * len(clean), "psnr": db.double().clamp(max=100).sum()}, len(clean)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss_name}
