"""Put a model in analysis mode and give it back exactly as it came.

Used by the Hessian and loss-landscape tools. Inside: dropout off, BatchNorm in evaluation mode
(running statistics) or, with ``bn="train"``, using each batch's own statistics without updating
the running ones; only the chosen parameters require gradients. Outside: parameters, buffers
(BatchNorm statistics and counters), ``requires_grad`` flags and every module's train/eval flag
as before, also after an exception.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import torch
from torch import nn

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
BN_MODES = ("eval", "train")


def check_bn_mode(bn: str) -> str:
    if bn not in BN_MODES:
        raise ValueError(f"bn must be 'eval' (running statistics) or 'train' (each batch's statistics), got {bn!r}")
    return bn


def weighted_batches(batches: Iterable, purpose: str) -> tuple[list, list[float]]:
    """The batches as a list and each one's weight ``len(x) / total``, so that a weighted sum
    of batch means is the mean over all the data whatever the split. ``purpose`` completes
    the error message for an empty list ("... batches to <purpose>")."""
    batches = list(batches)
    if not batches:
        raise ValueError(f"batches is empty: pass a list of (inputs, targets) batches to {purpose}")
    for i, b in enumerate(batches):
        if not isinstance(b, (tuple, list)) or len(b) != 2 or len(b[0]) == 0:
            raise ValueError(f"batches[{i}] must be a non-empty (inputs, targets) pair")
    sizes = [len(b[0]) for b in batches]
    total = sum(sizes)
    return batches, [n / total for n in sizes]


class analysis_mode:
    """Context manager: ``with analysis_mode(model, bn, grad_params): ...``.

    ``grad_params``: the parameters that should require gradients inside (``None``: none do).
    Re-entrant: only the outermost entry saves and restores.
    """

    def __init__(self, model: nn.Module, bn: str = "eval", grad_params: Iterable[nn.Parameter] | None = None,
                 stacklevel: int = 3):
        self.model, self.bn = model, check_bn_mode(bn)
        self.grad_ids = {id(p) for p in grad_params} if grad_params is not None else set()
        self.stacklevel = stacklevel
        self._saved = None
        self._depth = 0

    @property
    def active(self) -> bool:
        return self._saved is not None

    def __enter__(self):
        self._depth += 1
        if self._depth > 1:
            return self
        m = self.model
        self._saved = {
            "training": {name: mod.training for name, mod in m.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in m.named_parameters()},
            "buffers": {n: b.detach().clone() for n, b in m.named_buffers()},
            "track": {name: mod.track_running_stats for name, mod in m.named_modules() if isinstance(mod, BN_TYPES)},
        }
        if any(isinstance(mod, DROPOUT_TYPES) and mod.training and mod.p > 0 for mod in m.modules()):
            warnings.warn("the model is in train mode with active dropout; dropout is turned off for this analysis "
                          "and the model's mode is restored afterwards", UserWarning, stacklevel=self.stacklevel)
        m.eval()
        if self.bn == "train":
            for mod in m.modules():
                if isinstance(mod, BN_TYPES):
                    mod.train()
                    mod.track_running_stats = False   # batch statistics; running ones left alone
        for p in m.parameters():
            p.requires_grad_(id(p) in self.grad_ids)
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth > 0:
            return False
        s, m = self._saved, self.model
        with torch.no_grad():
            for n, b in m.named_buffers():
                if n in s["buffers"]:
                    b.copy_(s["buffers"][n])
        for n, p in m.named_parameters():
            p.requires_grad_(s["requires_grad"][n])
        for name, mod in m.named_modules():
            mod.training = s["training"][name]
            if name in s["track"]:
                mod.track_running_stats = s["track"][name]
        self._saved = None
        return False
