"""Dense tasks of ``wb.fit``.

* :class:`Restoration`: a batch is ``(degraded, clean)`` (``wb.data.PairLoader``), the model maps the degraded
  image to the clean one, the loss is L1 or L2 (plus, with ``feature_weight``, the squared distance of a frozen
  workbench classifier's ``layer2`` features: SRGAN's content loss in miniature), and the metrics are the loss
  and the PSNR in dB (computed in the images' [0, 1] range from the normalized tensors).
* :class:`Segmentation`: a batch is ``(images, masks)`` (:class:`SegLoader` over :class:`SegmentationData`, e.g.
  the garment scenes' class masks), per-pixel cross-entropy; metrics ``loss``, pixel accuracy ``acc`` and the
  batch's mean IoU ``miou`` (torchmetrics' multiclass Jaccard index, classes absent from both prediction and
  truth left out); :func:`mean_iou` over a whole dataset accumulates intersections and unions first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import to_float, validate_images
from ..data.degrade import PairedImages
from ..data.loader import TensorLoader
from ..train.tasks import Task

__all__ = ["Restoration", "Segmentation", "SegmentationData", "SegLoader", "mean_iou"]


class Restoration(Task):
    """``loss`` ``"l1"`` or ``"l2"`` between the model's output and the clean image (normalized units);
    metrics ``loss`` and ``psnr`` (dB, per image, averaged)."""

    metric_names = ("loss", "psnr")

    def __init__(self, loss: str = "l1", feature_model: nn.Module | None = None, feature_weight: float = 0.0,
                 pixel_weight: float = 1.0):
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss is 'l1' or 'l2', got {loss!r}")
        if feature_weight and not hasattr(feature_model, "layer2"):
            raise ValueError("a feature loss needs a CIFAR ResNet of wb.models as feature_model (its layer2 features "
                             "are compared, SRGAN's VGG-feature loss in miniature)")
        self.loss_name, self.feature_model = loss, feature_model
        self.feature_weight, self.pixel_weight = float(feature_weight), float(pixel_weight)
        if feature_model is not None:
            feature_model.eval()
            for p in feature_model.parameters():
                p.requires_grad_(False)
        self.std: torch.Tensor | None = None

    def setup(self, model: nn.Module, device: torch.device) -> None:
        if self.feature_model is not None:
            self.feature_model.to(device)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_model
        return f.layer2(f.layer1(f.stem(x)))

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
        loss = self.pixel_weight * fn(outputs.float(), clean.float())
        if self.feature_weight:
            loss = loss + self.feature_weight * F.mse_loss(self._features(outputs), self._features(clean))
        return loss

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        clean = batch[1]
        std = self.std.to(clean.device)
        # the normalized difference times std is the difference in [0, 1] units: PSNR = 10 log10(1 / MSE), per image
        diff = (outputs.detach().float() - clean.float()) * std
        db = -10 * torch.log10(diff.pow(2).mean((1, 2, 3)).clamp(min=1e-10))   # at most 100 dB
        return {"loss": loss.detach().double() * len(clean), "psnr": db.double().sum()}, len(clean)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss_name, "pixel_weight": self.pixel_weight,
                "feature_weight": self.feature_weight,
                "feature_model": getattr(self.feature_model, "model_name", None) if self.feature_model else None}


@dataclass
class SegmentationData:
    """uint8 ``images [N, C, H, W]`` and int64 class ``masks [N, H, W]`` (0 .. num_classes - 1)."""

    images: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    name: str = "segmentation"
    split: str = "train"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        validate_images(self.images)
        if self.masks.shape != (self.images.shape[0], *self.images.shape[2:]):
            raise ValueError(f"masks must be [N, H, W] beside images [N, C, H, W], got {tuple(self.masks.shape)}")
        if len(self.masks) and (int(self.masks.min()) < 0 or int(self.masks.max()) >= self.num_classes):
            raise ValueError(f"mask values must lie in 0..{self.num_classes - 1} (one id per class, num_classes="
                             f"{self.num_classes}), got ids {int(self.masks.min())}..{int(self.masks.max())}: fix the "
                             "masks or raise num_classes to the largest id + 1")

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_scenes(cls, scenes) -> "SegmentationData":
        """The garment scenes with their class masks: 0 the ground, 1..10 the Fashion-MNIST classes."""
        return cls(scenes.images, scenes.semantic_masks(), 11, split=scenes.split)

    def to(self, device: torch.device | str) -> "SegmentationData":
        return SegmentationData(self.images.to(device), self.masks.to(device), self.num_classes, self.name, self.split,
                                self.mean, self.std)


class SegLoader(TensorLoader):
    """Batches ``(images normalized, masks [B, H, W])`` of a :class:`SegmentationData`."""

    data_type, made_by = SegmentationData, "wb.dense.SegmentationData.from_scenes"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        d = self.dataset
        return to_float(d.images[idx], d.mean, d.std), d.masks[idx]


class Segmentation(Task):
    """Per-pixel cross-entropy over ``num_classes``; metrics ``loss``, ``acc`` (pixels) and ``miou``."""

    metric_names = ("loss", "acc", "miou")

    def __init__(self, num_classes: int):
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(dataset, SegmentationData):
            raise ValueError(f"{self.name} trains on masks: pass a wb.dense.SegLoader, got {type(dataset).__name__}")
        if dataset.num_classes != self.num_classes:
            raise ValueError(f"the data have {dataset.num_classes} classes, the task {self.num_classes}")

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        if outputs.shape[1] != self.num_classes or outputs.shape[2:] != batch[1].shape[1:]:
            raise ValueError(f"the model returned {tuple(outputs.shape)} for masks of {tuple(batch[1].shape)}: a "
                             f"segmentation model outputs [B, {self.num_classes}, H, W]")
        return F.cross_entropy(outputs.float(), batch[1])

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        from torchmetrics.functional.classification import multiclass_jaccard_index
        pred, y = outputs.detach().argmax(1), batch[1]
        n = len(y)
        miou = multiclass_jaccard_index(pred, y, num_classes=self.num_classes, average="macro")
        return {"loss": loss.detach().double() * n, "acc": (pred == y).double().mean((1, 2)).sum(),
                "miou": miou.double() * n}, n

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes}


@torch.no_grad()
def mean_iou(model: nn.Module, data: SegmentationData, batch_size: int = 100) -> tuple[float, torch.Tensor]:
    """The dataset's mean IoU over the classes that occur (in truth or prediction), and the per-class IoU
    (NaN for a class that never occurs): intersections and unions summed over every image first."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    inter = torch.zeros(data.num_classes, dtype=torch.float64)
    union = torch.zeros(data.num_classes, dtype=torch.float64)
    try:
        for x, y in SegLoader(data, batch_size, shuffle=False, device=dev):
            pred = model(x).argmax(1)
            for c in range(data.num_classes):
                p, t = pred == c, y == c
                inter[c] += float((p & t).sum())
                union[c] += float((p | t).sum())
    finally:
        model.train(was)
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan")))
    return float(iou[~torch.isnan(iou)].mean()), iou
