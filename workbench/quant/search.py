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

import pandas as pd
import torch
from torch import nn

from ..train.events import Algorithm, State
from .formats import get_format
from .layers import LayerSpec, _QuantMixin

__all__ = ["set_policy", "get_policy", "RandomFormats", "random_policy", "policy_search"]


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


def _resolve_choices(layers: Mapping[str, nn.Module], choices, who: str) -> dict[str, list[Any]]:
    """``{layer: [options]}`` from one list for every layer or a dict by layer; every name checked now,
    not mid-training."""
    if isinstance(choices, Mapping):
        unknown = [n for n in choices if n not in layers]
        if unknown:
            raise ValueError(f"{who} names {unknown[:4]}, which are not quantized layers")
        out = {n: list(v) for n, v in choices.items()}
    else:
        out = {n: list(choices) for n in layers}
    for n, opts in out.items():
        if not opts:
            raise ValueError(f"{who}: layer {n!r} has no options")
        for o in opts:
            for f in (o if isinstance(o, (tuple, list)) else (o,)):
                get_format(f)
    return out


def _formats(qmodel: nn.Module, names) -> dict[str, tuple[Any, Any]]:
    layers = _layers(qmodel)
    return {n: (layers[n].wq.fmt, layers[n].aq.fmt) for n in names}


def _restore(qmodel: nn.Module, saved: Mapping[str, tuple[Any, Any]]) -> None:
    """Give each layer back the (weight, activation) formats of :func:`_formats`."""
    set_policy(qmodel, {n: (w, a) for n, (w, a) in saved.items()})


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
        self.choices = _resolve_choices(_layers(state.model), self.choices_arg, "RandomFormats")
        self._saved = _formats(state.model, self.choices)

    def on_batch_loaded(self, state: State) -> None:
        set_policy(state.model, random_policy(self.choices, self.gen))

    def on_fit_end(self, state: State) -> None:
        _restore(state.model, self._saved)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def _label(option: Any) -> str:
    return "/".join(map(str, option)) if isinstance(option, (tuple, list)) else str(option)


def policy_search(qmodel: nn.Module, choices: Sequence[Any] | Mapping[str, Sequence[Any]], data, budget: float,
                  metric: str = "gbops", samples: int = 64, rounds: int = 4, keep: int = 8, seed: int = 0,
                  batch_size: int = 1000, progress: bool = True) -> pd.DataFrame:
    """Search per-layer formats of a shared-weight supernet (trained with :class:`RandomFormats`)
    under a cost budget, scoring each policy by the supernet's accuracy on ``data`` (no retraining).

    ``samples`` random policies within the budget, then ``rounds`` of evolution: each of the ``keep``
    best gets one layer changed at random, kept when it fits the budget. The form of FLIQS's search
    (one shot on a trained supernet, Dotzel et al. 2024, https://arxiv.org/abs/2308.03290), with
    random and evolutionary proposals in place of its reinforcement-learning controller.

    Args:
        qmodel: the trained supernet (a model from :func:`~workbench.quant.quantize`); its formats are
            restored when the search ends.
        choices: options for every quantized layer, or ``{layer: [options]}``, as for RandomFormats.
        data: an :class:`~workbench.data.ImageDataset` held out from training.
        budget: the largest cost allowed, in ``metric`` (``"gbops"`` or ``"weight_mb"``, as
            :func:`~workbench.quant.cost` reports them for one image).
    Returns:
        one row per distinct policy tried: ``policy`` (``{layer: option}``), the cost, ``acc``, and
        ``source`` (``"random"`` or ``"evolved"``), best first.
    """
    from ..train import evaluate
    from .layers import cost

    if metric not in ("gbops", "weight_mb"):
        raise ValueError(f"metric is 'gbops' or 'weight_mb', got {metric!r}")
    opts = _resolve_choices(_layers(qmodel), choices, "policy_search")
    saved = _formats(qmodel, opts)
    example = data.normalize(data.images[:1])
    gen = torch.Generator().manual_seed(seed)
    seen: dict[tuple, dict] = {}

    def price(policy) -> float:
        set_policy(qmodel, policy)
        return float(cost(qmodel, example).attrs[metric])

    def cheapest() -> float:
        total = 0.0
        for n in opts:  # layers are priced one at a time: each layer's cost depends on its own option only
            total += min(price({n: o}) for o in opts[n]) - price({n: opts[n][0]})
        return total + price({n: v[0] for n, v in opts.items()})

    def visit(policy, source, c: float | None = None) -> None:
        key = tuple(_label(policy[n]) for n in opts)
        if key in seen:
            return
        c = price(policy) if c is None else c  # a price known already leaves the policy set on the model
        if c > budget:
            return
        acc = evaluate(qmodel, data, batch_size=batch_size)["acc"]
        seen[key] = {"policy": dict(policy), metric: c, "acc": acc, "source": source}

    try:
        floor = cheapest()
        if budget < floor:
            raise ValueError(f"budget {budget:g} {metric} is below the cheapest policy ({floor:g}, every layer at its "
                             "cheapest option); raise the budget or offer cheaper options")
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=samples + rounds * keep, desc="policy search", unit="policy")
        for _ in range(samples):
            for _try in range(20):  # a few redraws for a policy within the budget
                policy = random_policy(opts, gen)
                c = price(policy)
                if c <= budget:
                    break
            visit(policy, "random", c)
            if bar is not None:
                bar.update(1)
        for _ in range(rounds):
            best = sorted(seen.values(), key=lambda r: -r["acc"])[:keep]
            for row in best:
                child = dict(row["policy"])
                layer = list(opts)[int(torch.randint(len(opts), (), generator=gen))]
                child[layer] = opts[layer][int(torch.randint(len(opts[layer]), (), generator=gen))]
                visit(child, "evolved")
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        _restore(qmodel, saved)
    if not seen:
        raise ValueError(f"no policy within the budget of {budget:g} {metric} was found in {samples} draws; "
                         "raise the budget or draw more samples")
    return pd.DataFrame(list(seen.values())).sort_values("acc", ascending=False, ignore_index=True)
