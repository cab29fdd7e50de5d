"""Events of the training loop, the algorithms that act at them, and the state they share.

An algorithm is an object with methods named ``on_<event>`` for the events it acts at; each
gets the loop's :class:`State` and may change it (add a term to ``state.loss``, edit gradients
after backward, swap weights after the step). Algorithms at the same event run in the order
they were given. One algorithm at most may replace the optimizer step (``replaces_step = True``
and a method ``optimizer_step(state, compute)``, where ``compute()`` runs one more forward and
backward pass, as sharpness-aware minimization needs).

A :class:`Callback` is an algorithm that only observes (progress bar, live plot): it is not part
of the run's recorded configuration, so it never changes a cache key or refuses a resume.

An algorithm that changes the model's structure at ``init`` (fake-quantized layers, say) does it in
a method ``transform(model)``, which ``on_init`` calls; ``train_model`` calls it too on a model it
rebuilds from the cache, so that the cached weights fit.

An algorithm with state (a schedule's position, an average of the weights, a noise generator)
returns it from ``state_dict()`` as a flat ``{name: tensor | JSON value}`` mapping and takes it
back in ``load_state_dict``; the checkpoint stores it, so a resumed run ends bit-identical.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = ["EVENTS", "Algorithm", "Callback", "State", "check_algorithms", "describe"]

EVENTS = ("init", "fit_start", "epoch_start", "batch_loaded", "before_forward", "after_forward", "after_loss",
          "after_backward", "after_step", "epoch_end", "fit_end")


class Algorithm:
    """Base class of algorithms (optional: any object with ``on_<event>`` methods works).

    ``super().__init__(**arguments)`` records the arguments: they describe the algorithm in the
    run's configuration, its checkpoints and ``train_model``'s cache key.
    """

    replaces_step = False
    observer = False

    def __init__(self, **arguments: Any):
        self.arguments = arguments

    @property
    def name(self) -> str:
        return type(self).__name__

    def config(self) -> dict[str, Any]:
        """What tells this algorithm apart from another: its name and recorded arguments."""
        return {"name": self.name, **{k: _jsonable(v) for k, v in getattr(self, "arguments", {}).items()}}

    def state_dict(self) -> dict[str, Any] | None:
        """State to checkpoint: ``None`` (the default) for an algorithm without state."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class Callback(Algorithm):
    """An algorithm that only observes: not recorded in the configuration, no state."""

    observer = True


@dataclass
class State:
    """What the loop and its algorithms share. ``step`` counts optimizer steps taken so far."""

    model: nn.Module
    forward: Callable                     # the model, or its compiled version
    task: Any
    device: torch.device
    precision: str
    seed: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    weight_decay: float
    trainable: dict[str, nn.Parameter] = field(default_factory=dict)
    no_decay: list[str] = field(default_factory=list)   # trainable names put in a group without weight decay
    optimizer: torch.optim.Optimizer | None = None
    epoch: int = 0
    batch_index: int = 0
    step: int = 0
    lr: float = 0.0
    batch: Any = None
    outputs: Any = None
    loss: torch.Tensor | None = None
    logs: dict[str, Any] = field(default_factory=dict)  # per-batch means, averaged into the history
    pass_index: int = 0                   # 0 for a step's first forward pass, 1... for re-evaluations
    rows: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)  # this epoch's training means so far
    error: BaseException | None = None   # set when fit_end fires after a failure
    peek: Callable[[], Any] | None = None  # set by the loop; use peek_batch()

    def peek_batch(self) -> Any:
        """The batch the loop will load next in this epoch, or ``None`` after the epoch's last batch.

        It is drawn from the loader now and handed to the loop unchanged (the same objects), so that an
        algorithm can start work on it early (ConAdv's attack on the next batch, concurrently with this
        step); algorithms that edit batches at ``batch_loaded`` have not seen it yet."""
        return self.peek() if self.peek is not None else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor) and v.numel() <= 16:
        return v.tolist()
    return getattr(v, "cache_key", None) or getattr(v, "__qualname__", None) or type(v).__name__


def describe(obj: Any) -> Any:
    """The recorded form of a task or an algorithm: its ``config()``, else its name."""
    cfg = getattr(obj, "config", None)
    return _jsonable(cfg()) if callable(cfg) else _jsonable(obj)


def _name(a: Any) -> str:
    return getattr(a, "name", None) or type(a).__name__


def handlers(algorithms: Iterable[Any]) -> dict[str, list[Callable[[State], None]]]:
    """``{event: [bound methods in the order given]}``."""
    return {e: [getattr(a, f"on_{e}") for a in algorithms if callable(getattr(a, f"on_{e}", None))] for e in EVENTS}


def check_algorithms(algorithms: Iterable[Any]) -> list[Any]:
    """Validate a list of algorithms; every problem names the algorithm and the fix."""
    algorithms = list(algorithms)
    for a in algorithms:
        if isinstance(a, type):
            raise TypeError(f"algorithms= got the class {a.__name__}, not an instance: write {a.__name__}(...)")
        if callable(a) and not any(callable(getattr(a, f"on_{e}", None)) for e in EVENTS):
            raise TypeError(f"algorithms= got the function {_name(a)}, which acts at no event; a loss term goes in "
                            "extra_loss=fn(model, x, y, logits), anything else in an Algorithm with on_<event> methods")
        listens = [m for m in dir(a) if m.startswith("on_") and callable(getattr(a, m, None))]
        for m in listens:
            if m[3:] not in EVENTS:
                near = difflib.get_close_matches(m[3:], EVENTS, n=1)
                hint = f" (did you mean on_{near[0]}?)" if near else ""
                raise ValueError(f"algorithm {_name(a)} listens to {m}, but the loop has no event {m[3:]!r}{hint}; "
                                 f"the events are {', '.join(EVENTS)}")
        if not listens and not getattr(a, "replaces_step", False):
            raise TypeError(f"{_name(a)} has no on_<event> method, so it would never act; events: {', '.join(EVENTS)}")
        if getattr(a, "replaces_step", False) and not callable(getattr(a, "optimizer_step", None)):
            raise TypeError(f"algorithm {_name(a)} says replaces_step = True but has no optimizer_step(state, compute)")
    steppers = [a for a in algorithms if getattr(a, "replaces_step", False)]
    if len(steppers) > 1:
        raise ValueError(f"algorithms {_name(steppers[0])} and {_name(steppers[1])} both replace the optimizer step, "
                         "and one step cannot be taken two ways: keep one of them (a sharpness-aware optimizer= "
                         "counts as one)")
    return algorithms
