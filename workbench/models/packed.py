"""Several CIFAR ResNets of one depth trained as one network: a GPU throughput device.

At CIFAR sizes a single ResNet leaves most of a large GPU idle (small kernels,
launch-bound). Packing ``G`` independent members side by side turns every
convolution into one grouped convolution (``groups=G``) and every BatchNorm into
one BatchNorm over ``G`` times the channels. Nothing mixes between members:
grouped convolutions, per-channel normalization, ReLU, the residual addition and
pooling all act per channel, and the output layer is a per-member matrix. Member
``g`` therefore computes exactly what a lone :class:`CifarResNet` with member
``g``'s weights computes, and since parameters are disjoint, the gradient of the
summed loss with respect to member ``g``'s slice is that member's own gradient.

Output logits have shape ``[batch, classes, members]``; :func:`workbench.train.fit`
trains such a model on the sum of the members' losses, every member seeing the
same batches. Different training policies per member are gradient masks on the
packed tensors (see :func:`workbench.bn_only.configure_packed`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import CifarResNet


class PackedBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, g: int, skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(g * cin, g * cout, 3, stride, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(g * cout)
        self.conv2 = nn.Conv2d(g * cout, g * cout, 3, 1, 1, groups=g, bias=False)
        self.bn2 = nn.BatchNorm2d(g * cout)
        self.skip = skip
        self.shortcut = None
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.Conv2d(g * cin, g * cout, 1, stride, bias=False, groups=g),
                                          nn.BatchNorm2d(g * cout))
        self.hook_relu1 = HookPoint()
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, G*cin, h, w]
        out = self.hook_relu1(F.relu(self.bn1(self.conv1(x))))
        out = self.hook_branch(self.bn2(self.conv2(out)))
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.hook_out(F.relu(out))


class PackedHead(nn.Module):
    def __init__(self, g: int, features: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(g, classes, features))
        self.bias = nn.Parameter(torch.zeros(g, classes))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # feats: [batch, G, features]
        return torch.einsum("bgf,gcf->bcg", feats, self.weight) + self.bias.t()  # [batch, classes, G]


class PackedCifarResNet(WorkbenchModel):
    """``members`` CIFAR ResNets of one depth, computed together; logits ``[batch, classes, members]``."""

    def __init__(self, depth: int, members: int, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1, got {depth}")
        n, g = (depth - 2) // 6, members
        self.depth, self.members, self.width, self.skip = depth, g, width, skip
        self.in_chans, self.num_classes = in_chans, num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, g * width, 3, 1, 1, bias=False), nn.BatchNorm2d(g * width),
                                  nn.ReLU())
        stages, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                blocks.append(PackedBlock(cin, cout, 2 if (s > 0 and b == 0) else 1, g, skip))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = PackedHead(g, cin, num_classes)
        self.hook_layers = ("stem", "layer1", "layer2", "layer3")
        self.load_members([CifarResNet(depth, num_classes, in_chans, width, skip) for _ in range(g)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, C, h, w], shared by all members
        self.check_input(x)
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))          # [batch, G*4W, h/4, w/4]
        feats = F.adaptive_avg_pool2d(x, 1).flatten(1).view(x.shape[0], self.members, -1)
        return self.fc(feats)                                               # [batch, classes, G]

    # -- moving members in and out ------------------------------------------------------------------
    def _slice(self, name: str, t: torch.Tensor, g: int) -> torch.Tensor:
        if name.startswith("fc."):
            return t[g]
        if t.ndim == 0:
            return t
        k = t.shape[0] // self.members
        return t[g * k:(g + 1) * k]

    def member_state(self, g: int) -> dict[str, torch.Tensor]:
        """Member ``g`` as the state dict of a lone :class:`CifarResNet`."""
        return {n: self._slice(n, t, g).detach().clone() for n, t in self.state_dict().items()}

    def member(self, g: int) -> CifarResNet:
        """Member ``g`` as a lone :class:`CifarResNet` (a copy, on the packed model's device)."""
        dev = next(self.parameters()).device
        m = CifarResNet(self.depth, self.num_classes, self.in_chans, self.width, self.skip).to(dev)
        m.load_state_dict(self.member_state(g))
        return m

    @torch.no_grad()
    def load_members(self, models: list[nn.Module]) -> "PackedCifarResNet":
        """Copy ``members`` lone models' weights and buffers into their slices."""
        if len(models) != self.members:
            raise ValueError(f"expected {self.members} models, got {len(models)}")
        own = self.state_dict()
        for g, m in enumerate(models):
            sd = m.state_dict()
            missing = set(own) - set(sd)
            if missing:
                raise ValueError(f"model {g} lacks {sorted(missing)[:4]}: it is not a CifarResNet of depth {self.depth}")
            for n, t in own.items():
                if t.ndim == 0:
                    t.copy_(sd[n])
                else:
                    self._slice(n, t, g).copy_(sd[n])
        return self

    def member_masks(self, g: int, masks: dict[str, torch.Tensor], trained: set[str]) -> dict[str, torch.Tensor]:
        """Packed-shape 0/1 tensors that are 1 on member ``g``'s trained entries and 0 elsewhere.

        ``trained`` names the lone model's trained parameters; ``masks`` its partial masks.
        """
        out = {}
        for n, p in self.named_parameters():
            m = torch.zeros_like(p)
            if n in trained:
                self._slice(n, m, g).copy_(masks[n] if n in masks else torch.ones_like(self._slice(n, p, g)))
            out[n] = m
        return out


@register_model
def packed_resnet_cifar(depth: int = 20, members: int = 4, num_classes: int = 10, in_chans: int = 3,
                        width: int = 16, skip: bool = True) -> PackedCifarResNet:
    """``members`` CIFAR ResNets of one depth computed together (logits ``[batch, classes, members]``)."""
    return PackedCifarResNet(depth, members, num_classes, in_chans, width, skip)
