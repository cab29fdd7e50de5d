"""Fake quantization: quantizers, quantized layers, ``quantize(model, config)``, BatchNorm folding, cost.

A quantized layer is an ordinary ``nn.Conv2d`` / ``nn.Linear`` subclass whose forward quantizes its
input activation and its weight, then runs the float operation on the quantized values (fake
quantization, as in Jacob et al. 2018, https://arxiv.org/abs/1712.05877). Rounding passes
gradients straight through inside the clipping range and stops them outside (the clipped
straight-through estimator of Bengio et al. 2013), so ``wb.fit`` trains a quantized copy like any
model: quantization-aware training needs no other loop.

``config`` gives a format per layer::

    wb.quant.quantize(model, "w4a8")                           # every conv and linear layer
    wb.quant.quantize(model, {"default": "w4a8", "stem.0": "w8a8", "fc": "w8a8"})
    wb.quant.quantize(model, {"default": ("int4_pc", "uint8_asym"), "layer3.*": ("fp8_e4m3", "fp8_e4m3")})
    wb.quant.quantize(model, {"default": "w4a8", "fc": None})  # None keeps a layer in float

``"wXaY"`` means X-bit symmetric weights with a scale per output channel and Y-bit activations with a
zero point (``("intX_pc", "uintY_asym")``); ``"w1.58a8"`` means ternary weights. Names are module
names; patterns use ``fnmatch`` and apply in order after the default, exact names last.
"""
from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..models.count import eval_forward as _eval_forward
from ..models.count import example_input as _example_input
from ..models.count import layer_macs
from ..train.events import Algorithm
from .formats import FloatFormat, Format, IntFormat, TernaryFormat, get_format

__all__ = ["LayerSpec", "Quantizer", "QuantConv2d", "QuantLinear", "QAT", "quantize", "quantize_", "resolve_config", "quant_layers",
           "fold_bn", "cost", "calibrate", "act_ranges", "set_quant_enabled", "ste_round"]

CLIP_METHODS = ("minmax", "percentile", "mse")


def ste_round(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (q - x).detach()


def _subnormals_kept() -> bool:
    """Whether CPU arithmetic keeps subnormal numbers (``torch.set_flush_denormal(True)`` drops them)."""
    zero = torch.zeros(())
    return bool(torch.nextafter(zero, zero - 1) < zero)


class _ClippedSTE(torch.autograd.Function):
    """``q`` forward; backward the gradient of ``clamp(x, lo, hi)`` as ``minimum(maximum(x, lo), hi)``
    gives it (1 inside, 0 outside, 1/2 where ``x`` equals a bound): the clipped straight-through
    estimator in one node, without the two clamped copies of ``x`` autograd would otherwise keep."""

    @staticmethod
    def forward(ctx, x, q, lo, hi):
        ctx.save_for_backward(x, lo, hi)
        return q

    @staticmethod
    def backward(ctx, g):
        x, lo, hi = ctx.saved_tensors
        if lo.numel() == 1 and _subnormals_kept():  # one range (activations): the mean of the gradients with open and with closed
            # bounds, two fused kernels (hardtanh's backward passes g strictly inside its bounds; just
            # outside the float32 neighbours of lo and hi is on or inside [lo, hi])
            lo32, hi32 = lo.reshape(()).to(x.dtype), hi.reshape(()).to(x.dtype)
            below, above = torch.nextafter(lo32, lo32 - 1), torch.nextafter(hi32, hi32 + 1)
            out = torch.ops.aten.hardtanh_backward(g, x, float(lo32), float(hi32))
            out += torch.ops.aten.hardtanh_backward(g, x, float(below), float(above))
            return out.mul_(0.5), None, None, None
        out = g * ((x > lo) & (x < hi))
        tie = (x == lo) | (x == hi)
        if bool(tie.any()):  # a value on a bound gets half, as minimum / maximum give it
            out = out.addcmul(g, tie.to(g.dtype), value=0.5)
        return out, None, None, None


def clipped_ste(x: torch.Tensor, q: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``q`` (``x`` quantized, already clamped to ``[lo, hi]``) forward, the clipped straight-through
    gradient of ``x`` backward; the same values and gradients as
    ``ste_round(torch.minimum(torch.maximum(x, lo), hi), q)``."""
    return _ClippedSTE.apply(x, q.detach(), lo.to(x).detach(), hi.to(x).detach())


@dataclass(frozen=True)
class LayerSpec:
    """The formats of one layer: ``weights`` and ``acts`` (its input); ``None`` keeps float."""

    weights: Format | None
    acts: Format | None

    @property
    def label(self) -> str:
        return f"W:{self.weights.name if self.weights else 'fp32'} A:{self.acts.name if self.acts else 'fp32'}"


_SHORT = re.compile(r"^w(1\.58|\d+|fp32)a(\d+|fp32)$")


def _spec(value, where: str) -> LayerSpec | None:
    if value is None:
        return None
    if isinstance(value, LayerSpec):
        return value
    if isinstance(value, str):
        m = _SHORT.match(value.strip().lower())
        if m:
            w, a = m.groups()
            wf = "ternary" if w == "1.58" else None if w == "fp32" else f"int{w}_pc"
            af = None if a == "fp32" else f"uint{a}_asym"
            return LayerSpec(get_format(wf), get_format(af))
        raise ValueError(f"{where}: {value!r} is not a layer spec; write 'w4a8' (int weights and activations), "
                         "'w1.58a8' (ternary weights), a pair of format names like ('fp8_e4m3', 'int8'), "
                         "a dict(weights=..., acts=...), or None for float")
    if isinstance(value, Mapping):
        extra = set(value) - {"weights", "acts"}
        if extra:
            raise ValueError(f"{where}: a layer spec dict has keys 'weights' and 'acts', not {sorted(extra)}")
        return LayerSpec(get_format(value.get("weights")), get_format(value.get("acts")))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return LayerSpec(get_format(value[0]), get_format(value[1]))
    raise ValueError(f"{where}: cannot read {value!r} as a layer spec (see wb.quant.quantize's docstring)")


def quant_layers(model: nn.Module) -> list[str]:
    """Names of the layers a config can quantize: every ``nn.Conv2d`` and ``nn.Linear``."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def resolve_config(model: nn.Module, config) -> dict[str, LayerSpec | None]:
    """``{layer name: LayerSpec or None}`` for every quantizable layer of ``model``.

    Raises:
        ValueError: a name or pattern that matches no layer, with the layer names.
    """
    names = quant_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize")
    if isinstance(config, Mapping):
        config = dict(config)
        default = config.pop("default", config.pop("*", None))
    else:
        default, config = config, {}
    out = {n: _spec(default, "default") for n in names}
    patterns = [(k, v) for k, v in config.items() if k not in names]
    exact = [(k, v) for k, v in config.items() if k in names]
    for key, value in patterns:
        hits = fnmatch.filter(names, key)
        if not hits:
            close = [n for n in names if key.split(".")[0] in n][:6] or names[:6]
            raise ValueError(f"quantization config names {key!r}, which is no conv or linear layer of "
                             f"{type(model).__name__} and matches none as a pattern; layers are named like "
                             f"{', '.join(close)} (see wb.quant.quant_layers(model))")
        for n in hits:
            out[n] = _spec(value, key)
    for key, value in exact:
        out[key] = _spec(value, key)
    return out


class Quantizer(nn.Module):
    """Fake-quantizes one tensor to ``fmt``.

    Weights (``kind="weight"``): the scale comes from the tensor at each call (per output channel
    for a ``_pc`` format), unless :meth:`fix_scale` set one (calibration, AdaQuant).
    Activations (``kind="act"``): the range is observed -- during calibration
    (:func:`calibrate`), and as an exponential moving average while the model trains (QAT) -- and
    stored in buffers, so a quantized model saves and loads its ranges with its weights.
    ``clip``: ``"minmax"``, ``"percentile"`` (``percentile`` of the values, both tails) or ``"mse"``
    (the clipping of the observed range that minimizes the squared quantization error).
    """

    def __init__(self, fmt: Format | None, kind: str = "weight", clip: str = "minmax", percentile: float = 99.99,
                 momentum: float = 0.1):
        super().__init__()
        if kind not in ("weight", "act"):
            raise ValueError(f"kind is 'weight' or 'act', got {kind!r}")
        if clip not in CLIP_METHODS:
            raise ValueError(f"clip is one of {CLIP_METHODS}, got {clip!r}")
        self.fmt, self.kind, self.clip, self.percentile, self.momentum = fmt, kind, clip, percentile, momentum
        self.enabled = True
        self.observing = False
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.scale: torch.Tensor | None = None  # a fixed weight scale (a Parameter when learned)

    def extra_repr(self) -> str:
        return f"{self.fmt.name if self.fmt else 'fp32'}, {self.kind}, clip={self.clip}"

    # -- ranges ---------------------------------------------------------------------------------
    def _range_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().float()
        if self.clip == "percentile":
            flat = x.flatten()
            if flat.numel() > 2 ** 20:  # quantile's limit; an evenly strided sample keeps it exact enough
                flat = flat[:: flat.numel() // 2 ** 20 + 1]
            q = torch.tensor([1 - self.percentile / 100, self.percentile / 100])
            lo, hi = torch.quantile(flat, q.to(flat))
            return lo, hi
        return torch.aminmax(x)  # one pass over the tensor, not two

    def observe(self, x: torch.Tensor) -> None:
        """Fold a batch's range into the stored one (running min / max while calibrating, an
        exponential average while training)."""
        lo, hi = self._range_of(x)
        if not bool(self.initialized):
            self.lo.copy_(lo), self.hi.copy_(hi), self.initialized.fill_(True)
        elif self.observing:
            self.lo.copy_(torch.minimum(self.lo, lo) if self.clip == "minmax" else (self.lo + lo) / 2)
            self.hi.copy_(torch.maximum(self.hi, hi) if self.clip == "minmax" else (self.hi + hi) / 2)
        else:
            self.lo.lerp_(lo, self.momentum), self.hi.lerp_(hi, self.momentum)

    def finish_calibration(self, samples: torch.Tensor | None = None) -> None:
        """After observing: with ``clip="mse"``, shrink the range to the MSE-optimal clipping of ``samples``."""
        self.observing = False
        if self.clip == "mse" and samples is not None and isinstance(self.fmt, IntFormat):
            best = None
            for frac in torch.linspace(0.3, 1.0, 36):
                lo, hi = self.lo * frac, self.hi * frac
                s, z = self.fmt.scale_for_range(lo, hi)
                err = float((self.fmt.quantize(samples, s, z) - samples).pow(2).mean())
                if best is None or err < best[0]:
                    best = (err, lo.clone(), hi.clone())
            self.lo.copy_(best[1]), self.hi.copy_(best[2])

    def fix_scale(self, scale: torch.Tensor, learnable: bool = False) -> None:
        """Use ``scale`` for the weights from now on (a Parameter when ``learnable``: AdaQuant)."""
        scale = scale.detach().clone().float().to(self.lo.device)
        self.__dict__.pop("scale", None)
        self._parameters.pop("scale", None), self._buffers.pop("scale", None)
        if learnable:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def weight_scale(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        fmt = self.fmt
        if self.scale is not None:
            return self.scale, None
        if isinstance(fmt, IntFormat):
            if fmt.per_channel:
                lo, hi = torch.aminmax(w.detach().flatten(1), dim=1)
            else:
                lo, hi = torch.aminmax(w.detach())
            if self.clip == "mse":
                return _mse_weight_scale(fmt, w.detach(), lo, hi)
            return fmt.scale_for_range(lo, hi)
        if isinstance(fmt, FloatFormat):  # scale so that the largest weight lands on the largest value
            return (w.detach().abs().max() / fmt.max_finite).clamp_min(1e-12), None
        return fmt.scale_of(w), None  # ternary

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.fmt
        if fmt is None or not self.enabled:
            return x
        if self.kind == "weight":
            scale, zp = self.weight_scale(x)
            if isinstance(fmt, IntFormat):
                s = scale.reshape((-1,) + (1,) * (x.ndim - 1)) if scale.ndim == 1 else scale
                if isinstance(scale, nn.Parameter):  # a learned scale (AdaQuant, LSQ): gradients reach it
                    v = torch.clamp(x / s, fmt.qmin, fmt.qmax)
                    return (v + (torch.round(v) - v).detach()) * s
                q = fmt.quantize(x.detach(), scale, zp)
                if not (torch.is_grad_enabled() and x.requires_grad):
                    return q  # inference: the clipped straight-through estimator has nothing to do
                z = torch.zeros_like(s) if zp is None else zp.reshape(s.shape).to(s)
                return clipped_ste(x, q, (fmt.qmin - z) * s, (fmt.qmax - z) * s)
            return ste_round(x, fmt.quantize(x, scale))
        # activations
        if self.training or self.observing:
            self.observe(x)
        if self.observing:
            return x
        if not bool(self.initialized):
            raise RuntimeError("this quantized model's activation ranges are not calibrated: run "
                               "wb.quant.calibrate(qmodel, calibration_inputs) first, or train it with wb.fit (QAT)")
        return self.quantize_act(x)

    def quantize_act(self, x: torch.Tensor) -> torch.Tensor:
        fmt = self.fmt
        if isinstance(fmt, IntFormat):
            s, z = fmt.scale_for_range(self.lo, self.hi)
            if not (torch.is_grad_enabled() and x.requires_grad):
                return fmt.quantize(x, s, z)  # its clamp to the grid is the clip
            lo, hi = (fmt.qmin - z) * s, (fmt.qmax - z) * s
            return clipped_ste(x, fmt.quantize(x.detach(), s, z), lo, hi)  # its clamp to the grid is the clip
        if isinstance(fmt, FloatFormat):
            amax = torch.maximum(self.lo.abs(), self.hi.abs())
            s = (amax / fmt.max_finite).clamp_min(1e-12)
            xc = x.clamp(-amax, amax)
            return ste_round(xc, fmt.quantize(xc.detach(), s))
        return ste_round(x, fmt.quantize(x))  # ternary activations: absmean of the tensor


def _mse_weight_scale(fmt: IntFormat, w: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Per tensor or per channel, the shrink of the min/max range with the least squared error."""
    best_err, best = None, None
    for frac in torch.linspace(0.3, 1.0, 36):
        s, z = fmt.scale_for_range(lo * frac, hi * frac)
        q = fmt.quantize(w, s, z)
        err = (q - w).pow(2).flatten(1).sum(1) if lo.ndim == 1 else (q - w).pow(2).sum().reshape(1)
        if best_err is None:
            best_err, best = err, (s.clone(), z.clone())
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = (torch.where(better, s, best[0]), torch.where(better, z, best[1]))
    return best


class _QuantMixin:
    spec: LayerSpec

    def _setup_quant(self, spec: LayerSpec, act_clip: str, weight_clip: str):
        self.spec = spec
        self.wq = Quantizer(spec.weights, "weight", clip=weight_clip)
        self.aq = Quantizer(spec.acts, "act", clip=act_clip)

    @property
    def quantized_weight(self) -> torch.Tensor:
        return self.wq(self.weight)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` on a fake-quantized input and weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.aq(x), self.wq(self.weight), self.bias)


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` on a fake-quantized input and weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.aq(x), self.wq(self.weight), self.bias)


def _swap(layer: nn.Module, spec: LayerSpec, act_clip: str, weight_clip: str) -> nn.Module:
    layer.__class__ = QuantConv2d if isinstance(layer, nn.Conv2d) else QuantLinear  # in place, on the copy
    layer._setup_quant(spec, act_clip, weight_clip)
    return layer


def quantize(model: nn.Module, config="w8a8", act_clip: str = "minmax", weight_clip: str = "minmax") -> nn.Module:
    """A fake-quantized copy of ``model``: each conv / linear layer gets the formats ``config`` gives
    it (see the module docstring); ``model`` itself is untouched.

    Activation ranges start empty: run :func:`calibrate` on a few batches (post-training
    quantization), or train the copy with ``wb.fit`` (QAT: ranges follow a moving average).

    Example:
        >>> import workbench as wb
        >>> q = wb.quant.quantize(wb.create_model("resnet8"), {"default": "w4a8", "fc": "w8a8"})
        >>> type(q.fc).__name__, q.fc.spec.label
        ('QuantLinear', 'W:int8_pc A:uint8_asym')
    """
    return quantize_(copy.deepcopy(model), config, act_clip=act_clip, weight_clip=weight_clip)


def quantize_(model: nn.Module, config="w8a8", act_clip: str = "minmax", weight_clip: str = "minmax") -> nn.Module:
    """:func:`quantize` in place: ``model``'s own layers become quantized layers (their weights kept).
    Returns ``model``."""
    if any(isinstance(m, _QuantMixin) for m in model.modules()):
        raise ValueError("this model is already quantized; quantize the float model, or change formats with "
                         "wb.quant.set_policy")
    specs = resolve_config(model, config)
    modules = dict(model.named_modules())
    for name, spec in specs.items():
        if spec is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, _swap(modules[name], spec, act_clip, weight_clip))
    model.train(model.training)  # the new quantizers follow the model's mode
    model.quant_config = {n: (s.label if s else "fp32") for n, s in specs.items()}
    return model


class QAT(Algorithm):
    """Quantization-aware training as an algorithm of ``wb.fit``: at ``init`` the model's layers become
    fake-quantized layers (:func:`quantize_`, in place, before the optimizer is built), so that
    ``wb.train.train_model(..., algorithms=[wb.quant.QAT("w1.58a8")])`` trains, caches and rebuilds a
    quantized model. Activation ranges follow a moving average while training."""

    def __init__(self, config="w8a8", act_clip: str = "minmax", weight_clip: str = "minmax"):
        super().__init__(config=config, act_clip=act_clip, weight_clip=weight_clip)
        self.quant = dict(config=config, act_clip=act_clip, weight_clip=weight_clip)

    def transform(self, model: nn.Module) -> nn.Module:
        """Quantize ``model`` in place (``train_model`` calls this on a model it rebuilds from the cache)."""
        if not any(isinstance(m, _QuantMixin) for m in model.modules()):
            quantize_(model, **self.quant)
        return model

    def on_init(self, state) -> None:
        self.transform(state.model)


def act_ranges(model: nn.Module) -> pd.DataFrame:
    """The calibrated input range of every quantized layer: columns ``layer, lo, hi``."""
    rows = [(n, float(m.aq.lo), float(m.aq.hi)) for n, m in model.named_modules()
            if isinstance(m, _QuantMixin) and m.aq.fmt is not None]
    return pd.DataFrame(rows, columns=["layer", "lo", "hi"])


def set_quant_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every quantizer of ``model`` on or off (off: the float model, ranges still observed)."""
    for m in model.modules():
        if isinstance(m, Quantizer):
            m.enabled = enabled


@torch.no_grad()
def calibrate(model: nn.Module, data, batches: int | None = None, batch_size: int = 256) -> nn.Module:
    """Observe activation ranges of a quantized model on calibration data (post-training quantization).

    ``data``: a tensor of inputs ``[n, c, h, w]`` (normalized, as the model takes them), an
    ``ImageDataset`` or a loader of ``(x, y)``. BatchNorm statistics are not changed (eval mode).
    With ``clip="mse"`` the ranges are then shrunk to the MSE-optimal clipping.
    """
    qs = [m for m in model.modules() if isinstance(m, Quantizer) and m.kind == "act" and m.fmt is not None]
    if not qs:
        raise ValueError("calibrate expects a model from wb.quant.quantize with quantized activations")
    was = model.training
    model.eval()
    for q in qs:
        q.initialized.fill_(False)
        q.observing = True
    keep: dict[int, list[torch.Tensor]] = {id(q): [] for q in qs if q.clip == "mse"}
    handles = [q.register_forward_pre_hook(lambda m, a: keep[id(m)].append(a[0].detach().flatten()[::7][:20000]))
               for q in qs if q.clip == "mse"]
    try:
        _forward_all(model, data, batches, batch_size)
    finally:
        for h in handles:
            h.remove()
        for q in qs:
            q.finish_calibration(torch.cat(keep[id(q)]) if id(q) in keep and keep[id(q)] else None)
        model.train(was)
    return model


def _forward_all(model: nn.Module, data, batches: int | None, batch_size: int) -> None:
    """Run ``model`` on the first ``batches`` batches of ``data`` (all when ``None``)."""
    for i, x in enumerate(_batches(data, batch_size)):
        if batches is not None and i >= batches:
            break
        model(x)


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    from ..data import ImageDataset, Loader

    if isinstance(data, torch.Tensor):
        if data.ndim < 2:
            raise ValueError(f"calibration data should be a batch of inputs [n, ...], got shape {tuple(data.shape)}")
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    if isinstance(data, ImageDataset):
        data = Loader(data, batch_size=batch_size, shuffle=False)
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _trace_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, bn) name pairs where the BatchNorm's input is exactly the conv's output."""
    outs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(lambda mod, a, o, n=name: outs.__setitem__(id(o), n)))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(
                lambda mod, a, n=name: pairs.append((outs[id(a[0])], n)) if id(a[0]) in outs else None))
    _eval_forward(model, example, handles)
    return pairs


@torch.no_grad()
def fold_bn(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with each BatchNorm that directly follows a convolution folded into it:
    ``W' = W * gamma / sqrt(var + eps)`` per output channel, ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``;
    the BatchNorm becomes ``nn.Identity``. Equal to ``model`` in eval mode (a test)."""
    if any(isinstance(m, _QuantMixin) for m in model.modules()):
        raise ValueError("fold BatchNorm before quantizing: wb.quant.quantize(wb.quant.fold_bn(model), ...)")
    out = copy.deepcopy(model)
    pairs = _trace_pairs(out, _example_input(out) if example is None else example)
    modules = dict(out.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        g = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        b = bn.bias if bn.affine else torch.zeros_like(bn.running_var)
        k = g / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(k.reshape(-1, 1, 1, 1))
        old = conv.bias if conv.bias is not None else torch.zeros_like(k)
        conv.bias = nn.Parameter(b + (old - bn.running_mean) * k)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(modules[parent_name] if parent_name else out, child, nn.Identity())
    return out


@torch.no_grad()
def cost(model: nn.Module, example: torch.Tensor | None = None) -> pd.DataFrame:
    """Per conv / linear layer: formats, parameters, bits of weights, multiply-accumulates and
    bit-operations (MACs x weight bits x activation bits; a float layer counts 32 bits).

    ``df.attrs`` holds the totals: ``weight_bits``, ``weight_mb`` (megabytes of conv / linear
    weights), ``macs``, ``bops`` (in giga bit-operations: ``gbops``)."""
    enabled = [(q, q.enabled) for q in model.modules() if isinstance(q, Quantizer)]
    set_quant_enabled(model, False)  # shapes only: the float forward is enough, and needs no calibration
    try:
        macs = layer_macs(model, example)
    finally:
        for q, e in enabled:
            q.enabled = e
    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        spec = getattr(m, "spec", None)
        wb = spec.weights.bits if spec and spec.weights else 32
        ab = spec.acts.bits if spec and spec.acts else 32
        n = m.weight.numel()
        rows.append(dict(layer=name, weights=spec.weights.name if spec and spec.weights else "fp32",
                         acts=spec.acts.name if spec and spec.acts else "fp32", params=n, weight_bits=n * wb,
                         macs=macs.get(name, 0), bops=macs.get(name, 0) * wb * ab))
    df = pd.DataFrame(rows)
    df.attrs.update(weight_bits=float(df.weight_bits.sum()), weight_mb=float(df.weight_bits.sum()) / 8e6,
                    macs=int(df.macs.sum()), gbops=float(df.bops.sum()) / 1e9)
    return df
