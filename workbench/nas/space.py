"""A search space as data: named choices, each a tuple of plain values.

>>> from workbench.nas import SearchSpace
>>> space = SearchSpace({"depth": (1, 2, 3), "width": (16, 32), "op": ("conv", "pool")})
>>> space.size()
12
>>> arch = space.sample(0)                        # a plain dict, JSON-able
>>> space.key(arch) == space.key(dict(arch))      # the stable string results are cached under
True

An architecture is a flat ``{name: value}`` dict with one value per choice; values are numbers, strings,
booleans or ``None``, so an architecture is JSON and a cache key as it stands. Structured spaces (the
blocks of a NASNet cell, the stages of a ViT) name their choices ``"normal.0.op_a"``,
``"stage2.width"``, and their modules turn the flat dict into structure. Two spaces with different names
join with ``a | b`` (an architecture and a quantization policy searched together).

The search strategies (:mod:`workbench.nas.search`) only use :meth:`SearchSpace.sample`,
:meth:`SearchSpace.mutate` and :meth:`SearchSpace.key`, so any space written this way can be searched by
random search, regularized evolution (Real et al. 2019, https://arxiv.org/abs/1802.01548) or Optuna.
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
from typing import Any, Iterator, Mapping, Sequence

import torch

__all__ = ["SearchSpace", "as_generator"]

Value = Any  # int | float | str | bool | None


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A ``torch.Generator`` from a seed (``int``), a generator as it is, or ``None`` (torch's global one)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator is a torch.Generator, an int seed or None, got {type(generator).__name__}")
    return torch.Generator().manual_seed(generator)


def _randint(n: int, gen: torch.Generator | None) -> int:
    return int(torch.randint(n, (), generator=gen))


def _same(a: Value, b: Value) -> bool:
    """Equal values of the same kind (``True`` is not ``1``; ``1`` is ``1.0``)."""
    return isinstance(a, bool) == isinstance(b, bool) and (a is None) == (b is None) and a == b


class SearchSpace:
    """Named choices, each a non-empty tuple of distinct plain values.

    Args:
        choices: ``{name: (value, ...)}`` in the order the space samples them; a value is a number, a
            string, a boolean or ``None``.

    Raises:
        ValueError: an empty space, an empty choice (naming it), repeated values, a value of another type.
    """

    def __init__(self, choices: Mapping[str, Sequence[Value]]):
        if isinstance(choices, SearchSpace):
            choices = choices.choices
        if not isinstance(choices, Mapping) or not choices:
            raise ValueError("a search space is a non-empty dict {name: (value, ...)}, such as "
                             f"{{'depth': (1, 2, 3), 'width': (16, 32)}}; got {choices!r}")
        out: dict[str, tuple] = {}
        for name, values in choices.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"choice names are non-empty strings, got {name!r}")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ValueError(f"choice {name!r} must be a tuple or list of values, got {values!r}")
            values = tuple(values)
            if not values:
                raise ValueError(f"choice {name!r} is empty: give it at least one value, such as ({name!r}: (1, 2)), "
                                 "or leave the key out of the space")
            bad = [v for v in values if not (v is None or isinstance(v, (bool, int, float, str)))
                   or (isinstance(v, float) and not math.isfinite(v))]
            if bad:
                raise ValueError(f"choice {name!r} holds {bad[0]!r}; values are finite numbers, strings, booleans or "
                                 "None (give structure as several choices, such as 'block0.op' and 'block0.input')")
            if any(_same(a, b) for a, b in itertools.combinations(values, 2)):
                raise ValueError(f"choice {name!r} repeats a value: {values}; list each value once")
            out[name] = values
        self.choices = out

    # -- the space ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"SearchSpace({self.choices!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.choices == other.choices

    def __len__(self) -> int:
        return len(self.choices)

    def __iter__(self) -> Iterator[str]:
        return iter(self.choices)

    def __getitem__(self, name: str) -> tuple:
        return self.choices[name]

    def __or__(self, other: "SearchSpace") -> "SearchSpace":
        """The product of two spaces with different names (``arch_space | bits_space``)."""
        other = other if isinstance(other, SearchSpace) else SearchSpace(other)
        both = sorted(set(self.choices) & set(other.choices))
        if both:
            raise ValueError(f"both spaces name {both[:4]}; rename the choices of one of them (a prefix such as 'q.')")
        return SearchSpace({**self.choices, **other.choices})

    def size(self) -> int:
        """The number of architectures: the product of the choices' lengths (an exact integer)."""
        return math.prod(len(v) for v in self.choices.values())

    def grid(self, limit: int = 1_000_000) -> Iterator[dict[str, Value]]:
        """Every architecture, in order (the last choice varies fastest); refused above ``limit``."""
        if self.size() > limit:
            raise ValueError(f"the space holds {self.size():.3g} architectures, more than limit={limit}; "
                             "sample it instead, or raise the limit")
        for values in itertools.product(*self.choices.values()):
            yield dict(zip(self.choices, values))

    # -- architectures ------------------------------------------------------------------------------
    def validate(self, arch: Mapping[str, Value]) -> dict[str, Value]:
        """``arch`` checked and in the space's order and values (``1`` becomes ``1.0`` where the choice is ``1.0``).

        Raises:
            ValueError: not a dict, an unknown name (with the nearest known one), a missing name, a value
                outside its choice (with the valid values).
        """
        if not isinstance(arch, Mapping):
            raise ValueError(f"an architecture is a dict {{name: value}} over {list(self.choices)[:6]}, "
                             f"got {type(arch).__name__}")
        unknown = [k for k in arch if k not in self.choices]
        if unknown:
            near = difflib.get_close_matches(str(unknown[0]), list(self.choices), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"architecture names {unknown[:4]}, which the space does not have{hint}; "
                             f"its choices are {list(self.choices)[:8]}{' ...' if len(self.choices) > 8 else ''}")
        missing = [k for k in self.choices if k not in arch]
        if missing:
            raise ValueError(f"architecture has no value for {missing[:4]}; give every choice of the space a value")
        out = {}
        for name, values in self.choices.items():
            v = arch[name]
            hit = [c for c in values if _same(c, v)]
            if not hit:
                raise ValueError(f"architecture value {v!r} for {name!r} is not in the space; "
                                 f"choose one of {list(values)}")
            out[name] = hit[0]
        return out

    def key(self, arch: Mapping[str, Value]) -> str:
        """A stable string for ``arch`` (JSON in the space's order): results are cached under it."""
        return json.dumps(self.validate(arch), separators=(",", ":"))

    def from_key(self, key: str) -> dict[str, Value]:
        """The architecture of :meth:`key`."""
        return self.validate(json.loads(key))

    def encode(self, arch: Mapping[str, Value]) -> list[int]:
        """The index of each value within its choice (features for a predictor)."""
        arch = self.validate(arch)
        return [next(i for i, c in enumerate(v) if _same(c, arch[n])) for n, v in self.choices.items()]

    def decode(self, indices: Sequence[int]) -> dict[str, Value]:
        """The architecture of :meth:`encode`'s indices."""
        if len(indices) != len(self.choices):
            raise ValueError(f"decode needs {len(self.choices)} indices, one per choice, got {len(indices)}")
        out = {}
        for (n, v), i in zip(self.choices.items(), indices):
            if not 0 <= int(i) < len(v):
                raise ValueError(f"index {i} for {n!r} is outside 0..{len(v) - 1}")
            out[n] = v[int(i)]
        return out

    def sample(self, generator: torch.Generator | int | None = None) -> dict[str, Value]:
        """An architecture drawn uniformly: each choice independently, in the space's order."""
        gen = as_generator(generator)
        return {n: v[_randint(len(v), gen)] for n, v in self.choices.items()}

    def mutate(self, arch: Mapping[str, Value], generator: torch.Generator | int | None = None,
               p: float | None = None) -> dict[str, Value]:
        """A copy of ``arch`` with changed choices, each new value drawn from the others of its choice.

        Args:
            p: ``None``: exactly one choice changes (drawn uniformly among those with two values or more,
                as in regularized evolution); a probability in (0, 1]: each such choice changes with
                probability ``p``, and one at least.
        """
        if p is not None and not 0 < p <= 1:
            raise ValueError(f"p is a probability in (0, 1] (or None for exactly one change), got {p!r}")
        gen = as_generator(generator)
        out = self.validate(arch)
        free = [n for n, v in self.choices.items() if len(v) > 1]
        if not free:
            raise ValueError("every choice of this space has one value: there is nothing to mutate")
        if p is None:
            change = [free[_randint(len(free), gen)]]
        else:
            change = [n for n in free if float(torch.rand((), generator=gen)) < p] or [free[_randint(len(free), gen)]]
        for n in change:
            others = [c for c in self.choices[n] if not _same(c, out[n])]
            out[n] = others[_randint(len(others), gen)]
        return out
