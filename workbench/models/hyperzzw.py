"""HyperZ·Z·W: a slow network writes the kernels, the activations bend them, the fast network convolves.

Harvie Zhang, *HyperZ·Z·W Operator Connects Slow-Fast Networks for Full Context Interaction*, 2024,
https://arxiv.org/abs/2401.17948 (the Terminator architecture and its SFNE block).

**Slow network.** A coordinate-based implicit MLP (a multiplicative filter network: linear layers whose
outputs are multiplied by sine filters of the input coordinates) maps the coordinates ``c`` of a
``k x k`` kernel grid in ``[-1, 1]^2`` to one value per channel::

    h_1 = sin(Omega_1 c + phi_1),  h_{i+1} = (A_i h_i + a_i) * sin(Omega_{i+1} c + phi_{i+1}),  W(c) = B h_L + b

so ``W`` is a ``[C, 1, k, k]`` depthwise *hyper-kernel* whose parameter count does not grow with ``k``.

**Fast network, the HyperZ·Z·W operator.** The hyper-kernel ``W`` meets the hidden activations ``Z`` by
an elementwise product, which makes the weights context-dependent, and the result convolves ``Z``::

    W_hat_b = W * (1 + tanh(alpha * (P_k(Z_b) - mean P_k(Z_b))))        # [C, k, k] for image b
    Y_b     = W_hat_b (*) Z_b                                            # depthwise, 'same' padding

where ``P_k`` average-pools each channel of ``Z_b`` to ``k x k`` (the context seen through the kernel's
window of the whole map), ``mean`` is over that grid and ``alpha`` is a learned gain per channel. The
paper multiplies ``W`` by (a transform of) ``Z`` directly; the ``1 + tanh(...)`` form here is our
choice, so that the generated kernel stays near the slow network's ``W`` and a spatially uniform context
leaves ``W`` (the operator is then a plain depthwise convolution, a known answer the tests check).

**Block (a small SFNE).** One HyperZ·Z·W branch per kernel size (multi-branch hyper-kernels of
different sizes); the branches are concatenated, BatchNorm and GELU act on each channel, and a 1x1
*bottleneck* convolution compresses the ``len(kernel_sizes) * C`` channels to the block's width. There
are **no residual connections**: the paper's point is that large context-dependent kernels make them
unnecessary. Left out: the global (image-sized) branch, the slow neural loss, the group-based
standardizations and the RGU channel mixers of the full Terminator.

Variants, equal in the fast network's size and multiply-adds:

* ``"hyper"``: the HyperZ·Z·W operator above.
* ``"implicit"``: the slow network's kernel ``W`` without the context term (``W_hat_b = W``).
* ``"static"``: an ordinary learned ``k x k`` depthwise convolution in place of the slow network.

The network: a 3x3 stem, three stages of ``depth`` blocks with ``width``, ``2 width`` and ``4 width``
channels (each later stage halves the map in its first block's branches, total stride 4), global
average pooling and a linear classifier.

Hook points, in forward order: ``stem``, ``blocks.I`` (a block), ``blocks.I.hook_branchK`` (the
output of the branch of kernel size K, before normalisation), ``blocks.I.hook_concat`` (the
concatenated branches after BatchNorm and GELU), ``blocks.I.hook_out`` (the block's output after the
bottleneck), ``hook_pool``.
:func:`generated_kernels` returns each branch's per-image kernels ``W_hat`` for a batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .count import eval_forward
from .hooks import HookPoint

__all__ = ["VARIANTS", "HyperKernel", "HyperZZWConv", "HyperZZWBlock", "HyperZZWNet", "hyperzzw",
           "per_image_depthwise", "context_term", "generated_kernels", "kernel_variation", "without_context"]

VARIANTS = ("hyper", "implicit", "static")
KERNEL_SIZES = (3, 5, 7, 9, 11, 13, 15)  # odd, so that 'same' padding is k // 2 on every side
WIDTH_RANGE = (4, 256)
DEPTH_RANGE = (1, 8)
HIDDEN_RANGE = (2, 256)
TOTAL_STRIDE = 4


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")


def _check_kernel_size(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k not in KERNEL_SIZES:
        raise ValueError(f"kernel size must be one of {', '.join(map(str, KERNEL_SIZES))} (odd, 3 to 15), got {k!r}")


def _check_range(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


def hyperzzw(z: torch.Tensor, kernel: torch.Tensor, context: torch.Tensor | None = None,
             stride: int = 1) -> torch.Tensor:
    """The fast network's step: convolve each image with its own context-dependent depthwise kernel.

    Args:
        z: activations ``[batch, C, H, W]``.
        kernel: the hyper-kernel ``W``, ``[C, 1, k, k]`` with ``k`` odd.
        context: the multiplier of ``W`` per image, ``[batch, C, k, k]``; ``None`` means ones (then this
            is ``F.conv2d(z, kernel, padding=k // 2, groups=C)``).
        stride: the convolution's stride.

    Returns:
        ``[batch, C, H', W']``: image ``b`` convolved with ``kernel[:, 0] * context[b]`` ('same' padding).

    Example:
        >>> z, w = torch.randn(2, 4, 8, 8), torch.randn(4, 1, 3, 3)
        >>> torch.allclose(hyperzzw(z, w, torch.ones(2, 4, 3, 3)), F.conv2d(z, w, padding=1, groups=4))
        True
    """
    if z.ndim != 4 or kernel.ndim != 4 or kernel.shape[1] != 1 or kernel.shape[0] != z.shape[1]:
        raise ValueError(f"hyperzzw expects z [batch, C, H, W] and a depthwise kernel [C, 1, k, k], got "
                         f"{tuple(z.shape)} and {tuple(kernel.shape)}")
    b, c, h, w = z.shape
    k = kernel.shape[-1]
    if context is None:
        return F.conv2d(z, kernel, stride=stride, padding=k // 2, groups=c)  # [batch, C, H', W']
    if tuple(context.shape) != (b, c, k, k):
        raise ValueError(f"context must be [batch, C, k, k] = {[b, c, k, k]}, got {list(context.shape)}")
    w_hat = kernel[:, 0].unsqueeze(0) * context  # [batch, C, k, k]: the context-dependent weights
    y = per_image_depthwise(z, w_hat, stride)
    if not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)  # keep the layout the rest of the network runs in
    return y


def per_image_depthwise(z: torch.Tensor, kernels: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Convolve image ``b`` of ``z`` ``[batch, C, H, W]`` with its own depthwise kernels ``kernels[b]``
    ``[batch, C, k, k]`` ('same' padding ``k // 2``). Returns ``[batch, C, H', W']``.

    The batch is folded into the channels (one group per image and channel). For ``k >= 5`` the
    backward pass is written out as two more grouped convolutions (:class:`_PerImageDepthwise`),
    several times faster on a CPU than autograd's generic one; both are exact.
    """
    b, c, h, w = z.shape
    k = kernels.shape[-1]
    if k >= 5:
        return _PerImageDepthwise.apply(z, kernels, stride)
    y = F.conv2d(z.reshape(1, b * c, h, w), kernels.reshape(b * c, 1, k, k), stride=stride, padding=k // 2,
                 groups=b * c)  # [1, batch * C, H', W']
    return y.view(b, c, *y.shape[-2:])


class _PerImageDepthwise(torch.autograd.Function):
    """Per-image depthwise convolution with a hand-written backward (see :func:`per_image_depthwise`).

    With ``y = z (*) w`` (stride ``s``, padding ``p``), per image and channel:
    ``dL/dz`` is the transposed convolution of ``g = dL/dy`` with ``w``, and
    ``dL/dw[i, j] = sum_hw pad(z)[s h + i, s w + j] g[h, w]``: the padded input convolved with ``g``
    as a kernel dilated by ``s``.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, kernels: torch.Tensor, stride: int) -> torch.Tensor:
        b, c, h, w = z.shape
        k = kernels.shape[-1]
        zf = z.reshape(1, b * c, h, w)  # [1, batch * C, H, W]
        wf = kernels.reshape(b * c, 1, k, k)  # [batch * C, 1, k, k]
        y = F.conv2d(zf, wf, stride=stride, padding=k // 2, groups=b * c)  # [1, batch * C, H', W']
        ctx.save_for_backward(zf, wf)
        ctx.stride, ctx.shape = stride, (b, c, h, w)
        return y.view(b, c, *y.shape[-2:])

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        zf, wf = ctx.saved_tensors
        s, (b, c, h, w) = ctx.stride, ctx.shape
        k = wf.shape[-1]
        p = k // 2
        ho, wo = g.shape[-2:]
        gf = g.contiguous().view(1, b * c, ho, wo)  # [1, batch * C, H', W']
        gz = gk = None
        if ctx.needs_input_grad[0]:
            if s == 1:
                gz = F.conv2d(gf, wf.flip(-1, -2), padding=p, groups=b * c)
            else:
                extra = (h - ((ho - 1) * s - 2 * p + k), w - ((wo - 1) * s - 2 * p + k))
                gz = F.conv_transpose2d(gf, wf, stride=s, padding=p, output_padding=extra, groups=b * c)
            gz = gz.view(b, c, h, w)
        if ctx.needs_input_grad[1]:
            gk = F.conv2d(F.pad(zf, (p, p, p, p)), gf.view(b * c, 1, ho, wo), dilation=s, groups=b * c)
            gk = gk[..., :k, :k].reshape(b, c, k, k)
        return gz, gk, None


def context_term(z: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``P_k(Z) - mean P_k(Z)``: each channel average-pooled to ``k x k`` and centred over that grid.

    Zero for a spatially uniform ``z``. Returns ``[batch, C, k, k]``.
    """
    p = F.adaptive_avg_pool2d(z, kernel_size)  # [batch, C, k, k]
    return p - p.mean(dim=(-2, -1), keepdim=True)


class HyperKernel(nn.Module):
    """The slow network: a multiplicative filter network from kernel coordinates to ``[C, 1, k, k]``.

    Args:
        kernel_size: ``k`` (odd, 3 to 15).
        channels: ``C``, one kernel per channel.
        hidden: the MLP's width.
        layers: the number of hidden linear layers (``layers + 1`` sine filters).
    """

    def __init__(self, kernel_size: int, channels: int, hidden: int = 16, layers: int = 2):
        super().__init__()
        _check_kernel_size(kernel_size)
        self.kernel_size, self.channels = kernel_size, channels
        axis = torch.linspace(-1.0, 1.0, kernel_size)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)  # [k*k, 2] (row, col)
        self.register_buffer("coords", grid, persistent=False)
        self.filters = nn.ModuleList(nn.Linear(2, hidden) for _ in range(layers + 1))
        self.linears = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, channels)
        # frequencies up to the grid's Nyquist rate, shared out among the filters whose product makes h_L
        top = math.pi * (kernel_size - 1) / 2 / (layers + 1)
        for f in self.filters:
            nn.init.uniform_(f.weight, -top, top)
            nn.init.uniform_(f.bias, -math.pi, math.pi)
        for lin in self.linears:
            nn.init.uniform_(lin.weight, -math.sqrt(6 / hidden), math.sqrt(6 / hidden))
            nn.init.zeros_(lin.bias)
        nn.init.uniform_(self.out.weight, -math.sqrt(6 / hidden), math.sqrt(6 / hidden))
        nn.init.zeros_(self.out.bias)

    def forward(self) -> torch.Tensor:
        h = torch.sin(self.filters[0](self.coords))  # [k*k, hidden]
        for lin, filt in zip(self.linears, self.filters[1:]):
            h = lin(h) * torch.sin(filt(self.coords))  # [k*k, hidden]
        w = self.out(h)  # [k*k, C]
        return w.t().reshape(self.channels, 1, self.kernel_size, self.kernel_size)


class HyperZZWConv(nn.Module):
    """One branch: a ``k x k`` depthwise convolution whose kernel is hyper, implicit or static.

    ``kernels(z)`` is the per-image kernel ``W_hat`` ``[batch, C, k, k]``; ``forward(z)`` convolves with it.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, variant: str = "hyper",
                 hidden: int = 16, layers: int = 2):
        super().__init__()
        _check_variant(variant)
        _check_kernel_size(kernel_size)
        self.channels, self.kernel_size, self.stride, self.variant = channels, kernel_size, stride, variant
        if variant == "static":
            self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size, kernel_size))
            nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        else:
            self.slow = HyperKernel(kernel_size, channels, hidden, layers)
        if variant == "hyper":
            self.alpha = nn.Parameter(torch.ones(channels))  # the context's gain per channel

    def kernel(self) -> torch.Tensor:
        """The input-independent kernel ``W`` ``[C, 1, k, k]`` (the slow network's output, or the static weight)."""
        return self.weight if self.variant == "static" else self.slow()

    def context(self, z: torch.Tensor) -> torch.Tensor | None:
        """The multiplier of ``W`` per image, ``1 + tanh(alpha * context_term(z))``; ``None`` when there is none."""
        if self.variant != "hyper":
            return None
        return 1 + torch.tanh(self.alpha.view(1, -1, 1, 1) * context_term(z, self.kernel_size))  # [batch, C, k, k]

    def kernels(self, z: torch.Tensor) -> torch.Tensor:
        """The kernel each image of ``z`` is convolved with, ``[batch, C, k, k]``."""
        w = self.kernel()[:, 0].unsqueeze(0)  # [1, C, k, k]
        ctx = self.context(z)
        return w.expand(z.shape[0], -1, -1, -1) if ctx is None else w * ctx

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z: [batch, C, H, W]
        return hyperzzw(z, self.kernel(), self.context(z), stride=self.stride)


class HyperZZWBlock(nn.Module):
    """Multi-branch HyperZ·Z·W convolutions, concatenated, compressed by a 1x1 bottleneck; no skip.

    ``out = gelu(bn(bottleneck(gelu(bn_cat(concat_K(branch_K(z)))))))``; BatchNorm and GELU act per
    channel, so normalising the concatenation is the same as normalising each branch (and faster).
    """

    def __init__(self, cin: int, cout: int, kernel_sizes: tuple[int, ...], stride: int = 1,
                 variant: str = "hyper", hidden: int = 16, layers: int = 2):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.branches = nn.ModuleList(HyperZZWConv(cin, k, stride, variant, hidden, layers) for k in self.kernel_sizes)
        for k in self.kernel_sizes:
            setattr(self, f"hook_branch{k}", HookPoint())
        self.bn_cat = nn.BatchNorm2d(cin * len(self.kernel_sizes))
        self.hook_concat = HookPoint()
        self.bottleneck = nn.Conv2d(cin * len(self.kernel_sizes), cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.hook_out = HookPoint()

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z: [batch, cin, h, w]
        ys = [getattr(self, f"hook_branch{k}")(branch(z))  # [batch, cin, h/s, w/s]
              for k, branch in zip(self.kernel_sizes, self.branches)]
        y = self.hook_concat(F.gelu(self.bn_cat(torch.cat(ys, dim=1))))  # [batch, cin * branches, h/s, w/s]
        return self.hook_out(F.gelu(self.bn(self.bottleneck(y))))  # [batch, cout, h/s, w/s]


class HyperZZWNet(WorkbenchModel):
    """A small Terminator-style network of HyperZ·Z·W blocks; see the module docstring.

    Args:
        variant: ``"hyper"``, ``"implicit"`` or ``"static"`` (see :data:`VARIANTS`).
        width: channels of the first stage (4 to 256); the stages have ``width``, ``2 width``, ``4 width``.
        depth: blocks per stage (1 to 8).
        kernel_sizes: one branch per size, each odd from 3 to 15, no repeats.
        hidden, layers: the slow network's width and number of hidden layers (ignored by ``"static"``).
    """

    min_input_size = TOTAL_STRIDE

    def __init__(self, variant: str = "hyper", num_classes: int = 10, in_chans: int = 3, width: int = 16,
                 depth: int = 1, kernel_sizes: tuple[int, ...] = (3, 5, 7), hidden: int = 16, layers: int = 2):
        super().__init__()
        _check_variant(variant)
        _check_range("width", width, *WIDTH_RANGE)
        _check_range("depth", depth, *DEPTH_RANGE)
        _check_range("hidden", hidden, *HIDDEN_RANGE)
        _check_range("layers", layers, 1, 8)
        if isinstance(kernel_sizes, int) or not len(kernel_sizes):
            raise ValueError(f"kernel_sizes must be a non-empty tuple of sizes from "
                             f"{', '.join(map(str, KERNEL_SIZES))}, got {kernel_sizes!r}")
        for k in kernel_sizes:
            _check_kernel_size(k)
        if len(set(kernel_sizes)) != len(kernel_sizes):
            raise ValueError(f"kernel_sizes must not repeat a size (one branch per size), got {tuple(kernel_sizes)}")
        if num_classes < 1 or in_chans < 1:
            raise ValueError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
        self.variant, self.width, self.depth = variant, width, depth
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.num_classes, self.in_chans = num_classes, in_chans
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.GELU())
        blocks, cin = [], width
        for s, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(HyperZZWBlock(cin, cout, self.kernel_sizes, stride, variant, hidden, layers))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.hook_pool = HookPoint()
        self.fc = nn.Linear(cin, num_classes)
        self.hook_layers = ("stem",) + tuple(f"blocks.{i}" for i in range(len(blocks)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)  # also refuses an input smaller than the total stride (min_input_size)
        x = self.stem(x)  # [batch, W, h, w]
        x = self.blocks(x)  # [batch, 4W, h/4, w/4]
        return self.hook_pool(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # [batch, 4W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))  # [batch, classes]


@torch.no_grad()
def generated_kernels(model: HyperZZWNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The kernel every branch convolves each image of ``x`` with.

    Args:
        model: a :class:`HyperZZWNet` (any variant).
        x: a batch of images ``[batch, in_chans, H, W]`` (normalised as for the model).

    Returns:
        ``{"blocks.I.K": [batch, C, K, K]}`` in forward order, ``I`` the block and ``K`` the branch's
        kernel size, from one forward pass in eval mode (the train flag is restored). For ``"implicit"``
        and ``"static"`` every image gets the same kernel.

    Example:
        >>> model = wb.create_model("hyperzzw_net", width=8)               # doctest: +SKIP
        >>> {k: tuple(v.shape) for k, v in generated_kernels(model, x).items()}   # doctest: +SKIP
        {'blocks.0.3': (64, 8, 3, 3), ...}
    """
    if not isinstance(model, HyperZZWNet):
        raise TypeError(f"generated_kernels needs a HyperZZWNet (hyperzzw_net, hyperzzw_static_net), "
                        f"got {type(model).__name__}")
    out: dict[str, torch.Tensor] = {}
    handles = []
    for i, block in enumerate(model.blocks):
        for k, branch in zip(block.kernel_sizes, block.branches):
            handles.append(branch.register_forward_pre_hook(
                lambda mod, args, name=f"blocks.{i}.{k}": out.__setitem__(name, mod.kernels(args[0]).detach().cpu())))
    eval_forward(model, x, handles)
    return out


def without_context(model: HyperZZWNet) -> HyperZZWNet:
    """A copy of a ``"hyper"`` network with the context switched off (every ``alpha = 0``): each image is
    then convolved with the slow network's ``W``, the same for all images. How much accuracy this costs
    a trained network is how much it relies on its context-dependent weights.
    """
    if not isinstance(model, HyperZZWNet) or model.variant != "hyper":
        raise ValueError(f"without_context needs a HyperZZWNet of variant 'hyper', got "
                         f"{getattr(model, 'variant', type(model).__name__)!r}")
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, HyperZZWConv) and m.variant == "hyper":
                m.alpha.zero_()
    return out


def kernel_variation(kernels: dict[str, torch.Tensor]):
    """How much each branch's kernels vary across the images, relative to their mean.

    For a branch's kernels ``K`` ``[batch, C, k, k]``: ``spread = ||std_b K|| / ||mean_b K||`` (Frobenius
    norms over channels and taps, the standard deviation across the batch, ``correction=0``): 0 for a
    static kernel, ``0.1`` when a typical image moves the kernel by a tenth of its size.

    Returns:
        A DataFrame, one row per branch: ``branch``, ``block``, ``kernel_size``, ``spread``.
    """
    import pandas as pd

    rows = []
    for name, k in kernels.items():
        if k.ndim != 4:
            raise ValueError(f"kernels[{name!r}] must be [batch, C, k, k], got {tuple(k.shape)}")
        k = k.double()
        mean, std = k.mean(0), k.std(0, correction=0)
        block, size = name.rsplit(".", 1)
        rows.append({"branch": name, "block": block, "kernel_size": int(size),
                     "spread": float(std.norm() / mean.norm().clamp_min(1e-12))})
    return pd.DataFrame(rows, columns=["branch", "block", "kernel_size", "spread"])


@register_model
def hyperzzw_net(num_classes: int = 10, in_chans: int = 3, width: int = 16, depth: int = 1,
                 kernel_sizes: tuple[int, ...] = (3, 5, 7), hidden: int = 16, layers: int = 2,
                 variant: str = "hyper") -> HyperZZWNet:
    """Terminator-style network of HyperZ·Z·W blocks (``variant="hyper"``; ``"implicit"``, ``"static"``: controls)."""
    return HyperZZWNet(variant, num_classes=num_classes, in_chans=in_chans, width=width, depth=depth,
                       kernel_sizes=kernel_sizes, hidden=hidden, layers=layers)


@register_model
def hyperzzw_static_net(num_classes: int = 10, in_chans: int = 3, width: int = 16, depth: int = 1,
                        kernel_sizes: tuple[int, ...] = (3, 5, 7)) -> HyperZZWNet:
    """The static twin of :func:`hyperzzw_net`: learned ``k x k`` depthwise convolutions of the same sizes."""
    return HyperZZWNet("static", num_classes=num_classes, in_chans=in_chans, width=width, depth=depth,
                       kernel_sizes=kernel_sizes)
