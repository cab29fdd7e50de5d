"""Post-training calibration: bias correction, BatchNorm re-estimation, AdaQuant, ZeroQ's distilled data
and per-layer sensitivity.

* Bias correction: each quantized layer's mean output error per channel, measured on calibration
  inputs, is subtracted through its bias (the empirical form of Nagel et al. 2019, *Data-Free
  Quantization*, https://arxiv.org/abs/1906.04721, section 4.2).
* AdaQuant (Hubara et al. 2021, *Accurate Post Training Quantization With Small Calibration
  Sets*, https://arxiv.org/abs/2006.10518, eq. 2): layer by layer in forward order, minimize
  ``|| W x - Q(W') Q(x') ||^2`` over the layer's weights, weight scales, bias and the quantization
  range of its input, where ``x`` is the float model's input to the layer and ``x'`` the quantized
  model's (so later layers absorb the error of earlier ones).
* ZeroQ (Cai et al. 2020, https://arxiv.org/abs/2001.00281, eq. 2): inputs optimized from noise
  until every BatchNorm layer sees, in the batch, the mean and standard deviation it stored in
  training; the same paper's sensitivity of a layer to a format is the KL divergence between the
  float model's output distribution and the one with only that layer quantized (eq. 3).
"""
from __future__ import annotations

import copy

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .formats import IntFormat, get_format
from .layers import Quantizer, _batches, _eval_forward, _forward_all, _QuantMixin, calibrate, fold_bn, quant_layers, quantize

__all__ = ["ptq", "bias_correction", "reestimate_bn", "adaquant", "layer_errors", "distill_data", "bn_statistics",
           "bn_match", "sensitivity", "check_calibration_data"]


def ptq(model: nn.Module, config, calib: torch.Tensor, method: str = "naive", fold: bool = True,
        act_clip: str = "minmax", weight_clip: str = "minmax", adaquant_iters: int = 200,
        adaquant_act_range: bool = True, seed: int = 0, progress: bool = False) -> nn.Module:
    """Post-training quantization in one call: fold BatchNorm (``fold``), quantize with ``config``,
    calibrate the activation ranges on ``calib``, then correct by ``method``:

    * ``"naive"``: rounding to nearest, nothing more;
    * ``"bias_correction"``: each layer's mean output error removed through its bias;
    * ``"adaquant"``: AdaQuant's layer-wise optimization of weights, scales, biases and (with
      ``adaquant_act_range``) the activations' ranges, ``adaquant_iters`` steps per layer, then bias
      correction of what remains.

    Returns the quantized copy (``model`` is untouched), in eval mode.
    """
    methods = ("naive", "bias_correction", "adaquant")
    if method not in methods:
        raise ValueError(f"method is one of {methods}, got {method!r}")
    check_calibration_data(model, calib, 16 if method == "adaquant" else 1)
    was = model.training
    model.eval()
    try:
        base = fold_bn(model) if fold else copy.deepcopy(model)
    finally:
        model.train(was)
    q = calibrate(quantize(base, config, act_clip=act_clip, weight_clip=weight_clip), calib)
    if method == "adaquant":
        adaquant(q, base, calib, iters=adaquant_iters, act_range=adaquant_act_range, seed=seed, progress=progress)
    if method in ("bias_correction", "adaquant"):
        bias_correction(q, base, calib)
    return q.eval()


def check_calibration_data(model: nn.Module, data: torch.Tensor, minimum: int = 1, what: str = "calibration") -> None:
    """Refuse calibration inputs of the wrong type or shape, or fewer than ``minimum``."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{what} data should be a tensor of inputs [n, channels, height, width], "
                        f"got {type(data).__name__}; use dataset.normalize(dataset.images[:n]) for an ImageDataset")
    c, s = getattr(model, "in_chans", None), getattr(model, "img_size", None)
    want = f"[n, {c or 'channels'}, {s or 'h'}, {s or 'w'}]"
    if data.ndim != 4 or (c is not None and data.shape[1] != c) or (s and tuple(data.shape[-2:]) != (s, s)):
        raise ValueError(f"{what} data has shape {tuple(data.shape)}; this model takes {want}")
    if not torch.is_floating_point(data):
        raise TypeError(f"{what} data should be float (normalized images), got {data.dtype}")
    if len(data) < minimum:
        raise ValueError(f"{what} needs at least {minimum} inputs, got {len(data)}; pass more images "
                         "(AdaQuant's paper uses 100 to 1,000)")


def _qlayers(qmodel: nn.Module) -> list[tuple[str, nn.Module]]:
    out = [(n, m) for n, m in qmodel.named_modules() if isinstance(m, _QuantMixin)]
    if not out:
        raise ValueError("expected a model from wb.quant.quantize (it has no quantized layer)")
    return out


def _in_forward_order(qmodel: nn.Module, data: torch.Tensor, visit) -> None:
    """Run ``data`` through ``qmodel`` as one batch (eval mode, no gradients) and, just before each
    quantized layer runs for the first time, call ``visit(name, layer, x)`` with that layer's input for
    all of ``data``. What ``visit`` changes in the layer (its bias, weights, ranges) shapes the input of
    every later layer: one forward pass does what a pass per layer up to it would."""
    names = {id(m): n for n, m in _qlayers(qmodel)}
    seen: set[int] = set()

    def hook(mod, args):
        if id(mod) not in seen:
            seen.add(id(mod))
            visit(names[id(mod)], mod, args[0].detach())

    _eval_forward(qmodel, data, [m.register_forward_pre_hook(hook) for m in qmodel.modules() if id(m) in names])


@torch.no_grad()
def _layer_inputs(model: nn.Module, names: list[str], data: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """The input each module in ``names`` receives (its first call per pass) for each of ``data``, from
    one pass over ``data`` in eval mode."""
    modules = dict(model.named_modules())
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    batch_of: dict[str, int] = {}
    step = [0]

    def hook(mod, args, name):
        if batch_of.get(name) != step[0]:
            batch_of[name] = step[0]
            got[name].append(args[0].detach())

    handles = [modules[n].register_forward_pre_hook(lambda m, a, n=n: hook(m, a, n)) for n in names]
    was = model.training
    model.eval()
    try:
        for i, x in enumerate(_batches(data, batch_size)):
            step[0] = i
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: torch.cat(v) for n, v in got.items() if v}


def _float_forward(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    w = layer.weight if weight is None else weight
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, w, layer.bias)
    return F.linear(x, w, layer.bias)


def _ensure_bias(layer: nn.Module) -> None:
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], device=layer.weight.device))


@torch.no_grad()
def bias_correction(qmodel: nn.Module, float_model: nn.Module, data: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """Correct each quantized layer's bias (in place, forward order) so that its mean output per
    channel on ``data`` equals the float layer's on the same input. Returns ``qmodel``.

    ``data`` goes through ``qmodel`` once, as one batch; ``batch_size`` bounds the slices in which
    each layer's two outputs are compared."""
    check_calibration_data(qmodel, data, 8)
    floats = dict(float_model.named_modules())

    def correct(name: str, layer: nn.Module, x: torch.Tensor) -> None:
        total, count = 0.0, 0
        for xb in _batches(x, batch_size):
            diff = _float_forward(floats[name], xb) - layer(xb)  # [batch, channels, ...]
            total = total + diff.sum([0] + list(range(2, diff.ndim)))
            count += diff.numel() // diff.shape[1]
        _ensure_bias(layer)
        layer.bias += total / count

    _in_forward_order(qmodel, data, correct)
    return qmodel


@torch.no_grad()
def reestimate_bn(model: nn.Module, data, batches: int | None = None, batch_size: int = 256) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance on ``data`` (in place) as a plain average
    over the batches, the quantizers' ranges left as they are. Returns ``model``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to re-estimate")
    was = model.training
    moms = [b.momentum for b in bns]
    model.train()
    for m in model.modules():
        if isinstance(m, Quantizer):
            m.eval()  # ranges stay fixed
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average
    try:
        _forward_all(model, data, batches, batch_size)
    finally:
        for b, mom in zip(bns, moms):
            b.momentum = mom
        model.train(was)
    return model


def adaquant(qmodel: nn.Module, float_model: nn.Module, data: torch.Tensor, iters: int = 200, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, act_range: bool = True, act_lr: float = 1e-2,
             progress: bool = False) -> nn.Module:
    """AdaQuant: layer by layer, optimize weights, weight scales, bias and (``act_range``) the range of
    the input's quantizer of ``qmodel`` (in place) so that each quantized layer reproduces the float
    layer's output (see the module docstring).

    Args:
        data: calibration inputs ``[n, c, h, w]``, at least 16 (the paper: 100 to 1,000 images).
        iters: Adam steps per layer, each on a random ``batch_size`` slice of the calibration set.
        lr: Adam's step size for weights, weight scales and bias.
        act_range: also learn the clipping range ``[lo, hi]`` of each layer's integer input quantizer
            (the paper's quantization step of the activations), as factors of the calibrated ends with
            step size ``act_lr``; the rounding passes gradients as in LSQ (Esser et al. 2020), so that a
            narrower range trades clipping error against rounding error.
    Returns:
        ``qmodel``, with fixed (no longer per-call) weight scales.
    """
    check_calibration_data(qmodel, data, 16, "AdaQuant's calibration")
    floats = dict(float_model.named_modules())
    layers = _qlayers(qmodel)
    float_inputs = _layer_inputs(float_model, [n for n, _ in layers], data, 256)  # one pass of the float model
    gen = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(layers), desc="AdaQuant", unit="layer")

    def fit(name: str, layer: nn.Module, x_q: torch.Tensor) -> None:
        with torch.no_grad():
            target = _float_forward(floats[name], float_inputs.pop(name))
        loss = _fit_layer(layer, x_q, target, iters, lr, batch_size, gen, act_range, act_lr)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(layer=name, mse=f"{loss:.2e}")

    try:
        _in_forward_order(qmodel, data, fit)
    finally:
        if bar is not None:
            bar.close()
    return qmodel


def _learned_act_quant(fmt: IntFormat, lo: torch.Tensor, hi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Quantizer.quantize_act`` for the range ``[lo, hi]``, differentiable in ``lo`` and ``hi``: the
    same values, with straight-through rounding of the input and of the zero point (LSQ's gradient)."""
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)  # as scale_for_range: the range holds zero
    if fmt.symmetric:
        s, z = (torch.maximum(-lo, hi) / fmt.qmax).clamp_min(1e-8), 0.0
    else:
        s = ((hi - lo) / (fmt.qmax - fmt.qmin)).clamp_min(1e-8)
        z = fmt.qmin - lo / s
        z = (z + (torch.round(z) - z).detach()).clamp(fmt.qmin, fmt.qmax)
    v = torch.clamp(x * (1.0 / s) + z, fmt.qmin, fmt.qmax)  # the reciprocal, as Quantizer's kernels
    return (v + (torch.round(v) - v).detach() - z) * s


def _fit_layer(layer: nn.Module, x_q: torch.Tensor, target: torch.Tensor, iters: int, lr: float, batch_size: int,
               gen: torch.Generator, act_range: bool, act_lr: float) -> float:
    """AdaQuant's optimization of one layer (in place); returns the last step's loss."""
    wq: Quantizer = layer.wq
    aq: Quantizer = layer.aq
    trainable = [layer.weight]
    if wq.fmt is not None and hasattr(wq.fmt, "qmin"):
        scale, _ = wq.weight_scale(layer.weight)
        wq.fix_scale(scale, learnable=True)
        trainable.append(wq.scale)
    _ensure_bias(layer)
    trainable.append(layer.bias)
    groups = [{"params": trainable, "lr": lr}]
    learn_range = act_range and aq.enabled and isinstance(aq.fmt, IntFormat) and bool(aq.initialized)
    if learn_range:
        lo0, hi0 = aq.lo.detach().clone(), aq.hi.detach().clone()
        factors = nn.Parameter(torch.ones(2, device=lo0.device))  # lo = lo0 * f[0], hi = hi0 * f[1]
        groups.append({"params": [factors], "lr": act_lr})
        quant_in = lambda x: _learned_act_quant(aq.fmt, lo0 * factors[0], hi0 * factors[1], x)  # noqa: E731
    else:
        with torch.no_grad():
            x_q = aq(x_q)  # fixed ranges: the quantized input once, not at every step
        quant_in = lambda x: x  # noqa: E731
    flags = [p.requires_grad for p in trainable]
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.Adam(groups)
    loss = torch.zeros(())
    try:
        with torch.enable_grad():
            for _ in range(iters):
                idx = torch.randint(len(x_q), (min(batch_size, len(x_q)),), generator=gen)
                loss = F.mse_loss(_float_forward(layer, quant_in(x_q[idx]), wq(layer.weight)), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    if isinstance(wq.scale, nn.Parameter):
                        wq.scale.clamp_(min=1e-8)
                    if learn_range:
                        factors.clamp_(min=1e-3)
    finally:
        for p, f in zip(trainable, flags):
            p.requires_grad_(f)
        if isinstance(wq.scale, nn.Parameter):
            wq.fix_scale(wq.scale.detach(), learnable=False)
        if learn_range:
            with torch.no_grad():
                aq.lo.copy_((lo0 * factors[0]).clamp(max=0)), aq.hi.copy_((hi0 * factors[1]).clamp(min=0))
    return float(loss)


@torch.no_grad()
def layer_errors(qmodel: nn.Module, float_model: nn.Module, data: torch.Tensor, batch_size: int = 64) -> pd.DataFrame:
    """How far each quantized layer's output lies from the float model's same layer, each model run on
    ``data`` from the start (so the error a layer shows includes what reached it from earlier layers):
    ``sum (y_q - y)^2 / sum y^2`` over ``data``. Columns ``layer, depth, rel_error``, in forward order."""
    check_calibration_data(qmodel, data, 1, "layer_errors")
    names = [n for n, _ in _qlayers(qmodel)]
    modules = {"q": dict(qmodel.named_modules()), "f": dict(float_model.named_modules())}
    missing = [n for n in names if n not in modules["f"]]
    if missing:
        raise ValueError(f"float_model has no layer {missing[0]!r}: pass the float model qmodel was made from "
                         "(after fold_bn, when ptq folded BatchNorm)")
    err = dict.fromkeys(names, 0.0)
    ref = dict.fromkeys(names, 0.0)
    outs: dict[str, dict[str, torch.Tensor]] = {"q": {}, "f": {}}
    handles = [modules[k][n].register_forward_hook(lambda m, a, o, k=k, n=n: outs[k].setdefault(n, o))
               for k in ("q", "f") for n in names]
    was = qmodel.training, float_model.training
    qmodel.eval(), float_model.eval()
    order: list[str] = []
    try:
        for x in _batches(data, batch_size):
            outs["q"].clear(), outs["f"].clear()
            qmodel(x), float_model(x)
            order = order or [n for n in outs["q"] if n in outs["f"]]  # the order the layers ran in
            for n in order:
                err[n] += float((outs["q"][n] - outs["f"][n]).pow(2).sum())
                ref[n] += float(outs["f"][n].pow(2).sum())
    finally:
        for h in handles:
            h.remove()
        qmodel.train(was[0]), float_model.train(was[1])
    return pd.DataFrame({"layer": order, "depth": range(len(order)),
                         "rel_error": [err[n] / max(ref[n], 1e-30) for n in order]})


def bn_statistics(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorm layers whose stored statistics ZeroQ matches (raises when there is none)."""
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats and m.running_mean is not None]
    if not bns:
        raise ValueError(f"ZeroQ's distilled data matches BatchNorm statistics, and {type(model).__name__} has no "
                         "BatchNorm layer with running statistics; calibrate it on real images or Gaussian noise")
    return bns


def distill_data(model: nn.Module, n: int = 32, iters: int = 500, lr: float = 0.5, seed: int = 0,
                 progress: bool = False, return_history: bool = False):
    """ZeroQ's distilled data: ``n`` inputs optimized from Gaussian noise (Adam, ``iters`` steps, the
    step size decaying from ``lr`` to 0 on a cosine) to
    minimize ``sum_i ||mu_i(x) - mu_i||^2 + ||sigma_i(x) - sigma_i||^2`` over the model's BatchNorm
    layers ``i`` (batch statistics of ``x`` against the stored running ones).

    Returns:
        the inputs ``[n, c, h, w]`` (normalized, as the model takes them); with ``return_history``,
        also the loss per step.
    """
    bns = bn_statistics(model)
    c, s = getattr(model, "in_chans", 3), getattr(model, "img_size", None) or 32
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, s, s, generator=gen).to(dev).requires_grad_(True)
    stats: list[torch.Tensor] = []

    def hook(mod, args):
        a = args[0]
        dims = [0] + list(range(2, a.ndim))
        mu, sd = a.mean(dims), a.var(dims, unbiased=False).add(mod.eps).sqrt()
        stats.append((mu - mod.running_mean).pow(2).sum() + (sd - (mod.running_var + mod.eps).sqrt()).pow(2).sum())

    handles = [m.register_forward_pre_hook(hook) for _, m in bns]
    was = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([x], lr=lr)
    # a cosine decay of the step size: a constant one of 0.5 keeps jumping out of the minimum it found
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1))
    history = []
    it = range(iters)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="ZeroQ distilled data", unit="step")
    try:
        for _ in it:
            stats.clear()
            model(x)
            loss = torch.stack(stats).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append(loss.item())
    finally:
        for h in handles:
            h.remove()
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was)
    out = x.detach()
    return (out, history) if return_history else out


@torch.no_grad()
def bn_match(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Per BatchNorm layer and channel: the batch mean and standard deviation of the layer's input
    on ``x`` beside the stored running ones (what ZeroQ's distilled data is made to match).
    Columns ``layer, depth, channel, batch_mean, stored_mean, batch_std, stored_std``."""
    bns = bn_statistics(model)
    rows = []

    def hook(mod, args, name, depth):
        a = args[0]
        dims = [0] + list(range(2, a.ndim))
        mu, sd = a.mean(dims), a.var(dims, unbiased=False).sqrt()
        for c in range(len(mu)):
            rows.append((name, depth, c, float(mu[c]), float(mod.running_mean[c]), float(sd[c]),
                         float(mod.running_var[c].sqrt())))

    handles = [m.register_forward_pre_hook(lambda mod, a, n=n, d=d: hook(mod, a, n, d)) for d, (n, m) in enumerate(bns)]
    _eval_forward(model, x, handles)
    return pd.DataFrame(rows, columns=["layer", "depth", "channel", "batch_mean", "stored_mean", "batch_std", "stored_std"])


@torch.no_grad()
def sensitivity(model: nn.Module, data: torch.Tensor, formats=("int2_pc", "int4_pc", "int8_pc"),
                layers: list[str] | None = None, labels: torch.Tensor | None = None, batch_size: int = 256) -> pd.DataFrame:
    """Each layer's sensitivity to each weight format, with only that layer's weights quantized
    (activations float): a table ``[layer x format]``, larger is more sensitive.

    Without ``labels``: ZeroQ's mean KL divergence ``KL(p_float || p_quant)`` of the output
    distributions on ``data`` (no label needed). With ``labels``: the increase of the mean
    cross-entropy loss on ``(data, labels)`` (Hubara et al.'s per-layer degradation)."""
    check_calibration_data(model, data, 1, "sensitivity")
    if labels is not None and len(labels) != len(data):
        raise ValueError(f"labels has {len(labels)} entries for {len(data)} inputs")
    names = quant_layers(model) if layers is None else list(layers)
    was = model.training
    model.eval()
    ref = [F.log_softmax(model(x), -1) for x in _batches(data, batch_size)]
    ys = list(_batches(labels[:, None], batch_size)) if labels is not None else None

    def score(q: nn.Module) -> float:
        total = 0.0
        for i, (x, r) in enumerate(zip(_batches(data, batch_size), ref)):
            logp = F.log_softmax(q(x), -1)
            if ys is None:
                total += float(F.kl_div(logp, r, log_target=True, reduction="sum"))
            else:
                y = ys[i][:, 0]
                total += float(F.nll_loss(logp, y, reduction="sum") - F.nll_loss(r, y, reduction="sum"))
        return total / len(data)

    table = {}
    for fmt in formats:
        q = quantize(model, {"default": None, **{n: (fmt, None) for n in names}})
        q.eval()
        qmods = dict(q.named_modules())
        for n in names:
            qmods[n].wq.enabled = False
        col = {}
        for n in names:
            qmods[n].wq.enabled = True
            col[n] = score(q)
            qmods[n].wq.enabled = False
        table[getattr(get_format(fmt), "name", fmt)] = col
    model.train(was)
    return pd.DataFrame(table)
