"""The synthetic long-memory tasks of recurrent networks, and a loader that serves them to ``wb.fit``.

* :func:`adding_problem` (Hochreiter & Schmidhuber 1997; the form of Le, Jaitly & Hinton, arXiv:1504.00941):
  a sequence of ``length`` steps, each two numbers: a value drawn uniformly from [0, 1] and a marker that is
  1 at exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the two marked values.
  Always answering 1 (the target's mean) gives a mean squared error of ``Var(u1 + u2) = 2 / 12 = 0.167``:
  the baseline a network must beat to have remembered anything.
* :func:`copy_task` (Hochreiter & Schmidhuber 1997; the form of Arjovsky, Shah & Bengio, arXiv:1511.06464):
  ``copy_length`` symbols from an alphabet of ``symbols``, then ``delay`` blanks, a delimiter, and
  ``copy_length`` more blanks during which the network must output the symbols in order. Outputs are
  per step: blank everywhere except the last ``copy_length`` steps. Answering blank until the delimiter and
  then guessing uniformly gives a cross-entropy of ``copy_length * log(symbols) / (delay + 2 * copy_length)``
  per step (the memoryless baseline).

Sequences are float ``[N, T, F]`` (one-hot symbols for the copy task); targets are float ``[N]`` (adding) or
int64 ``[N, T]`` (copy). :class:`SequenceLoader` serves them in batches like :class:`Loader` serves images
(order a function of ``seed`` and the epoch, so a resumed run is exact).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .loader import TensorLoader

__all__ = ["SequenceData", "SequenceLoader", "adding_problem", "copy_task", "ADDING_BASELINE_MSE",
           "copy_baseline_loss"]

ADDING_BASELINE_MSE = 2 / 12  # Var(u1 + u2) for two independent U(0, 1) values


@dataclass
class SequenceData:
    """Sequences ``x`` ``[N, T, F]`` (float) and targets ``y`` (float ``[N]`` or int64 ``[N, T]``)."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = "sequences"
    split: str = "train"
    source: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.x, torch.Tensor) and self.x.ndim == 3 and self.x.is_floating_point()):
            got = tuple(self.x.shape) if isinstance(self.x, torch.Tensor) else type(self.x).__name__
            raise ValueError(f"x must be float sequences [N, T, F], got {got}")
        if not isinstance(self.y, torch.Tensor) or len(self.y) != len(self.x):
            raise ValueError(f"y must be a tensor with one target per sequence ({len(self.x)})")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def length(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str) -> "SequenceData":
        return SequenceData(self.x.to(device), self.y.to(device), self.name, self.split, self.source)


def _check(n: int, **lengths: int) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    for k, v in lengths.items():
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{k} must be a positive integer, got {v!r}")


def adding_problem(n: int, length: int, seed: int = 0, split: str = "train") -> SequenceData:
    """``n`` adding-problem sequences of ``length`` steps (see the module docstring), deterministic per seed."""
    _check(n, length=length)
    if length < 2:
        raise ValueError(f"length must be at least 2 (one marker in each half), got {length}")
    g = torch.Generator().manual_seed(int(seed))
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(half, (n,), generator=g)
    second = half + torch.randint(length - half, (n,), generator=g)
    markers = torch.zeros(n, length)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    y = values[torch.arange(n), first] + values[torch.arange(n), second]
    return SequenceData(torch.stack([values, markers], -1), y, f"adding{length}", split,
                        f"adding problem, {n} sequences of length {length} (seed {seed})")


def copy_task(n: int, delay: int, symbols: int = 8, copy_length: int = 10, seed: int = 0,
              split: str = "train") -> SequenceData:
    """``n`` copy-task sequences (see the module docstring): inputs one-hot over ``symbols + 2`` channels
    (0: blank, 1..symbols: the symbols, symbols + 1: the delimiter), length ``delay + 2 * copy_length``."""
    _check(n, delay=delay, symbols=symbols, copy_length=copy_length)
    g = torch.Generator().manual_seed(int(seed))
    T = delay + 2 * copy_length
    seq = 1 + torch.randint(symbols, (n, copy_length), generator=g)          # symbols 1..symbols
    tokens = torch.zeros(n, T, dtype=torch.int64)
    tokens[:, :copy_length] = seq
    tokens[:, copy_length + delay - 1] = symbols + 1                           # the delimiter
    target = torch.zeros(n, T, dtype=torch.int64)
    target[:, -copy_length:] = seq
    x = torch.nn.functional.one_hot(tokens, symbols + 2).float()
    return SequenceData(x, target, f"copy{delay}", split,
                        f"copy task, {n} sequences: {copy_length} of {symbols} symbols, delay {delay} (seed {seed})")


def copy_baseline_loss(delay: int, symbols: int = 8, copy_length: int = 10) -> float:
    """The memoryless copy-task cross-entropy per step: ``copy_length * log(symbols) / (delay + 2 copy_length)``."""
    return copy_length * math.log(symbols) / (delay + 2 * copy_length)


class SequenceLoader(TensorLoader):
    """Batches ``(x [B, T, F], y)`` of a :class:`SequenceData`, shuffled per epoch from ``seed``."""

    data_type, made_by = SequenceData, "wb.data.adding_problem, copy_task"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.x[idx], self.dataset.y[idx]
