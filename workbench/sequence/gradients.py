"""How the loss's gradient reaches back through time, and gradient clipping.

:func:`gradient_through_time` unrolls a ``seq_rnn`` model's recurrence step by step with PyTorch's cells
(``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``) holding the model's own weights, keeps every hidden state
``h_t`` in the graph, and returns ``||d loss / d h_t||`` for every step ``t``: the total derivative, through
every later step. A vanilla RNN's norms shrink (or grow) geometrically with the distance ``T - t``; gating
(LSTM, GRU) is what lets them survive. One layer, one direction: the recurrence the plot is about.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..models.recurrent import SequenceClassifier, read_sequence
from ..train.events import Algorithm, State

__all__ = ["unrolled_states", "gradient_through_time", "decay_fit", "ClipGrad"]


def _cell_of(rnn: nn.RNNBase) -> nn.Module:
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError("gradient_through_time unrolls one layer in one direction: build the model with layers=1 "
                         "and bidirectional=False")
    kind = type(rnn).__name__
    cell = {"RNN": lambda: nn.RNNCell(rnn.input_size, rnn.hidden_size, nonlinearity=rnn.nonlinearity),
            "LSTM": lambda: nn.LSTMCell(rnn.input_size, rnn.hidden_size),
            "GRU": lambda: nn.GRUCell(rnn.input_size, rnn.hidden_size)}[kind]()
    cell = cell.to(rnn.weight_ih_l0.device)
    with torch.no_grad():
        cell.weight_ih.copy_(rnn.weight_ih_l0), cell.weight_hh.copy_(rnn.weight_hh_l0)
        cell.bias_ih.copy_(rnn.bias_ih_l0), cell.bias_hh.copy_(rnn.bias_hh_l0)
    return cell


def unrolled_states(model: SequenceClassifier, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model's logits and its hidden states ``[h_1, ..., h_T]`` (each ``[B, H]``, in the graph), computed
    step by step with a cell that holds the model's weights (the logits equal ``model(x)``)."""
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"gradient_through_time takes a seq_rnn model (wb.create_model('seq_rnn')), got "
                        f"{type(model).__name__}")
    model.check_input(x)
    cell = _cell_of(model.rnn)
    seq = read_sequence(x, model.read, model.perm)                   # [B, T, F]
    h = seq.new_zeros(len(x), model.hidden)
    c = seq.new_zeros(len(x), model.hidden) if model.cell == "lstm" else None
    states = []
    for t in range(seq.shape[1]):
        if c is not None:
            h, c = cell(seq[:, t], (h, c))
        else:
            h = cell(seq[:, t], h)
        h.retain_grad()
        states.append(h)
    return model.fc(h), states


def gradient_through_time(model: SequenceClassifier, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """``||d loss / d h_t||`` for every step of ``x`` (the mean cross-entropy over the batch; the norm is over
    the hidden units, averaged over the batch). Columns: ``step`` (1..T), ``distance`` (``T - step``: how far
    back from the output), ``grad_norm``. The model's gradients are left as they were."""
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits, states = unrolled_states(model, x)
            loss = F.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, states)
    finally:
        model.train(was)
    norms = torch.stack([g.norm(dim=1).mean() for g in grads]).detach().cpu()
    T = len(states)
    return pd.DataFrame({"step": range(1, T + 1), "distance": [T - t for t in range(1, T + 1)],
                         "grad_norm": norms.tolist()})


def decay_fit(table: pd.DataFrame) -> dict[str, float]:
    """An exponential fit of a :func:`gradient_through_time` table: ``per_step`` (the factor the norm changes by
    per step back: ``exp`` of the least-squares slope of ``log norm`` against distance), ``r2`` (how straight the
    line is in log scale) and ``farthest_over_last`` (the norm at the largest distance over the norm at 0)."""
    if not {"distance", "grad_norm"} <= set(table.columns) or len(table) < 3:
        raise ValueError("decay_fit takes the table of gradient_through_time (at least 3 steps)")
    d = torch.tensor(table.distance.values, dtype=torch.float64)
    logs = torch.tensor(table.grad_norm.values, dtype=torch.float64).clamp(min=1e-300).log()
    slope = float(((d - d.mean()) * (logs - logs.mean())).sum() / ((d - d.mean()) ** 2).sum())
    fit = logs.mean() + slope * (d - d.mean())
    r2 = 1 - float(((logs - fit) ** 2).sum() / ((logs - logs.mean()) ** 2).sum().clamp(min=1e-300))
    far = table.grad_norm[table.distance == table.distance.max()].iloc[0]
    last = table.grad_norm[table.distance == 0].iloc[0]
    return {"per_step": float(torch.tensor(slope).exp()), "r2": r2, "farthest_over_last": float(far / last)}


class ClipGrad(Algorithm):
    """Clip the trained gradients' global L2 norm to ``max_norm`` after backward (Pascanu, Mikolov & Bengio,
    arXiv:1211.5063); the history gets ``grad_norm``, the norm before clipping."""

    def __init__(self, max_norm: float = 1.0):
        if not (isinstance(max_norm, (int, float)) and max_norm > 0):
            raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
        super().__init__(max_norm=float(max_norm))
        self.max_norm = float(max_norm)

    def on_after_backward(self, state: State) -> None:
        params = [p for p in state.trainable.values() if p.grad is not None]
        state.logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.max_norm)
