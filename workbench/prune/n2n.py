"""N2N learning: a teacher ResNet compressed into a student by two policy-gradient controllers.

Ashok, Rhinehart, Beainy & Kitani, *N2N Learning: Network to Network Compression via Policy Gradient
Reinforcement Learning*, ICLR 2018, https://arxiv.org/abs/1709.06030.

Two stages, each a recurrent policy over the teacher's layers trained with REINFORCE:

1. **layer removal**: a bidirectional LSTM reads a description of every layer and outputs, per layer,
   the probability of keeping it; a rollout keeps or removes each layer;
2. **layer shrinkage**: an LSTM that also reads its previous action chooses, per remaining layer, a
   shrink ratio from a discrete set.

Each sampled student is trained briefly by knowledge distillation from the teacher and scored by::

    R = C (2 - C) * A_student / A_teacher,     C = 1 - params_student / params_teacher

(``R = -1`` for an invalid student: one over a parameter budget, or whose training diverged). The
controller ascends ``mean_i (R_i - b) * grad log pi(a_i)`` over the update's rollouts, where ``b`` is a
moving average of past rewards.

What is ours. The "layers" of a CIFAR ResNet are its residual blocks: removal drops a whole block
(only those with an identity skip; a block with a projection shortcut changes the shape and is always
kept), shrinkage keeps ``max(C - round((1 - r) C), 1)`` filters of each block's inner ``conv1`` (the L1
choice of :func:`~workbench.prune.structured.channel_masks`), so residual shapes never break and every
student is valid. Students are physically smaller: a removed block is replaced by ``nn.Identity``
(what ``BasicBlock.active = False`` computes, without the parameters), and shrunk channels are cut out
by :func:`~workbench.prune.structured.compact`. The students train through ``wb.fit`` with the
distillation task of :mod:`workbench.transfer`; only the controller has its own small loop (a policy
gradient is not a ``fit`` extension), which checkpoints after every update and resumes bit for bit.
The controller's output layer starts at zero, so before its first update it *is* the random policy
(keep probability 1/2, ratios uniform): :class:`RandomPolicy` is the baseline of the same action space.
"""
from __future__ import annotations

import copy
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..models.resnet_cifar import BasicBlock
from ..train.cached import data_fingerprint, model_fingerprint
from ..train.checkpoint import load_checkpoint, resume_point, save_checkpoint
from ..train.trainer import NonFiniteLossError, evaluate, fit
from .structured import _blocks, channel_masks, compact

__all__ = ["RATIOS", "STAGES", "Controller", "RandomPolicy", "random_policy", "random_actions", "block_names",
           "removable_blocks", "layer_features", "make_student", "student_params", "reward", "n2n_search",
           "N2NResult", "random_like", "distill_student"]

RATIOS = (1.0, 0.75, 0.5, 0.25)  # shrink ratios of a block's inner conv1 (share of filters kept)
STAGES = ("removal", "shrink")
_FREE = -2  # forced[i] == _FREE: the policy chooses action i
_NONE = -1  # the shrink action of a removed block (no ratio; its ratio reads as 1.0)


# -- the action space ---------------------------------------------------------------------------------

def block_names(model: nn.Module) -> list[str]:
    """The residual blocks of a CIFAR ResNet in forward order (``["layer1.0", ...]``): N2N's layers."""
    return list(_blocks(model))


def removable_blocks(model: nn.Module) -> list[bool]:
    """Per block: can it be removed? Only a block with an identity skip (no projection shortcut)
    computes ``x + branch(x)``, which is ``x`` without the branch."""
    return [b.skip and b.shortcut is None for b in _blocks(model).values()]


def _why_kept(block: BasicBlock) -> str:
    if not block.skip:
        return "it has no skip connection (a plain network), so without it the input would not pass through"
    conv = block.shortcut[0]
    return (f"it has a projection shortcut (1x1 conv, stride {conv.stride[0]}, {conv.in_channels} -> "
            f"{conv.out_channels} channels) that changes the feature map's shape")


def _check_removal(model: nn.Module, removal: Sequence | torch.Tensor | None) -> list[int]:
    blocks = _blocks(model)
    names = list(blocks)
    if removal is None:
        return [1] * len(names)
    vals = removal.tolist() if isinstance(removal, torch.Tensor) else list(removal)
    if len(vals) != len(names):
        raise ValueError(f"removal_actions has {len(vals)} entries but {type(model).__name__} has {len(names)} "
                         f"residual blocks ({', '.join(names)}): give one 1 (keep) or 0 (remove) per block")
    out = []
    for name, v in zip(names, vals):
        if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) and float(v).is_integer():
            v = int(v)
        if not isinstance(v, numbers.Integral) or v not in (0, 1):
            raise ValueError(f"removal_actions holds {v!r} for block {name!r}: each entry is 1 (keep) or 0 (remove)")
        if not v and not (blocks[name].skip and blocks[name].shortcut is None):
            raise ValueError(f"block {name!r} cannot be removed: {_why_kept(blocks[name])}. Keep it (1); the blocks "
                             f"that can go are {[n for n, ok in zip(names, removable_blocks(model)) if ok]}")
        out.append(int(v))
    return out


def _check_ratio(r: Any, what: str) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 0 < r <= 1:
        raise ValueError(f"{what} is {r!r}: a shrink ratio is the share of the block's conv1 filters kept, in "
                         "(0, 1] (1.0 keeps all, 0.25 a quarter)")
    return float(r)


def _check_shrink(model: nn.Module, shrink: Sequence | torch.Tensor | None) -> list[float]:
    names = block_names(model)
    if shrink is None:
        return [1.0] * len(names)
    vals = shrink.tolist() if isinstance(shrink, torch.Tensor) else list(shrink)
    if len(vals) != len(names):
        raise ValueError(f"shrink_actions has {len(vals)} entries but {type(model).__name__} has {len(names)} "
                         f"residual blocks ({', '.join(names)}): give one ratio in (0, 1] per block (1.0: no shrink; "
                         "a removed block's entry is ignored)")
    return [_check_ratio(r, f"shrink_actions[{i}] (block {n!r})") for i, (n, r) in enumerate(zip(names, vals))]


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    ratios = tuple(_check_ratio(r, "an entry of ratios") for r in ratios)
    if len(ratios) < 2 or len(set(ratios)) != len(ratios):
        raise ValueError(f"ratios are the shrink choices, at least two distinct values in (0, 1], got {ratios}")
    return ratios


def _kept_channels(channels: int, ratio: float) -> int:
    """Filters ``channel_masks(model, 1 - ratio)`` keeps of a layer of ``channels``."""
    return max(channels - round((1.0 - ratio) * channels), 1)


def student_params(teacher: nn.Module, removal_actions=None, shrink_actions=None) -> int:
    """The parameter count of ``make_student(teacher, removal_actions, shrink_actions)``, computed from
    the teacher's shapes without building the student."""
    keep, ratios = _check_removal(teacher, removal_actions), _check_shrink(teacher, shrink_actions)
    total = sum(p.numel() for p in teacher.parameters())
    for k, r, block in zip(keep, ratios, _blocks(teacher).values()):
        if not k:
            total -= sum(p.numel() for p in block.parameters())
            continue
        c = block.conv1.out_channels
        gone = c - _kept_channels(c, r)
        per_channel = block.conv1.weight[0].numel() + block.conv2.weight[:, 0].numel()  # a filter, an input slice
        per_channel += sum(1 for p in (block.bn1.weight, block.bn1.bias) if p is not None)
        per_channel += 1 if block.conv1.bias is not None else 0
        total -= gone * per_channel
    return total


def make_student(teacher: nn.Module, removal_actions=None, shrink_actions=None) -> tuple[nn.Module, int]:
    """A physically smaller copy of ``teacher``: the removed blocks replaced by ``nn.Identity`` and each
    kept block's ``conv1`` cut to its ``ratio`` of filters (the largest L1 norms stay, with their ``bn1``
    entries and ``conv2`` input kernels). ``teacher`` is left untouched.

    Args:
        teacher: a CIFAR ResNet (``wb.create_model("resnet20")``, trained).
        removal_actions: one 1 (keep) or 0 (remove) per residual block (:func:`block_names`); only
            blocks with an identity skip can be removed. ``None``: keep all.
        shrink_actions: one ratio in (0, 1] per block, the share of its ``conv1`` filters kept
            (``max(C - round((1 - r) C), 1)`` of ``C``); ignored for removed blocks. ``None``: all 1.0.

    Returns:
        ``(student, parameter count)``; the student's parameters all require gradients and it is in the
        teacher's train/eval mode. Its ``model_name`` still names the teacher's architecture: rebuild it
        with :func:`make_student`, not ``wb.train.load_model`` without a model.

    Example:
        >>> teacher = wb.create_model("resnet14", width=4)                              # doctest: +SKIP
        >>> student, n = make_student(teacher, [1, 0, 1, 0, 1, 1], [1, 1, .5, 1, .25, .5])  # doctest: +SKIP
    """
    keep, ratios = _check_removal(teacher, removal_actions), _check_shrink(teacher, shrink_actions)
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        # a teacher frozen by distillation passes its flags on to a deepcopy, and the pruning graph of
        # compact() only traces parameters that require gradients
        p.requires_grad_(True)
    names = list(_blocks(student))
    for name, k in zip(names, keep):
        if not k:
            parent, _, leaf = name.rpartition(".")
            setattr(student.get_submodule(parent) if parent else student, leaf, nn.Identity())
    masks: dict[str, torch.Tensor] = {}
    for name, k, r in zip(names, keep, ratios):
        if k and _kept_channels(student.get_submodule(name).conv1.out_channels, r) < \
                student.get_submodule(name).conv1.out_channels:
            masks.update(channel_masks(student, 1.0 - r, "l1", layers=[f"{name}.conv1"]))
    if masks:
        student = compact(student, masks)
    return student, sum(p.numel() for p in student.parameters())


def reward(acc: float, teacher_acc: float, compression: float, *, valid: bool = True, penalty: float = -1.0) -> float:
    """N2N's reward ``C (2 - C) * acc / teacher_acc`` (``penalty`` for an invalid student).

    ``C (2 - C)`` rises from 0 (no compression) to 1 (everything removed) with a slope that falls as
    ``C`` grows, so accuracy weighs more once the student is already small.

    Args:
        acc: the student's accuracy in [0, 1].
        teacher_acc: the teacher's accuracy in (0, 1].
        compression: ``1 - student params / teacher params``, in [0, 1].
        valid: ``False`` gives ``penalty`` (over budget, diverged).
    """
    if not valid:
        return float(penalty)
    checks = (("acc", acc, False), ("teacher_acc", teacher_acc, True), ("compression", compression, False))
    for name, v, lo_open in checks:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not (
                (0 < v if lo_open else 0 <= v) and v <= 1):
            raise ValueError(f"{name} must be a number in {'(0' if lo_open else '[0'}, 1], got {v!r}"
                             + ("; an accuracy is a fraction (0.91, not 91)" if "acc" in name else
                                "; compression is 1 - student params / teacher params"))
    return float(compression * (2.0 - compression) * acc / teacher_acc)


# -- policies -----------------------------------------------------------------------------------------

def layer_features(model: nn.Module, removal_actions=None) -> torch.Tensor:
    """``[blocks, 8]``: what a controller reads about each block: position, stage, input and output
    channels (relative to the widest), stride 2, projection shortcut, removable, kept (by ``removal_actions``)."""
    blocks = list(_blocks(model).values())
    keep = _check_removal(model, removal_actions)
    widest = max(b.conv1.out_channels for b in blocks)
    stages = [n.split(".")[0] for n in _blocks(model)]
    order = list(dict.fromkeys(stages))
    n = len(blocks)
    rows = [[i / max(n - 1, 1), order.index(s) / max(len(order) - 1, 1), b.conv1.in_channels / widest,
             b.conv1.out_channels / widest, float(b.conv1.stride[0] > 1), float(b.shortcut is not None),
             float(b.skip and b.shortcut is None), float(k)]
            for i, (b, s, k) in enumerate(zip(blocks, stages, keep))]
    return torch.tensor(rows, dtype=torch.float32)


class _Policy(nn.Module):
    """What both policies share: the stage, the shrink ratios, the forced actions, and turning a row of
    actions into ``(removal_actions, shrink_actions)`` for :func:`make_student`."""

    def __init__(self, teacher: nn.Module, stage: str, removal_actions, ratios: Sequence[float]):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage is 'removal' (which blocks stay) or 'shrink' (how wide each stays), got {stage!r}")
        if stage == "removal" and removal_actions is not None:
            raise ValueError("removal_actions fixes the blocks for the shrink stage; the removal stage chooses them")
        self.stage, self.ratios = stage, _check_ratios(ratios)
        self.removal = _check_removal(teacher, removal_actions)
        self.blocks = block_names(teacher)
        if stage == "removal":
            forced = [_FREE if ok else 1 for ok in removable_blocks(teacher)]
        else:
            forced = [_FREE if k else _NONE for k in self.removal]
        if _FREE not in forced:
            raise ValueError(f"the {stage} stage has nothing to choose: "
                             + ("no block of this network can be removed (each has a projection shortcut or no "
                                "skip)" if stage == "removal" else "every block is removed"))
        self.register_buffer("forced", torch.tensor(forced, dtype=torch.long), persistent=False)
        self.register_buffer("features", layer_features(teacher, self.removal), persistent=False)
        self.choices = 2 if stage == "removal" else len(self.ratios)

    @property
    def free(self) -> torch.Tensor:
        return self.forced == _FREE  # [L]

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        actions = torch.as_tensor(actions, dtype=torch.long)
        if actions.ndim == 1:
            actions = actions[None]
        if actions.ndim != 2 or actions.shape[1] != len(self.blocks):
            raise ValueError(f"actions are [rollouts, {len(self.blocks)}] (one per block), got {list(actions.shape)}")
        free = self.free
        if not torch.equal(actions[:, ~free], self.forced[~free].expand(len(actions), -1)):
            raise ValueError(f"actions differ from the forced ones at blocks "
                             f"{[b for b, f in zip(self.blocks, free.tolist()) if not f]} (expected "
                             f"{self.forced[~free].tolist()})")
        a = actions[:, free]
        if a.numel() and (a.min() < 0 or a.max() >= self.choices):
            raise ValueError(f"free actions are in 0..{self.choices - 1}, got {a.unique().tolist()}")
        return actions

    def to_student_actions(self, actions) -> tuple[list[int], list[float]]:
        """One rollout's actions as ``(removal_actions, shrink_actions)`` of :func:`make_student`."""
        a = self._check_actions(actions)[0].tolist()
        if self.stage == "removal":
            return [int(v) for v in a], [1.0] * len(a)
        return list(self.removal), [1.0 if v == _NONE else self.ratios[v] for v in a]

    def config(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "stage": self.stage, "ratios": list(self.ratios),
                "removal": self.removal, "blocks": self.blocks}


class RandomPolicy(_Policy):
    """The baseline of the same action space: each removable block kept with probability ``keep_prob``
    (removal), or each kept block's ratio drawn uniformly from ``ratios`` (shrink)."""

    def __init__(self, teacher: nn.Module, stage: str = "removal", *, removal_actions=None,
                 ratios: Sequence[float] = RATIOS, keep_prob: float = 0.5):
        super().__init__(teacher, stage, removal_actions, ratios)
        if not 0 < keep_prob < 1:
            raise ValueError(f"keep_prob must be in (0, 1), got {keep_prob!r}")
        self.keep_prob = float(keep_prob)

    def _probs(self) -> torch.Tensor:  # [choices]
        if self.stage == "removal":
            return torch.tensor([1 - self.keep_prob, self.keep_prob])
        return torch.full((self.choices,), 1.0 / self.choices)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` rollouts: ``(actions [n, blocks] long, log_prob [n])``."""
        idx = torch.multinomial(self._probs(), n * int(self.free.sum()), replacement=True, generator=generator)
        actions = self.forced.expand(n, -1).clone()
        actions[:, self.free] = idx.view(n, -1)
        return actions, self.log_prob(actions)

    def log_prob(self, actions) -> torch.Tensor:
        """``[n]``: the log-probability of each row of ``actions``."""
        a = self._check_actions(actions)
        return self._probs().log()[a[:, self.free]].sum(1)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "keep_prob": self.keep_prob}


def random_policy(teacher: nn.Module, stage: str = "removal", **kwargs) -> RandomPolicy:
    """:class:`RandomPolicy` (``removal_actions=``, ``ratios=``, ``keep_prob=`` as there)."""
    return RandomPolicy(teacher, stage, **kwargs)


class Controller(_Policy):
    """N2N's controller of one stage, a small LSTM over the teacher's residual blocks.

    * ``stage="removal"``: a bidirectional LSTM reads :func:`layer_features` of all blocks and gives each
      a keep probability ``sigmoid(w . [h_fwd, h_bwd] + b)``; blocks with a projection shortcut are kept
      (their action is forced to 1 and adds nothing to the log-probability).
    * ``stage="shrink"``: an LSTM cell steps through the blocks reading each block's features and the
      previous action (one-hot), and gives a softmax over ``ratios``; blocks removed by
      ``removal_actions`` get no ratio (action ``-1``).

    The output layer starts at zero, so the untrained controller is the random policy. Its weights are
    initialized from ``seed`` (the global RNG is left as it was).

    Args:
        teacher: the CIFAR ResNet to compress.
        stage: ``"removal"`` or ``"shrink"``.
        removal_actions: the shrink stage's fixed blocks (the removal stage's best); ``None``: all kept.
        ratios: the shrink choices (share of ``conv1`` filters kept).
        hidden: LSTM width.
        seed: the initialization.
    """

    def __init__(self, teacher: nn.Module, stage: str = "removal", *, removal_actions=None,
                 ratios: Sequence[float] = RATIOS, hidden: int = 32, seed: int = 0):
        super().__init__(teacher, stage, removal_actions, ratios)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden is the LSTM width, a positive integer, got {hidden!r}")
        self.hidden = hidden
        feats = self.features.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if stage == "removal":
                self.lstm = nn.LSTM(feats, hidden, batch_first=True, bidirectional=True)
                self.head = nn.Linear(2 * hidden, 1)
            else:
                self.cell = nn.LSTMCell(feats + self.choices + 1, hidden)  # + one-hot of the previous action
                self.head = nn.Linear(hidden, self.choices)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def keep_logits(self) -> torch.Tensor:
        """``[blocks]``: removal stage, the logit of keeping each block (forced ones included)."""
        if self.stage != "removal":
            raise ValueError("keep_logits belongs to the removal stage; the shrink controller is sequential")
        h, _ = self.lstm(self.features[None])  # [1, L, 2 * hidden]
        return self.head(h)[0, :, 0]  # [L]

    def _prev(self, a: torch.Tensor) -> torch.Tensor:
        """One-hot of previous actions ``a [n]`` (the last slot: none, at the start or after a removed block)."""
        return F.one_hot(torch.where(a < 0, self.choices, a), self.choices + 1).float()  # [n, K + 1]

    def _steps(self, n: int, actions: torch.Tensor | None, generator, greedy: bool = False):
        """Run the shrink cell over the blocks: sample (``actions`` None) or score given ``actions``."""
        h = torch.zeros(n, self.hidden)
        c = torch.zeros(n, self.hidden)
        prev = torch.full((n,), _NONE, dtype=torch.long)
        out, logp = [], torch.zeros(n)
        for i in range(len(self.blocks)):
            x = torch.cat([self.features[i].expand(n, -1), self._prev(prev)], 1)  # [n, F + K + 1]
            h, c = self.cell(x, (h, c))
            logits = self.head(h)  # [n, K]
            if self.forced[i] != _FREE:
                a = torch.full((n,), int(self.forced[i]), dtype=torch.long)
            else:
                if actions is not None:
                    a = actions[:, i]
                elif greedy:
                    a = logits.argmax(1)
                else:
                    a = torch.multinomial(logits.softmax(1), 1, generator=generator)[:, 0]
                logp = logp + logits.log_softmax(1).gather(1, a[:, None])[:, 0]
            out.append(a)
            prev = a
        return torch.stack(out, 1), logp  # [n, L], [n]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` rollouts: ``(actions [n, blocks] long, log_prob [n])`` (no gradient; see :meth:`log_prob`).
        Removal: 1 keep, 0 remove; shrink: an index into ``ratios`` (-1 for a removed block)."""
        if self.stage == "removal":
            p = torch.sigmoid(self.keep_logits()).expand(n, -1)  # [n, L]
            actions = torch.where(self.free, torch.bernoulli(p, generator=generator).long(), self.forced)
            return actions, self.log_prob(actions)
        return self._steps(n, None, generator)

    def log_prob(self, actions) -> torch.Tensor:
        """``[n]``: the log-probability of each row of ``actions`` under the policy, with a gradient."""
        a = self._check_actions(actions)
        if self.stage == "removal":
            logits = self.keep_logits()  # [L]
            lp = torch.where(a == 1, F.logsigmoid(logits), F.logsigmoid(-logits))  # [n, L]
            return (lp * self.free).sum(1)
        return self._steps(len(a), a, None)[1]

    @torch.no_grad()
    def greedy(self) -> torch.Tensor:
        """``[blocks]``: the most likely choice of each block in turn (what the policy has learned)."""
        if self.stage == "removal":
            return torch.where(self.free, (self.keep_logits() >= 0).long(), self.forced)  # ties keep
        return self._steps(1, None, None, greedy=True)[0][0]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden}


def random_actions(teacher: nn.Module, compression: float, *, stage: str = "removal", removal_actions=None,
                   ratios: Sequence[float] = RATIOS, seed: int = 0) -> tuple[list[int], list[float]]:
    """A random student of the same action space at about a target ``compression`` (the baseline at an
    equal parameter budget): removal, blocks are removed in a random order; shrink, a random kept block
    steps down to its next smaller ratio; either until ``1 - params / teacher params >= compression``
    (the first student to reach it).

    Returns:
        ``(removal_actions, shrink_actions)`` for :func:`make_student`.

    Raises:
        ValueError: a target the action space cannot reach (with the largest reachable compression).
    """
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 <= compression < 1:
        raise ValueError(f"compression is 1 - student params / teacher params, in [0, 1), got {compression!r}")
    policy = RandomPolicy(teacher, stage, removal_actions=removal_actions, ratios=ratios)
    total = sum(p.numel() for p in teacher.parameters())
    gen = torch.Generator().manual_seed(seed)
    keep, shrink = list(policy.removal), [1.0] * len(policy.blocks)
    levels = sorted((r for r in policy.ratios if r < 1.0), reverse=True)
    free = [i for i, f in enumerate(policy.free.tolist()) if f]
    step = [0] * len(keep)  # shrink: how many levels each block went down

    def reached() -> bool:
        return 1 - student_params(teacher, keep, shrink) / total >= compression

    order = [free[i] for i in torch.randperm(len(free), generator=gen).tolist()]
    while not reached():
        if stage == "removal":
            if not order:
                break
            keep[order.pop(0)] = 0
        else:
            open_ = [i for i in free if step[i] < len(levels)]
            if not open_:
                break
            i = open_[int(torch.randint(len(open_), (1,), generator=gen))]
            shrink[i], step[i] = levels[step[i]], step[i] + 1
    if not reached():
        best = 1 - student_params(teacher, keep, shrink) / total
        raise ValueError(f"compression {compression} is out of reach of the {stage} stage: its smallest student "
                         f"has compression {best:.4f}")
    return keep, shrink


def random_like(teacher: nn.Module, removal_actions=None, shrink_actions=None, *, seed: int = 0,
                tolerance: float = 0.02, ratios: Sequence[float] = RATIOS,
                tries: int = 200) -> tuple[list[int], list[float]]:
    """A random two-stage student as small as a given one: the random policy's answer at an equal budget.

    Stage by stage like N2N: :func:`random_actions` removes blocks in a random order until the student is
    at least as compressed as ``removal_actions`` alone, then shrinks random kept blocks until it is at
    least as compressed as ``(removal_actions, shrink_actions)``. A draw that overshoots that final
    compression by more than ``tolerance`` (a removed block or a shrink step is coarse) is drawn again,
    so the random student is never larger and at most ``tolerance`` smaller.

    Args:
        teacher: the CIFAR ResNet both students are cut from.
        removal_actions, shrink_actions: the student to match (as for :func:`make_student`).
        seed: which random student (``seed`` and ``seed + 1`` give different ones; draws never overlap).
        tolerance: the largest allowed excess compression, in [0, 1).
        ratios: the shrink choices of the random steps.
        tries: draws before giving up.

    Returns:
        ``(removal_actions, shrink_actions)`` of the random student.

    Raises:
        ValueError: no draw within ``tolerance`` after ``tries`` draws (say a larger ``tolerance``).
    """
    keep, shrink = _check_removal(teacher, removal_actions), _check_shrink(teacher, shrink_actions)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ValueError(f"tolerance is the largest excess compression allowed, in [0, 1), got {tolerance!r}")
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise ValueError(f"tries must be a positive integer, got {tries!r}")
    total = sum(p.numel() for p in teacher.parameters())
    after_removal = 1 - student_params(teacher, keep) / total
    target = 1 - student_params(teacher, keep, shrink) / total
    for t in range(tries):
        draw = seed * tries + t
        r_keep, _ = random_actions(teacher, after_removal, stage="removal", ratios=ratios, seed=draw)
        try:
            _, r_shrink = random_actions(teacher, target, stage="shrink", removal_actions=r_keep, ratios=ratios,
                                         seed=draw)
        except ValueError:  # this removal leaves too little to shrink down to the target
            continue
        if 1 - student_params(teacher, r_keep, r_shrink) / total <= target + tolerance:
            return r_keep, r_shrink
    raise ValueError(f"no random student within {tolerance} of compression {target:.4f} in {tries} draws; "
                     "allow a larger tolerance")


def distill_student(teacher: nn.Module, train, test, removal_actions=None, shrink_actions=None, *, steps: int = 50,
                    seed: int = 0, temperature: float = 4.0, alpha: float = 0.9, batch_size: int = 128,
                    lr: float = 0.02, device: torch.device | str | None = None, **fit_kwargs) -> dict[str, Any]:
    """Cut a student from ``teacher``, distill it ``steps`` steps and score it: one rollout of
    :func:`n2n_search` outside the search (the same defaults), for the final, longer training of the
    students a search found and of their random counterparts.

    Args:
        teacher: the trained CIFAR ResNet (left untouched; a frozen copy teaches).
        train, test: distillation data and where the accuracy is measured.
        removal_actions, shrink_actions: the student (as for :func:`make_student`).
        steps: distillation steps (0: score the cut teacher as it is).
        seed: the student's data order and augmentation.
        temperature, alpha, batch_size, lr, device, **fit_kwargs: the distillation, as in :func:`n2n_search`.

    Returns:
        ``{"params", "compression", "acc"}`` (compression ``1 - params / teacher params``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    frozen = copy.deepcopy(teacher).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    student, n = make_student(teacher, removal_actions, shrink_actions)
    acc = _distill_score(student, frozen, train, test, steps, seed, device, temperature, alpha,
                         {"batch_size": batch_size, "lr": lr, **fit_kwargs})
    return {"params": n, "compression": 1 - n / sum(p.numel() for p in teacher.parameters()), "acc": acc}


# -- the search ---------------------------------------------------------------------------------------

@dataclass
class N2NResult:
    """What :func:`n2n_search` returns.

    ``history`` has one row per rollout: ``update``, ``rollout``, ``removal`` and ``shrink`` (the
    actions as lists for :func:`make_student`), ``params``, ``compression``, ``acc``, ``reward``, ``valid``,
    ``baseline`` (the ``b`` of the update's advantages ``R - b``). The best student is the row of the
    highest reward (the first on ties).
    """

    history: pd.DataFrame
    best_removal: list[int]
    best_shrink: list[float]
    best_reward: float
    teacher_acc: float
    teacher_params: int
    policy: _Policy
    baseline: float | None
    checkpoint: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def by_update(self) -> pd.DataFrame:
        """Per update: mean and max reward, mean compression and accuracy (the learning curve)."""
        return self.history.groupby("update").agg(reward=("reward", "mean"), best=("reward", "max"),
                                                  compression=("compression", "mean"), acc=("acc", "mean"))


def _distill_score(student, frozen, train, test, steps, seed, device, temperature, alpha, kwargs) -> float:
    """Distill ``student`` from ``frozen`` for ``steps`` steps through ``wb.fit``; its accuracy on ``test``."""
    from ..transfer import Distillation  # a sibling group's task, through its public export

    if steps:
        spe = -(-len(train) // kwargs.get("batch_size", 128))
        fit(student, train, None, task=Distillation(frozen, temperature=temperature, alpha=alpha),
            epochs=-(-steps // spe), max_steps=steps, seed=seed, device=device, progress=False, **kwargs)
    return float(evaluate(student, test, device=device)["acc"])


def _write(folder: Path, policy, optimizer, meta: dict, gen: torch.Generator, keep: int = 2) -> Path:
    stem = folder / f"n2n-{meta['updates_done']:06d}"
    path = save_checkpoint(stem, policy, optimizer, meta=meta,
                           extra_tensors={"generator": gen.get_state(), "rng_cpu": torch.get_rng_state()})
    for old in sorted(folder.glob("n2n-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return path


def n2n_search(teacher: nn.Module, train=None, test=None, *, stage: str = "removal", removal_actions=None,
               ratios: Sequence[float] = RATIOS, rollouts_per_update: int = 5, updates: int = 10,
               distill_steps: int = 50, seed: int = 0, checkpoint_dir: str | Path | None = None,
               resume: bool = True, stop_after_updates: int | None = None, policy: str = "controller",
               hidden: int = 32, controller_lr: float = 0.01, baseline_decay: float = 0.8,
               temperature: float = 4.0, alpha: float = 0.9, batch_size: int = 128, lr: float = 0.02,
               distill_kwargs: dict | None = None, teacher_acc: float | None = None, max_params: int | None = None,
               penalty: float = -1.0, scorer: Callable[[nn.Module], float] | None = None,
               device: torch.device | str | None = None, progress: bool = False) -> N2NResult:
    """One stage of N2N: REINFORCE on a controller whose rollouts are students of ``teacher``.

    Each update samples ``rollouts_per_update`` action rows, builds each student with
    :func:`make_student`, trains it ``distill_steps`` steps by distillation from the teacher through
    ``wb.fit`` (:class:`workbench.transfer.Distillation`, temperature ``temperature``, soft weight
    ``alpha``; batch ``batch_size``, learning rate ``lr``, the rest of ``fit``'s defaults or
    ``distill_kwargs``), measures its accuracy on ``test`` and its :func:`reward`; then the controller
    takes one Adam step on ``-mean_i (R_i - b) log pi(a_i)`` and the baseline ``b`` moves to
    ``decay * b + (1 - decay) * mean_i R_i`` (it starts at the first update's mean reward).

    Args:
        teacher: the trained CIFAR ResNet (left untouched; a frozen copy teaches).
        train: the data students are distilled on.
        test: where a student's accuracy is measured (a validation split, not the final test set).
        stage: ``"removal"`` (which blocks stay) or ``"shrink"`` (how many conv1 filters each keeps).
        removal_actions: the shrink stage's fixed blocks, the removal stage's ``best_removal``.
            Compression is always against ``teacher``.
        ratios: the shrink choices.
        rollouts_per_update, updates: the search budget; ``updates`` may grow on resume.
        distill_steps: training steps per student (0: score the cut teacher as it is).
        seed: the controller's initialization, the rollouts' sampling and each student's data order.
        checkpoint_dir: write a checkpoint after every update (controller, Adam, baseline, sampling
            generator and CPU RNG, every rollout so far) and, with ``resume=True``, continue from the
            latest one: a resumed search ends bit for bit where an uninterrupted one ends.
        stop_after_updates: return after this many updates of this call (for resuming later).
        policy: ``"controller"`` (learned) or ``"random"`` (:class:`RandomPolicy`, no learning: the
            baseline at the same budget).
        hidden, controller_lr, baseline_decay: the controller.
        teacher_acc: the teacher's accuracy on ``test`` (measured when ``None``).
        max_params: a parameter budget; a larger student gets ``penalty`` without training.
        penalty: the reward of an invalid student (over budget, or diverged in training).
        scorer: ``fn(student) -> accuracy`` instead of distillation and evaluation (a cheap proxy or a
            test); then ``train``/``test`` may be ``None`` and the teacher's accuracy is ``scorer(teacher)``.
        device: where students train (default ``wb.config.device()``); the controller stays on the CPU.
        progress: a progress bar over updates.

    Returns:
        :class:`N2NResult`: the history of every rollout and the best student's actions.
    """
    if policy not in ("controller", "random"):
        raise ValueError(f"policy is 'controller' (N2N) or 'random' (the baseline), got {policy!r}")
    for name, v, lo in (("rollouts_per_update", rollouts_per_update, 1), ("updates", updates, 0),
                        ("distill_steps", distill_steps, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not 0 <= baseline_decay < 1:
        raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay!r}")
    if scorer is None and (train is None or test is None):
        raise ValueError("give train= (students are distilled on it) and test= (their accuracy), or a scorer=")
    pol: _Policy = (Controller(teacher, stage, removal_actions=removal_actions, ratios=ratios, hidden=hidden, seed=seed)
                    if policy == "controller" else
                    RandomPolicy(teacher, stage, removal_actions=removal_actions, ratios=ratios))
    opt = torch.optim.Adam(pol.parameters(), lr=controller_lr) if policy == "controller" else None
    fit_kwargs = {"batch_size": batch_size, "lr": lr, **(distill_kwargs or {})}
    frozen = copy.deepcopy(teacher).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    t_params = sum(p.numel() for p in teacher.parameters())

    def score(model: nn.Module, run_seed: int) -> float:
        if scorer is not None:
            return float(scorer(model))
        return _distill_score(model, frozen, train, test, distill_steps, run_seed, device, temperature, alpha,
                              fit_kwargs)

    cfg = {"policy": pol.config(), "teacher": model_fingerprint(teacher), "rollouts_per_update": rollouts_per_update,
           "distill_steps": distill_steps, "seed": seed, "controller_lr": controller_lr,
           "baseline_decay": baseline_decay, "temperature": temperature, "alpha": alpha,
           "fit": {k: v if isinstance(v, (int, float, str, bool, type(None), list, tuple)) else repr(v)
                   for k, v in fit_kwargs.items()},
           "train": data_fingerprint(train) if train is not None else None,
           "test": data_fingerprint(test) if test is not None else None,
           "max_params": max_params, "penalty": penalty,
           "scorer": None if scorer is None else getattr(scorer, "__qualname__", repr(scorer))}
    cfg = json.loads(json.dumps(cfg))
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    baseline: float | None = None
    done, last = 0, None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    found = resume_point(folder, "n2n", cfg, resume, what="search")
    if found is not None:
        meta, _, extra = load_checkpoint(found, pol, opt)
        gen.set_state(extra["generator"])
        torch.set_rng_state(extra["rng_cpu"])
        rows, baseline, done, last = meta["history"], meta["baseline"], meta["updates_done"], found
        teacher_acc = meta["teacher_acc"]
    if teacher_acc is None:
        teacher_acc = float(scorer(teacher) if scorer is not None else evaluate(teacher, test, device=device)["acc"])
    reward(0.0, teacher_acc, 0.0)  # checks teacher_acc

    from tqdm.auto import tqdm
    bar = tqdm(total=updates, initial=min(done, updates), desc=f"N2N {stage}", unit="update", disable=not progress)
    this_call = 0
    try:
        for u in range(done, updates):
            actions, _ = pol.sample(rollouts_per_update, gen)  # [m, L]
            rewards = []
            for r in range(rollouts_per_update):
                keep, shrink = pol.to_student_actions(actions[r])
                n = student_params(teacher, keep, shrink)
                comp = 1 - n / t_params
                acc, valid = float("nan"), max_params is None or n <= max_params
                if valid:
                    student, _ = make_student(teacher, keep, shrink)
                    try:
                        acc = score(student, seed + 1 + u * rollouts_per_update + r)
                        valid = math.isfinite(acc)
                    except NonFiniteLossError:
                        valid = False
                    del student
                rew = reward(acc, teacher_acc, comp, valid=True) if valid else float(penalty)
                rewards.append(rew)
                rows.append({"update": u, "rollout": r, "removal": keep, "shrink": shrink, "params": n,
                             "compression": comp, "acc": acc, "reward": rew, "valid": bool(valid)})
            mean = sum(rewards) / len(rewards)
            b = mean if baseline is None else baseline
            for row in rows[-rollouts_per_update:]:
                row["baseline"] = b
            if opt is not None:
                adv = torch.tensor(rewards, dtype=torch.float32) - b  # [m]
                loss = -(adv * pol.log_prob(actions)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            # the baseline starts at the first update's mean reward, then follows a moving average
            baseline = mean if baseline is None else baseline_decay * baseline + (1 - baseline_decay) * mean
            done, this_call = u + 1, this_call + 1
            bar.update(1)
            bar.set_postfix(reward=f"{mean:.3f}")
            if folder is not None:
                meta = {"config": cfg, "updates_done": done, "baseline": baseline, "history": rows,
                        "teacher_acc": teacher_acc}
                last = _write(folder, pol, opt, meta, gen)
            if stop_after_updates is not None and this_call >= stop_after_updates:
                break
    finally:
        bar.close()
    history = pd.DataFrame(rows, columns=["update", "rollout", "removal", "shrink", "params", "compression", "acc",
                                          "reward", "valid", "baseline"])
    if len(history):
        best = history.loc[history["reward"].idxmax()]
        best_removal, best_shrink, best_reward = list(best["removal"]), list(best["shrink"]), float(best["reward"])
    else:
        best_removal, best_shrink, best_reward = list(pol.removal), [1.0] * len(pol.blocks), float("nan")
    return N2NResult(history=history, best_removal=best_removal, best_shrink=best_shrink, best_reward=best_reward,
                     teacher_acc=teacher_acc, teacher_params=t_params, policy=pol, baseline=baseline,
                     checkpoint=last, config=cfg)
