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


def _key_value(k: str, v: Any) -> Any:
    """A fit argument as it enters the cache key: tasks and algorithms by their recorded configuration."""
    from .events import describe
    if k == "task":
        return describe(v)
    if k == "algorithms":
        return [describe(a) for a in v if not getattr(a, "observer", False)]
    return v.cache_key if callable(v) else v


def _fit_key(k: str, v: Any, who: str) -> Any:
    """A fit argument as it enters a cache key; a function must carry a string ``cache_key``."""
    if k in ("task", "algorithms"):
        return _key_value(k, v)
    if callable(v):
        if not isinstance(getattr(v, "cache_key", None), str):
            raise ValueError(f"{who}: {k}= is a function, which the cache cannot tell apart from another; give it a "
                             "string attribute `cache_key` describing it (wb.train.sam(...) has one), or pass "
                             "cache=False")
        return v.cache_key
    return v


def cached_fit(build: Callable[[], torch.nn.Module], loaders: Callable[[], tuple], *, task: Any, key: dict,
               name: str, seed: int = 0, cache: bool = True, fit_kwargs: dict | None = None) -> TrainResult:
    """``fit(build(), *loaders(), task=task, seed=seed, **fit_kwargs)``, cached (``fit_kwargs`` a dict). For data
    that :func:`train_model` cannot take (restoration pairs, segmentation sets, visual questions, code stacks),
    each group's ``train_*`` function is this with its own model, loaders and task.

    ``build()`` makes the fresh model (seeded by the caller), ``loaders()`` returns ``(train, test or None)``.
    The cache key is ``key`` (what the model and the data are: fingerprints, not only names) plus the seed, the
    task's configuration and every fit argument but ``live``, ``progress`` and ``device``; from the cache the model
    is rebuilt and its trained weights loaded. Returns :class:`TrainResult`.
    """
    from .. import config

    fit_kwargs = dict(fit_kwargs or {})
    bad = [k for k in ("task", "seed", "train", "test") if k in fit_kwargs]
    if bad:
        raise ValueError(f"{name} sets {', '.join(bad)} itself")

    def run_fit() -> TrainResult:
        return fit(build(), *loaders(), task=task, seed=seed, **{"progress": False, **fit_kwargs})

    if not cache:
        return run_fit()

    def run() -> dict:
        res = run_fit()
        return {"state": {k: v.detach().cpu() for k, v in res.model.state_dict().items()}, "history": res.history,
                "config": {k: str(v) for k, v in res.config.items()}}

    full = {**key, "seed": seed, "task": _key_value("task", task),
            "fit": {k: _fit_key(k, v, name) for k, v in fit_kwargs.items() if k not in ("progress", "live", "device")}}
    out = cached(run, key=full, name=name)
    model = build()
    load_state_checked(model, out["state"], "cached result")
    model.to(fit_kwargs.get("device") or config.device())
    history = out["history"] if isinstance(out["history"], pd.DataFrame) else pd.DataFrame(out["history"])
    return TrainResult(model, history, out["config"])


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
        cache: read and write the result cache (weights and history).
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

    def build():
        torch.manual_seed(seed)
        model = create_model(name, **model_kwargs)
        extra = setup(model) if setup is not None else {}
        return model, dict(extra or {})

    def run() -> dict:
        model, extra = build()
        res = fit(model, train, test, seed=seed, **{**fit_kwargs, **extra})
        state = {k: v.detach().cpu() for k, v in res.model.state_dict().items()}
        return {"state": state, "history": res.history, "config": {k: str(v) for k, v in res.config.items()}}

    if setup is not None and setup_key is None:
        raise ValueError("train_model(setup=...) needs setup_key= describing the setup, so cached results stay apart")
    if not cache:
        model, extra = build()
        return fit(model, train, test, seed=seed, **{**fit_kwargs, **extra})
    skip = {"live", "progress", "callbacks", "checkpoint_dir", "device"}
    for k, v in fit_kwargs.items():
        if callable(v) and k not in skip and k not in ("task", "algorithms"):
            if not isinstance(getattr(v, "cache_key", None), str):
                raise ValueError(f"train_model: {k}= is a function, which the cache cannot tell apart from another; "
                                 f"give it a string attribute `cache_key` describing it (wb.train.sam(...) has one), "
                                 "or pass cache=False")
    key = {"model": name, "model_kwargs": model_kwargs, "seed": seed, "setup": setup_key,
           "train": [train.name, train.split, len(train), data_fingerprint(train)],
           "test": [test.name, test.split, len(test), data_fingerprint(test)] if test is not None else None,
           "fit": {k: _key_value(k, v) for k, v in fit_kwargs.items() if k not in skip}}
    out = cached(run, key=key, name="train_model", refresh=refresh)
    model, _ = build()
    for alg in fit_kwargs.get("algorithms") or ():  # algorithms that change the model's structure at init
        if callable(getattr(alg, "transform", None)):
            alg.transform(model)
    load_state_checked(model, out["state"], "cached result")
    from .. import config
    model.to(fit_kwargs.get("device") or config.device())
    history = out["history"] if isinstance(out["history"], pd.DataFrame) else pd.DataFrame(out["history"])
    return TrainResult(model=model, history=history, config=out["config"])
