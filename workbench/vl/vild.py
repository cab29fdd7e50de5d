"""Open-vocabulary detection by distilling a vision-language model (ViLD, Gu et al., arXiv:2104.13921), small.

The pieces:

* :class:`DetectionData` / :class:`DetectionLoader`: scene images with their boxes and labels (from
  ``wb.data.make_scenes``), batches ``(images, boxes [B, K, 4], labels [B, K])`` (unused slots NaN / -1).
* :func:`proposals`: class-agnostic region proposals: every ground-truth box jittered several times (scale and
  shift) plus random boxes, each matched to the ground truth it overlaps most (IoU >= 0.5: its label, else
  background, -1). ViLD takes proposals from a trained region proposal network; ground-truth-jittered boxes are
  the stand-in here (said so), so the comparison is about classifying regions, not finding them.
* :class:`ViLDStudent`: a CIFAR ResNet trunk's feature map, RoIAlign of every proposal, a small head projecting
  each region into the text space (L2-normalized), and a learned background embedding.
* :class:`ViLDTask`: the training objective, a task of ``wb.fit``: **ViLD-text**, cross-entropy of each
  region's similarity to the *base* classes' text embeddings (and the background embedding), at temperature
  ``T``; **ViLD-image**, the L1 distance between each region's embedding and the frozen image encoder's
  embedding of the region's crop. Novel classes are never labelled in training (their regions count as
  background for ViLD-text), so only ViLD-image can teach the student about them.
* :func:`detect`: region embeddings against the text embeddings of any classes (base and novel), scores,
  per-class non-maximum suppression: detections for :func:`~workbench.vl.regions.box_ap`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..data.dataset import to_float, validate_images
from ..data.loader import TensorLoader
from ..models.resnet_cifar import CifarResNet
from ..train.tasks import Task
from .regions import box_iou, check_boxes_in_image, nms, roi_align

__all__ = ["DetectionData", "DetectionLoader", "proposals", "ViLDStudent", "ViLDTask", "detect", "crop_embeddings"]

_PROPOSAL_STREAM = 49_979_687


@dataclass
class DetectionData:
    """``images`` uint8 ``[N, 3, S, S]``, ``boxes`` float ``[N, K, 4]`` (NaN where unused), ``labels`` int64
    ``[N, K]`` (-1 where unused)."""

    images: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    name: str = "detection"
    split: str = "train"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        validate_images(self.images)
        if self.boxes.shape[:2] != self.labels.shape or self.boxes.shape[-1] != 4 or len(self.boxes) != len(self.images):
            raise ValueError(f"boxes [N, K, 4] and labels [N, K] must match the {len(self.images)} images, got "
                             f"{tuple(self.boxes.shape)} and {tuple(self.labels.shape)}")
        used = ~torch.isnan(self.boxes[..., 0])
        check_boxes_in_image(self.boxes[used], tuple(self.images.shape[-2:]), "the annotated boxes")

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_scenes(cls, scenes, hide: Sequence[int] = ()) -> "DetectionData":
        """The scenes' garments as labelled boxes; classes in ``hide`` lose their labels (set to -1, as novel
        classes are never annotated in ViLD's training set) but keep their pixels."""
        labels = scenes.items.clone()
        for c in hide:
            labels[labels == c] = -1
        boxes = scenes.boxes.clone()
        boxes[labels < 0] = float("nan")
        return cls(scenes.images, boxes, labels, split=scenes.split)

    def to(self, device: torch.device | str) -> "DetectionData":
        return DetectionData(self.images.to(device), self.boxes.to(device), self.labels.to(device), self.name,
                             self.split, self.mean, self.std)


class DetectionLoader(TensorLoader):
    """Batches ``(images normalized, boxes [B, K, 4], labels [B, K])`` of a :class:`DetectionData`."""

    data_type, made_by = DetectionData, "wb.vl.DetectionData.from_scenes"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        d = self.dataset
        return to_float(d.images[idx], d.mean, d.std), d.boxes[idx], d.labels[idx]


def proposals(boxes: torch.Tensor, labels: torch.Tensor, size: int, per_box: int = 4, random: int = 4,
              jitter: float = 0.25, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposals ``[P, 5]`` (image index, x0, y0, x1, y1) and their matched labels ``[P]`` (-1: background) for a
    batch's ground truth ``boxes [B, K, 4]`` / ``labels [B, K]``; see the module docstring."""
    g = generator or torch.Generator().manual_seed(0)
    out, matched = [], []
    for b in range(len(boxes)):
        keep = ~torch.isnan(boxes[b, :, 0])
        gt, lab = boxes[b][keep].cpu(), labels[b][keep].cpu()
        cands = []
        if len(gt):
            wh = (gt[:, 2:] - gt[:, :2]).repeat_interleave(per_box, 0)
            ctr = ((gt[:, :2] + gt[:, 2:]) / 2).repeat_interleave(per_box, 0)
            ctr = ctr + (torch.rand(ctr.shape, generator=g) - 0.5) * jitter * wh
            wh = wh * (1 + (torch.rand(wh.shape, generator=g) - 0.5) * jitter)
            cands.append(torch.cat([ctr - wh / 2, ctr + wh / 2], 1))
        if random:
            xy = torch.rand(random, 2, generator=g) * size * 0.7
            wh = size * (0.15 + 0.3 * torch.rand(random, 2, generator=g))
            cands.append(torch.cat([xy, xy + wh], 1))
        c = torch.cat(cands).clamp(0, size)
        c = c[(c[:, 2] - c[:, 0] > 1) & (c[:, 3] - c[:, 1] > 1)]
        if len(gt):
            iou = box_iou(c, gt)                                         # [P, G]
            best, arg = iou.max(1)
            m = torch.where(best >= 0.5, lab[arg], torch.full_like(arg, -1))
        else:
            m = torch.full((len(c),), -1, dtype=torch.long)
        out.append(torch.cat([torch.full((len(c), 1), float(b)), c], 1))
        matched.append(m)
    dev = boxes.device
    return torch.cat(out).to(dev), torch.cat(matched).to(dev)


class ViLDStudent(nn.Module):
    """Region embeddings from a CIFAR ResNet's feature map (see the module docstring)."""

    def __init__(self, embed_dim: int, in_chans: int = 3, depth: int = 8, width: int = 16, pooled: int = 2):
        super().__init__()
        self.trunk = CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
        self.trunk.fc = nn.Identity()
        self.pooled, self.stride = pooled, 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * pooled * pooled, 2 * embed_dim), nn.ReLU(),
                                  nn.Linear(2 * embed_dim, embed_dim))
        self.background = nn.Parameter(torch.randn(embed_dim) * 0.1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        return t.layer3(t.layer2(t.layer1(t.stem(x))))                   # [B, 4W, H/4, W/4]

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        f = self.feature_map(x)
        r = roi_align(f, rois, self.pooled, spatial_scale=1 / self.stride)  # [P, 4W, p, p]
        return F.normalize(self.head(r), dim=-1)


@torch.no_grad()
def crop_embeddings(teacher: nn.Module, x: torch.Tensor, rois: torch.Tensor, crop: int = 32) -> torch.Tensor:
    """The frozen image encoder's normalized embeddings of every region's crop, resized to ``crop`` pixels."""
    crops = roi_align(x, rois, crop, sampling_ratio=1)                  # [P, C, crop, crop]
    return teacher.encode_image(crops)


class ViLDTask(Task):
    """ViLD-text and ViLD-image (see the module docstring); metrics ``loss``, ``text``, ``image`` (the two terms)
    and ``acc`` (region classification among background and the base classes)."""

    metric_names = ("loss", "acc")

    def __init__(self, teacher: nn.Module, base_text: torch.Tensor, base_classes: Sequence[int], size: int,
                 text_weight: float = 1.0, image_weight: float = 1.0, temperature: float = 0.05):
        if base_text.ndim != 2 or len(base_text) != len(base_classes):
            raise ValueError("base_text holds one text embedding per base class: [len(base_classes), dim]")
        if not base_classes or max(base_classes) >= 1024 or min(base_classes) < 0:
            raise ValueError(f"base_classes are class indices in 0..1023, got {list(base_classes)}")
        if text_weight < 0 or image_weight < 0 or text_weight + image_weight == 0:
            raise ValueError("text_weight and image_weight are >= 0 and not both 0")
        self.teacher, self.base_text = teacher.eval(), F.normalize(base_text.detach(), dim=-1)
        self.base_classes, self.size = list(base_classes), size
        self.text_weight, self.image_weight, self.temperature = text_weight, image_weight, temperature
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.teacher.to(device)
        self.base_text = self.base_text.to(device)
        self.index = torch.zeros(1024, dtype=torch.long, device=device)  # class -> its row; 0: background
        for k, c in enumerate(self.base_classes):
            self.index[c] = k + 1                                       # a novel class stays 0: background

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(dataset, DetectionData):
            raise ValueError(f"{self.name} trains on boxes: pass a wb.vl.DetectionLoader, got {type(dataset).__name__}")

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        x, boxes, labels = batch
        step = state.step if state is not None else 0
        seed = state.seed if state is not None else 0
        rois, matched = proposals(boxes, labels, self.size, generator=random_stream(seed, _PROPOSAL_STREAM, step))
        regions = model(x, rois)                                         # [P, D]
        logits = torch.cat([model.background[None], self.base_text]) @ regions.T   # [1 + base, P]
        target = self.index[matched.clamp(min=0)] * (matched >= 0)      # background and novel regions: 0
        teacher = crop_embeddings(self.teacher, x, rois) if self.image_weight else None
        return logits.T / self.temperature, target, regions, teacher

    def loss(self, outputs: Any, batch: Any, state: Any = None) -> torch.Tensor:
        logits, target, regions, teacher = outputs
        loss = self.text_weight * F.cross_entropy(logits.float(), target)
        if teacher is not None:
            loss = loss + self.image_weight * (regions.float() - teacher.float()).abs().sum(1).mean()
        return loss

    def metrics(self, outputs: Any, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        logits, target = outputs[0], outputs[1]
        n = len(target)
        return {"loss": loss.detach().double() * n, "acc": (logits.argmax(1) == target).sum().double()}, n

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "base_classes": self.base_classes, "text_weight": self.text_weight,
                "image_weight": self.image_weight, "temperature": self.temperature}


@torch.no_grad()
def detect(student: ViLDStudent, data: DetectionData, text: torch.Tensor, classes: Sequence[int],
           per_box: int = 4, random: int = 4, score_threshold: float = 0.3, iou: float = 0.5,
           temperature: float = 0.05, seed: int = 0, batch_size: int = 100) -> list[dict]:
    """Detections per image: proposals as in training (the ground truth jittered, plus random boxes: the stand-in
    for a proposal network), each region scored against the background and the text embeddings of ``classes``
    (softmax at ``temperature``), its best class kept above ``score_threshold``, per-class NMS at ``iou``."""
    dev = next(student.parameters()).device
    text = F.normalize(text.to(dev), dim=-1)
    was = student.training
    student.eval()
    out: list[dict] = []
    g = torch.Generator().manual_seed(seed)
    try:
        for x, boxes, labels in DetectionLoader(data, batch_size, shuffle=False, device=dev):
            rois, _ = proposals(boxes, labels, x.shape[-1], per_box, random, generator=g)
            probs = ((torch.cat([student.background[None], text]) @ student(x, rois).T).T / temperature).softmax(1)
            score, cls = probs[:, 1:].max(1)
            for b in range(len(x)):
                sel = (rois[:, 0] == b) & (score >= score_threshold)
                bx, sc, cl = rois[sel, 1:], score[sel], cls[sel]
                keep = torch.cat([torch.nonzero(cl == c).flatten()[nms(bx[cl == c], sc[cl == c], iou)]
                                  for c in cl.unique()]) if len(cl) else torch.zeros(0, dtype=torch.long)
                out.append({"boxes": bx[keep].cpu(), "scores": sc[keep].cpu(),
                            "labels": torch.tensor(list(classes), dtype=torch.long)[cl[keep].cpu()]})
    finally:
        student.train(was)
    return out
