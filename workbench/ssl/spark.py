"""SparK: masked image modeling for a convolutional network (Tian, Jiang, Diao, Lin, Wang & Yuan,
*Designing BERT for Convolutional Networks: Sparse and Hierarchical Masked Modeling*, ICLR 2023,
https://arxiv.org/abs/2301.03580).

An image is cut into ``p x p`` patches, ``p`` a multiple of the encoder's total stride, so that every
patch covers whole cells of every stage's feature map; a random share ``mask_ratio`` of the patches
of each image is hidden. Two ways to encode the rest:

* ``"sparse"`` (SparK): the hidden positions are *empty*. The input is zeroed there, and so is the
  output of every convolution, BatchNorm and activation of the encoder, at that layer's resolution;
  BatchNorm's statistics are computed over the visible positions only (SparK's sparse BatchNorm).
  A convolution at a visible position then reads zeros where its window meets a hidden one, exactly
  as a sparse (submanifold-like) convolution that skips empty sites: nothing of a hidden position
  reaches a visible one.
* ``"dense"``: the unchanged encoder on the image with the hidden patches zeroed. Convolutions
  smear the zeros' edges into the visible features and fill the holes layer by layer (the paper's
  "mask pattern vanishing"), and BatchNorm mixes in the holes' statistics.

A light hierarchical decoder (UNet-like, as SparK's) fills the hidden positions of every stage's
features with a learned mask token ("densifying"), projects them, and upsamples from the coarsest
stage to the finest, adding each stage on the way. The loss is SparK's: per-patch normalized pixels
as targets, the squared error averaged over the pixels of a patch and over the *hidden* patches
only::

    t = (x_patch - mean(x_patch)) / sqrt(var(x_patch) + 1e-6)        # over the patch's p*p*C values
    loss = sum_{hidden patches} mean((r_patch - t)^2) / #hidden

>>> model = wb.create_model("spark_mim", backbone="resnet20", backbone_kwargs={"width": 8})   # doctest: +SKIP
>>> wb.fit(model, train, task=wb.ssl.MaskedModeling(mask_ratio=0.6, mode="sparse"))          # doctest: +SKIP
>>> wb.ssl.fine_tune(model, labelled, test)     # trains model.backbone, a plain classifier    # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..models import create_model, register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..train import Task
from ..train.tasks import check_image_batch

__all__ = ["SparK", "MaskedModeling", "MODES", "random_patch_mask", "upsample_mask", "patchify", "masked_patch_loss",
           "sparse_masking", "mask_leak", "reconstruction", "spark_pretrain", "spark_run"]

MODES = ("sparse", "dense")


def _check_ratio(mask_ratio: float) -> float:
    if not isinstance(mask_ratio, (int, float)) or not 0 < mask_ratio < 1:
        raise ValueError(f"mask_ratio must be strictly between 0 and 1 (SparK uses 0.6), got {mask_ratio!r}: "
                         "0 hides nothing (nothing to reconstruct), 1 hides everything (nothing to see)")
    return float(mask_ratio)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (masked positions kept empty through every layer, "
                         f"or the plain encoder on the masked image), got {mode!r}")
    return mode


def random_patch_mask(batch: int, grid: tuple[int, int], mask_ratio: float, seed: int, step: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Which patches each image shows: ``[batch, gh, gw]`` bool, ``True`` = visible.

    Every image hides exactly ``round(mask_ratio * gh * gw)`` patches, drawn at random and
    independently per image; the draw is a pure function of ``(seed, step)``, so a resumed run
    hides the same patches.
    """
    ratio = _check_ratio(mask_ratio)
    gh, gw = (int(g) for g in grid)
    n = gh * gw
    hidden = round(ratio * n)
    if not 0 < hidden < n:
        raise ValueError(f"mask_ratio {ratio} hides {hidden} of the {n} patches of a {gh}x{gw} grid; it must hide at "
                         "least one and show at least one: change mask_ratio or use smaller patches")
    order = torch.rand(batch, n, generator=random_stream(int(seed), int(step))).argsort(dim=1)
    visible = torch.ones(batch, n, dtype=torch.bool).scatter_(1, order[:, :hidden], False)
    return visible.view(batch, gh, gw).to(device if device is not None else "cpu")


def upsample_mask(visible: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A patch mask ``[B, gh, gw]`` at a feature map's resolution: ``[B, 1, h, w]`` (each patch covers
    ``h / gh`` by ``w / gw`` cells, which must be whole numbers)."""
    gh, gw = visible.shape[-2:]
    h, w = int(size[0]), int(size[1])
    if h % gh or w % gw:
        raise ValueError(f"a {h}x{w} feature map cannot be cut into the {gh}x{gw} patch grid: every patch must "
                         "cover whole cells at every stage; use a patch_size that is a multiple of the encoder's "
                         "total stride")
    return visible[:, None].repeat_interleave(h // gh, 2).repeat_interleave(w // gw, 3)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, L, p*p*C]``, the patches in row-major order (``L = H/p * W/p``)."""
    b, c, h, w = x.shape
    p = int(patch_size)
    if h % p or w % p:
        raise ValueError(f"{h}x{w} images cannot be cut into {p}x{p} patches; pick a patch_size that divides both")
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # [B, gh, gw, p, p, C]
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def _normalized_patches(x: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = patchify(x.float(), patch_size)
    mean = t.mean(-1, keepdim=True)
    std = (t.var(-1, keepdim=True) + 1e-6).sqrt()
    return (t - mean) / std, mean, std


def masked_patch_loss(reconstruction: torch.Tensor, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """SparK's loss: mean squared error against per-patch normalized pixels, over the hidden patches only.

    Args:
        reconstruction: the decoder's output ``[B, C, H, W]`` (in normalized-patch units).
        images: the unmasked images ``[B, C, H, W]``.
        visible: ``[B, gh, gw]`` bool; the patch size is ``H / gh``.
    """
    if reconstruction.shape != images.shape:
        raise ValueError(f"reconstruction {list(reconstruction.shape)} and images {list(images.shape)} must match")
    p = images.shape[-1] // visible.shape[-1]
    target, _, _ = _normalized_patches(images, p)
    err = (patchify(reconstruction.float(), p) - target).pow(2).mean(-1)   # [B, L]
    hidden = (~visible).flatten(1).to(err.dtype)                           # [B, L]
    return (err * hidden).sum() / hidden.sum().clamp_min(1)


# leaf modules that map 0 to 0 position by position: their output needs no masking
_ZERO_PRESERVING = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Identity, nn.Dropout, HookPoint)


def _sparse_batch_norm(module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the visible positions (``m`` = 1) only; the output is 0 at hidden positions."""
    if module.training or module.running_mean is None:
        count = m.sum(dtype=torch.float32)
        mean = (x * m).sum((0, 2, 3), dtype=torch.float32) / count
        d = (x - mean[None, :, None, None].to(x.dtype)) * m                     # 0 at hidden positions
        var = (d * d).sum((0, 2, 3), dtype=torch.float32) / count
        if module.training and module.running_mean is not None:
            module.num_batches_tracked.add_(1)
            f = module.momentum if module.momentum is not None else 1.0 / float(module.num_batches_tracked)
            with torch.no_grad():
                module.running_mean.mul_(1 - f).add_(f * mean.detach())
                module.running_var.mul_(1 - f).add_(f * var.detach() * count / (count - 1).clamp_min(1))
    else:
        mean, var = module.running_mean, module.running_var
        d = (x - mean[None, :, None, None].to(x.dtype)) * m
    scale = (var + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight
    bias = module.bias if module.bias is not None else torch.zeros_like(scale)
    return (d * scale[None, :, None, None].to(x.dtype) + bias[None, :, None, None].to(x.dtype)) * m


@contextlib.contextmanager
def sparse_masking(encoder: nn.Module, visible: torch.Tensor) -> Iterator[None]:
    """Inside the block, ``encoder`` computes as a sparse network on the visible patches.

    The 4-D output of every leaf module (each convolution, BatchNorm, pooling; activations that map
    0 to 0 need nothing) is zeroed at hidden positions, at that output's resolution, and every
    BatchNorm normalizes with the mean and variance of the visible positions (in training mode; its
    running statistics are updated with those). Hooks and a temporary ``forward`` of each BatchNorm:
    the encoder's weights and structure are not changed, and everything is undone on exit. The
    encoder's input must be zeroed at hidden positions too (:meth:`SparK.encode` does it).
    """
    cache: dict[tuple, torch.Tensor] = {}

    def mask_like(t: torch.Tensor) -> torch.Tensor:
        key = (t.shape[-2], t.shape[-1], t.dtype, t.device)
        if key not in cache:
            cache[key] = upsample_mask(visible.to(t.device), t.shape[-2:]).to(t.dtype)
        return cache[key]

    def mask_output(module, args, out):
        return out * mask_like(out) if isinstance(out, torch.Tensor) and out.ndim == 4 else out

    handles, patched = [], []
    for module in encoder.modules():
        if next(module.children(), None) is not None or isinstance(module, _ZERO_PRESERVING):
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = lambda x, module=module: _sparse_batch_norm(module, x, mask_like(x))
            patched.append(module)
        else:
            handles.append(module.register_forward_hook(mask_output))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for module in patched:
            del module.forward


class _Up(nn.Module):
    """Upsample by ``ratio`` (nearest), 3x3 conv, BN, ReLU."""

    def __init__(self, cin: int, cout: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.ratio, mode="nearest") if self.ratio > 1 else x)


class SparK(WorkbenchModel):
    """A registered classifier (the encoder, kept whole in ``.backbone``) and SparK's light decoder.

    Args:
        backbone: a classifier with ``forward_features`` (a CIFAR ResNet: ``wb.create_model("resnet20")``).
        patch_size: the side of a masked patch in pixels; a multiple of the encoder's total stride
            (default: the total stride, SparK's choice: one patch per cell of the last feature map).
        stages: names of the backbone's modules whose outputs the decoder reads, finest first
            (default for CIFAR ResNets: ``layer1``, ``layer2``, ``layer3``).

    ``forward(x, visible=None, mode="sparse")`` returns the reconstruction ``[B, C, H, W]`` (in units of
    per-patch normalized pixels); ``features(x)`` the backbone's pooled features of the whole image.
    """

    def __init__(self, backbone: nn.Module, patch_size: int | None = None, stages: Sequence[str] | None = None):
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise TypeError(f"{type(backbone).__name__} has no forward_features(x): give SparK a registered classifier "
                            "(resnet20, plain20, ...)")
        self.backbone = backbone
        self.in_chans, self.num_classes = backbone.in_chans, backbone.num_classes
        names = dict(backbone.named_modules())
        if stages is None:
            stages = [s for s in ("layer1", "layer2", "layer3", "layer4") if s in names]
            if not stages:
                raise ValueError(f"{type(backbone).__name__} has no layer1..layer3: name the modules whose outputs the "
                                 "decoder reads with stages=[...], finest first")
        missing = [s for s in stages if s not in names]
        if missing:
            raise ValueError(f"stages {missing} are not modules of {type(backbone).__name__}; valid names include "
                             f"{', '.join(n for n in list(names)[1:12])}, ...")
        self.stages = tuple(stages)
        size = getattr(backbone, "img_size", None) or 32
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            feats = self._stage_outputs(torch.zeros(1, self.in_chans, size, size))
            backbone.train(was)
        self.channels = [f.shape[1] for f in feats]
        self.strides = [size // f.shape[-1] for f in feats]
        if any(b % a for a, b in zip(self.strides, self.strides[1:])) or self.strides != sorted(self.strides):
            raise ValueError(f"stages must go from fine to coarse with each stride dividing the next, got strides "
                             f"{self.strides} for {self.stages}")
        self.total_stride = self.strides[-1]
        self.patch_size = int(patch_size or self.total_stride)
        if self.patch_size % self.total_stride:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of the encoder's total stride "
                             f"{self.total_stride}, so that every patch covers whole cells of every stage "
                             f"(try {self.total_stride} or {2 * self.total_stride})")
        # the decoder, coarsest stage first: mask tokens, projections ("densify"), upsampling blocks
        chans = self.channels[::-1]
        self.mask_tokens = nn.ParameterList(
            [nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, c, 1, 1), std=0.02, a=-0.02, b=0.02)) for c in chans])
        self.densify = nn.ModuleList([nn.Conv2d(c, c, 1 if i == 0 else 3, padding=0 if i == 0 else 1)
                                      for i, c in enumerate(chans)])
        ratios = [a // b for a, b in zip(self.strides[::-1], self.strides[::-1][1:])]
        self.up = nn.ModuleList([_Up(chans[i], chans[i + 1], r) for i, r in enumerate(ratios)])
        self.head = nn.Conv2d(chans[-1], self.in_chans, 1)

    def _stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        modules = dict(self.backbone.named_modules())
        handles = [modules[s].register_forward_hook(lambda m, a, out, s=s: found.__setitem__(s, out))
                   for s in self.stages]
        try:
            self.backbone.forward_features(x)
        finally:
            for h in handles:
                h.remove()
        return [found[s] for s in self.stages]

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        """The patch grid of images ``x`` (a clear error when the patch size does not divide them)."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"{h}x{w} images cannot be cut into {self.patch_size}x{self.patch_size} patches; "
                             f"create the model with a patch_size that divides the image size")
        return h // self.patch_size, w // self.patch_size

    def encode(self, x: torch.Tensor, visible: torch.Tensor, mode: str = "sparse") -> list[torch.Tensor]:
        """The stages' feature maps, finest first. ``"dense"``: the plain backbone on ``x`` as given (give it
        the masked image); ``"sparse"``: hidden positions zeroed in ``x`` and after every layer."""
        if _check_mode(mode) == "dense":
            return self._stage_outputs(x)
        with sparse_masking(self.backbone, visible):
            return self._stage_outputs(x * upsample_mask(visible.to(x.device), x.shape[-2:]).to(x.dtype))

    def decode(self, feats: Sequence[torch.Tensor], visible: torch.Tensor) -> torch.Tensor:
        """Densify each stage (mask token at hidden positions, projection) and decode, coarsest first."""
        h = None
        for i, f in enumerate(reversed(list(feats))):
            f = torch.where(upsample_mask(visible, f.shape[-2:]), f, self.mask_tokens[i].to(f.dtype))
            f = self.densify[i](f)
            h = f if h is None else self.up[i - 1](h) + f
        out = self.head(h)
        if self.strides[0] > 1:
            out = F.interpolate(out, scale_factor=self.strides[0], mode="nearest")
        return out

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None = None, mode: str = "sparse") -> torch.Tensor:
        self.check_input(x)
        gh, gw = self.grid(x)
        if visible is None:
            visible = torch.ones(len(x), gh, gw, dtype=torch.bool, device=x.device)
        if tuple(visible.shape) != (len(x), gh, gw):
            raise ValueError(f"visible must be [batch, {gh}, {gw}] for {tuple(x.shape[-2:])} images and "
                             f"{self.patch_size}x{self.patch_size} patches, got {list(visible.shape)}")
        visible = visible.to(x.device)
        masked = x * upsample_mask(visible, x.shape[-2:]).to(x.dtype)
        return self.decode(self.encode(masked, visible, mode), visible)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features of the whole image (what a probe or fine-tuning reads)."""
        return self.backbone.forward_features(x)


@register_model
def spark_mim(backbone: str = "resnet20", backbone_kwargs: dict | None = None, patch_size: int | None = None,
              num_classes: int = 10, in_chans: int = 3) -> SparK:
    """SparK's encoder-decoder around a registered classifier (``backbone`` with ``backbone_kwargs``)."""
    net = create_model(backbone, num_classes=num_classes, in_chans=in_chans, **dict(backbone_kwargs or {}))
    return SparK(net, patch_size=patch_size)


class MaskedModeling(Task):
    """SparK's pre-training as a task of :func:`workbench.fit`: hide patches, reconstruct them.

    Args:
        mask_ratio: the share of patches hidden in each image, strictly between 0 and 1 (SparK: 0.6).
        mode: ``"sparse"`` (SparK) or ``"dense"`` (the plain encoder on the masked image).

    The model is a :class:`SparK` (``wb.create_model("spark_mim", ...)``); labels are ignored. The masks
    of training step ``s`` are a pure function of ``(seed, s)``; test masks use a fixed seed, so test
    losses of two epochs (and of two runs) are comparable. Metric: ``loss``.
    """

    metric_names = ("loss",)

    def __init__(self, mask_ratio: float = 0.6, mode: str = "sparse"):
        self.mask_ratio, self.mode = _check_ratio(mask_ratio), _check_mode(mode)
        self._eval_calls = 0

    def config(self) -> dict[str, Any]:
        return {"name": "MaskedModeling", "mask_ratio": self.mask_ratio, "mode": self.mode}

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(model, SparK):
            raise TypeError(f"{self.name} trains a SparK model (wb.create_model('spark_mim', backbone=...)), "
                            f"got {type(model).__name__}")
        shape = getattr(dataset, "shape", None)
        if shape is not None:  # the patches divide the images, and the ratio hides some but not all of them
            random_patch_mask(1, model.grid(torch.empty(0, *shape)), self.mask_ratio, 0, 0)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        if state is not None:
            seed, step = state.seed, state.step
        else:
            self._eval_calls += 1
            seed, step = 12345, self._eval_calls
        visible = random_patch_mask(len(x), model.grid(x), self.mask_ratio, seed, step, device=x.device)
        return model(x, visible, mode=self.mode), visible

    def loss(self, outputs, batch: Any, state: Any = None) -> torch.Tensor:
        reconstruction, visible = outputs
        return masked_patch_loss(reconstruction, batch[0], visible)

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        self._eval_calls = 0
        return super().evaluate(model, loader, precision)


def mask_leak(model: SparK, x: torch.Tensor, visible: torch.Tensor, mode: str = "sparse") -> pd.DataFrame:
    """How much of the hidden positions reaches the encoder's features, stage by stage (eval mode).

    The encoder reads the masked image ``x * mask``. For each stage's feature map ``f``:

    * ``grad_leak``: the share of the squared gradient of ``sum(f at visible cells)`` with respect to
      the encoder's input that falls on hidden pixels: how much the visible features depend on what
      sits in the holes (for the masked image: the mask pattern itself);
    * ``hidden_activity``: mean ``|f|`` at hidden cells over mean ``|f|`` at visible cells;
    * ``hidden_nonzero``: the share of hidden cells with any non-zero channel (how far the holes
      have been filled).

    SparK's sparse mode gives exactly 0 in all three columns; dense mode does not.

    Returns:
        one row per stage: ``stage``, ``stride``, ``grad_leak``, ``hidden_activity``, ``hidden_nonzero``.
    """
    _check_mode(mode)
    was = model.training
    model.eval()
    try:
        visible = visible.to(x.device)
        masked = (x * upsample_mask(visible, x.shape[-2:]).to(x.dtype)).detach().requires_grad_(True)
        with torch.enable_grad():
            feats = model.encode(masked, visible, mode)
            hidden_px = ~upsample_mask(visible, x.shape[-2:]).expand_as(x)
            rows = []
            for name, stride, f in zip(model.stages, model.strides, feats):
                vis = upsample_mask(visible, f.shape[-2:])                       # [B, 1, h, w]
                (g,) = torch.autograd.grad((f * vis).sum(), masked, retain_graph=True)
                total = g.pow(2).sum()
                a = f.detach().abs()
                hid = ~vis
                mean_hidden = a.mul(hid).sum() / (hid.sum() * a.shape[1]).clamp_min(1)
                mean_shown = a.mul(vis).sum() / (vis.sum() * a.shape[1]).clamp_min(1)
                nonzero = a.amax(1, keepdim=True)[hid] > 0                        # per hidden cell
                rows.append({"stage": name, "stride": stride,
                             "grad_leak": float(g[hidden_px].pow(2).sum() / total) if total > 0 else 0.0,
                             "hidden_activity": float(mean_hidden / mean_shown.clamp_min(1e-12)),
                             "hidden_nonzero": float(nonzero.double().mean()) if hid.any() else 0.0})
    finally:
        model.train(was)
    return pd.DataFrame(rows)


@torch.no_grad()
def reconstruction(model: SparK, x: torch.Tensor, visible: torch.Tensor, mode: str = "sparse") -> torch.Tensor:
    """The images as the model fills them in (eval mode): visible patches as given, hidden patches the
    prediction in pixel units (its normalized output scaled by each true patch's mean and spread, as
    SparK's visualizations do). ``[B, C, H, W]``, in the units of ``x``."""
    was = model.training
    model.eval()
    try:
        out = model(x, visible, mode=mode).float()
    finally:
        model.train(was)
    p = model.patch_size
    _, mean, std = _normalized_patches(x, p)
    b, c, h, w = x.shape
    pix = (patchify(out, p) * std + mean).reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
    pix = pix.reshape(b, c, h, w)
    return torch.where(upsample_mask(visible.to(x.device), (h, w)), x.float(), pix)


def spark_pretrain(mode: str, seed: int, unlabelled, test=None, *, backbone: str = "resnet20",
                   backbone_kwargs: dict | None = None, patch_size: int | None = None, mask_ratio: float = 0.6,
                   **fit_kwargs):
    """Pre-train ``spark_mim`` around ``backbone`` on ``unlabelled`` (labels unused) with
    :class:`MaskedModeling` in ``mode``; cached by :func:`workbench.train_model`. Returns its ``TrainResult``.

    With the same ``seed``, the backbone starts from exactly the weights ``create_model(backbone)``
    gives after ``torch.manual_seed(seed)``: the no-pre-training baseline's.
    """
    from ..train import train_model
    kwargs = {"backbone": backbone, "backbone_kwargs": dict(backbone_kwargs or {}), "patch_size": patch_size}
    return train_model("spark_mim", unlabelled, test, model_kwargs=kwargs, seed=seed,
                       task=MaskedModeling(mask_ratio, mode), **{"progress": False, **fit_kwargs})


def spark_run(mode: str, seed: int, *, pretrain: dict, finetune: dict, dataset: str = "cifar10",
              unlabelled_subset: int | None = None, label_fraction: float = 0.1, test_subset: int | None = None,
              backbone: str = "resnet20", backbone_kwargs: dict | None = None, patch_size: int | None = None,
              mask_ratio: float = 0.6) -> dict[str, Any]:
    """One record of the SparK comparison, for :func:`workbench.sweep`: pre-train (``mode`` ``"sparse"`` or
    ``"dense"``; ``"none"``: no pre-training) on ``unlabelled_subset`` training images, then fine-tune the
    backbone on a class-balanced ``label_fraction`` of them and test.

    Args:
        pretrain, finetune: :func:`workbench.fit` arguments of the two phases.

    Returns:
        ``test_acc`` (after fine-tuning), ``curve_epoch``/``curve_test_acc`` (fine-tuning),
        ``pretrain_loss``/``pretrain_test_loss`` (per pre-training epoch; empty for ``"none"``),
        ``labels`` (how many labelled images), ``seconds``.
    """
    import time

    from ..data import load
    from .evaluate import fine_tune, label_subset
    if mode not in (*MODES, "none"):
        raise ValueError(f"mode must be one of {', '.join(MODES)}, none (no pre-training), got {mode!r}")
    start = time.perf_counter()
    unlabelled = load(dataset, "train", subset=unlabelled_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    labelled = label_subset(unlabelled, label_fraction, seed=0)
    pre_curve, pre_test = [], []
    if mode == "none":
        torch.manual_seed(seed)
        model = create_model(backbone, num_classes=unlabelled.num_classes, in_chans=unlabelled.shape[0],
                             **dict(backbone_kwargs or {}))
    else:
        res = spark_pretrain(mode, seed, unlabelled, test.subset(min(500, len(test)), seed=1), backbone=backbone,
                             backbone_kwargs=backbone_kwargs, patch_size=patch_size, mask_ratio=mask_ratio, **pretrain)
        model = res.model
        pre_curve = [float(v) for v in res.history["train_loss"]]
        pre_test = [float(v) for v in res.history["test_loss"]]
    tuned = fine_tune(model, labelled, test, seed=seed, **{"progress": False, **finetune})
    h = tuned.history
    return {"test_acc": tuned.test_acc, "train_acc": float(h["train_acc"].iloc[-1]), "labels": len(labelled),
            "curve_epoch": [int(v) for v in h["epoch"]], "curve_test_acc": [float(v) for v in h["test_acc"]],
            "pretrain_loss": pre_curve, "pretrain_test_loss": pre_test, "seconds": time.perf_counter() - start}
