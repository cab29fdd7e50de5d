"""One training run of a registered model as a ``wb.sweep`` record: what notebooks that compare
architectures (or one architecture's variants) collect, seed by seed, at an equal budget."""
from __future__ import annotations

import time
from typing import Any

from ..data import load
from ..models.summary import summary
from .cached import train_model
from .trainer import NonFiniteLossError

__all__ = ["model_run", "run_record", "steps_to_reach"]


def model_run(model: str, seed: int, *, model_kwargs: dict | None = None, dataset: str = "cifar10",
              train_subset: int | None = None, test_subset: int | None = None, **fit_kwargs) -> dict[str, Any]:
    """Train the registered ``model`` once (cached by :func:`train_model`) and describe the run.

    Args:
        model, model_kwargs: the registry name and its knobs (``num_classes`` and ``in_chans`` follow the data).
        seed: initialization and data order.
        dataset, train_subset, test_subset: the data (the same subsets for every seed: ``seed=0`` picks them).
        **fit_kwargs: the training recipe, for :func:`fit` (``wb.train.recipe("laptop", epochs=...)``).

    Returns:
        A JSON-ready record: ``test_acc``, ``train_acc``, ``train_loss`` (the last epoch's), the curves
        per epoch (``curve_epoch``, ``curve_step``, ``curve_train_loss``, ``curve_test_acc``),
        ``params`` and ``macs`` (per input, from :func:`wb.models.summary`), ``diverged`` and, for a run
        whose loss stopped being finite, ``diverged_step`` (the run is then not cached and has no
        accuracy) and ``seconds`` of training.
    """
    train = load(dataset, "train", subset=train_subset, seed=0)
    test = load(dataset, "test", subset=test_subset, seed=0)
    return run_record(model, train, test, seed, model_kwargs=model_kwargs, **fit_kwargs)


def run_record(model: str, train, test, seed: int, *, model_kwargs: dict | None = None, **fit_kwargs) -> dict[str, Any]:
    """:func:`model_run` on data sets already loaded (resized, filtered, ...): the same record."""
    start = time.perf_counter()
    try:
        res = train_model(model, train, test, seed=seed, model_kwargs=dict(model_kwargs or {}), progress=False,
                          **fit_kwargs)
    except NonFiniteLossError as err:
        return {"diverged": True, "diverged_step": err.step, "test_acc": None, "train_acc": None,
                "train_loss": None, "curve_epoch": [], "curve_step": [], "curve_train_loss": [], "curve_test_acc": [],
                "params": None, "macs": None, "seconds": time.perf_counter() - start}
    h = res.history
    cost = summary(res.model, tuple(train.shape))
    return {"diverged": False, "diverged_step": None, "test_acc": res.test_acc,
            "train_acc": float(h["train_acc"].iloc[-1]), "train_loss": float(h["train_loss"].iloc[-1]),
            "curve_epoch": [int(v) for v in h["epoch"]], "curve_step": [int(v) for v in h["step"]],
            "curve_train_loss": [float(v) for v in h["train_loss"]],
            "curve_test_acc": [float(v) for v in h["test_acc"]],
            "params": cost.params, "macs": cost.macs, "seconds": time.perf_counter() - start}


def steps_to_reach(steps, values, target: float) -> float | None:
    """The first step at which a decreasing curve (``values`` logged at ``steps``, for example a run's
    ``curve_step`` and ``curve_train_loss``) reaches ``target``, by linear interpolation between the
    logged points (from step 0 at the first value's level); ``None`` when it never does."""
    steps, values = list(steps), list(values)
    if len(steps) != len(values) or not steps:
        raise ValueError(f"steps and values must be two lists of the same, non-zero length, got {len(steps)} and {len(values)}")
    prev_s, prev_v = 0, None
    for s, v in zip(steps, values):
        if v is None or v != v:  # a missing or NaN point: the run diverged
            return None
        if v <= target:
            if prev_v is None or prev_v == v:
                return float(s) if prev_v is None else float(prev_s)
            return prev_s + (prev_v - target) / (prev_v - v) * (s - prev_s)
        prev_s, prev_v = s, v
    return None
