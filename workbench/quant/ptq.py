"""Post-training calibration: bias correction, BatchNorm re-estimation, AdaQuant, ZeroQ's distilled data
and per-layer sensitivity.

* Bias correction: each quantized layer's mean output error per channel, measured on calibration
  inputs, is subtracted through its bias (the empirical form of Nagel et al. 2019, *Data-Free
  Quantization*, https://arxiv.org/abs/1906.04721, section 4.2).
* AdaQuant (Hubara et al. 2021, *Accurate Post Training Quantization With Small Calibration
  Sets*, https://arxiv.org/abs/2006.10518, eq. 2): layer by layer in forward order, minimize
  ``|| W x - Q(W') Q(x') ||^2`` over the layer's weights, weight scales and bias, where ``x`` is the
  float model's input to the layer and ``x'`` the quantized model's (so later layers absorb the
  error of earlier ones).
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

from .formats import get_format
from .layers import Quantizer, _batches, _eval_forward, _forward_all, _QuantMixin, calibrate, fold_bn, quant_layers, quantize

__all__ = ["ptq", "bias_correction", "reestimate_bn", "adaquant", "distill_data", "bn_statistics", "bn_match", "sensitivity",
           "check_calibration_data"]


def ptq(model: nn.Module, config, calib: torch.Tensor, method: str = "naive", fold: bool = True,
        act_clip: str = "minmax", weight_clip: str = "minmax", adaquant_iters: int = 200, seed: int = 0,
        progress: bool = False) -> nn.Module:
    """Post-training quantization in one call: fold BatchNorm (``fold``), quantize with ``config``,
    calibrate the activation ranges on ``calib``, then correct by ``method``:

    * ``"naive"``: rounding to nearest, nothing more;
    * ``"bias_correction"``: each layer's mean output error removed through its bias;
    * ``"adaquant"``: AdaQuant's layer-wise optimization of weights, scales and biases, then bias
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
        adaquant(q, base, calib, iters=adaquant_iters, seed=seed, progress=progress)
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


@torch.no_grad()
def _inputs_of(model: nn.Module, name: str, data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The input tensor that module ``name`` receives for each of ``data`` (eval mode)."""
    module = dict(model.named_modules())[name]
    got: list[torch.Tensor] = []

    def stop(mod, args):
        got.append(args[0].detach())
        raise _Stop

    h = module.register_forward_pre_hook(stop)
    was = model.training
    model.eval()
    try:
        for x in _batches(data, batch_size):
            try:
                model(x)
            except _Stop:
                pass
    finally:
        h.remove()
        model.train(was)
    return torch.cat(got)


class _Stop(Exception):
    """Ends a forward pass once the wanted input has been seen."""


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
    channel on ``data`` equals the float layer's on the same input. Returns ``qmodel``."""
    check_calibration_data(qmodel, data, 8)
    floats = dict(float_model.named_modules())
    for name, layer in _qlayers(qmodel):
        x = _inputs_of(qmodel, name, data, batch_size)
        ref = _float_forward(floats[name], x)
        out = layer(x)
        dims = [0] + list(range(2, out.ndim))
        _ensure_bias(layer)
        layer.bias += (ref - out).mean(dims)
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
             batch_size: int = 64, seed: int = 0, progress: bool = False) -> nn.Module:
    """AdaQuant: layer by layer, optimize weights, weight scales and bias of ``qmodel`` (in place) so that
    each quantized layer reproduces the float layer's output (see the module docstring).

    Args:
        data: calibration inputs ``[n, c, h, w]``, at least 16 (the paper: 100 to 1,000 images).
        iters: Adam steps per layer, each on a random ``batch_size`` slice of the calibration set.
    Returns:
        ``qmodel``, with fixed (no longer per-call) weight scales.
    """
    check_calibration_data(qmodel, data, 16, "AdaQuant's calibration")
    floats = dict(float_model.named_modules())
    gen = torch.Generator().manual_seed(seed)
    layers = _qlayers(qmodel)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(layers), desc="AdaQuant", unit="layer")
    for name, layer in layers:
        x_q = _inputs_of(qmodel, name, data, 256)
        with torch.no_grad():
            target = _float_forward(floats[name], _inputs_of(float_model, name, data, 256))
        wq: Quantizer = layer.wq
        trainable = [layer.weight]
        if wq.fmt is not None and hasattr(wq.fmt, "qmin"):
            scale, _ = wq.weight_scale(layer.weight)
            wq.fix_scale(scale, learnable=True)
            trainable.append(wq.scale)
        _ensure_bias(layer)
        trainable.append(layer.bias)
        flags = [p.requires_grad for p in trainable]
        for p in trainable:
            p.requires_grad_(True)
        opt = torch.optim.Adam(trainable, lr=lr)
        was = layer.training
        layer.eval()
        for _ in range(iters):
            idx = torch.randint(len(x_q), (min(batch_size, len(x_q)),), generator=gen)
            loss = F.mse_loss(layer(x_q[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if isinstance(wq.scale, nn.Parameter):
                with torch.no_grad():
                    wq.scale.clamp_(min=1e-8)
        layer.train(was)
        for p, f in zip(trainable, flags):
            p.requires_grad_(f)
        if isinstance(wq.scale, nn.Parameter):
            wq.fix_scale(wq.scale.detach(), learnable=False)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(layer=name, mse=f"{float(loss):.2e}")
    if bar is not None:
        bar.close()
    return qmodel


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
