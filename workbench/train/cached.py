"""Train a registry model once per configuration; later runs load the result from the cache."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import pandas as pd
import torch

from ..cache import cached
from ..data import ImageDataset
from ..models import create_model
from .checkpoint import load_state_checked
from .trainer import TrainResult, fit


def data_fingerprint(ds: ImageDataset) -> str:
    """A hash of a dataset's pixels and labels (computed once per dataset object)."""
    fp = getattr(ds, "_fingerprint", None)
    if fp is None:
        h = hashlib.sha256()
        h.update(ds.images.detach().cpu().contiguous().numpy().tobytes())
        h.update(ds.labels.detach().cpu().numpy().tobytes())
        fp = h.hexdigest()[:20]
        ds._fingerprint = fp
    return fp


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's class and every tensor of its state (for cache keys: a guide, a teacher)."""
    from ..cache import _tensor_bytes

    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(_tensor_bytes(t.detach().cpu()))
    return h.hexdigest()[:16]


def _fit_key(k: str, v: Any, who: str) -> Any:
    """A fit argument as it enters a cache key: tasks and algorithms by their recorded configuration (observers
    left out); a function must carry a string ``cache_key``."""
    from .events import describe

    if k == "task":
        return describe(v)
    if k == "algorithms":
        return [describe(a) for a in v if not getattr(a, "observer", False)]
    if callable(v):
        if not isinstance(getattr(v, "cache_key", None), str):
            raise ValueError(f"{who}: {k}= is a function, which the cache cannot tell apart from another; give it a "
                             "string attribute `cache_key` describing it (wb.train.sam(...) has one), or pass "
                             "cache=False")
        return v.cache_key
    return v


# fit arguments that say how a run is watched or where it runs, not what it computes: not in a cache key
_NOT_KEYED = ("live", "progress", "callbacks", "checkpoint_dir", "device")


def cached_fit(build: Callable[[], torch.nn.Module], loaders: Callable[[], tuple], *, task: Any = None, key: dict,
               name: str, seed: int = 0, cache: bool = True, refresh: bool = False,
               setup: Callable[[torch.nn.Module], dict] | None = None, fit_kwargs: dict | None = None) -> TrainResult:
    """``fit(build(), *loaders(), task=task, seed=seed, **fit_kwargs)``, cached (``fit_kwargs`` a dict): the one
    cached training run. :func:`train_model` is this for a registry model on an ``ImageDataset``; for other data
    (restoration pairs, segmentation sets, visual questions, code stacks) each group's ``train_*`` function is
    this with its own model, loaders and task.

    ``build()`` makes the fresh model (seeded by the caller), ``loaders()`` returns ``(train, test or None)``;
    ``task=None`` is fit's default (classification). ``setup(model)``, if given, returns more fit arguments for
    the fresh model (a BN-only run's ``params`` and ``grad_masks``), and is applied to the model rebuilt from the
    cache too; describe it in ``key``. The cache key is ``key`` (what the model and the data are: fingerprints,
    not only names) plus the seed, the task's configuration and every fit argument but those of ``_NOT_KEYED``
    (``live``, ``progress``, ``callbacks``, ``checkpoint_dir``, ``device``); a function among them needs a string
    ``cache_key``. From the cache the model is rebuilt, the algorithms that change its structure applied
    (``transform``), and its trained weights loaded; ``refresh=True`` trains again and overwrites the entry.
    Returns :class:`TrainResult`.
    """
    from .. import config

    fit_kwargs = dict(fit_kwargs or {})
    bad = [k for k in ("task", "seed", "train", "test") if k in fit_kwargs]
    if bad:
        raise ValueError(f"{name} sets {', '.join(bad)} itself")

    def run_fit() -> TrainResult:
        model = build()
        extra = dict(setup(model) or {}) if setup is not None else {}
        kw = {"progress": False, **fit_kwargs, **extra, **({"task": task} if task is not None else {})}
        return fit(model, *loaders(), seed=seed, **kw)

    if not cache:
        return run_fit()

    def run() -> dict:
        res = run_fit()
        return {"state": {k: v.detach().cpu() for k, v in res.model.state_dict().items()}, "history": res.history,
                "config": {k: str(v) for k, v in res.config.items()}}

    full = {**key, "seed": seed, "task": None if task is None else _fit_key("task", task, name),
            "fit": {k: _fit_key(k, v, name) for k, v in fit_kwargs.items() if k not in _NOT_KEYED}}
    out = cached(run, key=full, name=name, refresh=refresh)
    model = build()
    if setup is not None:  # as on the fresh model (what it records, a mask say, is the same); its arguments unused
        setup(model)
    for alg in fit_kwargs.get("algorithms") or ():  # algorithms that change the model's structure at init
        if callable(getattr(alg, "transform", None)):
            alg.transform(model)
    load_state_checked(model, out["state"], "cached result")
    model.to(fit_kwargs.get("device") or config.device())
    history = out["history"] if isinstance(out["history"], pd.DataFrame) else pd.DataFrame(out["history"])
    return TrainResult(model, history, out["config"])


def _data_key(ds: ImageDataset | None) -> list | None:
    return None if ds is None else [ds.name, ds.split, len(ds), data_fingerprint(ds)]


def train_model(name: str, train: ImageDataset, test: ImageDataset | None = None, *, model_kwargs: dict | None = None,
                seed: int = 0, cache: bool = True, refresh: bool = False, setup=None, setup_key: Any = None,
                **fit_kwargs) -> TrainResult:
    """``create_model(name)`` with ``seed``, then :func:`fit` it; cached on everything that changes the result.

    Args:
        name, model_kwargs: the registry model to build.
        train, test, **fit_kwargs: passed to :func:`fit` (``live``, ``progress`` are not part of the key;
            ``task`` and ``algorithms`` enter it by their ``config()``, so runs that differ only in an
            algorithm's arguments never share an entry).
        seed: seeds the initialisation and the training run.
        cache: read and write the result cache (weights and history); ``refresh``: train again.
        setup: optional ``fn(model) -> dict`` applied before training (for example a BN-only
            configuration returning ``fit`` arguments such as ``params``/``grad_masks``); give
            ``setup_key`` describing it so the cache can tell setups apart.

    Returns:
        :class:`TrainResult`; from the cache the model is rebuilt and its weights loaded.
    """
    model_kwargs = dict(model_kwargs or {})
    if "num_classes" not in model_kwargs:
        model_kwargs["num_classes"] = train.num_classes
    if "in_chans" not in model_kwargs:
        model_kwargs["in_chans"] = train.shape[0]
    if setup is not None and setup_key is None:
        raise ValueError("train_model(setup=...) needs setup_key= describing the setup, so cached results stay apart")

    def build() -> torch.nn.Module:
        torch.manual_seed(seed)
        return create_model(name, **model_kwargs)

    task = fit_kwargs.pop("task", None)
    key = {"model": name, "model_kwargs": model_kwargs, "setup": setup_key, "train": _data_key(train),
           "test": _data_key(test)}
    return cached_fit(build, lambda: (train, test), task=task, key=key, name="train_model", seed=seed, cache=cache,
                      refresh=refresh, setup=setup, fit_kwargs={"progress": True, **fit_kwargs})
