"""Networks that output images: segmentation heads, a U-Net, SRResNet and its discriminator, and a residual-VQ
autoencoder.

* ``seg_resnet``: a CIFAR ResNet's three stages as the encoder and a small multi-scale decoder (1x1 lateral
  convolutions of every stage, upsampled and summed, one 3x3 convolution, upsampled to the input): the
  "simple encoder-decoder" of paper 12. ``stride`` (1 or 2) sets the stem's stride.
* ``seg_hrnet``: the multi-branch baseline of the HRNet kind (Wang et al., arXiv:1908.07919) in miniature:
  branches at full, 1/2 and 1/4 resolution kept in parallel, exchanging features (every branch receives the
  others, resized) after each stage of residual blocks; the branches' features concatenated at full
  resolution before the classifier.
* ``unet``: Ronneberger et al.'s U-Net (arXiv:1505.04597) in miniature: ``levels`` down- and up-sampling stages
  with skip connections; ``residual=True`` adds the input to the output (a restoration network predicts the
  correction).
* ``srresnet`` (Ledig et al., arXiv:1609.04802): ``blocks`` residual blocks (conv-BN-PReLU-conv-BN) between a
  9x9 head and tail, a global skip, and pixel-shuffle upsampling by 2 per step (``scale`` 2 or 4);
  ``sr_discriminator``: the SRGAN discriminator (strided conv-BN-LeakyReLU stages, a dense head).
* ``rvq_autoencoder``: a convolutional encoder to a ``[B, dim, H/4, W/4]`` grid, :class:`~workbench.models.rvq.ResidualVQ`
  on every position, a decoder back to the image; ``forward`` returns the reconstruction, ``encode`` the codes.

Hook points: ``hook_features`` where each model's last feature map is (before the classifier or the output
convolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import BasicBlock, CifarResNet
from .rvq import ResidualVQ


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


class SegResNet(WorkbenchModel):
    def __init__(self, num_classes: int, in_chans: int = 3, depth: int = 8, width: int = 16, decoder: int = 32):
        super().__init__()
        _check_positive(num_classes=num_classes, decoder=decoder)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.encoder = CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
        self.laterals = nn.ModuleList(nn.Conv2d(c, decoder, 1) for c in (width, 2 * width, 4 * width))
        self.fuse = nn.Sequential(nn.Conv2d(decoder, decoder, 3, padding=1, bias=False), nn.BatchNorm2d(decoder),
                                  nn.ReLU())
        self.hook_features = HookPoint()
        self.classifier = nn.Conv2d(decoder, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        e = self.encoder
        f1 = e.layer1(e.stem(x))           # [B, W, H, W]
        f2 = e.layer2(f1)                  # [B, 2W, H/2, W/2]
        f3 = e.layer3(f2)                  # [B, 4W, H/4, W/4]
        size = f1.shape[-2:]
        y = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size
                else lat(f) for lat, f in zip(self.laterals, (f1, f2, f3)))
        y = self.hook_features(self.fuse(y))
        return F.interpolate(self.classifier(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model
def seg_resnet(num_classes: int = 11, in_chans: int = 3, depth: int = 8, width: int = 16,
               decoder: int = 32) -> SegResNet:
    """Semantic segmentation: a CIFAR ResNet encoder and a small multi-scale decoder (per-pixel logits)."""
    return SegResNet(num_classes, in_chans, depth, width, decoder)


class HRNet(WorkbenchModel):
    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 16, stages: int = 2, blocks: int = 1):
        super().__init__()
        _check_positive(num_classes=num_classes, width=width, stages=stages, blocks=blocks)
        self.in_chans, self.num_classes = in_chans, num_classes
        chans = (width, 2 * width, 4 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.enter = nn.ModuleList([nn.Identity()] + [
            nn.Sequential(nn.Conv2d(width, c, 3, stride=2 ** (i + 1), padding=1, bias=False), nn.BatchNorm2d(c),
                          nn.ReLU()) for i, c in enumerate(chans[1:])])
        self.branches = nn.ModuleList(nn.ModuleList(nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)])
                                                    for c in chans) for _ in range(stages))
        self.exchange = nn.ModuleList(nn.ModuleList(nn.ModuleList(nn.Conv2d(ci, co, 1, bias=False) for ci in chans)
                                                    for co in chans) for _ in range(stages))
        self.hook_features = HookPoint()
        self.classifier = nn.Sequential(nn.Conv2d(sum(chans), 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width),
                                        nn.ReLU(), nn.Conv2d(2 * width, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        s = self.stem(x)
        feats = [enter(s) for enter in self.enter]                          # full, 1/2, 1/4
        for branch, exchange in zip(self.branches, self.exchange):
            feats = [b(f) for b, f in zip(branch, feats)]
            feats = [F.relu(sum(F.interpolate(conv(f), size=feats[o].shape[-2:], mode="bilinear",
                                              align_corners=False) if f.shape[-2:] != feats[o].shape[-2:] else conv(f)
                                for conv, f in zip(exchange[o], feats))) for o in range(3)]
        size = feats[0].shape[-2:]
        y = torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                                    for f in feats[1:]], 1)
        return self.classifier(self.hook_features(y))


@register_model
def seg_hrnet(num_classes: int = 11, in_chans: int = 3, width: int = 16, stages: int = 2, blocks: int = 1) -> HRNet:
    """The multi-branch high-resolution baseline: three parallel resolutions exchanging features each stage."""
    return HRNet(num_classes, in_chans, width, stages, blocks)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class UNet(WorkbenchModel):
    def __init__(self, in_chans: int = 3, out_chans: int = 3, width: int = 16, levels: int = 2,
                 residual: bool = False):
        super().__init__()
        _check_positive(out_chans=out_chans, width=width, levels=levels)
        if residual and out_chans != in_chans:
            raise ValueError("residual=True adds the input to the output: out_chans must equal in_chans")
        self.in_chans, self.num_classes, self.residual, self.levels = in_chans, out_chans, residual, levels
        self.min_input_size = 2 ** levels
        self.down = nn.ModuleList()
        c = in_chans
        for i in range(levels):
            self.down.append(_conv_block(c, width * 2 ** i))
            c = width * 2 ** i
        self.middle = _conv_block(c, width * 2 ** levels)
        self.up = nn.ModuleList()
        self.ups = nn.ModuleList()
        c = width * 2 ** levels
        for i in reversed(range(levels)):
            self.ups.append(nn.ConvTranspose2d(c, width * 2 ** i, 2, stride=2))
            self.up.append(_conv_block(2 * width * 2 ** i, width * 2 ** i))
            c = width * 2 ** i
        self.hook_features = HookPoint()
        self.out = nn.Conv2d(width, out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if x.shape[-1] % self.min_input_size or x.shape[-2] % self.min_input_size:
            raise ValueError(f"a U-Net of {self.levels} levels needs sides divisible by {self.min_input_size}, "
                             f"got {tuple(x.shape[-2:])}")
        skips, h = [], x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.middle(h)
        for up, block, skip in zip(self.ups, self.up, reversed(skips)):
            h = block(torch.cat([up(h), skip], 1))
        y = self.out(self.hook_features(h))
        return x + y if self.residual else y


@register_model
def unet(in_chans: int = 3, out_chans: int = 3, width: int = 16, levels: int = 2, residual: bool = False) -> UNet:
    """A small U-Net; ``residual=True`` predicts a correction added to the input (restoration)."""
    return UNet(in_chans, out_chans, width, levels, residual)


class _SRBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(WorkbenchModel):
    def __init__(self, in_chans: int = 3, scale: int = 4, width: int = 32, blocks: int = 4):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"scale is 2 or 4 (pixel shuffle by 2 per step), got {scale!r}")
        _check_positive(width=width, blocks=blocks)
        self.in_chans, self.num_classes, self.scale = in_chans, in_chans, scale
        self.head = nn.Sequential(nn.Conv2d(in_chans, width, 9, padding=4), nn.PReLU(width))
        self.body = nn.Sequential(*[_SRBlock(width) for _ in range(blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.upsample = nn.Sequential(*[m for _ in range(scale // 2) for m in
                                        (nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2),
                                         nn.PReLU(width))])
        self.hook_features = HookPoint()
        self.tail = nn.Conv2d(width, in_chans, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.head(x)
        h = h + self.body_tail(self.body(h))                  # the global skip
        return self.tail(self.hook_features(self.upsample(h)))


@register_model
def srresnet(in_chans: int = 3, scale: int = 4, width: int = 32, blocks: int = 4) -> SRResNet:
    """SRResNet: residual blocks, a global skip and pixel-shuffle upsampling (``scale`` 2 or 4)."""
    return SRResNet(in_chans, scale, width, blocks)


class SRDiscriminator(WorkbenchModel):
    def __init__(self, in_chans: int = 3, width: int = 16, stages: int = 3):
        super().__init__()
        _check_positive(width=width, stages=stages)
        self.in_chans, self.num_classes = in_chans, 1
        layers, c = [nn.Conv2d(in_chans, width, 3, padding=1), nn.LeakyReLU(0.2)], width
        for i in range(stages):
            co = width * 2 ** (i + 1)
            layers += [nn.Conv2d(c, co, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(co), nn.LeakyReLU(0.2)]
            c = co
        self.features = nn.Sequential(*layers)
        self.hook_features = HookPoint()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 4 * width), nn.LeakyReLU(0.2),
                                  nn.Linear(4 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.hook_features(self.features(x)))   # [B, 1] logits: real vs generated


@register_model
def sr_discriminator(in_chans: int = 3, width: int = 16, stages: int = 3) -> SRDiscriminator:
    """The SRGAN discriminator in miniature: strided conv-BN-LeakyReLU stages and a dense head (one logit)."""
    return SRDiscriminator(in_chans, width, stages)


class RVQAutoencoder(WorkbenchModel):
    def __init__(self, in_chans: int = 3, width: int = 32, dim: int = 16, depth: int = 4, size: int = 64):
        super().__init__()
        _check_positive(width=width, dim=dim)
        self.in_chans, self.num_classes = in_chans, in_chans
        self.min_input_size = 4
        self.encoder = nn.Sequential(nn.Conv2d(in_chans, width, 4, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 4, 2, 1),
                                     nn.ReLU(), nn.Conv2d(width, dim, 1))
        self.quantizer = ResidualVQ(dim, depth=depth, size=size)
        self.decoder = nn.Sequential(nn.Conv2d(dim, width, 3, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(width, in_chans, 4, 2, 1))
        self.hook_features = HookPoint()
        self.commitment = torch.zeros(())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, H/4, W/4, depth]``."""
        self.check_input(x)
        z = self.encoder(x).permute(0, 2, 3, 1)                 # [B, h, w, dim]
        return self.quantizer(z)[1]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        books = self.quantizer.codebooks                        # [depth, size, dim]
        z = sum(books[d][codes[..., d]] for d in range(codes.shape[-1]))   # [B, h, w, dim]
        return self.decoder(z.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z = self.encoder(x).permute(0, 2, 3, 1)
        q, _, self.commitment = self.quantizer(z)
        return self.decoder(self.hook_features(q.permute(0, 3, 1, 2)))


@register_model
def rvq_autoencoder(in_chans: int = 3, width: int = 32, dim: int = 16, depth: int = 4, size: int = 64) -> RVQAutoencoder:
    """A convolutional autoencoder with residual vector quantization of its 4x-downsampled latent grid."""
    return RVQAutoencoder(in_chans, width, dim, depth, size)
