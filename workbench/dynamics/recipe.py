"""Training-recipe parts as switches for ``wb.fit``, one at a time, and a model family scaled by depth,
width and resolution with each configuration's price.

Bello, Fedus, Du, Cubuk, Srinivas, Lin, Shlens & Zoph, *Revisiting ResNets: Improved Training and Scaling
Strategies* (arXiv:2103.07579), table 1, adds training and regularization methods to a ResNet one at a time
(cosine schedule, EMA of the weights, label smoothing, stochastic depth, RandAugment, dropout on the head,
less weight decay) and then two architecture changes (squeeze-and-excitation, ResNet-D). Here each of those
is one **switch**:

* fit arguments: ``cosine`` (cosine schedule with a linear warm-up instead of steps at 50% and 75%),
  ``label_smoothing``, ``less_weight_decay``;
* algorithms acting at the loop's events: ``ema`` (:class:`EMA`), ``randaugment`` (:class:`RandAugment`, on
  the batch, on the device), ``no_decay_norm_bias`` (:class:`NoDecay`);
* ``resnet_cifar`` options: ``stochastic_depth`` (``drop_path``), ``dropout``, ``se``, ``resnet_d``
  (``shortcut="d"``).

>>> parts = training_recipe(["cosine", "ema", "se"], epochs=10, mean=train.mean, std=train.std)  # doctest: +SKIP
>>> wb.train_model("resnet20", train, test, model_kwargs=parts.model_kwargs,                     # doctest: +SKIP
...                algorithms=parts.algorithms, **parts.fit_kwargs)

Every switch off is the plain recipe exactly: a model option at its off value builds the same network with
the same random draws, and :class:`EMA` at ``decay=0``, :class:`RandAugment` with ``layers=0`` and
:class:`NoDecay` with nothing selected leave ``fit`` bit-identical (tested).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..train.events import Algorithm, State

__all__ = ["EMA", "NoDecay", "RandAugment", "RANDAUGMENT_OPS", "SWITCHES", "RECIPE_SETS", "PLAIN",
           "RecipeParts", "training_recipe", "scaling_table", "scale_grid", "closest_in_budget"]

_RA_STREAM = 15_485_863  # RandAugment's random stream, apart from the loader's and the other algorithms'


# ---------------------------------------------------------------------------------------------------------
# Algorithms
# ---------------------------------------------------------------------------------------------------------
class EMA(Algorithm):
    """An exponential moving average of the weights (and float buffers, BatchNorm's statistics among them),
    evaluated in place of the weights.

    After every step ``avg = d avg + (1 - d) w`` with ``d = min(decay, (1 + t) / (10 + t))`` when
    ``warmup`` (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``, so that early averages do
    not remember the random initialization), else ``d = decay``. The average is swapped into the model for
    each epoch's evaluation and swapped out again before training goes on (the checkpoints hold the raw
    weights and the average, so a resumed run is exact); the model ``fit`` returns holds the average.
    ``decay = 0`` is the identity.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True):
        if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
            raise ValueError(f"decay is the EMA's weight on the past, in [0, 1) (0: off; ResNet-RS uses 0.9999 "
                             f"for ImageNet), got {decay!r}")
        super().__init__(decay=float(decay), warmup=bool(warmup))
        self.decay, self.warmup = float(decay), bool(warmup)
        self.shadow: dict[str, torch.Tensor] = {}
        self._raw: dict[str, torch.Tensor] | None = None

    def _tracked(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}

    def on_init(self, state: State) -> None:
        self.shadow = {k: v.detach().clone() for k, v in self._tracked(state.model).items()}
        self._raw, self._live = None, {}

    def on_fit_start(self, state: State) -> None:
        # the model's own tensors (state_dict shares their storage), looked up once rather than every step
        self._live = self._tracked(state.model)
        self._floats = [k for k, v in self._live.items() if v.is_floating_point()]
        self._others = [k for k in self._live if k not in self._floats]

    def on_after_step(self, state: State) -> None:
        d = min(self.decay, (1 + state.step) / (10 + state.step)) if self.warmup else self.decay
        with torch.no_grad():
            if self._floats:
                torch._foreach_lerp_([self.shadow[k] for k in self._floats], [self._live[k] for k in self._floats],
                                     1.0 - d)
            for k in self._others:
                self.shadow[k].copy_(self._live[k])
        last_of_epoch = state.batch_index == state.steps_per_epoch - 1 or state.step >= state.total_steps
        if last_of_epoch:  # the epoch's evaluation comes next: it sees the average
            self._swap_in()

    def _swap_in(self) -> None:
        self._raw = {k: v.clone() for k, v in self._live.items()}
        with torch.no_grad():
            for k, v in self._live.items():
                v.copy_(self.shadow[k])

    def _swap_out(self) -> None:
        if self._raw is None:
            return
        with torch.no_grad():
            for k, v in self._live.items():
                v.copy_(self._raw[k])
        self._raw = None

    def on_epoch_end(self, state: State) -> None:
        self._swap_out()  # the checkpoint that follows, and the next epoch, get the raw weights

    def on_fit_end(self, state: State) -> None:
        self._swap_out()
        if state.error is None:
            with torch.no_grad():
                for k, v in self._live.items():
                    v.copy_(self.shadow[k])

    def state_dict(self) -> dict[str, Any]:
        return {f"shadow.{k}": v for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            name = k[len("shadow."):]
            if name not in self.shadow:
                from ..train.checkpoint import CheckpointError
                raise CheckpointError(f"the EMA state in the checkpoint has {name!r}, which the model has not: "
                                      "resume with the same model, or resume=False")
            self.shadow[name].copy_(v.to(self.shadow[name]))


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class NoDecay(Algorithm):
    """No weight decay on the normalization layers' scales and shifts (``norm``) and on biases (``bias``):
    a common recipe choice (the decay pulls BatchNorm's scale, which sets no function's size, towards 0).
    With both off it changes nothing."""

    def __init__(self, norm: bool = True, bias: bool = True):
        super().__init__(norm=bool(norm), bias=bool(bias))
        self.norm, self.bias = bool(norm), bool(bias)

    def on_init(self, state: State) -> None:
        if not state.trainable:  # what fit would train (a params= selection, which comes first, is kept)
            state.trainable = {n: p for n, p in state.model.named_parameters() if p.requires_grad}
        chosen = set()
        for mname, m in state.model.named_modules():
            for pname, _ in m.named_parameters(recurse=False):
                full = f"{mname}.{pname}" if mname else pname
                if (self.norm and isinstance(m, _NORMS)) or (self.bias and pname == "bias"):
                    chosen.add(full)
        state.no_decay.extend(n for n in state.trainable if n in chosen and n not in state.no_decay)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor (a - b)``, clipped to [0, 1]: PIL's ImageEnhance (factor 1 is ``a``)."""
    return (b + factor * (a - b)).clamp(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` ([n, C, H, W] in [0, 1]) with affine maps ``theta`` ([n, 2, 3]); outside is grey."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalization of every image and channel on 256 levels."""
    n, c = x.shape[:2]
    q = (x * 255).round().long().reshape(n * c, -1)                             # [n*C, HW]
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, q, torch.ones_like(q, dtype=torch.float32))
    cdf = hist.cumsum(1)
    lo = cdf.gather(1, (hist > 0).float().argmax(1, keepdim=True))                # first nonzero bin's count
    total = cdf[:, -1:]
    lut = ((cdf - lo) / (total - lo).clamp_min(1) * 255).clamp(0, 255)            # [n*C, 256]
    flat = (total - lo) <= 0                                                      # a single value: unchanged
    out = torch.where(flat, q.float(), lut.gather(1, q))
    return (out / 255).view_as(x)


def _op(name: str, x: torch.Tensor, level: float, sign: torch.Tensor) -> torch.Tensor:
    """One RandAugment operation at ``level`` in [0, 1] on ``x`` ([n, C, H, W] in [0, 1]); ``sign`` ([n],
    +-1) flips the direction of the signed operations per image."""
    n = x.shape[0]
    s = sign.view(n, 1, 1, 1).to(x.dtype)
    if name == "identity":
        return x
    if name == "autocontrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-8), x)
    if name == "equalize":
        return _equalize(x)
    if name == "solarize":
        thr = 1.0 - level
        return torch.where(x > thr, 1.0 - x, x)
    if name == "posterize":
        bits = 8 - int(round(4 * level))
        step = 2 ** (8 - bits)
        return torch.floor((x * 255).round() / step) * step / 255
    if name in ("color", "contrast", "brightness", "sharpness"):
        f = 1.0 + 0.9 * level * s
        if name == "color":
            return _blend(x, _gray(x).expand_as(x), f)
        if name == "contrast":
            return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), f)
        if name == "brightness":
            return _blend(x, torch.zeros_like(x), f)
        k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device, dtype=x.dtype) / 13
        smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(x.shape[1], 1, 3, 3),
                          groups=x.shape[1])
        return _blend(x, smooth, f)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    v = sign.to(x.dtype)
    if name == "rotate":
        a = v * math.radians(30.0 * level)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    elif name == "shear_x":
        theta[:, 0, 1] = 0.3 * level * v
    elif name == "shear_y":
        theta[:, 1, 0] = 0.3 * level * v
    elif name == "translate_x":
        theta[:, 0, 2] = 2 * 0.3 * level * v  # a fraction of the image (grid coordinates span 2)
    elif name == "translate_y":
        theta[:, 1, 2] = 2 * 0.3 * level * v
    else:
        raise ValueError(f"unknown RandAugment operation {name!r}; choose from {', '.join(RANDAUGMENT_OPS)}")
    return _affine(x, theta)


RANDAUGMENT_OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
                   "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


class RandAugment(Algorithm):
    """RandAugment (Cubuk, Zoph, Shlens & Le, arXiv:1909.13719) on the batch, on the device.

    Each of ``layers`` times, every image gets one operation drawn uniformly from ``ops`` at the shared
    ``magnitude`` (0..10, the scale of the paper's reference code; signed operations take a random
    direction per image). Rotations up to 30 degrees, shears up to 0.3, translations up to 30% of the
    image, enhancement factors 1 +- 0.9, posterize to 4 bits, solarize from threshold 0. The batch arrives
    normalized (``mean``, ``std``: the training set's) and leaves normalized. Draws are a pure function of
    the run's seed and the step, so resuming is exact. ``layers = 0`` is the identity.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], layers: int = 2, magnitude: float = 9.0,
                 ops: Sequence[str] = RANDAUGMENT_OPS):
        if not (isinstance(layers, int) and layers >= 0):
            raise ValueError(f"layers is the number of operations per image, an integer >= 0, got {layers!r}")
        if not (isinstance(magnitude, (int, float)) and 0 <= magnitude <= 10):
            raise ValueError(f"magnitude is on RandAugment's 0..10 scale, got {magnitude!r}")
        bad = [o for o in ops if o not in RANDAUGMENT_OPS]
        if bad or not ops:
            near = difflib.get_close_matches(bad[0], RANDAUGMENT_OPS, n=1) if bad else []
            raise ValueError(f"unknown RandAugment operation {bad[0] if bad else '(none given)'!r}"
                             + (f" (did you mean {near[0]!r}?)" if near else "")
                             + f"; choose from {', '.join(RANDAUGMENT_OPS)}")
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel each: pass the training set's data.mean "
                             "and data.std")
        super().__init__(mean=tuple(mean), std=tuple(std), layers=layers, magnitude=float(magnitude), ops=list(ops))
        self.mean, self.std, self.layers, self.magnitude, self.ops = \
            tuple(mean), tuple(std), layers, float(magnitude), tuple(ops)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x``: a normalized float batch [B, C, H, W]; the augmented batch, normalized."""
        if self.layers == 0:
            return x
        if x.shape[1] != len(self.mean):
            raise ValueError(f"the batch has {x.shape[1]} channels but mean/std have {len(self.mean)} values: pass "
                             "the training set's data.mean and data.std")
        m = torch.tensor(self.mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
        sd = torch.tensor(self.std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
        img = (x.float() * sd + m).clamp(0, 1)
        level = self.magnitude / 10.0
        for _ in range(self.layers):
            which = torch.randint(len(self.ops), (len(img),), generator=generator)
            signs = torch.where(torch.rand(len(img), generator=generator) < 0.5, -1.0, 1.0)
            out = img.clone()
            for k, name in enumerate(self.ops):
                idx = (which == k).nonzero().flatten()
                if len(idx) and name != "identity":
                    dev_idx = idx.to(img.device)
                    out[dev_idx] = _op(name, img[dev_idx], level, signs[idx].to(img.device))
            img = out
        y = ((img - m) / sd).to(x.dtype)
        return y.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
            memory_format=torch.channels_last) and x.ndim == 4 else y

    def on_batch_loaded(self, state: State) -> None:
        x, y = state.batch[0], state.batch[1]
        gen = random_stream(state.seed, _RA_STREAM, state.step)
        state.batch = (self.augment(x, gen), y, *state.batch[2:])


# ---------------------------------------------------------------------------------------------------------
# Switches and recipes
# ---------------------------------------------------------------------------------------------------------
# The plain recipe: SGD with momentum, steps of x0.1 at 50% and 75% of the epochs (the "step" schedule of
# the baseline), weight decay 1e-4 everywhere (the ResNet-RS baseline's 1e-4), no smoothing, crop and flip.
PLAIN: dict[str, Any] = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                             gamma=0.1, warmup=0.0, label_smoothing=0.0, augment="crop_flip")


@dataclass(frozen=True)
class _Switch:
    kind: str            # "fit", "algorithm" or "model"
    default: Any         # the value "on" means
    off: Any             # the value that is the plain recipe
    what: str
    group: str           # "training", "regularization" or "architecture" (ResNet-RS table 1)


SWITCHES: dict[str, _Switch] = {
    "cosine": _Switch("fit", 0.05, None, "cosine schedule with this warm-up fraction, instead of steps", "training"),
    "ema": _Switch("algorithm", 0.999, 0.0, "evaluate an EMA of the weights with this decay", "training"),
    "label_smoothing": _Switch("fit", 0.1, 0.0, "label smoothing of this amount", "regularization"),
    "stochastic_depth": _Switch("model", 0.1, 0.0, "drop residual branches, up to this rate at the last block",
                                "regularization"),
    "randaugment": _Switch("algorithm", 9.0, None, "RandAugment, 2 layers, this magnitude (0..10)",
                           "regularization"),
    "dropout": _Switch("model", 0.25, 0.0, "dropout of this rate before the classifier", "regularization"),
    "less_weight_decay": _Switch("fit", 4e-5, None, "weight decay lowered to this value", "regularization"),
    "no_decay_norm_bias": _Switch("algorithm", True, False, "no weight decay on norm layers and biases",
                                  "regularization"),
    "se": _Switch("model", 0.25, 0.0, "squeeze-and-excitation with this ratio", "architecture"),
    "resnet_d": _Switch("model", True, False, "ResNet-D downsampling in the shortcuts", "architecture"),
}

RECIPE_SETS: dict[str, list[str]] = {
    "plain": [],
    "training": ["cosine", "ema"],
    "training+regularization": ["cosine", "ema", "label_smoothing", "stochastic_depth", "randaugment", "dropout",
                                "less_weight_decay"],
    "resnet-rs": ["cosine", "ema", "label_smoothing", "stochastic_depth", "randaugment", "dropout",
                  "less_weight_decay", "se", "resnet_d"],
}


@dataclass
class RecipeParts:
    """What a set of switches gives ``wb.fit`` / ``wb.train_model``: model options, fit arguments, algorithms."""

    switches: dict[str, Any]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    algorithms: list[Any] = field(default_factory=list)


def _check_switch(name: str) -> None:
    if name not in SWITCHES:
        near = difflib.get_close_matches(name, list(SWITCHES) + list(RECIPE_SETS), n=1)
        raise ValueError(f"unknown recipe switch {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                         + f"; the switches are {', '.join(SWITCHES)}, and the named sets {', '.join(RECIPE_SETS)}")


def training_recipe(switches: str | Iterable[str] | Mapping[str, Any] = (), *, epochs: int,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    base: Mapping[str, Any] | None = None) -> RecipeParts:
    """The plain recipe with ``switches`` on.

    Args:
        switches: a named set of :data:`RECIPE_SETS`, a list of switch names (each at its default value), or
            ``{name: value}`` (a value equal to the switch's off value leaves it off; see :data:`SWITCHES`).
        epochs: the run's epochs (the step schedule's milestones are at 50% and 75% of them).
        mean, std: the training set's statistics, needed by ``randaugment``.
        base: fit arguments overriding :data:`PLAIN` (``lr``, ``batch_size``, ...).
    """
    if isinstance(switches, str):
        if switches not in RECIPE_SETS:
            _check_switch(switches)
            switches = [switches]
        else:
            switches = RECIPE_SETS[switches]
    values = dict(switches) if isinstance(switches, Mapping) else {k: SWITCHES[k].default if k in SWITCHES else None
                                                                    for k in switches}
    for k in values:
        _check_switch(k)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    fit_kwargs = {**PLAIN, **dict(base or {}), "epochs": epochs,
                  "milestones": (max(1, epochs // 2), max(1, (3 * epochs) // 4))}
    parts = RecipeParts(switches={k: v for k, v in values.items() if v != SWITCHES[k].off})
    order = list(SWITCHES)  # a fixed order, whatever order the caller gave
    for name in sorted(parts.switches, key=order.index):
        v = parts.switches[name]
        if name == "cosine":
            fit_kwargs.update(schedule="cosine", warmup=float(v), milestones=())
        elif name == "label_smoothing":
            fit_kwargs["label_smoothing"] = float(v)
        elif name == "less_weight_decay":
            fit_kwargs["weight_decay"] = float(v)
        elif name == "ema":
            parts.algorithms.append(EMA(float(v)))
        elif name == "randaugment":
            if mean is None or std is None:
                raise ValueError("the randaugment switch works on normalized batches: pass mean=train.mean, "
                                 "std=train.std")
            parts.algorithms.append(RandAugment(mean, std, layers=2, magnitude=float(v)))
        elif name == "no_decay_norm_bias":
            parts.algorithms.append(NoDecay())
        elif name == "stochastic_depth":
            parts.model_kwargs["drop_path"] = float(v)
        elif name == "dropout":
            parts.model_kwargs["dropout"] = float(v)
        elif name == "se":
            parts.model_kwargs["se"] = float(v)
        elif name == "resnet_d":
            parts.model_kwargs["shortcut"] = "d"
    parts.fit_kwargs = fit_kwargs
    return parts


# ---------------------------------------------------------------------------------------------------------
# Scaling a model family
# ---------------------------------------------------------------------------------------------------------
def _check_dims(depth: int, width: int, resolution: int) -> None:
    if not (isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0):
        raise ValueError(f"depth of a CIFAR ResNet is 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth!r}")
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width (the first stage's channels) must be a positive integer, got {width!r}")
    if not (isinstance(resolution, int) and resolution >= 8):
        raise ValueError(f"resolution must be an integer of at least 8 pixels, got {resolution!r}")


def scaling_table(configs: Iterable[Mapping[str, int]], num_classes: int = 10, in_chans: int = 3) -> pd.DataFrame:
    """Parameters and multiply-adds per image of ``resnet_cifar`` configurations.

    Args:
        configs: ``{"depth", "width", "resolution"}`` dicts (missing keys: 20, 16, 32).
    Returns:
        one row per configuration: depth, width, resolution, params, macs (convolutions and the classifier;
        the input resize is not counted).
    """
    from ..models import create_model, layer_macs

    rows = []
    for c in configs:
        d, w, r = int(c.get("depth", 20)), int(c.get("width", 16)), int(c.get("resolution", 32))
        _check_dims(d, w, r)
        m = create_model("resnet_cifar", depth=d, width=w, resolution=None if r == 32 else r,
                         num_classes=num_classes, in_chans=in_chans)
        rows.append({"depth": d, "width": w, "resolution": r, "params": sum(p.numel() for p in m.parameters()),
                     "macs": sum(layer_macs(m).values()),
                     **{k: v for k, v in c.items() if k not in ("depth", "width", "resolution")}})
    return pd.DataFrame(rows)


def scale_grid(base: Mapping[str, int] | None = None, **values: Sequence[int]) -> list[dict[str, int]]:
    """Configurations that change one dimension of ``base`` at a time: ``scale_grid(depth=[14, 20, 32],
    width=[16, 24])`` gives the base, then each depth, then each width, each once (duplicates dropped)."""
    base = {"depth": 20, "width": 16, "resolution": 32, **dict(base or {})}
    unknown = [k for k in values if k not in ("depth", "width", "resolution")]
    if unknown:
        raise ValueError(f"a model family scales by depth, width or resolution, not {unknown[0]!r}")
    out, seen = [], set()
    for cfg in [dict(base)] + [{**base, dim: v} for dim, vs in values.items() for v in vs]:
        _check_dims(cfg["depth"], cfg["width"], cfg["resolution"])
        key = (cfg["depth"], cfg["width"], cfg["resolution"])
        if key not in seen:
            seen.add(key)
            out.append({**cfg, "scaled": next((d for d in ("depth", "width", "resolution") if cfg[d] != base[d]),
                                               "base")})
    return out


def closest_in_budget(table: pd.DataFrame, macs: float, by: str = "macs") -> pd.DataFrame:
    """For each scaled dimension of a :func:`scaling_table` (with a ``scaled`` column), the configuration whose
    ``by`` is closest to ``macs`` (in log ratio): one row per dimension, for a comparison at an equal budget."""
    if "scaled" not in table:
        raise ValueError("the table needs a 'scaled' column: build it with scaling_table(scale_grid(...)) and "
                         "add the grid's 'scaled' entries (scaling_table keeps them)")
    if macs <= 0:
        raise ValueError(f"the budget must be positive, got {macs}")
    gap = (table[by].astype(float) / macs).map(lambda r: abs(math.log(r)))
    rows = table.assign(gap=gap).sort_values("gap").groupby("scaled", sort=False).head(1)
    return rows.drop(columns="gap").reset_index(drop=True)
