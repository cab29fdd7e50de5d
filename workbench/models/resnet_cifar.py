"""CIFAR ResNets and their plain (no-skip) twins.

He, Zhang, Ren & Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016,
https://arxiv.org/abs/1512.03385 (section 4.2, the CIFAR-10 networks).

A network of depth ``6n + 2``: a 3x3 stem convolution, three stages of ``n``
basic blocks with ``W``, ``2W`` and ``4W`` channels (the feature map halves at
the start of stages 2 and 3), global average pooling and one linear layer.
Each basic block computes::

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

where ``shortcut`` is the identity, or a 1x1 convolution with stride and a
BatchNorm when the shape changes (the paper's option B; the open_lth code that
*Training BatchNorm and Only BatchNorm* uses does the same). ``plainN`` drops
the shortcut altogether: the "plain" networks of the paper's figure 6.

Hook points, in forward order: ``stem``, ``layerS`` (a stage), ``layerS.B`` (a
block), ``layerS.B.hook_relu1`` (after the block's first ReLU),
``layerS.B.hook_branch`` (the residual branch before the addition),
``layerS.B.hook_out`` (the block's output), ``hook_pool`` (pooled features).

IBN-Net (Pan, Luo, Shi & Tang, *Two at Once: Enhancing Learning and Generalization Capacities via
IBN-Net*, ECCV 2018, https://arxiv.org/abs/1807.09441, its IBN-a and IBN-b blocks) as the ``ibn=`` option,
off by default (``ibn=None`` builds exactly the network above, with the same parameter names and the
same random draws):

* ``ibn="a"``: the first normalization of every block of the early stages is :class:`IBN`: an affine
  InstanceNorm on the first ``floor(ibn_ratio * channels)`` channels (the paper: half) and BatchNorm
  on the rest.
* ``ibn="b"``: the stem's BatchNorm becomes an affine InstanceNorm, and an affine InstanceNorm follows
  the addition (before the last ReLU) in the last block of each early stage.

"Early" is the first ``ibn_stages`` stages, default 2 of the 3. The paper puts IN in the first three
of ResNet-50's four stages for IBN-a and the first two for IBN-b (its authors' code: IN after the
addition only in the last block of those stages), and keeps the last stage, the one that feeds the
classifier, pure BatchNorm: IN there removes the content differences the classifier needs. The CIFAR
ResNet's last (third) stage plays that role, so both variants default to stages 1 and 2 (for IBN-b
that is one stage more than half, keeping the two variants on the same stages); ``ibn_stages``
moves the boundary.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


IBN_MODES = (None, "a", "b")


class IBN(nn.Module):
    """IBN-a's normalization (arXiv 1807.09441): an affine InstanceNorm on the first ``n_in``
    channels, BatchNorm on the rest. ``n_in = 0`` is a plain BatchNorm (the same computation)."""

    def __init__(self, channels: int, ratio: float = 0.5):
        super().__init__()
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ibn_ratio is the fraction of channels given to InstanceNorm, in [0, 1]; got {ratio}")
        self.n_in = int(channels * ratio)
        self.IN = nn.InstanceNorm2d(self.n_in, affine=True) if self.n_in > 0 else None
        self.BN = nn.BatchNorm2d(channels - self.n_in) if self.n_in < channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, channels, h, w]
        if self.IN is None:
            return self.BN(x)
        if self.BN is None:
            return self.IN(x)
        a, b = x.split([self.n_in, x.shape[1] - self.n_in], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, skip: bool = True, ibn: str | None = None,
                 ibn_ratio: float = 0.5):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = IBN(cout, ibn_ratio) if ibn == "a" else nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.hook_relu1 = HookPoint()
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()
        self.inorm = nn.InstanceNorm2d(cout, affine=True) if ibn == "b" else None  # IBN-b, after the addition
        self.active = True  # False: the block is dropped and passes its input through (wb.quant.set_arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        if not self.active:  # a dropped block runs nothing
            return x
        out = self.hook_relu1(F.relu(self.bn1(self.conv1(x))))  # [batch, cout, h/stride, w/stride]
        out = self.hook_branch(self.bn2(self.conv2(out)))  # [batch, cout, h/stride, w/stride]
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        if self.inorm is not None:
            out = self.inorm(out)
        return self.hook_out(F.relu(out))


class CifarResNet(WorkbenchModel):
    """ResNet (or plain network) for small images; see the module docstring."""

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True, ibn: str | None = None, ibn_ratio: float = 0.5, ibn_stages: int = 2):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, 110, ...), got {depth}")
        if width < 1 or num_classes < 1 or in_chans < 1:
            raise ValueError(f"width, num_classes and in_chans must be positive, got {width}, {num_classes}, {in_chans}")
        if ibn not in IBN_MODES:
            raise ValueError(f"ibn is one of {IBN_MODES} (None: plain BatchNorm; 'a'/'b': IBN-Net), got {ibn!r}")
        if not 0.0 <= ibn_ratio <= 1.0:
            raise ValueError(f"ibn_ratio is the fraction of channels given to InstanceNorm, in [0, 1]; got {ibn_ratio}")
        if ibn_stages not in (0, 1, 2, 3):
            raise ValueError(f"ibn_stages counts the early stages given InstanceNorm: 0, 1, 2 or 3; got {ibn_stages}")
        n = (depth - 2) // 6
        self.depth, self.blocks_per_stage, self.width = depth, n, width
        self.in_chans, self.num_classes = in_chans, num_classes
        self.ibn, self.ibn_ratio, self.ibn_stages = ibn, ibn_ratio, ibn_stages
        stem_norm = nn.InstanceNorm2d(width, affine=True) if ibn == "b" and ibn_stages > 0 else nn.BatchNorm2d(width)
        self.stem = nn.Sequential(conv3x3(in_chans, width), stem_norm, nn.ReLU())
        stages, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                early = ibn is not None and s < ibn_stages
                kind = "a" if early and ibn == "a" else "b" if early and ibn == "b" and b == n - 1 else None
                blocks.append(BasicBlock(cin, cout, stride, skip=skip, ibn=kind, ibn_ratio=ibn_ratio))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(cin, num_classes)
        self.hook_layers = ("stem",) + tuple(
            name for s in (1, 2, 3) for name in [f"layer{s}"] + [f"layer{s}.{b}" for b in range(n)]
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)          # [batch, W, h, w]
        x = self.layer1(x)        # [batch, W, h, w]
        x = self.layer2(x)        # [batch, 2W, h/2, w/2]
        x = self.layer3(x)        # [batch, 4W, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 4W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


def _make(depth: int, skip: bool):
    def entry(num_classes: int = 10, in_chans: int = 3, width: int = 16, ibn: str | None = None,
              ibn_ratio: float = 0.5, ibn_stages: int = 2) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip,
                           ibn=ibn, ibn_ratio=ibn_ratio, ibn_stages=ibn_stages)
    kind = "ResNet" if skip else "plain network (no skip connections)"
    entry.__name__ = f"{'resnet' if skip else 'plain'}{depth}"
    entry.__doc__ = (f"CIFAR {kind} of depth {depth} ({(depth - 2) // 6} blocks per stage), base width ``width``; "
                     "``ibn='a'``/``'b'``: IBN-Net blocks in the first ``ibn_stages`` stages (module docstring).")
    return register_model(entry)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _make(_depth, skip=True)
    _make(_depth, skip=False)


@register_model
def resnet_cifar(depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True, ibn: str | None = None, ibn_ratio: float = 0.5, ibn_stages: int = 2) -> CifarResNet:
    """CIFAR ResNet of any depth 6n+2 (``resnet_cifar(depth=866)`` for the BN-only paper's deepest); ``ibn``:
    IBN-Net blocks (module docstring)."""
    return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip,
                       ibn=ibn, ibn_ratio=ibn_ratio, ibn_stages=ibn_stages)
