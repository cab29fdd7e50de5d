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

The training-recipe options of *Revisiting ResNets* (Bello et al. 2021, https://arxiv.org/abs/2103.07579,
section 4 and table 1), each off by default (off builds exactly the network above, same parameter names
and random draws):

* ``se``: squeeze-and-excitation (Hu et al., https://arxiv.org/abs/1709.01507) on every block's residual
  branch, the bottleneck ``se * channels`` wide (ResNet-RS: 0.25).
* ``shortcut="d"``: ResNet-D downsampling (He et al., *Bag of Tricks*, https://arxiv.org/abs/1812.01187):
  a projection shortcut averages 2x2 patches first and then applies a stride-1 1x1 convolution, instead of
  the strided 1x1 convolution that reads one pixel in four. (ResNet-D's change of the ImageNet stem has no
  counterpart in the CIFAR stem, a single 3x3 convolution.)
* ``drop_path``: stochastic depth (Huang et al., https://arxiv.org/abs/1603.09382): in training, each
  block's residual branch is dropped for a whole image with a probability rising linearly from 0 at the
  first block to ``drop_path`` at the last, and kept branches are scaled by ``1 / (1 - p)`` (so evaluation
  uses every block as is).
* ``dropout``: dropout on the pooled features before the classifier.
* ``resolution``: the network resizes its input (bilinear, antialiased) to ``resolution`` pixels first, so
  a family can be scaled by input resolution on the same data (a resolution above 32 upsamples CIFAR's
  images: it adds computation, not information).
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


class SqueezeExcite(nn.Module):
    """Channel gates from globally pooled features: ``x * sigmoid(W2 relu(W1 mean(x)))``."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = max(1, int(round(channels * ratio)))
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, C, h, w]
        g = F.adaptive_avg_pool2d(x, 1)                                    # [batch, C, 1, 1]
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(g))))


def drop_branch(branch: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch: zero it for a whole image with probability ``p`` and scale
    the kept ones by ``1 / (1 - p)`` (identity in evaluation or at ``p = 0``)."""
    if not training or p == 0.0:
        return branch
    keep = torch.rand(branch.shape[0], 1, 1, 1, device=branch.device) >= p  # [batch, 1, 1, 1]
    return branch * keep.to(branch.dtype) / (1.0 - p)


SHORTCUTS = ("b", "d")


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution with a stride, computed as the stride-1 convolution of every ``stride``-th pixel (the
    same function, parameters and initialization as ``nn.Conv2d(cin, cout, 1, stride, bias=False)``). torch 2.13's
    CPU kernel for the strided 1x1 convolution corrupts memory on channels-last inputs of some sizes (8 channels
    at 64x64 crashes the process, forward and backward); the subsampled form avoids that kernel."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.conv2d(x[:, :, ::s[0], ::s[1]], self.weight, self.bias)  # a bias appears when BatchNorm is folded in


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, skip: bool = True, ibn: str | None = None,
                 ibn_ratio: float = 0.5, se: float = 0.0, shortcut: str = "b", drop_path: float = 0.0):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = IBN(cout, ibn_ratio) if ibn == "a" else nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (stride != 1 or cin != cout):
            if shortcut == "d" and stride != 1:  # ResNet-D: average 2x2 patches, then a stride-1 projection
                self.shortcut = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                                              nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = nn.Sequential(StridedPointwise(cin, cout, stride) if stride != 1 else
                                              nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.se = SqueezeExcite(cout, se) if se > 0 else None
        self.drop_path = float(drop_path)
        self.hook_relu1 = HookPoint()
        self.hook_branch = HookPoint()
        self.hook_out = HookPoint()
        self.inorm = nn.InstanceNorm2d(cout, affine=True) if ibn == "b" else None  # IBN-b, after the addition
        self.active = True  # False: the block is dropped and passes its input through (wb.quant.set_arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        if not self.active:  # a dropped block runs nothing
            return x
        out = self.hook_relu1(F.relu(self.bn1(self.conv1(x))))  # [batch, cout, h/stride, w/stride]
        out = self.bn2(self.conv2(out))  # [batch, cout, h/stride, w/stride]
        if self.se is not None:
            out = self.se(out)
        out = self.hook_branch(out)
        if self.drop_path > 0.0 and self.skip:
            out = drop_branch(out, self.drop_path, self.training)
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        if self.inorm is not None:
            out = self.inorm(out)
        return self.hook_out(F.relu(out))


class CifarResNet(WorkbenchModel):
    """ResNet (or plain network) for small images; see the module docstring."""

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True, ibn: str | None = None, ibn_ratio: float = 0.5, ibn_stages: int = 2,
                 se: float = 0.0, shortcut: str = "b", drop_path: float = 0.0, dropout: float = 0.0,
                 resolution: int | None = None):
        super().__init__()
        _check_recipe_options(se, shortcut, drop_path, dropout, resolution, skip)
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
        self.se, self.shortcut, self.drop_path, self.dropout_p, self.resolution = se, shortcut, drop_path, dropout, \
            resolution
        stages, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                early = ibn is not None and s < ibn_stages
                kind = "a" if early and ibn == "a" else "b" if early and ibn == "b" and b == n - 1 else None
                rate = drop_path * (s * n + b + 1) / (3 * n)  # rises linearly to drop_path at the last block
                blocks.append(BasicBlock(cin, cout, stride, skip=skip, ibn=kind, ibn_ratio=ibn_ratio, se=se,
                                         shortcut=shortcut, drop_path=rate))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.hook_pool = HookPoint()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
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
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            # contiguous: the antialiased resize's backward crashed on channels-last inputs (torch 2.13, CPU);
            # antialiasing matters only when shrinking
            x = F.interpolate(x.contiguous(), size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=self.resolution < x.shape[-1])  # [batch, C, r, r]
        x = self.stem(x)          # [batch, W, h, w]
        x = self.layer1(x)        # [batch, W, h, w]
        x = self.layer2(x)        # [batch, 2W, h/2, w/2]
        x = self.layer3(x)        # [batch, 4W, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 4W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.forward_features(x)  # [batch, 4W]
        return self.fc(h if self.dropout is None else self.dropout(h))  # [batch, classes]


def _check_recipe_options(se, shortcut, drop_path, dropout, resolution, skip) -> None:
    if not (isinstance(se, (int, float)) and 0.0 <= se <= 1.0):
        raise ValueError(f"se is the squeeze-and-excitation ratio in [0, 1] (0: off; ResNet-RS: 0.25), got {se!r}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut is 'b' (strided 1x1 projection) or 'd' (ResNet-D: average pool, then 1x1), "
                         f"got {shortcut!r}")
    for name, v in (("drop_path", drop_path), ("dropout", dropout)):
        if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
            raise ValueError(f"{name} is a probability in [0, 1) (0: off), got {v!r}")
    if drop_path > 0 and not skip:
        raise ValueError("drop_path (stochastic depth) drops residual branches, and a plain network has none: "
                         "use a ResNet (skip=True) or drop_path=0")
    if resolution is not None and not (isinstance(resolution, int) and resolution >= 8):
        raise ValueError(f"resolution is the input size in pixels the network resizes to (>= 8) or None, "
                         f"got {resolution!r}")


def _make(depth: int, skip: bool):
    def entry(num_classes: int = 10, in_chans: int = 3, width: int = 16, ibn: str | None = None,
              ibn_ratio: float = 0.5, ibn_stages: int = 2, se: float = 0.0, shortcut: str = "b",
              drop_path: float = 0.0, dropout: float = 0.0, resolution: int | None = None) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip,
                           ibn=ibn, ibn_ratio=ibn_ratio, ibn_stages=ibn_stages, se=se, shortcut=shortcut,
                           drop_path=drop_path, dropout=dropout, resolution=resolution)
    kind = "ResNet" if skip else "plain network (no skip connections)"
    entry.__name__ = f"{'resnet' if skip else 'plain'}{depth}"
    entry.__doc__ = (f"CIFAR {kind} of depth {depth} ({(depth - 2) // 6} blocks per stage), base width ``width``; "
                     "``ibn='a'``/``'b'``: IBN-Net blocks in the first ``ibn_stages`` stages; ``se``, ``shortcut``, "
                     "``drop_path``, ``dropout``, ``resolution``: recipe options (module docstring).")
    return register_model(entry)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _make(_depth, skip=True)
    _make(_depth, skip=False)


@register_model
def resnet_cifar(depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 skip: bool = True, ibn: str | None = None, ibn_ratio: float = 0.5, ibn_stages: int = 2,
                 se: float = 0.0, shortcut: str = "b", drop_path: float = 0.0, dropout: float = 0.0,
                 resolution: int | None = None) -> CifarResNet:
    """CIFAR ResNet of any depth 6n+2 (``resnet_cifar(depth=866)`` for the BN-only paper's deepest); ``ibn``:
    IBN-Net blocks; ``se``, ``shortcut``, ``drop_path``, ``dropout``, ``resolution``: the recipe options of
    *Revisiting ResNets* (module docstring)."""
    return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip,
                       ibn=ibn, ibn_ratio=ibn_ratio, ibn_stages=ibn_stages, se=se, shortcut=shortcut,
                       drop_path=drop_path, dropout=dropout, resolution=resolution)
