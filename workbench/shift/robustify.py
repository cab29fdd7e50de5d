"""Robustify a large pre-trained model cheaply: a small robust teacher tunes a fraction of it.

Jain, Behl, Rawat & Vineet, *Efficiently Robustify Pre-trained Models*, ICCV 2023
(https://arxiv.org/abs/2309.07499). Full robust fine-tuning (training the whole large model on
augmented data) costs a large model's forward and backward passes over every parameter and can make
it forget what it knew; the paper instead (1) robustifies a *small* model with the augmentation, at
a small model's cost, and (2) distils it into a *fraction* of the large model's parameters on the
augmented data, the rest frozen.

The pieces here, each a small tool for :func:`wb.fit`:

* :class:`CorruptionAugment`: an algorithm acting at ``batch_loaded`` that replaces a random share of
  each training batch by CIFAR-10-C corruptions (:func:`wb.data.corruptions.corrupt`) of the same
  images, each image its own corruption and severity, drawn from the run's seed and the step (so a
  resumed run sees the same batches).
* :func:`trainable_names`: the parameter names of the chosen blocks (for ``fit(params=...)``), and
  :func:`trainable_fraction`, the share of parameter entries they hold.
* :func:`step_macs`: multiply-adds of one training step per image when only some blocks train, from
  the per-block forward costs of :func:`wb.models.summary`; :func:`training_macs` adds the steps of
  every network trained or run as a teacher.

The cost rule of :func:`step_macs`. A block with forward cost ``m`` (multiply-adds per image) costs
``m`` again to pass the gradient back to its input and ``m`` to form its weights' gradient (the two
products of a convolution's or a linear layer's backward pass). A frozen block needs the first only
when a trainable block lies below it (the gradient must pass through it); the lowest trainable block
needs no gradient for its input. So for blocks ``0 .. n-1`` (input first) with the lowest trainable
block ``lo``::

    step = sum_i m_i  +  sum_{i > lo} m_i  +  sum_{i trainable} m_i

Training everything costs ``3 F - m_0`` (``F`` the forward cost); training the last blocks only is
far cheaper than training the first ones, whose gradient passes through the whole network.
Elementwise work (BatchNorm, ReLU, the optimizer's update) is not counted, as in the summary.

>>> aug = CorruptionAugment(train.mean, train.std, ["gaussian_noise", "gaussian_blur"])      # doctest: +SKIP
>>> wb.fit(model, train, test, algorithms=[aug], params=trainable_names(model, ["stem", "layer1"]))  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..data import random_stream
from ..data.corruptions import corrupt, list_corruptions
from ..data.dataset import to_float, to_uint8
from ..train.events import Algorithm, State

__all__ = ["CorruptionAugment", "corruption_plan", "corrupt_batch", "trainable_names", "trainable_fraction",
           "step_macs", "training_macs"]

_CORRUPT_STREAM = 2_750_159  # keeps the augmentation's random stream apart from the loader's and the defences'


def _check_choice(corruptions: Sequence[str], severities: Sequence[int], p_clean: float) -> tuple[tuple, tuple]:
    names = tuple(corruptions)
    if not names:
        raise ValueError("give at least one corruption to train with (see wb.data.corruptions.list_corruptions())")
    known = set(list_corruptions())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; valid names: {', '.join(list_corruptions())}")
    sev = tuple(severities)
    if not sev or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in sev):
        raise ValueError(f"severities must be a non-empty list of integers 1..5, got {list(severities)!r}")
    if not 0 <= p_clean < 1:
        raise ValueError(f"p_clean is the share of images left clean, in [0, 1), got {p_clean}")
    return names, sev


def corruption_plan(n: int, corruptions: Sequence[str], severities: Sequence[int] = (1, 2, 3, 4, 5),
                    p_clean: float = 0.5, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which corruption and severity each of ``n`` images gets.

    Each image independently stays clean with probability ``p_clean``; otherwise it gets a corruption
    drawn uniformly from ``corruptions`` and a severity drawn uniformly from ``severities``.

    Returns:
        ``(which, severity)``, two int64 tensors ``[n]``: ``which[i]`` is the position of image ``i``'s
        corruption in ``corruptions`` or -1 for a clean image, ``severity[i]`` its severity (0 if clean).
    """
    names, sev = _check_choice(corruptions, severities, p_clean)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    clean = torch.rand(n, generator=g) < p_clean
    which = torch.randint(len(names), (n,), generator=g)
    level = torch.tensor(sev)[torch.randint(len(sev), (n,), generator=g)]
    return torch.where(clean, -1, which), torch.where(clean, 0, level)


def corrupt_batch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], corruptions: Sequence[str],
                  which: torch.Tensor, severity: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A normalized batch with image ``i`` corrupted by ``corruptions[which[i]]`` at ``severity[i]``.

    ``x`` is normalized ``(pixels / 255 - mean) / std`` (what the loader serves); it is mapped back to
    uint8 pixels (:func:`wb.data.dataset.to_uint8`), each group of images with the same corruption and
    severity corrupted in one call (random draws from ``(seed, i)``), and normalized again. Clean images
    (``which == -1``) are returned exactly as they came. Keeps ``x``'s dtype and memory format.
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"corrupt_batch takes a normalized float batch [B, C, H, W] (what wb.data.Loader serves), "
                         f"got {got}")
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean and std need {x.shape[1]} values (one per channel); pass the training set's "
                         "data.mean and data.std")
    which, severity = torch.as_tensor(which).long().cpu(), torch.as_tensor(severity).long().cpu()
    if which.shape != (len(x),) or severity.shape != (len(x),):
        raise ValueError(f"which and severity need one entry per image ({len(x)}), got {tuple(which.shape)} and "
                         f"{tuple(severity.shape)}")
    if len(which) and (int(which.max()) >= len(corruptions) or int(which.min()) < -1):
        raise ValueError(f"which holds positions in corruptions (0..{len(corruptions) - 1}) or -1 for clean")
    out = x.clone()
    hit = which >= 0
    if not bool(hit.any()):
        return out
    pixels = to_uint8(x[hit.to(x.device)], mean, std)                 # [K, C, H, W] uint8, the corrupted ones
    idx = hit.nonzero().squeeze(1)                                      # their positions in the batch
    new = pixels.clone()
    w, s = which[hit], severity[hit]
    for k in sorted(set(zip(w.tolist(), s.tolist()))):
        sel = ((w == k[0]) & (s == k[1])).nonzero().squeeze(1)
        new[sel.to(new.device)] = corrupt(pixels[sel.to(pixels.device)], corruptions[k[0]], int(k[1]), seed=seed,
                                          index=idx[sel])
    out[hit.to(x.device)] = to_float(new, mean, std).to(x.dtype)      # normalized exactly as the loader does
    return out


class CorruptionAugment(Algorithm):
    """Train on corrupted images: at every step a random share of the batch is replaced by corruptions.

    Args:
        mean, std: the training set's statistics (``data.mean``, ``data.std``): batches arrive normalized.
        corruptions: names from :func:`wb.data.corruptions.list_corruptions` (the training family; keep
            the test's held-out corruptions out of it).
        severities: the severities drawn from, uniformly (default 1..5).
        p_clean: the share of images left clean (AugMix and the paper keep clean images in the mix).

    The plan of each step (:func:`corruption_plan`) and the corruptions' random draws are functions of
    the run's seed and the step alone. The history gains ``corrupted`` (the share of the batch corrupted).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], corruptions: Sequence[str],
                 severities: Sequence[int] = (1, 2, 3, 4, 5), p_clean: float = 0.5):
        names, sev = _check_choice(corruptions, severities, p_clean)
        super().__init__(mean=tuple(mean), std=tuple(std), corruptions=list(names), severities=list(sev),
                         p_clean=p_clean)
        self.mean, self.std, self.corruptions, self.severities, self.p_clean = \
            tuple(mean), tuple(std), names, sev, p_clean

    def on_batch_loaded(self, state: State) -> None:
        x, y = state.batch
        g = random_stream(state.seed, _CORRUPT_STREAM, state.step)
        which, severity = corruption_plan(len(x), self.corruptions, self.severities, self.p_clean, g)
        seed = int(torch.randint(2 ** 31, (1,), generator=g))
        state.batch = (corrupt_batch(x, self.mean, self.std, self.corruptions, which, severity, seed), y)
        state.logs["corrupted"] = float((which >= 0).float().mean())


def trainable_names(model: nn.Module, blocks: Sequence[str], batchnorm: bool = False) -> list[str]:
    """Names of the parameters inside the named blocks (module names such as ``"stem"``, ``"layer1"``,
    ``"layer3.2"``, ``"fc"``), for ``fit(params=...)``; with ``batchnorm=True`` every BatchNorm's
    affine parameters in the whole model as well.

    Raises:
        ValueError: a block that is not a module of the model (the message lists the top-level ones).
    """
    modules = dict(model.named_modules())
    blocks = list(blocks)
    missing = [b for b in blocks if b not in modules or b == ""]
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"blocks {missing} are not modules of {type(model).__name__}; its top-level modules are {top}")
    names = [n for n, _ in model.named_parameters() if any(n.startswith(b + ".") for b in blocks)]
    if batchnorm:
        for mn, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                names += [f"{mn}.{pn}" for pn, _ in m.named_parameters(recurse=False)]
    seen = set()
    out = [n for n, _ in model.named_parameters() if n in set(names) and not (n in seen or seen.add(n))]
    if not out:
        raise ValueError(f"the blocks {blocks} hold no parameters")
    return out


def trainable_fraction(model: nn.Module, names: Sequence[str]) -> float:
    """The share of the model's parameter entries held by the parameters ``names``."""
    params = dict(model.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"{unknown[:5]} are not parameters of {type(model).__name__}")
    total = sum(p.numel() for p in params.values())
    return sum(params[n].numel() for n in set(names)) / total


def step_macs(block_macs: Sequence[float], trainable: Sequence[bool]) -> float:
    """Multiply-adds of one training step per image: forward, gradients to the inputs, weight gradients.

    Args:
        block_macs: forward multiply-adds per image of each block, input first (the ``macs`` column of
            ``wb.models.summary(model).table``).
        trainable: one flag per block: does any of its weights train? (A block whose only trainable
            parameters are BatchNorm's is counted as a whole: an upper bound.)

    Returns:
        ``sum(m) + sum(m_i for i > lo) + sum(m_i for trainable i)``, ``lo`` the lowest trainable block
        (see the module docstring); ``sum(m)`` (a forward pass) when nothing trains.
    """
    m, t = [float(v) for v in block_macs], [bool(v) for v in trainable]
    if len(m) != len(t):
        raise ValueError(f"block_macs and trainable need one entry per block, got {len(m)} and {len(t)}")
    if any(v < 0 for v in m):
        raise ValueError("block_macs must be >= 0")
    forward = sum(m)
    if not any(t):
        return forward
    lo = t.index(True)
    return forward + sum(m[lo + 1:]) + sum(v for v, f in zip(m, t) if f)


def training_macs(model: nn.Module, params: Sequence[str] | None, steps: int, batch_size: int,
                  input_size: tuple[int, int, int] = (3, 32, 32), teachers: Sequence[nn.Module] = ()) -> float:
    """Multiply-adds of a training run: ``steps * batch_size`` images, each a :func:`step_macs` step of
    ``model`` (``params``: the names that train, ``None`` for all) plus a forward pass of every teacher."""
    from ..models.summary import summary

    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    table = summary(model, input_size).table
    names = [n for n, _ in model.named_parameters()]
    chosen = set(names if params is None else params)

    def trains(block: str) -> bool:
        return any(n in chosen for n in names if n.startswith(block + "."))

    per_image = step_macs(table.macs.tolist(), [trains(b) for b in table.block])
    per_image += sum(summary(t, input_size).macs for t in teachers)
    return float(per_image) * steps * batch_size
