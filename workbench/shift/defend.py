"""Defences against unlearnable training data, as ``wb.fit`` algorithms: strong augmentation and
adversarial training.

Both act at the loop's ``batch_loaded`` event: they replace the (normalized, crop-and-flipped) batch
the loader made by another one before the forward pass, so they combine with any task and recipe.
Their randomness is a pure function of the run's seed and the step, so a resumed run sees the same
batches as an uninterrupted one, and their arguments enter ``train_model``'s cache key.

* :class:`StrongAugment`: a random view of every image at every step. ``"simclr"`` and ``"simclr_blur"``
  are SimCLR's recipes (:func:`workbench.ssl.make_views`: resized crop, flip, colour jitter, grayscale,
  and Gaussian blur); ``"random_filter"`` is the adaptive defence of the CUDA paper (Sadasivan,
  Soltanolkotabi and Feizi 2023, arXiv:2303.04278, Sec. 5.2): every image convolved with a fresh
  random CUDA-like filter (:func:`~workbench.shift.unlearnable.cuda_filters`, rescaled so that its
  brightest value stays the top of the range), so that a class's own filter is no longer the only
  blur the network sees with its label.
* :class:`AdversarialTraining`: Madry et al.'s L_inf adversarial training (arXiv:1706.06083): each batch
  is replaced by :func:`pgd_linf`'s projected-gradient attack within ``epsilon`` pixel levels (8 =
  8/255), random start, ``steps`` signed-gradient steps of ``1.5 epsilon / steps`` (the step the CUDA
  authors' code gives torchattacks' PGD). The attack runs the model in eval mode (as torchattacks does
  by default), so it changes no BatchNorm statistics; training then takes its step on the attacked batch.

>>> at = AdversarialTraining(train.mean, train.std, epsilon=4, steps=2)            # doctest: +SKIP
>>> wb.fit(model, poisoned, test, algorithms=[at])                                   # doctest: +SKIP
>>> wb.fit(model, poisoned, test, algorithms=[StrongAugment(train.mean, train.std)])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, random_stream
from ..train.events import Algorithm, State
from ..train.tasks import autocast
from .unlearnable import cuda_filters, make_unlearnable

__all__ = ["AUGMENT_RECIPES", "StrongAugment", "AdversarialTraining", "pgd_linf", "random_filter_views",
           "shortcut_scores", "poisoned_run"]

AUGMENT_RECIPES = ("simclr", "simclr_blur", "random_filter")
_AT_STREAM, _AUG_STREAM = 104_729, 1_299_709  # keep the defences' random streams apart from the loader's


def _stats(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean * 255`` and ``1 / (std * 255)`` as the loader computes them, shaped ``[1, C, 1, 1]``."""
    c = x.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need {c} values (one per channel of the batch), got {len(mean)} and "
                         f"{len(std)}; pass the training set's data.mean and data.std")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) * 255
    inv = 1.0 / (torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1) * 255)
    return m, inv


def _check_batch(x: torch.Tensor, who: str) -> None:
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} takes a normalized float batch [B, C, H, W] (what wb.data.Loader serves), got {got}")


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: Sequence[float], std: Sequence[float], *,
             epsilon: float = 8.0, steps: int = 2, step_size: float | None = None, random_start: bool = True,
             generator: torch.Generator | None = None, precision: str = "fp32") -> torch.Tensor:
    """An L_inf projected-gradient attack on a normalized batch that raises the cross-entropy of ``y``.

    Args:
        model: the classifier; run in eval mode for the attack, its train flag restored afterwards.
            Only the input gets gradients (no ``.grad`` of a parameter changes).
        x: normalized images ``(pixels / 255 - mean) / std``, ``[B, C, H, W]``; ``y``: labels ``[B]``.
        mean, std: the per-channel statistics ``x`` was normalized with (``data.mean``, ``data.std``).
        epsilon: the radius in pixel levels (8 = 8/255); 0 returns ``x`` unchanged (after the attack's passes).
        steps: signed-gradient steps; ``step_size`` in pixel levels (default ``1.5 * epsilon / steps``).
        random_start: start from a uniform draw in the ball (from ``generator``, a CPU generator).

    Returns:
        The attacked batch, normalized like ``x``: every pixel within ``epsilon`` levels of ``x``'s and
        inside ``0..255``.
    """
    _check_batch(x, "pgd_linf")
    if not epsilon >= 0:
        raise ValueError(f"epsilon is the L_inf radius in pixel levels (8 = 8/255) and must be >= 0, got {epsilon}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    m, inv = _stats(x, mean, std)
    eps = epsilon * inv                                           # [1, C, 1, 1] in normalized units
    alpha = (1.5 * epsilon / steps if step_size is None else step_size) * inv
    lo, hi = (0 - m) * inv, (255 - m) * inv                       # pixels 0 and 255, exactly as the loader maps them
    x0 = x.detach()
    delta = torch.zeros_like(x0)
    if random_start and epsilon > 0:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        delta = (torch.rand(x0.shape, generator=g) * 2 - 1).to(x0) * eps
        delta = torch.minimum(torch.maximum(x0 + delta, lo), hi) - x0
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            with autocast(x0.device, precision):
                loss = F.cross_entropy(model(x0 + delta).float(), y)
            grad, = torch.autograd.grad(loss, delta)
            delta = torch.minimum(torch.maximum(delta.detach() + alpha * grad.sign(), -eps), eps)
            delta = torch.minimum(torch.maximum(x0 + delta, lo), hi) - x0
    finally:
        model.train(was_training)
    return x0 + delta.detach()


class AdversarialTraining(Algorithm):
    """L_inf adversarial training: every training batch replaced by :func:`pgd_linf`'s attack on it.

    Args:
        mean, std: the training set's statistics (``data.mean``, ``data.std``).
        epsilon: the radius in pixel levels (the CUDA paper's CIFAR-10 runs: 4, 8 and 16, i.e. 4/255 ...).
        steps, step_size, random_start: see :func:`pgd_linf`. The cost of a step grows to ``steps + 1``
            forward-backward passes.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], epsilon: float = 8.0, steps: int = 2,
                 step_size: float | None = None, random_start: bool = True):
        if not epsilon >= 0:
            raise ValueError(f"epsilon is the L_inf radius in pixel levels (8 = 8/255), >= 0; got {epsilon}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        super().__init__(mean=tuple(mean), std=tuple(std), epsilon=epsilon, steps=steps, step_size=step_size,
                         random_start=random_start)
        self.mean, self.std, self.epsilon, self.steps = tuple(mean), tuple(std), epsilon, steps
        self.step_size, self.random_start = step_size, random_start

    def on_batch_loaded(self, state: State) -> None:
        x, y = state.batch
        g = random_stream(state.seed, _AT_STREAM, state.step)
        state.batch = (pgd_linf(state.model, x, y, self.mean, self.std, epsilon=self.epsilon, steps=self.steps,
                                step_size=self.step_size, random_start=self.random_start, generator=g,
                                precision=state.precision), y)


def random_filter_views(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], seed: int, size: int = 3,
                        blur: float = 0.3) -> torch.Tensor:
    """Each image of a normalized batch convolved with its own random CUDA filter, rescaled by its maximum.

    Image ``i`` gets filter ``i`` of ``cuda_filters(len(x), C, size, blur, seed)`` (one filter shared by
    the channels, zero padding), then is divided by its largest value and multiplied by 255, as CUDA
    makes its images (:func:`~workbench.shift.unlearnable.apply_filters` with ``normalize="max"``, here
    without rounding to uint8). Returns the batch normalized again, in ``x``'s memory format.
    """
    _check_batch(x, "random_filter_views")
    m, inv = _stats(x, mean, std)
    b, c, h, w = x.shape
    k = size
    if isinstance(k, int) and (k > h or k > w):
        raise ValueError(f"the filters are {k}x{k} but the images only {h}x{w}; use size <= {min(h, w)}")
    filters = cuda_filters(b, channels=c, size=size, blur=blur, seed=seed).to(x)      # [B, C, k, k]
    pixels = (x.float().contiguous() / inv + m)                                        # 0..255
    out = F.conv2d(F.pad(pixels.reshape(1, b * c, h, w), ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)),
                   filters.reshape(b * c, 1, k, k), groups=b * c).reshape(b, c, h, w)
    out = out * (255 / out.amax((1, 2, 3), keepdim=True).clamp_min(1e-12))
    out = ((out - m) * inv).to(x.dtype)
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class StrongAugment(Algorithm):
    """A strong random view of every training image at every step (see the module docstring).

    Args:
        mean, std: the training set's statistics (``data.mean``, ``data.std``).
        recipe: one of :data:`AUGMENT_RECIPES`.
        strength: colour jitter's ``s`` for the SimCLR recipes (0.5 on CIFAR).
        size, blur: the random filters of ``"random_filter"`` (the paper's adaptive defence used 3 and
            ``p_b'`` of 0.1 and 0.3).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], recipe: str = "simclr", strength: float = 0.5,
                 size: int = 3, blur: float = 0.3):
        if recipe not in AUGMENT_RECIPES:
            raise ValueError(f"unknown strong augmentation {recipe!r}; choose one of {', '.join(AUGMENT_RECIPES)}")
        if not 0 <= strength <= 2:
            raise ValueError(f"strength is colour jitter's s, in [0, 2] (SimCLR uses 0.5 on CIFAR), got {strength}")
        knobs = dict(size=size, blur=blur) if recipe == "random_filter" else dict(strength=strength)
        super().__init__(mean=tuple(mean), std=tuple(std), recipe=recipe, **knobs)
        cuda_filters(1, 1, size, blur)  # checks size and blur now rather than at the first step
        self.mean, self.std, self.recipe, self.strength, self.size, self.blur = \
            tuple(mean), tuple(std), recipe, strength, size, blur

    def on_batch_loaded(self, state: State) -> None:
        from ..ssl import make_views

        x, y = state.batch
        seed = int(torch.randint(2 ** 62, (1,), generator=random_stream(state.seed, _AUG_STREAM, state.step)))
        if self.recipe == "random_filter":
            view = random_filter_views(x, self.mean, self.std, seed, self.size, self.blur)
        else:
            view = make_views(x, self.mean, self.std, seed, recipe=self.recipe, strength=self.strength)
            if x.is_contiguous(memory_format=torch.channels_last):
                view = view.contiguous(memory_format=torch.channels_last)
        state.batch = (view, y)


def shortcut_scores(model: nn.Module, test: ImageDataset, filters: torch.Tensor, shift: int = 1,
                    batch_size: int = 1000) -> dict[str, float]:
    """How much a model reads CUDA's class filters rather than the image (the paper's Sec. 5.2 test).

    Args:
        model: a trained classifier; test: clean test images; filters: the key (``cuda_filters``).
        shift: the swapped test set blurs class ``y`` with the filter of class ``(y + shift) mod K``.

    Returns:
        ``own_filter_acc``: accuracy on the test set made with each image's own class filter (the paper:
        99.91% for its CUDA model); ``swapped_filter_acc``: accuracy on the swapped test set (2.53%);
        ``follows_filter``: the share of the swapped test set predicted as the filter's class
        (about ``1 / K`` for a model that ignores the filters).
    """
    from ..train import evaluate

    k = test.num_classes
    if not isinstance(shift, int) or shift % k == 0:
        raise ValueError(f"shift must be an integer that is not a multiple of the {k} classes, got {shift!r}")
    own = make_unlearnable(test, filters)
    swapped = make_unlearnable(test, filters.roll(-shift, 0))          # class y blurred with filter y + shift
    relabelled = ImageDataset(swapped.images, (test.labels + shift) % k, list(test.classes), swapped.name,
                              test.split, test.mean, test.std, swapped.source)
    return {"own_filter_acc": evaluate(model, own, batch_size)["acc"],
            "swapped_filter_acc": evaluate(model, swapped, batch_size)["acc"],
            "follows_filter": evaluate(model, relabelled, batch_size)["acc"]}


def poisoned_run(model: str, train: ImageDataset, test: ImageDataset, seed: int, *, filters: torch.Tensor,
                 model_kwargs: dict | None = None, **fit_kwargs) -> dict:
    """One training run (cached by ``wb.train_model``) described as a ``wb.sweep`` record: the record of
    :func:`wb.train.run_record` (clean test accuracy, curves per epoch, ...) plus the trained model's
    :func:`shortcut_scores` for the key ``filters``. ``fit_kwargs`` hold the recipe and the defence
    (``algorithms=[AdversarialTraining(...)]``); ``train`` is the (poisoned or control) training set."""
    from ..train import run_record, train_model

    record = run_record(model, train, test, seed, model_kwargs=model_kwargs, **fit_kwargs)
    if record["diverged"]:
        return {**record, "own_filter_acc": None, "swapped_filter_acc": None, "follows_filter": None}
    trained = train_model(model, train, test, seed=seed, model_kwargs=dict(model_kwargs or {}), progress=False,
                          **fit_kwargs).model   # from the cache run_record just filled
    return {**record, **shortcut_scores(trained, test, filters)}
