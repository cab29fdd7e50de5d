"""Guidance: train a target network while aligning its layers with a frozen guide network.

Subramaniam, Mayo, Conwell, Poggio, Katz, Cheung & Barbu, *Training the Untrainable:
Introducing Inductive Bias via Representational Alignment*, https://arxiv.org/abs/2410.20035.
The target minimizes::

    task_loss + alpha * sum over layer pairs (t, g) of  d(target_t(x), guide_g(x))

with ``d = 1 - linear CKA`` by default; the guide never changes (eval mode, no gradients).
A trained guide transfers part of its architectural prior and knowledge; an untrained one
only part of the prior.

>>> guide = wb.create_model("resnet20")                                   # doctest: +SKIP
>>> target = wb.create_model("mlp", depth=8)                              # doctest: +SKIP
>>> g = wb.guidance.Guidance(guide, target, alpha=1.0)                     # doctest: +SKIP
>>> wb.fit(target, train, test, algorithms=[g])  # history gains 'align' and 'cka'  # doctest: +SKIP

``Guidance`` is an algorithm of :func:`workbench.fit`: it hooks the target's layers at ``fit_start``,
adds its term to the loss at ``after_loss`` and removes the hooks at ``fit_end``
(``extra_loss=g`` works the same).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..probe import resolve_names
from ..train import Algorithm, model_fingerprint
from ..similarity import flatten_examples, gram_centered, linear_cka
from ..similarity.cka import _safe_ratio


def default_layers(model: nn.Module) -> list[str]:
    """The blocks of a registry model: ``layerS.B`` (ResNets, plain nets), ``layers.i`` (mlp), ``blocks.i`` (ViT)."""
    names = [n for n in getattr(model, "hook_layers", ()) if n.count(".") == 1]
    if not names:
        raise ValueError(f"{type(model).__name__} lists no block-level hook layers; pass the layer names explicitly")
    return names


def uniform_pairs(target_layers: Sequence[str], guide_layers: Sequence[str]) -> list[tuple[str, str]]:
    """The paper's mapping: guide layer ``i`` of ``G`` goes to target layer ``round(i (T - 1) / (G - 1))`` of ``T``.

    The first layers pair with each other and so do the last; the guide layers in between are
    spread evenly over the target's depth (Python's ``round``, halves to even, as in the
    authors' ``layer_supervision`` in the code linked from untrainable-networks.github.io).
    With more guide than target layers several guide layers share a target layer; all of
    those pairs are kept (the authors' code keys its losses by target layer, so there only
    the last guide layer of each such group counts).
    """
    t, g = list(target_layers), list(guide_layers)
    if not t or not g:
        raise ValueError("both target and guide need at least one layer to pair")
    step = (len(t) - 1) / (len(g) - 1) if len(g) > 1 else 1
    return [(t[min(round(i * step), len(t) - 1)], g[i]) for i in range(len(g))]


def cka_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - linear CKA`` on flattened activations, differentiable in ``a`` (float32)."""
    return 1 - linear_cka(a.float(), b.float(), differentiable=True)


class Guidance(Algorithm):
    """The alignment term, as an algorithm of :func:`workbench.train.fit` (or its ``extra_loss``).

    Args:
        guide: the frozen guide network (trained or freshly initialized).
        target: the network being trained (its layers are hooked while ``fit`` runs).
        pairs: ``None`` for :func:`uniform_pairs` over the default layers, or an explicit list of
            ``(target_layer, guide_layer)`` names.
        alpha: weight of the alignment term.
        distance: ``fn(target_act, guide_act) -> scalar``; default ``1 - linear CKA``.
        steps: apply guidance only during the first ``steps`` training steps (``None``: always).
        target_layers, guide_layers: the layers that :func:`uniform_pairs` spreads (default: the blocks).
        precision: ``"bf16"`` (default) is mixed precision for the alignment term, on CPU and CUDA:
            the frozen guide's forward pass runs under bfloat16 autocast (3x faster on this
            project's CPU) and the default distance forms its Gram matrices from centered features
            with bfloat16 products and float32 accumulation, everything else in float32. The term
            and its gradient agree with ``"fp32"`` to about 1e-3 (a test checks this). ``"fp32"``
            computes all of it in float32; other devices always do.
    """

    def __init__(self, guide: nn.Module, target: nn.Module, pairs: Sequence[tuple[str, str]] | None = None,
                 alpha: float = 1.0, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cka_distance,
                 steps: int | None = None, target_layers: Sequence[str] | None = None,
                 guide_layers: Sequence[str] | None = None, precision: str = "bf16"):
        if pairs is None:
            t = resolve_names(target, target_layers) if target_layers is not None else default_layers(target)
            g = resolve_names(guide, guide_layers) if guide_layers is not None else default_layers(guide)
            pairs = uniform_pairs(t, g)
        pairs = [tuple(p) for p in pairs]
        if not pairs:
            raise ValueError("pairs is empty: give at least one (target_layer, guide_layer) pair")
        try:
            resolve_names(target, [p[0] for p in pairs])
        except ValueError as e:
            raise ValueError(f"target layer: {e}") from None
        try:
            resolve_names(guide, [p[1] for p in pairs])
        except ValueError as e:
            raise ValueError(f"guide layer: {e}") from None
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.guide, self.target, self.pairs = guide, target, pairs
        self.alpha, self.distance, self.steps = alpha, distance, steps
        self.precision = precision
        self.calls = 0
        self._step: int | None = None
        self._acts: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self.__qualname__ = f"Guidance(alpha={alpha}, pairs={len(pairs)}, steps={steps})"

    def config(self) -> dict:
        return {"name": "Guidance", "guide": model_fingerprint(self.guide), "pairs": [list(p) for p in self.pairs],
                "alpha": self.alpha, "steps": self.steps, "precision": self.precision,
                "distance": getattr(self.distance, "__qualname__", type(self.distance).__name__)}

    # the events of wb.fit
    def on_fit_start(self, state) -> None:
        self.attach(state.model)

    def on_batch_loaded(self, state) -> None:
        self.set_step(state.step)  # steps= counts training steps, also after a resume

    def on_after_loss(self, state) -> None:
        term, logs = self(state.model, state.batch[0], state.batch[1], state.outputs)
        state.loss = state.loss + term
        state.logs.update(logs)

    def on_fit_end(self, state) -> None:
        self.detach()

    # also usable by hand: attach, then call it as fn(model, x, y, logits), then detach
    def attach(self, model: nn.Module) -> None:
        if model is not self.target:
            raise ValueError("this Guidance was built for another target model")
        self.detach()
        p = next(model.parameters(), None)
        if p is not None:
            self.guide.to(p.device)
        modules = dict(model.named_modules())
        for name in {p[0] for p in self.pairs}:
            def hook(_m, _i, out, name=name):
                self._acts[name] = out[0] if isinstance(out, (tuple, list)) else out
            self._handles.append(modules[name].register_forward_hook(hook))

    def set_step(self, step: int) -> None:
        """``fit`` reports the global step, so ``steps=`` counts training steps, also after a resume."""
        self._step = step

    def detach(self) -> None:
        self._step = None
        for h in self._handles:
            h.remove()
        self._handles = []
        self._acts = {}

    @torch.no_grad()
    def guide_activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..probe import run_with_cache

        was = self.guide.training
        self.guide.eval()
        try:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._low_precision(x)):
                _, cache = run_with_cache(self.guide, x, sorted({p[1] for p in self.pairs}))
        finally:
            self.guide.train(was)
        return {k: v.float() for k, v in cache.items()}

    def _low_precision(self, x: torch.Tensor) -> bool:
        return self.precision == "bf16" and x.device.type in ("cpu", "cuda")

    def _distances(self, guide_acts: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        if self.distance is not cka_distance:
            return torch.stack([self.distance(self._acts[t], guide_acts[g]) for t, g in self.pairs])
        # the default 1 - linear CKA, with each guide Gram matrix and its norm formed once per step
        grams = {}
        for g in {p[1] for p in self.pairs}:
            lg = gram_centered(flatten_examples(guide_acts[g]), dtype)
            grams[g] = (lg, torch.linalg.norm(lg))
        out = []
        for t, g in self.pairs:
            k = gram_centered(flatten_examples(self._acts[t].float()), dtype)
            lg, ln = grams[g]
            out.append(1 - _safe_ratio((k * lg).sum(), torch.linalg.norm(k) * ln))
        return torch.stack(out)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor):
        self.calls += 1
        step = self._step if self._step is not None else self.calls - 1
        zero = logits.new_zeros(())
        if self.alpha == 0 or (self.steps is not None and step >= self.steps):
            return zero, {"align": zero.detach(), "cka": zero.detach()}
        if not self._handles:
            raise RuntimeError("Guidance is not attached to the target: pass it to wb.fit(algorithms=[...]), "
                               "which attaches it, or call attach(target) first")
        guide_acts = self.guide_activations(x)
        dists = self._distances(guide_acts, torch.bfloat16 if self._low_precision(x) else torch.float32)
        term = self.alpha * dists.sum()
        return term, {"align": term.detach(), "cka": (1 - dists.detach()).mean()}


def train_guided(target: str, train, test=None, *, guide: nn.Module | None = None, target_kwargs: dict | None = None,
                 alpha: float = 1.0, pairs: Sequence[tuple[str, str]] | None = None, steps: int | None = None,
                 precision: str = "bf16", seed: int = 0, cache: bool = True, **fit_kwargs):
    """Train the registry model ``target`` with guidance from ``guide`` (``None``: unguided), cached.

    The cache key holds the guide's fingerprint (its class and every weight), so a trained and an
    untrained guide, or two differently trained ones, never share a result. Returns
    :class:`workbench.train.TrainResult`; with guidance its history has ``align`` and ``cka``.

    >>> res = wb.guidance.train_guided("mlp", train, test, guide=resnet, target_kwargs=dict(depth=8),
    ...                                alpha=1.0, epochs=20, optimizer="adamw", lr=1e-3)   # doctest: +SKIP
    """
    from ..train import train_model

    if guide is None:
        return train_model(target, train, test, model_kwargs=target_kwargs, seed=seed, cache=cache, **fit_kwargs)

    def setup(model: nn.Module) -> dict:
        return {"extra_loss": Guidance(guide, model, pairs=pairs, alpha=alpha, steps=steps, precision=precision)}

    key = {"guide": model_fingerprint(guide), "alpha": alpha, "pairs": [list(p) for p in pairs] if pairs else None,
           "steps": steps, "precision": precision, "mapping": "round(i(T-1)/(G-1))"}
    return train_model(target, train, test, model_kwargs=target_kwargs, seed=seed, cache=cache, setup=setup,
                       setup_key=key, **fit_kwargs)
