"""Learning-rate schedules as pure functions of the step.

A schedule has no state of its own, so a resumed run (any step, mid-epoch too)
gets exactly the rate an uninterrupted run would.
"""
from __future__ import annotations

import math

SCHEDULES = ("onecycle", "cosine", "multistep", "constant")


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str = "onecycle", warmup: float = 0.15,
          milestones: tuple[int, ...] = (), gamma: float = 0.1, steps_per_epoch: int = 1) -> float:
    """The learning rate at ``step`` (0-based) of ``total_steps``.

    * ``onecycle``: linear rise from ``base_lr / 10`` to ``base_lr`` over the first
      ``warmup`` fraction, then linear fall to zero (Smith & Topin 2017, arXiv 1708.07120,
      in its simple triangular form).
    * ``cosine``: linear warm-up over ``warmup``, then half a cosine to zero.
    * ``multistep``: ``base_lr * gamma ** k`` after ``k`` of the ``milestones`` (epochs) have passed.
    * ``constant``: ``base_lr``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return base_lr
    if schedule == "multistep":
        epoch = step // max(steps_per_epoch, 1)
        return base_lr * gamma ** sum(epoch >= m for m in milestones)
    w = max(int(round(warmup * total_steps)), 1) if warmup > 0 else 0
    if step < w:
        start = base_lr / 10 if schedule == "onecycle" else 0.0
        return start + (base_lr - start) * (step + 1) / w
    frac = (step - w) / max(total_steps - w, 1)
    if schedule == "onecycle":
        return base_lr * max(1.0 - frac, 0.0)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


RECIPES: dict[str, dict] = {
    # fast CPU training of a CIFAR ResNet: one cycle, label smoothing, larger batches
    "laptop": dict(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle",
                   warmup=0.2, batch_size=256, label_smoothing=0.1, augment="crop_flip"),
    # open_lth's CIFAR ResNet recipe (used by Frankle et al. 2020): 160 epochs, x0.1 at 80 and 120
    "open_lth": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                     milestones=(80, 120), gamma=0.1, batch_size=128, epochs=160, augment="crop_flip"),
    # He et al. 2016 CIFAR-10 recipe (64k iterations ~ 164 epochs of batch 128)
    "he2016": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                   milestones=(82, 123), gamma=0.1, batch_size=128, epochs=164, augment="crop_flip"),
    # transformers on small data
    "adamw": dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine", warmup=0.1, batch_size=128,
                  augment="crop_flip", label_smoothing=0.1),
}


def recipe(name: str, **overrides) -> dict:
    """A named set of training arguments for :func:`workbench.train.fit`, with overrides.

    >>> recipe("open_lth", epochs=10)["milestones"]
    (80, 120)
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return {**RECIPES[name], **overrides}
