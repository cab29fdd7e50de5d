"""Dynamic channel pruning with self-supervised mask prediction (Elkerdawy, Elhoushi, Zhang & Ray, CVPR 2022,
"Fire Together Wire Together: A Dynamic Pruning Approach with Self-Supervised Mask Prediction",
https://arxiv.org/abs/2110.08232).

Static pruning removes the same channels for every input. Dynamic pruning lets each input choose: a small
*gate* in front of a layer looks at the layer's input and predicts which of its output channels are worth
computing for this image; the others are skipped, so the multiply-adds are counted per input. The paper's
contribution is how the gates learn. Rather than a sparsity penalty balanced against the task loss, each
gate solves a self-supervised binary classification: for every input, the *target* channels are those of
largest activation, as many as it takes to cover a share ``r`` of the layer's total activation mass
("heatmap mass"). With ``a_c`` the peak of channel ``c``'s feature map (the spatial max of ``|a|``, as in
the authors' code) and ``p_c = a_c / sum_j a_j``, channels are ranked by ``p_c`` and kept until their
summed share reaches ``r``::

    target_c = 1  iff  sum of p_j over the channels ranked above c  <  r        (and p_c > 0)

so ``r = 1`` keeps exactly the channels that are not zero for this input, and a smaller ``r`` drops the
weakly firing ones too; the threshold lets the cost be estimated before any training. The gate is trained with
binary cross-entropy against these targets on a *detached* input ("decoupled" mode: the mask loss never
moves the backbone), while the backbone trains on the task loss with the gates' hard 0/1 decisions applied.

Here, in a CIFAR ResNet, the gates sit on the inner convolution (``conv1``) of each residual block, whose
channels feed only ``conv2`` of the same block, so skipping them never breaks the residual additions (the
same layers :func:`~workbench.prune.structured.channel_masks` prunes statically). A skipped channel saves
its ``conv1`` filter and its slice of ``conv2``'s input; the gate costs one ``cin x cout`` linear layer on
the pooled input. :class:`GatedResNet` (registered as ``gated_resnet20`` and so on) holds the gates;
:func:`mass_targets` computes the targets; :class:`MaskPrediction` is the algorithm of ``wb.fit`` that adds
the mask loss; :func:`gate_report` counts the multiply-adds per input and which channels fire per class;
:func:`finetune_dynamic` and :func:`finetune_static` are the two arms of an equal-budget comparison,
:func:`match_sparsity` finds the static sparsity of equal cost and :func:`compare_equal_cost` runs one seed
of it; :func:`target_sweep` prices the targets themselves (an oracle) against static pruning.

All ours, written from the paper and a reading of the authors' code (https://github.com/selkerdawy/FTWT);
differences: the gate pools by the mean and standardizes its pooled input (no softmax), and the target
keeps the channel that crosses ``r`` (the authors' code drops it). The skipped channels are computed and
zeroed, not skipped, so the savings are counted, not timed.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, Loader
from ..models._registry import register_model
from ..models.count import layer_macs
from ..models.hooks import HookPoint
from ..models.resnet_cifar import BasicBlock, CifarResNet
from ..train.cached import model_fingerprint, train_model
from ..train.events import Algorithm, State
from ..train.trainer import TrainResult
from .masks import Masked
from .structured import channel_masks

__all__ = ["GATING_MODES", "mass_targets", "ChannelGate", "GatedBasicBlock", "GatedResNet", "gated_blocks",
           "set_gating", "load_dense", "MaskPrediction", "channel_costs", "macs_for", "static_macs", "match_sparsity",
           "GateReport", "gate_report", "target_sweep", "finetune_dynamic", "finetune_static",
           "Comparison", "compare_equal_cost"]

# how a gated block decides: "off" computes every channel (the dense network), "predicted" lets the gate
# decide, "target" applies the self-supervised target itself (an oracle: it needs the dense activation)
GATING_MODES = ("off", "predicted", "target")


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold is the share r of the activation mass the fired channels must cover, in (0, 1]: "
                         f"got {threshold!r} (1 keeps every channel that is not zero, 0.9 drops the weakest 10% "
                         "of the mass)")
    return float(threshold)


def mass_targets(activation: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper's self-supervised targets: per input, the fewest channels whose share of the activation
    mass reaches ``threshold``.

    Args:
        activation: a layer's output ``[batch, channels, h, w]`` (its heat per channel is the spatial max
            of ``|a|``), or the heat per channel itself ``[batch, channels]``.
        threshold: the share ``r`` in (0, 1] of the mass to cover. Channels are ranked by their share
            (ties by channel index) and kept while the mass of the channels ranked above stays below
            ``r`` (1e-9 of slack for rounding); a channel of zero mass is never kept, so an all-zero input
            keeps none.

    Returns:
        ``[batch, channels]`` float 0/1 (on ``activation``'s device).

    Example:
        >>> mass_targets(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), 0.7)   # shares .4 .1 .3 .2: .4 + .3 reach .7
        tensor([[1., 0., 1., 0.]])
    """
    threshold = _check_threshold(threshold)
    if not isinstance(activation, torch.Tensor) or not activation.is_floating_point() or activation.ndim not in (2, 4):
        got = f"shape {list(activation.shape)} {activation.dtype}" if isinstance(activation, torch.Tensor) else \
            type(activation).__name__
        raise ValueError(f"activation must be a float tensor [batch, channels, h, w] or a heat per channel "
                         f"[batch, channels]; got {got}")
    heat = activation.detach().abs().double()
    if heat.ndim == 4:
        heat = heat.amax(dim=(2, 3))  # [batch, channels]
    share = heat / heat.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)  # [batch, channels]
    ranked, order = torch.sort(share, dim=1, descending=True, stable=True)
    above = torch.cumsum(ranked, dim=1) - ranked  # mass of the channels ranked above each one
    keep = (above < threshold - 1e-9) & (ranked > 0)
    out = torch.zeros_like(share).scatter_(1, order, keep.double())
    return out.to(activation.dtype)


class ChannelGate(nn.Module):
    """The decision head of one layer: ``logits = W standardize(mean_hw(x)) + b``, one logit per output
    channel; a channel fires when its logit is positive (sigmoid above 0.5).

    The input is detached (the paper's decoupled mode), pooled by the mean over positions and standardized
    by a BatchNorm without affine parameters (so one learning rate suits every layer). ``W`` starts at zero
    and ``b`` at ``bias`` (default 3: every channel fires, sigmoid 0.95), so a fresh gate changes nothing.
    No random numbers are drawn, so a gated network starts from the same weights as its dense twin.
    """

    def __init__(self, cin: int, cout: int, bias: float = 3.0):
        super().__init__()
        self.norm = nn.BatchNorm1d(cin, affine=False)
        self.weight = nn.Parameter(torch.zeros(cout, cin))
        self.bias = nn.Parameter(torch.full((cout,), float(bias)))

    @property
    def macs(self) -> int:
        """Multiply-adds per input (the linear layer; pooling and normalization are additions and scalings)."""
        return self.weight.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        pooled = x.detach().float().mean(dim=(2, 3))  # [batch, cin]
        if self.training and len(pooled) == 1:  # one input has no batch statistics: use the running ones
            pooled = F.batch_norm(pooled, self.norm.running_mean, self.norm.running_var, training=False,
                                  eps=self.norm.eps)
        else:
            pooled = self.norm(pooled)
        return F.linear(pooled, self.weight, self.bias)  # [batch, cout]


class GatedBasicBlock(BasicBlock):
    """A :class:`~workbench.models.BasicBlock` whose ``conv1`` channels are gated per input.

    ``out = relu(bn2(conv2(m * relu(bn1(conv1(x))))) + shortcut(x))`` with ``m`` the 0/1 decision
    ``[batch, cout]`` of :attr:`mode`: every channel (``"off"``), the gate's (``"predicted"``) or the
    target's (``"target"``). Extra hook point ``hook_fired``: the decision ``[batch, cout]``.
    """

    gate: ChannelGate

    def add_gate(self, bias: float = 3.0) -> None:
        self.gate = ChannelGate(self.conv1.in_channels, self.conv1.out_channels, bias)
        self.hook_fired = HookPoint()
        self.mode, self.threshold = "predicted", 1.0
        self.recording = False  # MaskPrediction reads (logits, target) of the last forward
        self.last: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
        self.fired: torch.Tensor | None = None  # the last decision, detached [batch, cout]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, cin, h, w]
        if not self.active:
            return x
        h = F.relu(self.bn1(self.conv1(x)))  # [batch, cout, h/stride, w/stride]
        logits = self.gate(x) if self.mode == "predicted" or self.recording else None  # [batch, cout]
        target = mass_targets(h, self.threshold) if self.mode == "target" or self.recording else None  # [batch, cout]
        if self.recording:
            self.last = (logits, target)
        mask = None if self.mode == "off" else (logits > 0).to(h.dtype) if self.mode == "predicted" else target
        self.fired = None if mask is None else self.hook_fired(mask).detach()
        if mask is not None:
            h = h * mask[:, :, None, None]
        out = self.hook_relu1(h)
        out = self.hook_branch(self.bn2(self.conv2(out)))  # [batch, cout, h/stride, w/stride]
        if self.skip:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.hook_out(F.relu(out))


class GatedResNet(CifarResNet):
    """A CIFAR ResNet (same layers, names and initial weights as ``resnet{depth}`` with the same seed) whose
    blocks are :class:`GatedBasicBlock`: each block's ``conv1`` channels fire per input as its gate
    decides. The gates start open (every channel fires), so a fresh model computes its dense twin's function.
    Set how the blocks decide with :func:`set_gating`; train the gates with :class:`MaskPrediction`.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, width: int = 16, skip: bool = True):
        super().__init__(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip)
        for block in self.modules():
            if type(block) is BasicBlock:
                block.__class__ = GatedBasicBlock  # same parameters; the gate is added without drawing random numbers
                block.add_gate()


def _make(depth: int):
    def entry(num_classes: int = 10, in_chans: int = 3, width: int = 16) -> GatedResNet:
        return GatedResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width)
    entry.__name__ = f"gated_resnet{depth}"
    entry.__doc__ = (f"CIFAR ResNet-{depth} whose blocks gate their conv1 channels per input (wb.prune.GatedResNet, "
                     "Elkerdawy et al. 2022).")
    return register_model(entry)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _make(_depth)


@register_model
def gated_resnet_cifar(depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16,
                       skip: bool = True) -> GatedResNet:
    """A gated CIFAR ResNet of any depth 6n+2 (``skip=False``: the gated plain network)."""
    return GatedResNet(depth, num_classes=num_classes, in_chans=in_chans, width=width, skip=skip)


def gated_blocks(model: nn.Module) -> dict[str, GatedBasicBlock]:
    """The gated blocks by module name (``layer1.0``, ...); an error names the fix for a model without any."""
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, GatedBasicBlock)}
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no gated blocks; build a gated twin of a CIFAR ResNet with "
                         "wb.create_model('gated_resnet20') (and wb.prune.load_dense to copy trained weights)")
    return blocks


def set_gating(model: nn.Module, mode: str, threshold: float | None = None) -> nn.Module:
    """How every gated block of ``model`` decides (:data:`GATING_MODES`): ``"off"`` (dense), ``"predicted"`` (the
    gates) or ``"target"`` (the self-supervised targets at ``threshold``, an oracle). Returns ``model``."""
    if mode not in GATING_MODES:
        raise ValueError(f"mode is one of {GATING_MODES}, got {mode!r}")
    if threshold is not None:
        threshold = _check_threshold(threshold)
    for block in gated_blocks(model).values():
        block.mode = mode
        if threshold is not None:
            block.threshold = threshold
    return model


def _gated_name(model: nn.Module) -> tuple[str, dict]:
    """The registry name and arguments of the gated twin of a registry CIFAR ResNet."""
    name, kwargs = getattr(model, "model_name", None), dict(getattr(model, "model_kwargs", {}) or {})
    if isinstance(model, CifarResNet) and name:
        if re.fullmatch(r"resnet\d+", name) or name == "resnet_cifar":
            return f"gated_{name}", kwargs
        if re.fullmatch(r"plain\d+", name):
            return "gated_resnet_cifar", {**kwargs, "depth": int(name[5:]), "skip": False}
        if name.startswith("gated_"):
            return name, kwargs
    raise ValueError(f"the dense model must be a registry CIFAR ResNet (wb.create_model('resnet20'), or one from "
                     f"wb.train_model); got {type(model).__name__} named {name!r}")


@torch.no_grad()
def load_dense(gated: nn.Module, dense: nn.Module | Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy a dense CIFAR ResNet's weights (a model or its state dict) into its gated twin; the gates keep
    their own parameters. An error lists mismatched entries. Returns ``gated``."""
    state = dense.state_dict() if isinstance(dense, nn.Module) else dict(dense)
    gated_blocks(gated)
    own = {k: v for k, v in gated.state_dict().items() if ".gate." not in k}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"the dense weights do not fit {type(gated).__name__}: missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}, other shapes {shapes[:4]}; build the gated twin with the dense model's "
                         "depth, width and classes")
    gated.load_state_dict(state, strict=False)
    return gated


class MaskPrediction(Algorithm):
    """The paper's training of the gates, as an algorithm of ``wb.fit``.

    At ``init`` every gated block is set to ``"predicted"`` at ``threshold`` (and the gates' parameters get
    no weight decay, as in the paper). In each training step the backbone computes with the gates' hard
    decisions; at ``after_loss`` the mask loss is added:

        ``weight * mean over blocks [ mean over the batch [ sum over channels BCE(logit, target) ] ]``

    with the targets of :func:`mass_targets` on each block's ungated ``conv1`` output. The gates read a
    detached input, so the mask loss trains only the gates (and ``weight`` acts as their learning-rate
    multiplier), and the task loss only the backbone. After ``gate_steps`` of the run (a share of the
    steps; the authors' code stops the mask loss half way, so that the backbone settles on fixed gates) the
    mask loss is no longer added and the gates stop changing.

    Logged per epoch: ``mask_loss``, ``mask_acc`` (decisions equal to the targets), ``fired`` (share of
    channels the gates fire) and ``target_fired`` (share the targets keep).
    """

    def __init__(self, threshold: float = 0.9, weight: float = 1.0, gate_steps: float = 0.5):
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f"weight must be a positive number, got {weight!r}")
        if not isinstance(gate_steps, (int, float)) or isinstance(gate_steps, bool) or not 0 < gate_steps <= 1:
            raise ValueError(f"gate_steps is the share of the run's steps that train the gates, in (0, 1]; "
                             f"got {gate_steps!r}")
        threshold = _check_threshold(threshold)
        super().__init__(threshold=threshold, weight=float(weight), gate_steps=float(gate_steps))
        self.threshold, self.weight, self.gate_steps = threshold, float(weight), float(gate_steps)
        self._blocks: dict[str, GatedBasicBlock] = {}

    def transform(self, model: nn.Module) -> None:
        """Gates on, at this threshold (``train_model`` also calls it on a model rebuilt from the cache)."""
        set_gating(model, "predicted", self.threshold)

    def on_init(self, state: State) -> None:
        self._blocks = gated_blocks(state.model)
        self.transform(state.model)
        if not state.trainable:
            state.trainable = {n: p for n, p in state.model.named_parameters() if p.requires_grad}
        gates = [n for n in state.trainable if ".gate." in n]
        if not gates:
            raise ValueError("MaskPrediction trains the gates, but none of their parameters is trainable; "
                             "include the '.gate.' parameters in params=")
        state.no_decay.extend(n for n in gates if n not in state.no_decay)

    def on_fit_start(self, state: State) -> None:
        for block in self._blocks.values():
            block.recording = True

    def on_after_loss(self, state: State) -> None:
        losses, hits, fired, kept, n = [], 0.0, 0.0, 0.0, 0  # the sums become tensors: no sync per step
        for name, block in self._blocks.items():
            if block.last is None:
                raise RuntimeError(f"gated block {name!r} was not run in this step's forward pass (is it inactive?)")
            logits, target = block.last
            block.last = None
            bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")  # [batch, c]
            losses.append(bce.sum(1).mean())
            with torch.no_grad():
                decision = (logits > 0).float()
                hits = hits + (decision == target).float().sum()
                fired = fired + decision.sum()
                kept = kept + target.float().sum()
                n += target.numel()
        loss = self.weight * torch.stack(losses).mean()
        if state.step < self.gate_steps * state.total_steps:
            state.loss = state.loss + loss
        state.logs.update(mask_loss=loss.detach(), mask_acc=hits / n, fired=fired / n, target_fired=kept / n)

    def on_fit_end(self, state: State) -> None:
        for block in self._blocks.values():
            block.recording, block.last = False, None


# ---------------------------------------------------------------------------------------------------------
# counting multiply-adds


def channel_costs(model: nn.Module, example: torch.Tensor | None = None) -> pd.DataFrame:
    """What one ``conv1`` channel of each block costs, from the dense counts of ``wb.models.layer_macs``.

    Returns:
        One row per block (``block``, ``channels``, ``per_channel``: the multiply-adds of one ``conv1``
        filter plus its slice of ``conv2``'s input, ``gate``: the gate's multiply-adds, 0 for a block
        without one). ``attrs["dense"]``: the whole network's multiply-adds per input, without gates.
    """
    from .structured import _blocks
    blocks = _blocks(model)
    macs = layer_macs(model, example)
    rows = []
    for name, b in blocks.items():
        c = b.conv1.out_channels
        if f"{name}.conv1" not in macs or f"{name}.conv2" not in macs:
            raise ValueError(f"block {name!r} was not reached by the forward pass that counts multiply-adds; "
                             "switch dropped blocks back on (block.active = True)")
        per = macs[f"{name}.conv1"] / c + macs[f"{name}.conv2"] / c  # conv2 reads c input channels
        gate = b.gate.macs if isinstance(b, GatedBasicBlock) else 0
        rows.append({"block": name, "channels": c, "per_channel": per, "gate": gate})
    df = pd.DataFrame(rows)
    df.attrs["dense"] = int(sum(macs.values()))
    return df


def macs_for(costs: pd.DataFrame, fired: Mapping[str, Any], gates: bool = True) -> Any:
    """Multiply-adds per input when block ``b`` computes ``fired[b]`` of its ``conv1`` channels.

    ``dense - sum_b (channels_b - fired_b) * per_channel_b (+ sum_b gate_b with gates=True)``. ``fired``
    maps every block of ``costs`` (from :func:`channel_costs`) to a count, or to a tensor of counts per
    input (then a float64 tensor comes back).
    """
    missing = [b for b in costs.block if b not in fired]
    if missing:
        raise ValueError(f"fired gives no count for blocks {missing[:4]}; give one per block of the costs")
    total: Any = float(costs.attrs["dense"])
    for row in costs.itertuples():
        k = fired[row.block]
        k = k.double() if isinstance(k, torch.Tensor) else float(k)
        bad = (k < 0) | (k > row.channels) if isinstance(k, torch.Tensor) else not 0 <= k <= row.channels
        if bool(bad.any() if isinstance(bad, torch.Tensor) else bad):
            raise ValueError(f"block {row.block!r} has {row.channels} channels; fired counts must lie in "
                             f"0..{row.channels}")
        total = total - (row.channels - k) * row.per_channel + (row.gate if gates else 0)
    return total


def static_macs(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Multiply-adds per input of ``model`` with the channels that ``masks`` (from
    :func:`~workbench.prune.channel_masks`) remove counted as removed; blocks without a mask count dense."""
    costs = channel_costs(model)
    costs.loc[:, "gate"] = 0
    fired = {}
    for b, c in zip(costs.block, costs.channels):
        m = (masks or {}).get(f"{b}.conv1.weight")
        fired[b] = int((m.flatten(1) != 0).any(1).sum()) if m is not None else c
    return int(round(macs_for(costs, fired, gates=False)))


def _static_counts(channels: int, sparsity: float) -> int:
    """Channels ``channel_masks(scope="layer")`` keeps of ``channels`` at ``sparsity``."""
    return max(channels - round(sparsity * channels), 1)


def match_sparsity(model: nn.Module, macs: float) -> float:
    """The per-layer sparsity of :func:`~workbench.prune.channel_masks` (``scope="layer"``) whose network
    costs the fewest multiply-adds that are still at least ``macs``: static pruning at (or just above) a
    given cost, so a static network is never cheaper than the one it is compared with.

    The kept counts change only where ``sparsity * channels`` crosses a half integer; the answer is the
    middle of the interval found (rounded to 6 decimals). ``macs`` at or above the dense cost gives 0.
    """
    costs = channel_costs(model)
    costs.loc[:, "gate"] = 0
    dense = costs.attrs["dense"]
    least = macs_for(costs, {b: 1 for b in costs.block}, gates=False)
    if not isinstance(macs, (int, float)) or isinstance(macs, bool) or not math.isfinite(macs) or macs <= 0:
        raise ValueError(f"macs must be a positive number of multiply-adds per input, got {macs!r}")
    if macs < least:
        raise ValueError(f"{macs:,.0f} multiply-adds is below what channel pruning can reach ({least:,.0f}, one "
                         "channel left in every block's conv1)")
    if macs >= dense:
        return 0.0
    cuts = sorted({(j + 0.5) / c for c in set(costs.channels) for j in range(c)} | {0.0, 1.0})
    best = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        s = round((lo + hi) / 2, 6)
        cost = macs_for(costs, {b: _static_counts(c, s) for b, c in zip(costs.block, costs.channels)}, gates=False)
        if cost >= macs - 1e-6:
            best = s  # costs only fall as s grows: the last one at or above is the closest
    return best


# ---------------------------------------------------------------------------------------------------------
# what fires, per input and per class


@dataclass
class GateReport:
    """Which ``conv1`` channels fired for each input of a dataset, and what each input cost.

    Attributes:
        fired: ``{block: bool tensor [inputs, channels]}``.
        labels, correct: ``[inputs]`` the true class and whether the prediction was right.
        macs: ``[inputs]`` float64, multiply-adds (gates included).
        dense_macs: the dense network's multiply-adds per input.
        classes: class names.
        targets: ``{block: bool tensor [inputs, channels]}``, the self-supervised targets of the blocks
            whose gates decided (empty when none did).
    """

    fired: dict[str, torch.Tensor]
    labels: torch.Tensor
    correct: torch.Tensor
    macs: torch.Tensor
    dense_macs: int
    classes: list[str]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def acc(self) -> float:
        return float(self.correct.double().mean())

    @property
    def mean_macs(self) -> float:
        return float(self.macs.mean())

    @property
    def relative_macs(self) -> float:
        """Mean multiply-adds over the dense network's."""
        return self.mean_macs / self.dense_macs

    def per_input(self) -> pd.DataFrame:
        """One row per input: ``label``, ``class``, ``correct``, ``macs`` and the channels fired in each block."""
        df = pd.DataFrame({"label": self.labels.numpy(), "class": [self.classes[i] for i in self.labels.tolist()],
                           "correct": self.correct.numpy(), "macs": self.macs.numpy()})
        for b, f in self.fired.items():
            df[b] = f.sum(1).numpy()
        return df

    def _check_block(self, block: str) -> None:
        if block not in self.fired:
            raise ValueError(f"unknown block {block!r}; the gated blocks are {list(self.fired)}")

    def per_class(self, block: str) -> pd.DataFrame:
        """Firing rate of every channel of ``block`` per class: index the class names, columns the channels."""
        self._check_block(block)
        f = self.fired[block].double()  # [inputs, channels]
        nan = torch.full((f.shape[1],), math.nan, dtype=f.dtype)
        rates = torch.stack([f[self.labels == k].mean(0) if (self.labels == k).any() else nan
                             for k in range(len(self.classes))])  # [classes, channels]
        return pd.DataFrame(rates.numpy(), index=pd.Index(self.classes, name="class"),
                            columns=pd.Index(range(f.shape[1]), name="channel"))

    def selectivity(self, block: str, shuffle_seed: int | None = None) -> float:
        """How much the classes differ in what fires: the mean over ``block``'s channels of (highest minus
        lowest firing rate over the classes). ``shuffle_seed``: the same with the labels permuted (the value
        sampling noise alone gives)."""
        self._check_block(block)
        labels = self.labels
        if shuffle_seed is not None:
            labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(shuffle_seed))]
        rates = GateReport({block: self.fired[block]}, labels, self.correct, self.macs, self.dense_macs,
                           self.classes).per_class(block)
        return float((rates.max(axis=0) - rates.min(axis=0)).mean())

    def agreement(self) -> pd.DataFrame:
        """How well the gates predicted their targets, per block: ``gate_acc`` (share of (input, channel)
        decisions equal to the target), ``constant_acc`` (the same for the best rule that ignores the
        input: each channel fires always or never, whichever its targets here favour; fitted on these very
        inputs, so a generous baseline), ``fired`` and ``target_fired`` (shares of channels)."""
        if not self.targets:
            raise ValueError("no gate decided in this report (mode 'off' or 'target'): run gate_report with the "
                             "gates on, wb.prune.set_gating(model, 'predicted')")
        rows = []
        for b, t in self.targets.items():
            d, rate = self.fired[b], t.double().mean(0)  # [inputs, channels], [channels]
            rows.append({"block": b, "gate_acc": float((d == t).double().mean()),
                         "constant_acc": float(torch.maximum(rate, 1 - rate).mean()),
                         "fired": float(d.double().mean()), "target_fired": float(rate.mean())})
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per block: ``channels``, ``fired`` (mean share of channels firing), ``lowest_class`` and
        ``highest_class`` (the classes' mean shares), ``selectivity``, ``shuffled`` (with permuted labels)
        and, where the gates decided, ``gate_acc`` and ``constant_acc`` of :meth:`agreement`."""
        rows = []
        for b, f in self.fired.items():
            by_class = self.per_class(b).mean(axis=1)
            rows.append({"block": b, "channels": f.shape[1], "fired": float(f.double().mean()),
                         "lowest_class": float(by_class.min()), "highest_class": float(by_class.max()),
                         "selectivity": self.selectivity(b), "shuffled": self.selectivity(b, shuffle_seed=0)})
        out = pd.DataFrame(rows)
        if self.targets:
            out = out.merge(self.agreement()[["block", "gate_acc", "constant_acc"]], on="block", how="left")
        return out


@torch.no_grad()
def gate_report(model: nn.Module, data: ImageDataset, batch_size: int = 500, gates: bool = True) -> GateReport:
    """Run ``model`` (in its current gating mode, in eval mode) over ``data`` and record, per input, which
    ``conv1`` channels fired, the prediction and the multiply-adds (``gates``: counting the gates' own cost;
    in mode ``"off"`` every channel fires and no gate runs); where the gates decide, also each block's
    targets (at its threshold, on its ungated ``conv1`` output), for :meth:`GateReport.agreement`.

    Example:
        >>> rep = wb.prune.gate_report(gated, test)                # doctest: +SKIP
        >>> rep.acc, rep.relative_macs, rep.per_class("layer3.2")  # doctest: +SKIP
    """
    if not isinstance(data, ImageDataset):
        raise TypeError(f"data must be an ImageDataset (wb.data.load), got {type(data).__name__}")
    blocks = gated_blocks(model)
    costs = channel_costs(model)
    dev = next(model.parameters()).device
    was = model.training
    deciding = [b for b, block in blocks.items() if block.mode == "predicted"]
    fired: dict[str, list[torch.Tensor]] = {b: [] for b in blocks}
    targets: dict[str, list[torch.Tensor]] = {b: [] for b in deciding}
    labels, correct = [], []
    try:
        model.eval()
        for b in deciding:
            blocks[b].recording = True
        for x, y in Loader(data, batch_size=batch_size, shuffle=False, device=dev):
            pred = model(x).argmax(1)
            for b, block in blocks.items():
                f = block.fired if block.fired is not None else torch.ones(len(x), block.conv1.out_channels)
                fired[b].append(f.bool().cpu())
                if b in deciding:
                    targets[b].append(block.last[1].bool().cpu())
            labels.append(y.cpu())
            correct.append((pred == y).cpu())
    finally:
        model.train(was)
        for b in deciding:
            blocks[b].recording, blocks[b].last = False, None
    masks = {b: torch.cat(v) for b, v in fired.items()}
    macs = macs_for(costs, {b: m.sum(1) for b, m in masks.items()}, gates=gates and bool(deciding))
    return GateReport(masks, torch.cat(labels), torch.cat(correct), macs, costs.attrs["dense"], list(data.classes),
                      {b: torch.cat(v) for b, v in targets.items()})


# ---------------------------------------------------------------------------------------------------------
# the two arms of the comparison, cached like any train_model run


def _state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def finetune_dynamic(dense: nn.Module, train: ImageDataset, test: ImageDataset | None = None, *, threshold: float = 0.9,
                     weight: float = 1.0, gate_steps: float = 0.5, seed: int = 0, **fit_kwargs) -> TrainResult:
    """The gated twin of the trained ``dense`` network, its gates trained with :class:`MaskPrediction` and its
    backbone fine-tuned under the gates' decisions, by ``wb.train_model`` (cached on the dense weights and
    everything else). The returned model is in mode ``"predicted"``."""
    name, kwargs = _gated_name(dense)
    state = _state_of(dense)
    algs = [*fit_kwargs.pop("algorithms", ()), MaskPrediction(threshold, weight, gate_steps)]

    def setup(model):
        load_dense(model, state)
        return {}

    return train_model(name, train, test, seed=seed, model_kwargs=kwargs, setup=setup,
                       setup_key=["dense weights", model_fingerprint(dense)], algorithms=algs, **fit_kwargs)


def finetune_static(dense: nn.Module, train: ImageDataset, test: ImageDataset | None = None, *, sparsity: float,
                    criterion: str = "l1", seed: int = 0, **fit_kwargs) -> TrainResult:
    """A copy of the trained ``dense`` network with :func:`~workbench.prune.channel_masks` at ``sparsity``
    (every block's ``conv1``, chosen on the dense weights) fine-tuned with the mask held by
    :class:`~workbench.prune.Masked`, by ``wb.train_model`` (cached). The result's ``masks`` holds the mask."""
    name, kwargs = getattr(dense, "model_name", None), dict(getattr(dense, "model_kwargs", {}) or {})
    if not isinstance(dense, CifarResNet) or isinstance(dense, GatedResNet) or not name:
        raise ValueError(f"the dense model must be a registry CIFAR ResNet without gates (wb.create_model('resnet20'), "
                         f"or one from wb.train_model); got {type(dense).__name__} named {name!r}")
    state = _state_of(dense)
    given = list(fit_kwargs.pop("algorithms", ()))
    chosen: dict[str, Any] = {}

    def setup(model):
        model.load_state_dict(state)
        chosen["masks"] = channel_masks(model, sparsity, criterion)
        return {"algorithms": [*given, Masked(chosen["masks"])]}

    res = train_model(name, train, test, seed=seed, model_kwargs=kwargs, setup=setup,
                      setup_key=["static channels", model_fingerprint(dense), float(sparsity), criterion],
                      algorithms=given, **fit_kwargs)
    res.masks = chosen["masks"]
    return res


def target_sweep(dense: nn.Module, data: ImageDataset, thresholds, criterion: str = "l1") -> pd.DataFrame:
    """What the targets alone would buy, without any training: for each threshold ``r``, the trained ``dense``
    network computing only its target channels (mode ``"target"``, an oracle: finding them needs the dense
    activation), against static channel pruning of the same network at the sparsity of equal cost
    (:func:`match_sparsity`, no fine-tuning).

    Returns:
        One row per threshold: ``threshold``, ``target_acc``, ``target_macs`` (mean relative to dense),
        ``static_sparsity``, ``static_acc``, ``static_macs`` (relative to dense).
    """
    name, kwargs = _gated_name(dense)
    from ..models import create_model
    from ..train.trainer import evaluate
    dev = next(dense.parameters()).device
    gated = load_dense(create_model(name, **kwargs), dense).to(dev)
    rows = []
    for r in thresholds:
        rep = gate_report(set_gating(gated, "target", r), data, gates=False)
        s = match_sparsity(dense, rep.mean_macs)
        masks = channel_masks(dense, s, criterion)
        static = copy.deepcopy(dense)
        with torch.no_grad():
            for n, p in static.named_parameters():
                if n in masks:
                    p.mul_(masks[n].to(p))
        rows.append({"threshold": float(r), "target_acc": rep.acc, "target_macs": rep.relative_macs,
                     "static_sparsity": s, "static_acc": evaluate(static, data)["acc"],
                     "static_macs": static_macs(dense, masks) / rep.dense_macs})
    return pd.DataFrame(rows)


@dataclass
class Comparison:
    """One seed of the equal-cost comparison (:func:`compare_equal_cost`)."""

    seed: int
    threshold: float
    dynamic: TrainResult
    static: TrainResult
    report: GateReport  # the dynamic network on the test images
    static_sparsity: float
    static_acc: float
    static_macs: int

    def record(self) -> dict[str, Any]:
        """The numbers as one flat record (costs relative to the dense network)."""
        return {"seed": self.seed, "threshold": self.threshold, "dynamic_acc": self.report.acc,
                "dynamic_macs": self.report.relative_macs, "static_sparsity": self.static_sparsity,
                "static_acc": self.static_acc, "static_macs": self.static_macs / self.report.dense_macs,
                "gate_acc": float(self.agreement.gate_acc.mean()),
                "constant_acc": float(self.agreement.constant_acc.mean())}

    @property
    def agreement(self) -> pd.DataFrame:
        """The dynamic network's gates against their targets on the test images (GateReport.agreement)."""
        return self.report.agreement()


def compare_equal_cost(dense: nn.Module, train: ImageDataset, test: ImageDataset, *, threshold: float, seed: int = 0,
                       weight: float = 1.0, gate_steps: float = 0.5, criterion: str = "l1",
                       **fit_kwargs) -> Comparison:
    """Dynamic against static pruning of one trained network at equal average cost, equal budgets.

    Both arms start from ``dense``'s weights and fine-tune on ``train`` with the same ``fit`` arguments and
    ``seed`` (cached): the dynamic arm is :func:`finetune_dynamic` at ``threshold``; its mean multiply-adds
    on ``test`` fix the static arm's sparsity (:func:`match_sparsity`: the cheapest static network that is
    not cheaper), which is :func:`finetune_static`. Both are then scored on ``test``.
    """
    from ..train.trainer import evaluate
    dyn = finetune_dynamic(dense, train, None, threshold=threshold, weight=weight, gate_steps=gate_steps, seed=seed,
                           **fit_kwargs)
    report = gate_report(dyn.model, test)
    s = match_sparsity(dense, report.mean_macs)
    st = finetune_static(dense, train, None, sparsity=s, criterion=criterion, seed=seed, **fit_kwargs)
    return Comparison(seed, float(threshold), dyn, st, report, s, evaluate(st.model, test)["acc"],
                      static_macs(st.model, st.masks))
