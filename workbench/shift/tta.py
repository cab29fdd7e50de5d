"""Test-time adaptation: a trained model that keeps updating while it is evaluated on shifted data.

Each method wraps a *copy* of the model (the caller's model is never changed) and is called on test
batches, ``logits = adapter(x)``; the prediction of a batch comes from the forward that also computes
its update, so the update serves the batches that follow (TENT, arXiv 2006.10726, section 3).
``reset()`` restores the state at creation (bitwise), for an episodic rather than a continual stream.

* :class:`NoAdapt`: the source model in eval mode, the baseline.
* :class:`BNAdapt`: re-estimate BatchNorm statistics on the test batches. With ``blend = b`` each
  layer normalizes with ``(1 - b) * source + b * batch`` means and (biased) variances (Schneider et
  al. 2020, arXiv 2006.16971, section 2, where ``b = n / (N + n)`` for a prior of strength ``N``;
  ``b = 1`` is prediction-time BN, Nado et al. 2020, arXiv 2006.10963). ``momentum > 0`` moves the
  stored source statistics toward each batch's before it is normalized, as BatchNorm's running
  update does (a continual re-estimate); ``blend = momentum = 0`` is the eval-mode model itself.
* :class:`Tent`: Wang, Shelhamer, Liu, Olshausen & Darrell, *Tent: Fully Test-Time Adaptation by
  Entropy Minimization*, ICLR 2021, arXiv 2006.10726: BatchNorm layers normalize with the batch's
  statistics and only their affine parameters train, one optimizer step per batch on the mean
  prediction entropy ``H(y) = -sum_c p_c log p_c`` (section 3); Adam, lr 1e-3 (its CIFAR setting).
* :class:`EcoTTA`: Song, Lee, Kweon & Choi, *EcoTTA: Memory-Efficient Continual Test-time Adaptation
  via Self-distilled Regularization*, CVPR 2023, arXiv 2303.01904. The network is cut into ``K``
  consecutive parts ``f_k`` (figure 3a; the paper's table 13 lists its partitions; here one per
  stage of a CIFAR ResNet by default); the original stays frozen in eval mode and beside each part
  sits a small meta network (a BatchNorm and a conv-BN-ReLU block)::

      x_k  = f_k(xt_{k-1})                      # the frozen part, on the adapted features
      xt_k = BN_k(x_k) + relu(bn(conv_k(xt_{k-1})))   # the meta network's output, fed onward

  Only the meta networks learn (their BatchNorms on the test batch's statistics), on the entropy of
  the confident samples, ``1[H < H0] H`` averaged over those samples, ``H0 = 0.4 ln C`` (the filter
  of EATA, Niu et al. 2022, arXiv 2204.02610, that EcoTTA adopts), plus the self-distilled
  regularization ``lam * sum_k |xt_k - x_k|_1`` (figure 3c; a mean absolute difference per part),
  whose term ``k`` trains meta network ``k`` alone (its inputs detached, as the authors' Algorithm 1).
  The meta networks start from PyTorch's default initialization, so warm them up first:
  :meth:`EcoTTA.warmup` trains them on labelled source data through :func:`wb.fit`, the original
  frozen (figure 3b; the paper always does). The memory claim rests on the frozen layers keeping
  only what the gradient *to their input* needs (Cai et al., TinyTL, arXiv 2007.11622): PyTorch would keep a
  frozen convolution's input anyway, so with ``low_memory=True`` (default) the frozen parts run
  under a function mode where a convolution keeps nothing but its weight, an eval BatchNorm its
  per-channel scale and a ReLU a one-byte mask; the forward is the same computation.

:func:`peak_memory` counts the bytes autograd saves for one adaptation step; :func:`evaluate_stream`
runs a method over a sequence of domains and tabulates the accuracy per domain.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..data import ImageDataset, Loader
from ..data.dataset import to_float

__all__ = ["Adapter", "NoAdapt", "BNAdapt", "Tent", "EcoTTA", "entropy", "evaluate_stream", "peak_memory"]

_BN = nn.modules.batchnorm._BatchNorm


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Prediction entropy ``-sum_c p_c log p_c`` per row of ``logits [batch, classes]`` (nats), ``[batch]``."""
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def _need_bn(model: nn.Module, method: str) -> list[_BN]:
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        raise ValueError(f"{method} adapts BatchNorm layers, and {type(model).__name__} has none; give it a "
                         "network with BatchNorm (for example wb.create_model('resnet20')), or use wb.shift.EcoTTA "
                         "(its meta networks bring their own BatchNorm) or wb.shift.NoAdapt for the unadapted baseline")
    return bns


def _optimizer(kind: str, params: list[nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    if not (isinstance(lr, (int, float)) and lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer is 'adam' or 'sgd', got {kind!r}")


class Adapter:
    """What every method shares: a private copy of the model, input preparation, state and reset.

    Args:
        model: a trained classifier taking normalized float images ``[B, C, H, W]``.
        mean, std: the dataset's normalization (``data.mean``, ``data.std``), needed only to call the
            adapter on uint8 images; :func:`evaluate_stream` normalizes with each dataset's own.
    """

    def __init__(self, model: nn.Module, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} wraps a torch nn.Module, got {type(model).__name__}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean= and std= (the dataset's normalization), or neither")
        self.model = copy.deepcopy(model).eval()
        self.mean, self.std = mean, std
        self.steps = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self._initial: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _modules(self) -> list[nn.Module]:
        return [self.model]

    def state_dict(self) -> dict[str, Any]:
        """A copy of everything the adaptation changes: weights, statistics, optimizer state, step count."""
        return {"modules": [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self._modules()],
                "optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None,
                "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for m, s in zip(self._modules(), state["modules"]):
            m.load_state_dict(s)
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.steps = state["steps"]

    def reset(self) -> None:
        """Back to the state at creation (after :meth:`EcoTTA.warmup`, the warmed-up state), bitwise."""
        if self._initial is not None:
            self.load_state_dict(self._initial)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} takes a tensor of images [B, C, H, W], got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{self.name} takes images of shape [B, C, H, W], got {tuple(x.shape)}"
                             + ("; add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""))
        x = x.to(self.device)
        if x.dtype == torch.uint8:
            if self.mean is None:
                raise ValueError(f"{self.name} got uint8 images but knows no normalization: create it with "
                                 "mean=data.mean, std=data.std, or pass data.normalize(images)")
            return to_float(x, self.mean, self.std)
        if not x.is_floating_point():
            raise TypeError(f"{self.name} takes uint8 images or normalized float images, got dtype {x.dtype}")
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` for the batch ``x`` (uint8 or normalized float), adapting on it."""
        x = self._prepare(x)
        self._ready(x)
        logits = self.step(x)
        self.steps += 1
        return logits.detach()

    def _ready(self, x: torch.Tensor) -> None:
        """Build what needs the first batch's shapes (EcoTTA's meta networks)."""
        if self._initial is None:
            self._initial = self.state_dict()

    def step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _backward(loss: torch.Tensor) -> None:
        _cut_meter()  # the saved tensors of this graph are all alive now: the step's peak
        loss.backward()

    def __repr__(self) -> str:
        return f"{self.name}({type(self.model).__name__}, steps={self.steps})"


class NoAdapt(Adapter):
    """The source model in eval mode: no adaptation (the baseline of every TTA table)."""

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class BNAdapt(Adapter):
    """Normalize with BatchNorm statistics re-estimated on the test batches (module docstring).

    Args:
        blend: weight of the batch's statistics against the stored source ones, in [0, 1]
            (1: the batch's alone; 0: the source's alone).
        momentum: after each batch the stored statistics move this fraction toward the batch's
            (0: they stay the source's; BatchNorm's own default is 0.1).
    """

    def __init__(self, model: nn.Module, blend: float = 1.0, momentum: float = 0.0, **kwargs):
        super().__init__(model, **kwargs)
        for what, v in (("blend", blend), ("momentum", momentum)):
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{what} is a fraction in [0, 1], got {v!r}")
        self.blend, self.momentum = float(blend), float(momentum)
        for m in _need_bn(self.model, "BNAdapt"):
            if m.running_mean is None:
                raise ValueError("BNAdapt needs the source statistics, but a BatchNorm layer tracks none "
                                 "(track_running_stats=False); use blend=1 through wb.shift.Tent(model, lr=0)")
            m.forward = self._bn_forward(m)  # this copy's layers only

    def _bn_forward(self, m: _BN) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            dims = [0] + list(range(2, x.ndim))
            if self.momentum > 0:
                with torch.no_grad():
                    n = x.numel() // x.shape[1]
                    m.running_mean.lerp_(x.mean(dims), self.momentum)
                    m.running_var.lerp_(x.var(dims) if n > 1 else torch.zeros_like(m.running_var), self.momentum)
            if self.blend == 1.0:  # the batch's statistics: the train-mode kernel, exactly as Tent normalizes
                return F.batch_norm(x, None, None, m.weight, m.bias, True, 0.0, m.eps)
            mean, var = m.running_mean, m.running_var
            if self.blend > 0:
                mean = (1 - self.blend) * mean + self.blend * x.mean(dims)
                var = (1 - self.blend) * var + self.blend * x.var(dims, unbiased=False)
            return F.batch_norm(x, mean, var, m.weight, m.bias, False, 0.0, m.eps)
        return forward

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Tent(Adapter):
    """TENT: entropy minimization of the BatchNorm affine parameters, batch statistics (module docstring).

    Args:
        lr, optimizer, momentum: ``"adam"`` (default, lr 1e-3: the paper's CIFAR setting) or ``"sgd"``
            (the paper's ImageNet setting is lr 2.5e-4, momentum 0.9). ``lr=0`` is BN re-estimation alone.
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, optimizer: str = "adam", momentum: float = 0.9, **kwargs):
        super().__init__(model, **kwargs)
        self.model.requires_grad_(False)
        params = []
        for m in _need_bn(self.model, "Tent"):
            m.train()
            m.track_running_stats = False  # normalize with the batch's statistics; the stored ones stay as they were
            params += [p for p in (m.weight, m.bias) if p is not None]
        if not params:
            raise ValueError("Tent trains BatchNorm's affine parameters, and this model's BatchNorm layers have none "
                             "(affine=False); use wb.shift.BNAdapt(model) for the statistics alone")
        for p in params:
            p.requires_grad_(True)
        self.optimizer = _optimizer(optimizer, params, lr, momentum)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        self.optimizer.zero_grad(set_to_none=True)
        self._backward(entropy(logits).mean())
        self.optimizer.step()
        return logits


class _Meta(nn.Module):
    """One EcoTTA meta network: ``BN(x_k) + relu(bn(conv(xt_{k-1})))``, PyTorch's default initialization
    (a zero-initialized block would never train: ReLU passes no gradient at 0), so warm it up first."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cout)
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.block_bn = nn.BatchNorm2d(cout)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, u: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        return self.bn(xk) + F.relu(self.block_bn(self.conv(u)))


class _Frozen(TorchFunctionMode):
    """Inside the frozen parts: a convolution with frozen weights keeps only its weight for backward, an
    eval-mode BatchNorm its per-channel scale, a ReLU a one-byte mask; everything else runs as usual."""

    on = True

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.on and torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            if func is F.conv2d and not kwargs:
                x, w, b, *conf = (list(args) + [None, 1, 0, 1, 1][len(args) - 2:])[:7]
                if not w.requires_grad and (b is None or not b.requires_grad) and not isinstance(conf[1], str):
                    return _FrozenConv.apply(x, w, b, *conf)
            if func is F.batch_norm:
                a = dict(zip(_BN_ARGS, args), **kwargs)
                w, b = a.get("weight"), a.get("bias")
                if not a.get("training", False) and a["running_mean"] is not None and not any(
                        t is not None and t.requires_grad for t in (w, b)):
                    return _FrozenBN.apply(a["input"], a["running_mean"], a["running_var"], w, b, a.get("eps", 1e-5))
            if func is F.relu:
                return _MaskedReLU.apply(args[0])
        return func(*args, **kwargs)


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


class _FrozenConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(w)
        ctx.shape, ctx.dtype, ctx.conf = x.shape, x.dtype, (stride, padding, dilation, groups)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return (torch.nn.grad.conv2d_input(ctx.shape, w.to(g.dtype), g, *ctx.conf).to(ctx.dtype),) + (None,) * 6


class _FrozenBN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rm, rv, w, b, eps):
        scale = torch.rsqrt(rv + eps) * (w if w is not None else 1.0)
        ctx.save_for_backward(scale.view(1, -1, *([1] * (x.ndim - 2))))
        ctx.dtype = x.dtype
        return F.batch_norm(x, rm, rv, w, b, False, 0.0, eps)

    @staticmethod
    def backward(ctx, g):
        return ((g * ctx.saved_tensors[0]).to(ctx.dtype),) + (None,) * 5


class _MaskedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = torch.relu(x)
        ctx.save_for_backward(out > 0)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved_tensors[0]


class _EcoNet(nn.Module):
    """The frozen original with the meta networks attached by hooks; ``train()`` moves the meta networks
    only (the original stays in eval mode), so :func:`wb.fit` can warm them up."""

    def __init__(self, original: nn.Module, parts: list[tuple[str, str]], low_memory: bool):
        super().__init__()
        self.original = original.eval().requires_grad_(False)
        self.meta = nn.ModuleList()
        for attr in ("in_chans", "num_classes", "img_size"):
            if hasattr(original, attr):
                setattr(self, attr, getattr(original, attr))
        self.parts, self.low_memory = parts, low_memory
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []  # (xt_{k-1}, x_k) per part, detached
        self.shapes: list[tuple[torch.Size, torch.Size]] = []
        self._mode = _Frozen()
        mods = dict(original.named_modules())
        for k, (first, last) in enumerate(parts):
            for name in (first, last):
                if name not in mods:
                    raise ValueError(f"EcoTTA part {name!r} is not a module of {type(original).__name__}; "
                                     f"valid names include {', '.join(n for n in list(mods)[1:12])}, ...")
            mods[first].register_forward_pre_hook(self._pre_hook(k))
            mods[last].register_forward_hook(self._post_hook(k))
        self._inputs: dict[int, torch.Tensor] = {}

    def _pre_hook(self, k: int):
        def hook(module, args):
            self._inputs[k] = args[0]
        return hook

    def _post_hook(self, k: int):
        def hook(module, args, out):
            u = self._inputs.pop(k)
            if len(self.meta) < len(self.parts):  # the shape probe before the meta networks exist
                self.shapes.append((u.shape, out.shape))
                return out
            self.cache.append((u.detach(), out.detach()))
            self._mode.on = False
            try:
                return self.meta[k](u, out)
            finally:
                self._mode.on = True
        return hook

    def train(self, mode: bool = True) -> "_EcoNet":
        self.training = mode
        self.meta.train(mode)
        self.original.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache = []
        if not (self.low_memory and torch.is_grad_enabled()):
            return self.original(x)
        with self._mode:
            return self.original(x)


class EcoTTA(Adapter):
    """EcoTTA: meta networks beside the frozen parts, entropy on confident samples plus self-distillation.

    Args:
        parts: the partition, in forward order: module names (one module per part) or ``(first, last)``
            pairs spanning consecutive modules; default the stages ``layer1``, ``layer2``, ... of a ResNet.
        lam: weight of the self-distilled regularization (the paper's lambda; 0 turns it off).
        entropy_margin: samples train when their entropy is below ``entropy_margin * ln(classes)``.
        lr, optimizer, momentum: SGD with momentum 0.9 (the authors' sample code points to EATA's setup);
            lr 1e-3 is ours (on a CIFAR ResNet-8, Adam at 1e-3 cost 5 points of clean accuracy in one pass).
        low_memory: run the frozen parts so that they keep only what their input gradient needs
            (the same computation; ``False`` for PyTorch's default saving, to compare).
    """

    def __init__(self, model: nn.Module, parts: Sequence[str | tuple[str, str]] | None = None, lam: float = 0.5,
                 entropy_margin: float = 0.4, lr: float = 1e-3, optimizer: str = "sgd", momentum: float = 0.9,
                 low_memory: bool = True, **kwargs):
        super().__init__(model, **kwargs)
        if parts is None:
            parts = [n for n, _ in self.model.named_children() if n.startswith("layer") and n[5:].isdigit()]
            if not parts:
                raise ValueError(f"EcoTTA cuts the network into consecutive parts; {type(model).__name__} has no "
                                 "children named layer1, layer2, ...: pass parts=[...] naming them (module names, "
                                 "or (first, last) pairs)")
        pairs = [(p, p) if isinstance(p, str) else tuple(p) for p in parts]
        if not pairs or any(len(p) != 2 or not all(isinstance(n, str) for n in p) for p in pairs):
            raise ValueError(f"parts is a list of module names or (first, last) name pairs, got {parts!r}")
        if not (lam >= 0 and entropy_margin >= 0):
            raise ValueError(f"lam and entropy_margin must be >= 0, got {lam} and {entropy_margin}")
        self.lam, self.entropy_margin = float(lam), float(entropy_margin)
        self._opt_args = (optimizer, lr, momentum)
        _optimizer(optimizer, [nn.Parameter(torch.zeros(1))], lr, momentum)  # check the arguments now
        self.net = _EcoNet(self.model, pairs, low_memory)

    def _modules(self) -> list[nn.Module]:
        return [self.net]

    @property
    def meta(self) -> nn.ModuleList:
        """The meta networks, one per part (built on the first batch)."""
        return self.net.meta

    def _ready(self, x: torch.Tensor) -> None:
        if len(self.net.meta) == 0:
            with torch.no_grad():
                self.net.shapes = []
                self.net.original(x[:2])
            if len(self.net.shapes) != len(self.net.parts):
                raise ValueError(f"EcoTTA saw {len(self.net.shapes)} of its {len(self.net.parts)} parts run in the "
                                 "forward; each part must run exactly once per forward")
            for (u, o) in self.net.shapes:
                stride = u[-1] // o[-1]
                if u[-1] != o[-1] * stride or u[-2] != o[-2] * stride:
                    raise ValueError(f"EcoTTA part maps {tuple(u[1:])} to {tuple(o[1:])}: not a whole stride; "
                                     "choose parts that keep or divide the spatial size")
                self.net.meta.append(_Meta(u[1], o[1], stride))
            self.net.meta.to(x.device)
            kind, lr, momentum = self._opt_args
            self.optimizer = _optimizer(kind, list(self.net.meta.parameters()), lr, momentum)
        super()._ready(x)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        self.net.train()
        logits = self.net(x)
        cache = self.net.cache
        h = entropy(logits)
        keep = h < self.entropy_margin * math.log(logits.shape[1])
        self.optimizer.zero_grad(set_to_none=True)
        if keep.any():
            self._backward((h * keep).sum() / keep.sum())
        else:
            _cut_meter()  # no backward: this graph dies here, before the regularization's
        logits, h = logits.detach(), None
        if self.lam > 0:  # term k trains meta network k alone: its inputs are the detached cached features
            reg = 0.0
            for meta, (u, xk) in zip(self.net.meta, cache):
                saved = [(bn, bn.momentum) for bn in (meta.bn, meta.block_bn)]
                for bn, _ in saved:
                    bn.momentum = 0.0  # the running statistics already saw this batch in the forward above
                try:
                    reg = reg + (meta(u, xk) - xk).abs().mean()
                finally:
                    for bn, mom in saved:
                        bn.momentum = mom
            self._backward(self.lam * reg)
        self.optimizer.step()
        self.net.cache = []
        return logits

    def warmup(self, source: ImageDataset, epochs: int = 1, **fit_kwargs):
        """Train the meta networks on labelled source data, the original frozen (the paper's step before
        deployment, figure 3b), with :func:`wb.fit` (``lr``, ``batch_size``, ... as there; ``progress``
        off unless given). :meth:`reset` returns to the warmed-up state afterwards. Returns fit's result."""
        from ..train import fit
        if not isinstance(source, ImageDataset):
            raise TypeError(f"warmup takes the source ImageDataset (wb.load(...)), got {type(source).__name__}")
        self._ready(source.normalize(source.images[:2]).to(self.device))
        fit_kwargs.setdefault("progress", False)
        fit_kwargs.setdefault("device", self.device)
        res = fit(self.net, source, epochs=epochs, params=lambda n, p: n.startswith("meta."), **fit_kwargs)
        self.net.eval()
        kind, lr, momentum = self._opt_args
        self.optimizer = _optimizer(kind, list(self.net.meta.parameters()), lr, momentum)
        self.steps = 0
        self._initial = self.state_dict()
        return res


class _SavedMeter:
    """Bytes of the distinct storages autograd saves, parameters and buffers excluded; ``cut()`` at each
    backward records the total alive then and starts afresh (the graph is freed by that backward)."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.seen, self.peak = exclude, {}, 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type != "meta":
            try:
                s = t.untyped_storage()
            except (RuntimeError, NotImplementedError):
                return t
            if s.data_ptr() not in self.exclude and s.nbytes() > 0:
                self.seen[s.data_ptr()] = s.nbytes()
        return t

    def cut(self) -> None:
        self.peak = max(self.peak, sum(self.seen.values()))
        self.seen = {}

    def __enter__(self) -> "_SavedMeter":
        _METERS.append(self)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        _METERS.pop()
        self.cut()


_METERS: list[_SavedMeter] = []


def _cut_meter() -> None:
    if _METERS:
        _METERS[-1].cut()


def peak_memory(adapter: Adapter, batch: torch.Tensor) -> dict[str, int | None]:
    """Activation memory of one adaptation step on ``batch``; the adapter's state is restored afterwards.

    ``saved_bytes``: the tensors autograd keeps for the backward pass, counted once per storage, the
    model's parameters and buffers excluded, at the moment each backward starts (the most over the
    step's backward passes): exact and device independent; the forward's transient buffers and
    backward's workspace are not in it. ``cuda_peak_bytes`` (on a CUDA device, else None):
    ``torch.cuda.max_memory_allocated`` during the step minus what was allocated before, which adds
    those transients, the gradients and the optimizer state.
    """
    if not isinstance(adapter, Adapter):
        raise TypeError("peak_memory measures a wb.shift adapter (Tent, BNAdapt, EcoTTA, ...), "
                        f"got {type(adapter).__name__}")
    x = adapter._prepare(batch)
    adapter._ready(x)
    state = adapter.state_dict()
    exclude = {t.untyped_storage().data_ptr() for m in adapter._modules()
               for t in [*m.parameters(), *m.buffers()]}
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
    with _SavedMeter(exclude) as meter:
        adapter.step(x)
    peak = torch.cuda.max_memory_allocated(x.device) - base if cuda else None
    adapter.load_state_dict(state)
    return {"saved_bytes": meter.peak, "cuda_peak_bytes": peak}


def evaluate_stream(adapter: Adapter, datasets: Sequence[ImageDataset] | Mapping[str, ImageDataset],
                    batch_size: int = 128, *, reset_each: bool = False, shuffle: bool = True,
                    seed: int = 0) -> pd.DataFrame:
    """Run ``adapter`` over the domains in order, one pass each, adapting as it goes (a continual stream:
    no reset between domains unless ``reset_each``); each dataset is normalized with its own mean and std.

    Returns:
        one row per domain: ``method``, ``domain`` (the mapping's key or the dataset's name), ``position``,
        ``acc``, ``loss`` (cross-entropy of the predictions), ``n``, ``steps`` (the adapter's, cumulative).
    """
    from ..train.tasks import check_data_fits_model
    items = (list(datasets.items()) if isinstance(datasets, Mapping)
             else [(getattr(d, "name", "?"), d) for d in datasets])
    if not items:
        raise ValueError("datasets is empty: give the domains of the stream in order")
    rows = []
    for i, (name, data) in enumerate(items):
        if not isinstance(data, ImageDataset):
            raise TypeError(f"domain {i} ({name!r}) is a {type(data).__name__}; give wb.data ImageDatasets")
        check_data_fits_model(adapter.model, data)
        if reset_each and i > 0:
            adapter.reset()
        hits, loss, n = 0, 0.0, 0
        for x, y in Loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed, device=adapter.device):
            logits = adapter(x)
            hits += int((logits.argmax(1) == y).sum())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            n += len(y)
        rows.append({"method": adapter.name, "domain": str(name), "position": i, "acc": hits / n, "loss": loss / n,
                     "n": n, "steps": adapter.steps})
    return pd.DataFrame(rows)
