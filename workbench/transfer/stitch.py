"""Stitching networks together: a 1x1 (or linear) layer from block ``i`` of one network into block ``j``
of another, initialized by least squares, and the family of stitched networks between two anchors.

Pan, Cai & Zhuang, *Stitchable Neural Networks*, CVPR 2023, https://arxiv.org/abs/2302.06586 (SN-Net).

A network is read as a chain of *pieces*: the stem (or the patch embedding), the blocks, the pooling
and the classifier. A **stitch** ``(front, back)`` runs anchor A up to and including its piece
``front``, maps that activation with a stitching layer ``S``, and runs anchor B from its piece
``back`` to the logits::

    stitched(x) = B[back:]( S( A[:front](x) ) )

``S`` is a 1x1 convolution between feature maps ``[batch, C_A, h, w] -> [batch, C_B, h, w]``, a
linear layer between tokens ``[batch, T, C_A] -> [batch, T, C_B]`` or pooled vectors. SN-Net
initializes it by least squares on activations of a batch of images: with ``X`` the rows of A's
output (one row per image and position, a column of ones for the bias) and ``Y`` those of B's input
at ``back``, ``[W; b] = argmin ||X [W; b] - Y||_F = pinv(X) Y`` (``torch.linalg.lstsq``, minimum-norm).
Stitching a network into itself at the same place gives ``W = I``, ``b = 0`` and its own function.

**Spatial sizes.** A 1x1 layer maps channels only, so A's map must have B's spatial size. With
``resample=True`` an integer ratio is bridged first: a larger map of A is average-pooled by the
factor, a smaller one repeated (nearest neighbour); anything else is refused with the valid positions.

**The family (SN-Net).** Between a small anchor A and a large anchor B, one stitch per depth:
A's cut after a fraction ``f`` of its pieces feeds B's piece at the same fraction (the paired
positions of the paper's "Fast-to-Slow" direction; with equal depths, block ``l`` of A into block
``l + 1`` of B). :class:`SNNet` holds the two anchors and every stitching layer, one set of weights;
:class:`StitchSampling` trains it with :func:`workbench.fit` by running one configuration (an anchor
or a stitch), sampled uniformly, at each step.

>>> a, b = wb.create_model("resnet20", width=8), wb.create_model("resnet20")              # doctest: +SKIP
>>> net = wb.transfer.stitch_networks(a, b, "layer2.0", "layer2.1", images)                         # doctest: +SKIP
>>> family = wb.transfer.stitch_family(a, b, images)                                       # doctest: +SKIP
>>> wb.fit(family, train, task=wb.transfer.StitchSampling(), epochs=2)                     # doctest: +SKIP
"""
from __future__ import annotations

import copy
import random
import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import WorkbenchModel
from ..models.resnet_cifar import CifarResNet
from ..models.vit import VisionTransformer
from ..train import Task, model_fingerprint
from ..train.tasks import check_data_fits_model, check_image_batch, classification_loss

__all__ = ["least_squares_stitch", "StitchLayer", "StitchedNet", "SNNet", "StitchSampling", "stitch_pieces",
           "stitch_positions", "family_positions", "stitch_networks", "stitch_family", "family_run"]


# ----------------------------------------------------------------------------------------- least squares
def _rows(t: torch.Tensor) -> torch.Tensor:
    """An activation as rows of features: maps [N, C, H, W] -> [N*H*W, C]; tokens [N, T, C] -> [N*T, C]."""
    if t.ndim == 4:
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    if t.ndim in (2, 3):
        return t.reshape(-1, t.shape[-1])
    raise ValueError(f"activations must be maps [N, C, H, W], tokens [N, T, C] or vectors [N, C], got shape "
                     f"{list(t.shape)}")


def least_squares_stitch(x: torch.Tensor, y: torch.Tensor, bias: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stitching layer that best maps activations ``x`` onto ``y`` in the least-squares sense.

    Args:
        x: the front network's activations: ``[N, C_in, H, W]``, ``[N, T, C_in]`` or ``[N, C_in]``.
        y: the back network's activations at the same images and positions, ``C_out`` features.
        bias: fit an offset too (a column of ones beside ``x``).

    Returns:
        ``(weight [C_out, C_in], bias [C_out] or None)`` minimizing ``||x W^T + b - y||`` summed over
        images and positions, solved in float64 (minimum-norm solution when ``x`` is rank deficient),
        returned in ``x``'s dtype.
    """
    if x.ndim != y.ndim or x.shape[0] != y.shape[0] or (x.ndim == 4 and x.shape[2:] != y.shape[2:]) or (
            x.ndim == 3 and x.shape[1] != y.shape[1]):
        raise ValueError(f"x and y must hold the same images at the same positions (equal shapes but for the "
                         f"feature dimension), got {list(x.shape)} and {list(y.shape)}")
    xr, yr = _rows(x).detach().cpu().double(), _rows(y).detach().cpu().double()
    if bias:
        xr = torch.cat([xr, torch.ones(len(xr), 1, dtype=xr.dtype)], 1)
    sol = torch.linalg.lstsq(xr, yr, driver="gelsd").solution  # [C_in (+1), C_out]
    w = sol[: x.shape[-1] if x.ndim != 4 else x.shape[1]].T.contiguous()
    b = sol[-1] if bias else None
    return w.to(x.dtype), (b.to(x.dtype) if b is not None else None)


# ------------------------------------------------------------------------------------------ the layer
class StitchLayer(nn.Module):
    """A 1x1 convolution (maps) or a linear layer (tokens, vectors) from ``cin`` to ``cout`` features,
    after an integer resampling of the map (``down``: average pooling, ``up``: nearest repetition)."""

    def __init__(self, cin: int, cout: int, kind: str = "conv", bias: bool = True, down: int = 1, up: int = 1):
        super().__init__()
        if kind not in ("conv", "linear"):
            raise ValueError(f"kind must be 'conv' (feature maps) or 'linear' (tokens, vectors), got {kind!r}")
        if down < 1 or up < 1 or (down > 1 and up > 1) or (kind == "linear" and down * up > 1):
            raise ValueError(f"down and up are integer factors >= 1, at most one above 1, and only for maps; got "
                             f"down={down}, up={up}, kind={kind!r}")
        self.kind, self.down, self.up = kind, down, up
        self.proj = nn.Conv2d(cin, cout, 1, bias=bias) if kind == "conv" else nn.Linear(cin, cout, bias=bias)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.down > 1:
            return F.avg_pool2d(x, self.down)
        if self.up > 1:
            return x.repeat_interleave(self.up, 2).repeat_interleave(self.up, 3)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.resample(x))

    @torch.no_grad()
    def init_least_squares(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Set the weights to :func:`least_squares_stitch` of (resampled) ``x`` onto ``y``; returns the
        relative residual ``||S(x) - y|| / ||y||`` after the fit."""
        xs = self.resample(x)
        w, b = least_squares_stitch(xs, y, bias=self.proj.bias is not None)
        self.proj.weight.copy_(w.view_as(self.proj.weight))
        if b is not None:
            self.proj.bias.copy_(b)
        out = self(x.to(self.proj.weight.device)).to(y.device)
        return float((out - y).norm() / y.norm().clamp_min(1e-12))


# ------------------------------------------------------------------------------ networks as pieces
class _GlobalPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, C, h, w] -> [batch, C]
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class _ViTEmbed(nn.Module):
    """A ViT's patch embedding, class token and positions (the same parameters as the model's)."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.patch_embed, self.cls_token, self.pos_embed = vit.patch_embed, vit.cls_token, vit.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)               # [batch, tokens, dim]
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed


class _ViTPool(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, 1+tokens, dim] -> [batch, dim]
        return self.norm(x)[:, 0]


def stitch_pieces(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as a chain of named pieces whose composition is its forward pass (modules shared).

    A CIFAR ResNet: ``stem``, ``layerS.B`` (its blocks), ``hook_pool``, ``fc``; a ViT: ``hook_embed``,
    ``blocks.i``, ``hook_pool`` (normed class token), ``head``. A stitch leaves A after a piece and enters
    B at a piece.
    """
    if isinstance(model, CifarResNet):
        blocks = [(f"layer{s}.{i}", blk) for s in (1, 2, 3) for i, blk in enumerate(getattr(model, f"layer{s}"))]
        return [("stem", model.stem), *blocks, ("hook_pool", _GlobalPool()), ("fc", model.fc)]
    if isinstance(model, VisionTransformer):
        blocks = [(f"blocks.{i}", blk) for i, blk in enumerate(model.blocks)]
        return [("hook_embed", _ViTEmbed(model)), *blocks, ("hook_pool", _ViTPool(model.norm)), ("head", model.head)]
    raise TypeError(f"stitching reads a network as stem, blocks and head; it knows CifarResNet (resnet8, resnet20, "
                    f"resnet_cifar, ...) and VisionTransformer (vit_tiny), got {type(model).__name__}")


def _shapes(model: nn.Module, x: torch.Tensor | None = None) -> list[tuple[int, ...]]:
    """The output shape (without the batch) of every piece, from one eval-mode pass of ``x`` (zeros by default)."""
    from ..models.count import example_input
    x = example_input(model, 1) if x is None else x[:1]
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for _, p in stitch_pieces(model):
                x = p(x)
                out.append(tuple(x.shape[1:]))
    finally:
        model.train(was)
    return out


def _bridge(sa: tuple[int, ...], sb: tuple[int, ...], resample: bool) -> tuple[str, int, int] | None:
    """``(kind, down, up)`` of the layer that maps A's output shape ``sa`` onto B's input shape ``sb``, or None."""
    if len(sa) != len(sb):
        return None
    if len(sa) == 1:
        return "linear", 1, 1
    if len(sa) == 2:
        return ("linear", 1, 1) if sa[0] == sb[0] else None
    (ha, wa), (hb, wb) = sa[1:], sb[1:]
    if (ha, wa) == (hb, wb):
        return "conv", 1, 1
    if not resample:
        return None
    if ha % hb == 0 and wa % wb == 0 and ha // hb == wa // wb:
        return "conv", ha // hb, 1
    if hb % ha == 0 and wb % wa == 0 and hb // ha == wb // wa:
        return "conv", 1, hb // ha
    return None


def stitch_positions(a: nn.Module, b: nn.Module, resample: bool = False) -> list[tuple[str, str]]:
    """Every ``(front, back)`` that a 1x1 or linear layer can join: A's output after piece ``front`` has
    the rank and spatial size (or token count) of B's input at piece ``back`` (integer ratios of the
    spatial size too with ``resample=True``). Fronts exclude A's head, backs B's stem."""
    na, nb = [n for n, _ in stitch_pieces(a)], [n for n, _ in stitch_pieces(b)]
    sa, sb = _shapes(a), _shapes(b)
    return [(na[i], nb[j]) for i in range(len(na) - 1) for j in range(1, len(nb))
            if _bridge(sa[i], sb[j - 1], resample) is not None]


def family_positions(a: nn.Module, b: nn.Module, resample: bool = False) -> list[tuple[str, str]]:
    """SN-Net's stitches from a (small) anchor A into a (large) anchor B, one per cut of A: A's cut after
    piece ``k`` of its ``m`` pieces enters B at piece ``1 + round(k (n - 2) / (m - 2))`` of its ``n``
    (equal depths: block ``l`` into block ``l + 1``); positions whose shapes do not match are left out."""
    na, nb = [n for n, _ in stitch_pieces(a)], [n for n, _ in stitch_pieces(b)]
    valid = set(stitch_positions(a, b, resample))
    m, n = len(na), len(nb)
    out = []
    for k in range(m - 1):
        pair = (na[k], nb[1 + round(k * (n - 2) / (m - 2))])
        if pair in valid and pair not in out:
            out.append(pair)
    return out


def _describe(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _check_position(a: nn.Module, b: nn.Module, front: str, back: str, resample: bool) -> tuple[int, int, tuple]:
    na, nb = [n for n, _ in stitch_pieces(a)], [n for n, _ in stitch_pieces(b)]
    if front not in na[:-1]:
        raise ValueError(f"front {front!r} is not a piece of the front network ({type(a).__name__}) that a stitch "
                         f"can leave from; its pieces are: {', '.join(na[:-1])}")
    if back not in nb[1:]:
        raise ValueError(f"back {back!r} is not a piece of the back network ({type(b).__name__}) that a stitch can "
                         f"enter; its pieces are: {', '.join(nb[1:])}")
    i, j = na.index(front), nb.index(back)
    sa, sb = _shapes(a)[i], _shapes(b)[j - 1]
    bridge = _bridge(sa, sb, resample)
    if bridge is None:
        valid = stitch_positions(a, b, resample)
        backs = [bk for f, bk in valid if f == front]
        why = ("maps and vectors or tokens cannot be joined" if len(sa) != len(sb) else
               "the token counts differ" if len(sa) == 2 else
               "the spatial sizes differ and resample=False (pass resample=True to pool or repeat by an integer "
               "factor)" if not resample else "the spatial sizes differ by a ratio that is not an integer")
        raise ValueError(f"cannot stitch A's output after {front!r} ({_describe(sa)}) into B's input at {back!r} "
                         f"({_describe(sb)}): a 1x1 or linear stitching layer maps features only, and {why}. "
                         f"Valid backs for front {front!r}: {', '.join(backs) or 'none'} "
                         f"({len(valid)} valid positions in all: wb.transfer.stitch_positions(a, b))")
    return i, j, bridge + (sa[0] if len(sa) != 2 else sa[1], sb[0] if len(sb) != 2 else sb[1])


# --------------------------------------------------------------------------------- stitched networks
class StitchedNet(WorkbenchModel):
    """A's pieces up to ``front``, a :class:`StitchLayer`, B's pieces from ``back`` (modules shared with A
    and B). With ``train_parts=False`` the pieces stay in eval mode (BatchNorm statistics frozen) and
    only the stitching layer's parameters train. Build it with :func:`stitch_networks`."""

    def __init__(self, front: Sequence[tuple[str, nn.Module]], layer: StitchLayer,
                 back: Sequence[tuple[str, nn.Module]], in_chans: int, num_classes: int, train_parts: bool = True):
        super().__init__()
        self.front_names, self.back_names = [n for n, _ in front], [n for n, _ in back]
        self.front = nn.Sequential(*[m for _, m in front])
        self.stitch = layer
        self.back = nn.Sequential(*[m for _, m in back])
        self.in_chans, self.num_classes, self.train_parts = in_chans, num_classes, train_parts
        self.hook_layers = (tuple(f"front.{i}" for i in range(len(front))) + ("stitch",)
                            + tuple(f"back.{i}" for i in range(len(back))))

    @property
    def position(self) -> tuple[str, str]:
        return self.front_names[-1], self.back_names[0]

    def train(self, mode: bool = True) -> "StitchedNet":
        super().train(mode)
        if not self.train_parts:
            self.front.eval()
            self.back.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.back(self.stitch(self.front(x)))  # [batch, classes]


def _activations(model: nn.Module, x: torch.Tensor, upto: int) -> torch.Tensor:
    """The output of piece ``upto`` for images ``x`` (eval mode, no gradients)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _, p in stitch_pieces(model)[: upto + 1]:
                x = p(x)
    finally:
        model.train(was)
    return x


def _checked_pair(a: nn.Module, b: nn.Module) -> None:
    for name in ("in_chans", "num_classes"):
        va, vb = getattr(a, name, None), getattr(b, name, None)
        if va != vb:
            raise ValueError(f"the two networks differ in {name} ({va} and {vb}); stitch networks built for the "
                             f"same data (create both with {name}={vb})")


def stitch_networks(a: nn.Module, b: nn.Module, front: str, back: str, images: torch.Tensor | None = None, *,
                    resample: bool = False, bias: bool = True, train_parts: bool = False, copy_parts: bool = True
                    ) -> StitchedNet:
    """The network ``B[back:] o S o A[:front]``, with ``S`` fitted by least squares on ``images``.

    Args:
        a, b: the front and back networks (CIFAR ResNets or ViTs; see :func:`stitch_pieces` for the names).
        front: A's piece whose output is stitched (``"stem"``, ``"layer2.0"``, ``"hook_pool"``, ...).
        back: B's piece that receives it (``"layer2.1"``, ``"fc"``, ...).
        images: normalized images ``[N, C, H, W]`` for the least-squares fit (``None``: the layer's
            default initialization).
        resample: bridge integer ratios of spatial size (see the module docstring).
        bias: the stitching layer has a bias.
        train_parts: whether A's and B's pieces train too when the result is given to ``wb.fit``; by
            default only the stitching layer trains and the pieces keep eval-mode BatchNorm.
        copy_parts: work on copies of ``a`` and ``b`` (the given networks stay untouched).

    Returns:
        :class:`StitchedNet`; ``.ls_residual`` is the relative residual of the least-squares fit.

    Raises:
        ValueError: a piece name that does not exist, or shapes a 1x1 or linear layer cannot join (the
            message names both shapes and the valid positions).
    """
    _checked_pair(a, b)
    i, j, (kind, down, up, cin, cout) = _check_position(a, b, front, back, resample)
    if copy_parts:
        a, b = copy.deepcopy(a), copy.deepcopy(b)
    layer = StitchLayer(cin, cout, kind, bias=bias, down=down, up=up).to(next(b.parameters()).device)
    residual = float("nan")
    if images is not None:
        images = images.to(next(b.parameters()).device)
        residual = layer.init_least_squares(_activations(a, images, i), _activations(b, images, j - 1))
    net = StitchedNet(stitch_pieces(a)[: i + 1], layer, stitch_pieces(b)[j:], a.in_chans, b.num_classes, train_parts=train_parts)
    if not train_parts:
        for p in list(net.front.parameters()) + list(net.back.parameters()):
            p.requires_grad_(False)
    net.ls_residual = residual
    return net.train(a.training)


# ---------------------------------------------------------------------------------------- the family
class SNNet(WorkbenchModel):
    """Two anchors and the stitching layers between them: one set of weights, many networks.

    ``configurations``: ``"A"``, ``"B"`` and one ``"front>back"`` per stitch, in order of the
    stitches. ``forward(x, config=None)`` runs one of them (default ``self.active``);
    :meth:`network` returns it as a stand-alone module sharing these weights (for ``wb.evaluate`` and
    ``wb.models.summary``). With ``train_anchors=False`` the anchors are frozen (no gradients, eval-mode
    BatchNorm) and only the stitches train. Build it with :func:`stitch_family`.
    """

    def __init__(self, a: nn.Module, b: nn.Module, positions: Sequence[tuple[str, str]], resample: bool = False,
                 bias: bool = True, train_anchors: bool = False):
        super().__init__()
        _checked_pair(a, b)
        if not positions:
            raise ValueError("an SN-Net needs at least one stitch position; see wb.transfer.family_positions(a, b)")
        self.anchors = nn.ModuleList([a, b])
        self.positions = [tuple(p) for p in positions]
        self.resample, self.train_anchors = resample, train_anchors
        self.in_chans, self.num_classes = a.in_chans, b.num_classes
        layers = []
        for front, back in self.positions:
            *_, (kind, down, up, cin, cout) = _check_position(a, b, front, back, resample)
            layers.append(StitchLayer(cin, cout, kind, bias=bias, down=down, up=up))
        self.stitches = nn.ModuleList(layers)
        self.configurations = ["A", "B"] + [f"{f}>{bk}" for f, bk in self.positions]
        self._pieces = (stitch_pieces(a), stitch_pieces(b))  # the anchors' chains (modules shared, not registered twice)
        names = ([n for n, _ in self._pieces[0]], [n for n, _ in self._pieces[1]])
        self._cuts = [(names[0].index(f), names[1].index(bk)) for f, bk in self.positions]  # (A's last, B's first)
        self.active = "B"
        if not train_anchors:
            for p in self.anchors.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "SNNet":
        super().train(mode)
        if not self.train_anchors:
            self.anchors.eval()
        return self

    def trainable_configurations(self) -> list[str]:
        """The configurations a training step may run: every one, or the stitches alone when the anchors are frozen."""
        return list(self.configurations) if self.train_anchors else self.configurations[2:]

    def _check_config(self, config: str) -> int:
        if config not in self.configurations:
            raise ValueError(f"unknown configuration {config!r}; choose one of {', '.join(self.configurations)}")
        return self.configurations.index(config)

    def network(self, config: str) -> nn.Module:
        """The configuration as a module of its own: an anchor itself, or a :class:`StitchedNet` sharing the weights."""
        k = self._check_config(config)
        if k < 2:
            return self.anchors[k]
        (pa, pb), (i, j) = self._pieces, self._cuts[k - 2]
        net = StitchedNet(pa[: i + 1], self.stitches[k - 2], pb[j:], self.in_chans, self.num_classes,
                          train_parts=self.train_anchors)
        return net.train(self.training)

    @torch.no_grad()
    def init_least_squares(self, images: torch.Tensor) -> list[float]:
        """Fit every stitching layer by least squares on ``images`` (normalized, ``[N, C, H, W]``); returns
        the relative residual of each fit."""
        a, b = self.anchors
        images = images.to(next(self.parameters()).device)
        return [layer.init_least_squares(_activations(a, images, i), _activations(b, images, j - 1))
                for (i, j), layer in zip(self._cuts, self.stitches)]

    def forward(self, x: torch.Tensor, config: str | None = None) -> torch.Tensor:
        config = self.active if config is None else config
        k = self._check_config(config)
        if k < 2:
            return self.anchors[k](x)
        self.check_input(x)
        (pa, pb), (i, j) = self._pieces, self._cuts[k - 2]
        for _, p in pa[: i + 1]:
            x = p(x)
        x = self.stitches[k - 2](x)
        for _, p in pb[j:]:
            x = p(x)
        return x  # [batch, classes]


def stitch_family(a: nn.Module, b: nn.Module, images: torch.Tensor | None = None, *,
                  positions: Sequence[tuple[str, str]] | None = None, resample: bool = False, bias: bool = True,
                  train_anchors: bool = False, copy_anchors: bool = True) -> SNNet:
    """SN-Net between a small anchor ``a`` and a large anchor ``b``: every stitch of ``positions``
    (default :func:`family_positions`), each fitted by least squares on ``images``.

    Args:
        a, b: the anchors (front and back networks), built for the same data.
        images: normalized images for the least-squares fits (``None``: default initialization).
        positions: ``[(front, back), ...]``; each is checked as in :func:`stitch_networks`.
        train_anchors: SN-Net's full joint training (anchors and stitches); ``False`` trains the stitches only.
        copy_anchors: work on copies (the given networks stay untouched).

    Returns:
        :class:`SNNet`; ``.ls_residuals`` holds the relative residual of each fit.
    """
    _checked_pair(a, b)
    if copy_anchors:
        a, b = copy.deepcopy(a), copy.deepcopy(b)
    positions = family_positions(a, b, resample) if positions is None else positions
    net = SNNet(a, b, positions, resample=resample, bias=bias, train_anchors=train_anchors)
    net.to(next(b.parameters()).device)
    net.ls_residuals = net.init_least_squares(images) if images is not None else []
    return net.train()


class StitchSampling(Task):
    """SN-Net's training of all configurations with one set of weights, as a task of :func:`workbench.fit`.

    At step ``t`` the model (an :class:`SNNet`) runs one configuration drawn uniformly from its
    ``trainable_configurations()`` (a pure function of ``seed`` and ``t``, so a resumed run draws the
    same ones) and minimizes the cross-entropy of its logits. The test set reports the loss and
    accuracy averaged over every configuration and the worst configuration's accuracy (``acc_min``).
    """

    metric_names = ("loss", "acc", "acc_min")

    def __init__(self, label_smoothing: float = 0.0, seed: int = 0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing, self.seed = float(label_smoothing), int(seed)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "label_smoothing": self.label_smoothing, "seed": self.seed}

    def sample(self, model: SNNet, step: int) -> str:
        """The configuration trained at ``step``."""
        choices = model.trainable_configurations()
        return choices[random.Random(self.seed * 1_000_003 + step).randrange(len(choices))]

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(model, SNNet):
            raise TypeError(f"StitchSampling trains an SNNet (wb.transfer.stitch_family), got {type(model).__name__}; "
                            "a single StitchedNet trains with the default task")
        check_data_fits_model(model, dataset)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> torch.Tensor:
        if state is None:
            return model(batch[0])
        return model(batch[0], config=self.sample(state.model, state.step))

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return classification_loss(outputs, batch[1], self.label_smoothing)

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        y = batch[1]
        hits = (outputs.detach().argmax(1) == y).sum().double()
        return {"loss": loss.detach().double() * len(y), "acc": hits}, len(y)

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        from ..train import evaluate
        res = [evaluate(model.network(c), loader, precision=precision) for c in model.configurations]
        return {"loss": sum(r["loss"] for r in res) / len(res), "acc": sum(r["acc"] for r in res) / len(res),
                "acc_min": min(r["acc"] for r in res)}


# ------------------------------------------------------------------------------ one run, as a record
def family_run(seed: int, *, anchors: Sequence[tuple[str, dict]], anchor_fit: dict, tune_fit: dict,
               dataset: str = "cifar10", train_subset: int | None = None, test_subset: int | None = None,
               ls_images: int = 256, train_anchors: bool = False, resample: bool = False) -> dict[str, Any]:
    """Train two anchors, stitch them (least squares), fine-tune the family, evaluate every configuration.

    Args:
        seed: the anchors' initialization and data order, the least-squares images and the sampling.
        anchors: ``[(registry name, model_kwargs) of the small anchor, of the large one]``.
        anchor_fit: the anchors' training recipe (:func:`workbench.train.train_model`, cached).
        tune_fit: ``wb.fit`` arguments of the joint fine-tune with :class:`StitchSampling` (cached);
            ``label_smoothing`` goes to the task.
        dataset, train_subset, test_subset: the data (subsets drawn with seed 0, as ``wb.train.model_run``).
        ls_images: training images (without augmentation) for the least-squares fits.
        train_anchors: fine-tune the anchors too (SN-Net's full joint training).

    Returns:
        A JSON-ready record for ``wb.sweep``: per configuration (lists in the order of ``config``)
        ``macs``, ``params``, ``acc_random`` (the stitching layers' default initialization, before any
        training), ``acc_init`` (least squares only), ``acc`` (after the fine-tune),
        ``ls_residual``; the anchors' own accuracies ``anchor_acc``; ``tune_seconds``.
    """
    from ..cache import cached
    from ..data import load
    from ..models.summary import summary
    from ..train import evaluate, fit, train_model
    from ..train.cached import data_fingerprint

    if len(anchors) != 2:
        raise ValueError(f"anchors must be two (name, model_kwargs) pairs, small one first, got {len(anchors)}")
    train = load(dataset, "train", subset=train_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    nets = [train_model(name, train, test, model_kwargs=dict(kw), seed=seed, progress=False, **anchor_fit).model
            for name, kw in anchors]
    probe = train.subset(ls_images, seed=seed)
    torch.manual_seed(seed)  # the stitching layers' default initialization, measured before least squares
    family = stitch_family(*nets, resample=resample, train_anchors=train_anchors)
    configs = family.configurations

    def measure() -> list[float]:
        return [evaluate(family.network(c), test)["acc"] for c in configs]

    acc_random = measure()
    family.ls_residuals = family.init_least_squares(probe.normalize(probe.images))
    acc_init = measure()
    tune = dict(tune_fit)
    task = StitchSampling(label_smoothing=tune.pop("label_smoothing", 0.0), seed=seed)
    key = {"anchors": [model_fingerprint(n) for n in nets], "positions": family.positions, "seed": seed,
           "ls": [ls_images, data_fingerprint(probe)], "train": [len(train), data_fingerprint(train)],
           "tune": tune, "task": task.config(), "train_anchors": train_anchors, "resample": resample}

    def run() -> dict:
        start = time.perf_counter()
        res = fit(family.train(), train, None, task=task, seed=seed, progress=False, **tune)
        return {"state": {k: v.detach().cpu() for k, v in family.state_dict().items()},
                "history": res.history, "seconds": time.perf_counter() - start}

    out = cached(run, key=key, name="stitch_family")
    family.load_state_dict(out["state"])
    family.eval()
    costs = [summary(family.network(c), tuple(train.shape)) for c in configs]
    return {"config": configs, "macs": [c.macs for c in costs], "params": [c.params for c in costs],
            "acc_random": acc_random, "acc_init": acc_init, "acc": measure(),
            "ls_residual": [None] * 2 + list(family.ls_residuals),
            "anchor_acc": [evaluate(n, test)["acc"] for n in nets], "tune_seconds": float(out["seconds"])}
