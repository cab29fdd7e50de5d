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


def _option_prices(qmodel: nn.Module, choices: Sequence[Any] | Mapping[str, Sequence[Any]], metric: str = "gbops",
                  example: torch.Tensor | None = None) -> pd.DataFrame:
    """What each option costs in each layer, in ``metric`` (``"gbops"`` or ``"weight_mb"``, for one
    image, as :func:`~workbench.quant.cost` counts them): a table with a row per layer and a column
    per option label (``"int4_pc/uint4_asym"`` for a pair), NaN where a layer does not offer the
    option. A policy's cost is the sum of its layers' entries (a layer's cost depends on its own
    formats only)."""
    from .layers import cost

    if metric not in ("gbops", "weight_mb"):
        raise ValueError(f"metric is 'gbops' or 'weight_mb', got {metric!r}")
    opts = _resolve_choices(_layers(qmodel), choices, "policy_search")
    saved = _formats(qmodel, opts)
    column, scale = ("bops", 1e9) if metric == "gbops" else ("weight_bits", 8e6)
    by_label: dict[str, Any] = {}
    for options in opts.values():
        for o in options:
            by_label.setdefault(_label(o), o)
    table = pd.DataFrame(index=list(opts), columns=list(by_label), dtype=float)
    try:
        for label, option in by_label.items():
            set_policy(qmodel, {n: option for n, options in opts.items() if any(_label(o) == label for o in options)})
            rows = cost(qmodel, example).set_index("layer")[column]
            for n, options in opts.items():
                if any(_label(o) == label for o in options):
                    table.loc[n, label] = float(rows[n]) / scale
    finally:
        _restore(qmodel, saved)
    table.attrs["metric"] = metric
    return table


def policy_search(qmodel: nn.Module, choices: Sequence[Any] | Mapping[str, Sequence[Any]], data, budget: float,
                  metric: str = "gbops", samples: int = 64, rounds: int = 4, keep: int = 8, seed: int = 0,
                  batch_size: int = 1000, progress: bool = True) -> pd.DataFrame:
    """Search per-layer formats of a shared-weight supernet (trained with :class:`RandomFormats`)
    under a cost budget, scoring each policy by the supernet's accuracy on ``data`` (no retraining).

    Every uniform policy (one option in every layer) that fits the budget, ``samples`` random
    policies, then ``rounds`` of evolution: each of the ``keep`` best gets one layer changed at
    random. A proposal over the budget is repaired, not thrown away: other layers, chosen at random,
    move one option cheaper until it fits, so a tight budget (uniform 4-bit among options up to
    8-bit) is searched as well as a loose one. The form of FLIQS's search (one
    shot on a trained supernet, Dotzel et al. 2024, https://arxiv.org/abs/2308.03290), with random
    and evolutionary proposals in place of its reinforcement-learning controller.

    Args:
        qmodel: the trained supernet (a model from :func:`~workbench.quant.quantize`); its formats are
            restored when the search ends.
        choices: options for every quantized layer, or ``{layer: [options]}``, as for RandomFormats.
        data: an :class:`~workbench.data.ImageDataset` held out from training (and from the test set
            the chosen policy is reported on).
        budget: the largest cost allowed, in ``metric`` (``"gbops"`` or ``"weight_mb"``, as
            :func:`~workbench.quant.cost` reports them for one image).
    Returns:
        one row per distinct policy tried: ``policy`` (``{layer: option}``), the cost, ``acc``, and
        ``source`` (``"uniform"``, ``"random"`` or ``"evolved"``), best first.
    """
    from ..train import evaluate

    opts = _resolve_choices(_layers(qmodel), choices, "policy_search")
    example = data.normalize(data.images[:1])
    prices = _option_prices(qmodel, opts, metric, example)
    saved = _formats(qmodel, opts)
    gen = torch.Generator().manual_seed(seed)
    names = list(opts)
    seen: dict[tuple, dict] = {}

    def price(policy) -> float:
        return float(sum(prices.loc[n, _label(policy[n])] for n in names))

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=gen))]

    def repair(policy, keep_layer=None) -> dict:
        """Move layers chosen at random one option cheaper (to their dearest cheaper option) until the
        policy fits; ``keep_layer`` (a mutation's layer) last of all."""
        policy = dict(policy)
        while price(policy) > budget:
            own = {n: prices.loc[n, _label(policy[n])] for n in names}
            dearer = [n for n in names if any(prices.loc[n, _label(o)] < own[n] for o in opts[n])]
            n = pick([m for m in dearer if m != keep_layer] or dearer)
            cheaper = [o for o in opts[n] if prices.loc[n, _label(o)] < own[n]]
            top = max(prices.loc[n, _label(o)] for o in cheaper)
            policy[n] = pick([o for o in cheaper if prices.loc[n, _label(o)] == top])
        return policy

    def visit(policy, source) -> None:
        key = tuple(_label(policy[n]) for n in names)
        if key in seen:
            return
        set_policy(qmodel, policy)
        acc = evaluate(qmodel, data, batch_size=batch_size)["acc"]
        seen[key] = {"policy": dict(policy), metric: price(policy), "acc": acc, "source": source}

    floor = float(prices.min(axis=1).sum())
    if budget < floor:
        raise ValueError(f"budget {budget:g} {metric} is below the cheapest policy ({floor:g}, every layer at its "
                         "cheapest option); raise the budget or offer cheaper options")
    try:
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=samples + rounds * keep, desc="policy search", unit="policy")
        for option in dict.fromkeys(o for options in opts.values() for o in options):  # uniform policies that fit
            uniform = {n: option for n, options in opts.items() if option in options}
            if len(uniform) == len(names) and price(uniform) <= budget:
                visit(uniform, "uniform")
        for _ in range(samples):
            visit(repair(random_policy(opts, gen)), "random")
            if bar is not None:
                bar.update(1)
        for _ in range(rounds):
            best = sorted(seen.values(), key=lambda r: -r["acc"])[:keep]
            for row in best:
                child = dict(row["policy"])
                layer = pick(names)
                child[layer] = pick(opts[layer])
                visit(repair(child, layer), "evolved")
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        _restore(qmodel, saved)
    return pd.DataFrame(list(seen.values())).sort_values("acc", ascending=False, ignore_index=True)
