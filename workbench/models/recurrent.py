"""Recurrent classifiers that read an image as a sequence: the long-range benchmarks of recurrent networks
on real images (sequential and permuted-pixel MNIST-style tasks, here on Fashion-MNIST or CIFAR-10).

``read`` says how an image ``[C, H, W]`` becomes a sequence:

* ``"rows"``: ``H`` steps of ``C * W`` features (one row per step);
* ``"pixels"``: ``H * W`` steps of ``C`` features, in raster order (row by row, left to right);
* ``"permuted"``: the same pixels in one fixed random order (``perm_seed``), the same for every image, so
  that neighbouring pixels end up far apart in time.

PyTorch's ``nn.RNN`` (tanh), ``nn.LSTM`` and ``nn.GRU`` do the recurrence (``cell``), one or more layers,
optionally bidirectional; a linear layer reads the last step's hidden state (for a bidirectional network,
the forward direction's last step and the backward direction's first, i.e. both directions' final states).

Hook points: ``hook_seq`` (the input sequence ``[B, T, F]``), ``hook_states`` (every step's hidden state of
the last layer ``[B, T, H * directions]``), ``hook_last`` (what the classifier reads).

``rnn_sequence`` is the same recurrence on sequences that are not images (``[B, T, F]`` floats: the adding
problem, the copy task of :mod:`workbench.data.sequences`), with a linear read-out of the last step
(``per_step=False``) or of every step (``per_step=True``).
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint

READS = ("rows", "pixels", "permuted")
CELLS = ("rnn", "lstm", "gru")


def read_sequence(x: torch.Tensor, read: str, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Images ``[B, C, H, W]`` as sequences ``[B, T, F]`` (see the module docstring)."""
    b, c, h, w = x.shape
    if read == "rows":
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)        # [B, H, C*W]
    seq = x.reshape(b, c, h * w).transpose(1, 2)                  # [B, H*W, C]
    if read == "permuted":
        seq = seq[:, perm]
    return seq


class SequenceClassifier(WorkbenchModel):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, cell: str = "lstm",
                 hidden: int = 128, layers: int = 1, bidirectional: bool = False, read: str = "rows",
                 perm_seed: int = 0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell is one of {', '.join(CELLS)} (PyTorch's nn.RNN, nn.LSTM, nn.GRU), got {cell!r}")
        if read not in READS:
            raise ValueError(f"read is one of {', '.join(READS)}, got {read!r}")
        for name, v in (("hidden", hidden), ("layers", layers), ("img_size", img_size), ("in_chans", in_chans),
                        ("num_classes", num_classes)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.in_chans, self.num_classes, self.img_size = in_chans, num_classes, img_size
        self.cell, self.hidden, self.layers, self.bidirectional, self.read = cell, hidden, layers, bidirectional, read
        features = in_chans * img_size if read == "rows" else in_chans
        self.steps = img_size if read == "rows" else img_size * img_size
        rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_cls(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        g = torch.Generator().manual_seed(perm_seed)
        self.register_buffer("perm", torch.randperm(img_size * img_size, generator=g) if read == "permuted"
                             else torch.arange(0), persistent=False)
        self.hook_seq, self.hook_states, self.hook_last = HookPoint(), HookPoint(), HookPoint()
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        seq = self.hook_seq(read_sequence(x, self.read, self.perm))    # [B, T, F]
        states = self.hook_states(self.rnn(seq)[0])                     # [B, T, H * directions]
        if self.bidirectional:
            last = torch.cat([states[:, -1, :self.hidden], states[:, 0, self.hidden:]], dim=1)
        else:
            last = states[:, -1]
        return self.fc(self.hook_last(last))                            # [B, classes]


@register_model
def seq_rnn(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, cell: str = "lstm", hidden: int = 128,
            layers: int = 1, bidirectional: bool = False, read: str = "rows", perm_seed: int = 0) -> SequenceClassifier:
    """An image read as a sequence (``read``: rows, pixels, or pixels in a fixed random order) by a vanilla RNN,
    LSTM or GRU (``cell``), ``layers`` deep, optionally bidirectional; a linear classifier on the final state."""
    return SequenceClassifier(num_classes, in_chans, img_size, cell, hidden, layers, bidirectional, read, perm_seed)


class SequenceModel(nn.Module):
    """A recurrence on float sequences ``[B, T, input_size]`` with a linear read-out (see the module docstring)."""

    def __init__(self, input_size: int, output_size: int, cell: str = "lstm", hidden: int = 128, layers: int = 1,
                 per_step: bool = False):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell is one of {', '.join(CELLS)} (PyTorch's nn.RNN, nn.LSTM, nn.GRU), got {cell!r}")
        for name, v in (("input_size", input_size), ("output_size", output_size), ("hidden", hidden),
                        ("layers", layers)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.input_size, self.output_size, self.cell, self.hidden, self.per_step = \
            input_size, output_size, cell, hidden, per_step
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](input_size, hidden, num_layers=layers,
                                                                         batch_first=True)
        self.hook_states = HookPoint()
        self.fc = nn.Linear(hidden, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[2] == self.input_size):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} takes sequences [batch, steps, {self.input_size}], got {got}")
        states = self.hook_states(self.rnn(x)[0])               # [B, T, H]
        out = self.fc(states if self.per_step else states[:, -1])
        return out                                              # [B, T, out] or [B, out]


@register_model
def rnn_sequence(input_size: int = 2, output_size: int = 1, cell: str = "lstm", hidden: int = 128, layers: int = 1,
                 per_step: bool = False) -> SequenceModel:
    """A vanilla RNN, LSTM or GRU on float sequences with a linear read-out of the last step or of every step
    (the adding problem: ``input_size=2, output_size=1``; the copy task: ``input_size=10, output_size=9,
    per_step=True``)."""
    return SequenceModel(input_size, output_size, cell, hidden, layers, per_step)
