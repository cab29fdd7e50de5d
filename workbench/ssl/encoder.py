"""An encoder for self-supervised pre-training: a registered classifier (its pooled features) and
a projection head, as in SimCLR and SimCLRv2 (Chen et al. 2020, arXiv 2006.10029, section 2: a
deeper projection head, three layers, and fine-tuning from its first layer rather than from the
encoder's output).

``forward`` returns the projection (what a contrastive loss compares); ``features`` returns the
encoder's pooled features, or the output of the first ``head_layers`` layers of the head, which is
what a linear probe or fine-tuning reads. ``backbone`` is the registered classifier itself, with
its own final layer, ready to train on labels once pre-training is done.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import create_model, register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint

__all__ = ["SSLEncoder", "ssl_encoder"]


class SSLEncoder(WorkbenchModel):
    """A backbone with ``forward_features`` and a projection head of ``proj_layers`` linear layers.

    Args:
        backbone: the registered classifier (any model with ``forward_features``).
        proj_dim: the projection's size (the embedding the loss compares).
        proj_layers: linear layers in the head (SimCLR 2, SimCLRv2 3); hidden layers keep the
            feature size and have BatchNorm and ReLU.
    """

    hook_layers = ("hook_features", "hook_projection")

    def __init__(self, backbone: nn.Module, proj_dim: int = 64, proj_layers: int = 2):
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise TypeError(f"{type(backbone).__name__} has no forward_features(x); the encoder reads the backbone's "
                            "pooled features: pick a registered classifier (resnet20, vgg11, ...)")
        if proj_layers < 1 or proj_dim < 1:
            raise ValueError(f"proj_layers and proj_dim must be at least 1, got {proj_layers} and {proj_dim}")
        self.backbone = backbone
        self.in_chans, self.num_classes = backbone.in_chans, backbone.num_classes
        self.img_size = getattr(backbone, "img_size", None)
        width = backbone.fc.in_features if isinstance(getattr(backbone, "fc", None), nn.Linear) else None
        if width is None:
            with torch.no_grad():
                was = backbone.training
                backbone.eval()
                width = backbone.forward_features(torch.zeros(1, self.in_chans, 32, 32)).shape[1]
                backbone.train(was)
        self.feature_dim, self.proj_dim = int(width), int(proj_dim)
        layers: list[nn.Module] = []
        for _ in range(proj_layers - 1):
            layers.append(nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()))
        layers.append(nn.Linear(width, proj_dim))
        self.head = nn.ModuleList(layers)
        self.hook_features, self.hook_projection = HookPoint(), HookPoint()

    def features(self, x: torch.Tensor, head_layers: int = 0) -> torch.Tensor:
        """The backbone's pooled features ``[B, F]``, or after the first ``head_layers`` layers of the head."""
        if not 0 <= head_layers < len(self.head):
            raise ValueError(f"head_layers must be in 0..{len(self.head) - 1} (the hidden layers of the head), "
                             f"got {head_layers}")
        h = self.hook_features(self.backbone.forward_features(x))
        for layer in self.head[:head_layers]:
            h = layer(h)
        return h

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The projection head applied to features ``[B, F]`` already computed."""
        for layer in self.head:
            h = layer(h)
        return self.hook_projection(h)  # [B, proj_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x))


@register_model
def ssl_encoder(backbone: str = "resnet20", backbone_kwargs: dict | None = None, proj_dim: int = 64,
                proj_layers: int = 2, num_classes: int = 10, in_chans: int = 3) -> SSLEncoder:
    """A registered classifier ``backbone`` (built with ``backbone_kwargs``) and a projection head."""
    if backbone == "ssl_encoder":
        raise ValueError("backbone must be a classifier such as resnet20, not ssl_encoder itself")
    net = create_model(backbone, num_classes=num_classes, in_chans=in_chans, **dict(backbone_kwargs or {}))
    return SSLEncoder(net, proj_dim=proj_dim, proj_layers=proj_layers)
