"""The model registry: ``create_model(name, **kwargs)`` and ``list_models(pattern)``.

Each architecture file registers small entry points with :func:`register_model`;
the entry point's keyword arguments are the model's knobs.
"""
from __future__ import annotations

import fnmatch
import inspect
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"resnet*"``)."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: the architecture's knobs, for example ``num_classes=10``,
            ``in_chans=1``, ``width=32``.

    Example:
        >>> import workbench as wb
        >>> model = wb.models.create_model("resnet20", num_classes=10)
    """
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name[:4]}*") if name else []
        hint = f" (did you mean {', '.join(close[:5])}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; valid names: {', '.join(list_models())}")
    fn = _MODELS[name]
    sig = inspect.signature(fn)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in kwargs if k not in sig.parameters and not accepts_any]
    if unknown:
        valid = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_KEYWORD]
        raise TypeError(f"{name} got unknown argument(s) {', '.join(unknown)}; it takes: {', '.join(valid)}")
    model = fn(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
