"""Choosing formats per layer on a quantized model: set a policy, and train one shared-weight supernet
under random policies (one-shot search, as FLIQS: Dotzel et al. 2024, https://arxiv.org/abs/2308.03290).

:class:`RandomFormats` is an algorithm of ``wb.fit``: before every batch each chosen layer takes a
weight (and optionally activation) format drawn from its choices, so the shared weights learn to
work under all of them; after training, :func:`set_policy` fixes one policy and the supernet
evaluates it without retraining. Activation ranges do not depend on the format (the quantizer
stores a float range and derives each format's scale from it), so one calibration serves every
policy.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..train.events import Algorithm, State
from .formats import get_format
from .layers import LayerSpec, _QuantMixin

__all__ = ["set_policy", "get_policy", "RandomFormats", "random_policy"]


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    out = {n: m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}
    if not out:
        raise ValueError("expected a model from wb.quant.quantize (it has no quantized layer)")
    return out


def set_policy(qmodel: nn.Module, policy: Mapping[str, Any]) -> nn.Module:
    """Give each named layer new formats, in place: ``{layer: weight format}`` or ``{layer: (weights, acts)}``.
    Returns ``qmodel``."""
    layers = _layers(qmodel)
    unknown = [n for n in policy if n not in layers]
    if unknown:
        raise ValueError(f"policy names {unknown[:4]}, which are not quantized layers; they are {list(layers)[:6]} ...")
    for name, value in policy.items():
        layer = layers[name]
        if isinstance(value, (tuple, list)):
            w, a = get_format(value[0]), get_format(value[1])
        else:
            w, a = get_format(value), layer.aq.fmt
        layer.wq.fmt, layer.aq.fmt = w, a
        layer.spec = LayerSpec(w, a)
    return qmodel


def get_policy(qmodel: nn.Module) -> dict[str, tuple[str, str]]:
    """``{layer: (weight format, activation format)}`` by name (``"fp32"`` for float)."""
    return {n: (m.wq.fmt.name if m.wq.fmt else "fp32", m.aq.fmt.name if m.aq.fmt else "fp32")
            for n, m in _layers(qmodel).items()}


def random_policy(choices: Mapping[str, Sequence[Any]], generator: torch.Generator) -> dict[str, Any]:
    """One draw: for each layer, one of its choices, uniformly."""
    return {n: opts[int(torch.randint(len(opts), (), generator=generator))] for n, opts in choices.items()}


class RandomFormats(Algorithm):
    """Shared-weight supernet training: a random policy before every batch.

    Args:
        choices: one list of options for every quantized layer, or ``{layer: [options]}``; an
            option is a weight format name or a ``(weights, acts)`` pair.
        seed: of the draws (the generator is checkpointed, so a resumed run draws the same policies).
    At the end of training the layers get back the formats they had before.
    """

    def __init__(self, choices: Sequence[Any] | Mapping[str, Sequence[Any]], seed: int = 0):
        super().__init__(choices=choices if isinstance(choices, Mapping) else list(choices), seed=seed)
        self.choices_arg, self.seed = choices, seed
        self.gen = torch.Generator().manual_seed(seed)
        self.choices: dict[str, list[Any]] = {}
        self._saved: dict[str, tuple[Any, Any]] = {}

    def on_init(self, state: State) -> None:
        layers = _layers(state.model)
        if isinstance(self.choices_arg, Mapping):
            unknown = [n for n in self.choices_arg if n not in layers]
            if unknown:
                raise ValueError(f"RandomFormats names {unknown[:4]}, which are not quantized layers")
            self.choices = {n: list(v) for n, v in self.choices_arg.items()}
        else:
            self.choices = {n: list(self.choices_arg) for n in layers}
        for n, opts in self.choices.items():
            if not opts:
                raise ValueError(f"RandomFormats: layer {n!r} has no options")
            for o in opts:  # fail now on a bad name, not mid-training
                for f in (o if isinstance(o, (tuple, list)) else (o,)):
                    get_format(f)
        self._saved = {n: (layers[n].wq.fmt, layers[n].aq.fmt) for n in self.choices}

    def on_batch_loaded(self, state: State) -> None:
        set_policy(state.model, random_policy(self.choices, self.gen))

    def on_fit_end(self, state: State) -> None:
        layers = _layers(state.model)
        for n, (w, a) in self._saved.items():
            layers[n].wq.fmt, layers[n].aq.fmt = w, a
            layers[n].spec = LayerSpec(w, a)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
