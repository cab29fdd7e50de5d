"""Continual learning with task-conditioned hypernetworks, against fine-tuning and EWC.

**Hypernetworks** (von Oswald, Henning, Grewe & Sacramento, *Continual learning with hypernetworks*,
ICLR 2020, https://arxiv.org/abs/1906.00695). A hypernetwork ``H`` maps a learned task embedding
``e_t`` to all the weights ``W_t = H(e_t; Theta)`` of a target network ``f(x; W)``; only ``Theta`` and the
embeddings are parameters. Learning task ``T`` after tasks ``1 .. T-1`` minimizes::

    L_T( f(x; H(e_T; Theta)) )  +  beta / (T - 1) * sum_{t < T} || H(e_t; Theta) - W*_t ||^2

where ``W*_t`` are the weights ``H`` generated for task ``t`` when that task ended (the *output
regularizer*, :class:`OutputRegularizer`): the hypernetwork may change freely, as long as what it
writes for earlier tasks stays put. A *chunked* hypernetwork (:class:`ChunkedHypernetwork`) writes
the flat weight vector in chunks, chunk ``k`` from ``(e_t, c_k)`` with a learned chunk embedding
``c_k``, each chunk independent of the others.

**Dependency preserving hypernetworks** (Chandra, Varshney, Srijith & Gupta, *Continual Learning with
Dependency Preserving Hypernetworks*, WACV 2023, https://arxiv.org/abs/2209.07712). The chunks of a
chunked hypernetwork are generated independently, so the weights of one layer know nothing of the
weights of the layer before. The paper writes them with a recurrent network instead
(:class:`RecurrentHypernetwork`): an LSTM runs over the chunks in the target's layer order,
``h_k = LSTM([e_t; c_k], h_{k-1})`` and chunk ``k`` is a linear read-out of ``h_k``, so each chunk is
generated knowing every chunk before it, at the parameter cost of one small recurrent cell. The same
output regularizer protects earlier tasks (the paper adds its own regularization and network-growth
refinements, which are not implemented here).

**Baselines.** Fine-tuning (the same network trained task after task, nothing protected) and elastic
weight consolidation (Kirkpatrick et al., https://arxiv.org/abs/1612.00796): after each task the
diagonal Fisher information ``F_k`` and the weights ``theta*_k`` are stored, and later tasks pay
``strength / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2`` (:func:`ewc_penalty`, :class:`EWC`).

**Setting.** Task-incremental (the task id is given at test time, the "CL1" scenario of von Oswald et
al. and of paper 37): :func:`split_tasks` cuts a data set into tasks of two classes, labels remapped
to 0/1 in every task; the baselines' :class:`MultiHeadNet` shares its layers between tasks and has one
2-way output layer per task; a hypernetwork writes the whole target network, output layer included,
per task. :func:`train_sequence` trains the tasks in order with :func:`workbench.fit` (one call per
task, the regularizer as an algorithm) and fills the accuracy matrix ``R[i, j]`` (accuracy on task
``j`` after training task ``i``); :func:`average_accuracy` and :func:`backward_transfer` follow
Lopez-Paz & Ranzato (https://arxiv.org/abs/1706.08840).

>>> tasks = split_tasks(wb.load("fashion_mnist", "train", subset=5000))                # doctest: +SKIP
>>> net = RecurrentHypernetwork(TargetNet(in_chans=1, img_size=28), num_tasks=5)        # doctest: +SKIP
>>> out = train_sequence(net, tasks, test_tasks, OutputRegularizer(beta=0.01), epochs=3) # doctest: +SKIP
>>> out.matrix, out.acc, out.bwt                                                        # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import operator
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..data import ImageDataset, Loader, load
from ..train import Algorithm, Task, fit
from ..train.tasks import check_data_fits_model, check_image_batch, classification_loss

__all__ = ["split_tasks", "TargetNet", "MultiHeadNet", "Hypernetwork", "ChunkedHypernetwork", "RecurrentHypernetwork",
           "TaskIncremental", "OutputRegularizer", "EWC", "ewc_penalty", "diagonal_fisher", "evaluate_task",
           "average_accuracy", "backward_transfer", "task_network", "ContinualResult", "train_sequence",
           "build_continual_model", "continual_run", "METHODS"]

METHODS = ("finetune", "ewc", "hnet", "hnet_rnn")


def split_tasks(data: ImageDataset, n_tasks: int = 5, classes_per_task: int = 2) -> list[ImageDataset]:
    """Task ``t`` holds classes ``t * k .. t * k + k - 1`` of ``data`` (``k = classes_per_task``),
    relabelled ``0 .. k-1``."""
    if n_tasks < 1 or classes_per_task < 2:
        raise ValueError(f"need n_tasks >= 1 and classes_per_task >= 2, got {n_tasks} and {classes_per_task}")
    need = n_tasks * classes_per_task
    if need > data.num_classes:
        raise ValueError(f"{n_tasks} tasks of {classes_per_task} classes need {need} classes but {data.name} has "
                         f"{data.num_classes}; lower n_tasks or classes_per_task")
    tasks = []
    for t in range(n_tasks):
        first = t * classes_per_task
        keep = (data.labels >= first) & (data.labels < first + classes_per_task)
        tasks.append(ImageDataset(data.images[keep], data.labels[keep] - first,
                                  data.classes[first:first + classes_per_task], f"{data.name}/task{t}", data.split,
                                  data.mean, data.std, data.source))
    return tasks


class TargetNet(nn.Module):
    """The target network: per width a 3x3 convolution, ReLU and 2x2 max-pooling, then a linear layer.

    No normalization layers, so that all its state is weights a hypernetwork can write.
    """

    def __init__(self, in_chans: int = 3, img_size: int = 32, num_classes: int = 2,
                 widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        layers, c, s = [], in_chans, img_size
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, s = w, s // 2
        if s < 1:
            raise ValueError(f"{len(widths)} poolings leave nothing of a {img_size}x{img_size} image; use fewer widths")
        self.features = nn.Sequential(*layers, nn.Flatten())  # [B, c * s * s]
        self.head = nn.Linear(c * s * s, num_classes)
        self.in_chans, self.img_size, self.num_classes = in_chans, img_size, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _TaskConditioned(nn.Module):
    """Task ids ``0 .. num_tasks-1``; a buffer records which ones have been trained (``observe_task``)."""

    def _init_tasks(self, num_tasks: int) -> None:
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
        self.num_tasks = num_tasks
        self.register_buffer("seen", torch.zeros(num_tasks, dtype=torch.bool))

    @property
    def known_tasks(self) -> list[int]:
        return [i for i in range(self.num_tasks) if bool(self.seen[i])]

    def _index(self, task_id: Any) -> int:
        try:
            t = operator.index(task_id)
        except TypeError:
            t = None
        if t is None or isinstance(task_id, bool) or not 0 <= t < self.num_tasks:
            raise ValueError(f"task id {task_id!r} is not an id of this {type(self).__name__} "
                             f"(ids 0..{self.num_tasks - 1}); known (trained) ids: {self.known_tasks}")
        return t

    def observe_task(self, task_id: int) -> None:
        """Mark ``task_id`` as seen (``TaskIncremental`` does it when training on the task starts)."""
        self.seen[self._index(task_id)] = True

    def check_task(self, task_id: Any) -> int:
        t = self._index(task_id)
        if not bool(self.seen[t]):
            raise ValueError(f"task id {t} was never seen by this {type(self).__name__}; known ids: "
                             f"{self.known_tasks}. Train it first: wb.fit(model, data, "
                             f"task=wb.transfer.TaskIncremental({t}))")
        return t

    def parameters_for(self, task_id: int) -> list[str]:
        """The names of the parameters that learning ``task_id`` trains."""
        raise NotImplementedError


class MultiHeadNet(_TaskConditioned):
    """The baselines' network: :class:`TargetNet`'s layers shared by every task, one output layer per task."""

    def __init__(self, num_tasks: int, in_chans: int = 3, img_size: int = 32, num_classes: int = 2,
                 widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self._init_tasks(num_tasks)
        body = TargetNet(in_chans, img_size, num_classes, widths)
        self.features = body.features
        self.heads = nn.ModuleList([nn.Linear(body.head.in_features, num_classes) for _ in range(num_tasks)])
        self.in_chans, self.img_size, self.num_classes = in_chans, img_size, num_classes

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[self.check_task(task_id)](self.features(x))

    def parameters_for(self, task_id: int) -> list[str]:
        t = self._index(task_id)
        return [n for n, _ in self.named_parameters() if not n.startswith("heads.") or n.startswith(f"heads.{t}.")]


class Hypernetwork(_TaskConditioned):
    """Base of the hypernetworks: writes every parameter of ``target`` from a task embedding, in chunks.

    Args:
        target: the target network (its parameters' names and shapes are what is written; it must have
            no buffers, such as BatchNorm statistics). A copy on the meta device is kept as a template and
            run with :func:`torch.func.functional_call`.
        num_tasks: how many task embeddings.
        embedding_dim, chunk_dim: sizes of the task and chunk embeddings.
        chunk_size: weights per chunk; the last chunk is cut to fit.

    Subclasses define ``_chunks(e [n, embedding_dim]) -> [n, num_chunks, chunk_size]``. The raw output is
    scaled per target tensor (He's ``sqrt(2 / fan_in)`` for weights, ``sqrt(1 / (3 fan_in))`` for biases),
    and the read-out layer is rescaled once at construction so that the raw output has unit spread.
    """

    def __init__(self, target: nn.Module, num_tasks: int, embedding_dim: int = 32, chunk_size: int = 1000,
                 chunk_dim: int = 32):
        super().__init__()
        self._init_tasks(num_tasks)
        if list(target.buffers()):
            raise ValueError("the target network has buffers (BatchNorm running statistics?); a hypernetwork writes "
                             "weights only: use a target without normalization layers (wb.transfer.TargetNet)")
        named = [(n, tuple(p.shape)) for n, p in target.named_parameters()]
        if not named:
            raise ValueError("the target network has no parameters to generate")
        self.names, self.shapes = [n for n, _ in named], [s for _, s in named]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.num_weights = sum(self.sizes)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size
        self.num_chunks = -(-self.num_weights // chunk_size)
        self.embedding_dim, self.chunk_dim = embedding_dim, chunk_dim
        self.task_embeddings = nn.ParameterList([nn.Parameter(torch.randn(embedding_dim)) for _ in range(num_tasks)])
        self.chunk_embeddings = nn.Parameter(torch.randn(self.num_chunks, chunk_dim))
        scale, fan_in = [], 1
        for shape, size in zip(self.shapes, self.sizes):
            if len(shape) > 1:  # a weight; a bias takes the fan-in of the weight before it
                fan_in = math.prod(shape[1:])
            std = math.sqrt(2 / fan_in) if len(shape) > 1 else math.sqrt(1 / (3 * fan_in))
            scale.append(torch.full((size,), std))
        self.register_buffer("scale", torch.cat(scale), persistent=False)
        object.__setattr__(self, "_template", copy.deepcopy(target).to("meta"))  # not a submodule: never trained
        for a in ("in_chans", "img_size", "num_classes"):
            setattr(self, a, getattr(target, a, None))

    def _chunks(self, e: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def _calibrate(self, head: nn.Linear) -> None:
        """Rescale the read-out ``head`` so that the raw chunks have unit standard deviation at initialization."""
        e = torch.stack(list(self.task_embeddings))
        spread = float(self._chunks(e).std())
        head.weight.div_(spread)
        head.bias.div_(spread)

    def generate(self, task_ids: int | Sequence[int]) -> torch.Tensor:
        """Flat target weights ``[len(task_ids), num_weights]`` (a single id: ``[1, num_weights]``)."""
        ids = [task_ids] if not isinstance(task_ids, (list, tuple)) else list(task_ids)
        e = torch.stack([self.task_embeddings[self.check_task(t)] for t in ids])  # [n, embedding_dim]
        return self._chunks(e).flatten(1)[:, :self.num_weights] * self.scale

    def weights(self, task_id: int) -> dict[str, torch.Tensor]:
        """The target's parameters for ``task_id``, by name and shape (what ``functional_call`` takes)."""
        flat = self.generate(task_id)[0]
        return {n: w.view(s) for n, w, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return functional_call(self._template, self.weights(task_id), (x,))

    def parameters_for(self, task_id: int) -> list[str]:
        t = self._index(task_id)
        return [n for n, _ in self.named_parameters()
                if not n.startswith("task_embeddings.") or n == f"task_embeddings.{t}"]


class ChunkedHypernetwork(Hypernetwork):
    """von Oswald et al.'s chunked hypernetwork: an MLP writes chunk ``k`` from ``[e_t; c_k]``, every chunk on its own.

    ``hidden``: the MLP's widths (ReLU between layers); the read-out is linear to ``chunk_size``.
    """

    def __init__(self, target: nn.Module, num_tasks: int, embedding_dim: int = 32, chunk_size: int = 1000,
                 chunk_dim: int = 32, hidden: Sequence[int] = (100, 100)):
        super().__init__(target, num_tasks, embedding_dim, chunk_size, chunk_dim)
        layers, d = [], embedding_dim + chunk_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, chunk_size)
        self._calibrate(self.head)

    def _chunks(self, e: torch.Tensor) -> torch.Tensor:
        n, k = len(e), self.num_chunks
        inputs = torch.cat([e[:, None].expand(n, k, -1), self.chunk_embeddings[None].expand(n, k, -1)], 2)
        return self.head(self.body(inputs))  # [n, K, chunk_size]


class RecurrentHypernetwork(Hypernetwork):
    """Paper 37's dependency preserving hypernetwork: an LSTM over the chunks in layer order.

    ``h_k, c_k = LSTMCell([e_t; c_k], (h_{k-1}, c_{k-1}))`` from a zero state, chunk ``k = head(h_k)``:
    every chunk is written knowing the chunks (layers) before it. ``hidden``: the LSTM's state size.
    """

    def __init__(self, target: nn.Module, num_tasks: int, embedding_dim: int = 32, chunk_size: int = 1000,
                 chunk_dim: int = 32, hidden: int = 64):
        super().__init__(target, num_tasks, embedding_dim, chunk_size, chunk_dim)
        self.hidden = hidden
        self.cell = nn.LSTMCell(embedding_dim + chunk_dim, hidden)
        self.head = nn.Linear(hidden, chunk_size)
        self._calibrate(self.head)

    def _chunks(self, e: torch.Tensor) -> torch.Tensor:
        n = len(e)
        h = c = e.new_zeros(n, self.hidden)
        states = []
        for k in range(self.num_chunks):
            h, c = self.cell(torch.cat([e, self.chunk_embeddings[k].expand(n, -1)], 1), (h, c))
            states.append(h)
        return self.head(torch.stack(states, 1))  # [n, K, chunk_size]


class TaskIncremental(Task):
    """Classification on task ``task_id`` of a sequence: ``model(x, task_id)`` gives that task's logits.

    At the start of training it marks the task as seen by the model (``model.observe_task``).
    """

    metric_names = ("loss", "acc")

    def __init__(self, task_id: int):
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
            raise ValueError(f"task_id must be a non-negative integer, got {task_id!r}")
        self.task_id = task_id

    def setup(self, model: nn.Module, device: torch.device) -> None:
        if hasattr(model, "observe_task"):
            model.observe_task(self.task_id)

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> torch.Tensor:
        return model(batch[0], self.task_id)

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return classification_loss(outputs, batch[1])

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        y = batch[1]
        hits = (outputs.detach().argmax(1) == y).sum().double()
        return {"loss": loss.detach().double() * len(y), "acc": hits}, len(y)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "task_id": self.task_id}


class OutputRegularizer(Algorithm):
    """von Oswald et al.'s output regularizer: ``beta * mean_t ||H(e_t) - W*_t||^2`` over the consolidated tasks.

    ``consolidate(model, data, task_id)`` (after a task ends) stores ``W*_t``; the task being trained is
    left out of the penalty. The penalty is logged as ``reg``.
    """

    def __init__(self, beta: float = 0.01):
        if beta < 0:
            raise ValueError(f"beta must be at least 0, got {beta}")
        super().__init__(beta=beta)
        self.beta = float(beta)
        self.targets: dict[int, torch.Tensor] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "tasks": sorted(self.targets)}

    @torch.no_grad()
    def consolidate(self, model: Hypernetwork, data: Any = None, task_id: int | None = None) -> None:
        if not isinstance(model, Hypernetwork):
            raise TypeError(f"OutputRegularizer needs a hypernetwork (wb.transfer.ChunkedHypernetwork or "
                            f"RecurrentHypernetwork), got {type(model).__name__}; for other networks use EWC")
        self.targets[task_id] = model.generate(task_id)[0].detach().clone()

    def penalty(self, model: Hypernetwork, exclude: int | None = None) -> torch.Tensor:
        ids = [t for t in sorted(self.targets) if t != exclude]
        if not ids:
            return torch.zeros((), device=model.scale.device)
        now = model.generate(ids)
        return self.beta * (now - torch.stack([self.targets[t] for t in ids]).to(now)).pow(2).sum(1).mean()

    def on_after_loss(self, state) -> None:
        if self.targets:
            term = self.penalty(state.model, exclude=getattr(state.task, "task_id", None))
            state.loss = state.loss + term
            state.logs["reg"] = term.detach()


def ewc_penalty(params: dict[str, torch.Tensor], anchors: Sequence[dict[str, torch.Tensor]],
                fishers: Sequence[dict[str, torch.Tensor]], strength: float) -> torch.Tensor:
    """``strength / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2`` over the stored tasks ``k``.

    Args:
        params: the current parameters by name.
        anchors, fishers: per stored task, the weights ``theta*_k`` and the diagonal Fisher ``F_k`` by name
            (a name missing from a Fisher is not penalized).
        strength: ``lambda``.
    """
    if len(anchors) != len(fishers):
        raise ValueError(f"one anchor per Fisher: got {len(anchors)} anchors and {len(fishers)} Fishers")
    total = torch.zeros((), device=next(iter(params.values())).device) if params else torch.zeros(())
    for anchor, fisher in zip(anchors, fishers):
        missing = [n for n in fisher if n not in params or n not in anchor]
        if missing:
            raise ValueError(f"the Fisher names {missing[:3]}, which are not among the parameters and anchors; "
                             f"parameters include {list(params)[:4]}")
        for n, f in fisher.items():
            total = total + (f * (params[n] - anchor[n]).pow(2)).sum()
    return strength / 2 * total


def diagonal_fisher(model: nn.Module, data: ImageDataset, task_id: int, batch_size: int = 256,
                    max_examples: int | None = None) -> dict[str, torch.Tensor]:
    """The diagonal of the Fisher information of ``model(x, task_id)``'s predictive distribution.

    ``F_i = mean_x sum_c p(c|x) (d log p(c|x) / d theta_i)^2``: the expectation over the model's own
    classes, exact (no sampled labels), with per-example gradients from ``torch.func`` (``vmap`` of
    ``jacrev``). Data without augmentation; ``max_examples`` caps how many are used (the first ones).
    """
    dev = next(model.parameters()).device
    params = {n: p.detach() for n, p in model.named_parameters()}
    n = len(data) if max_examples is None else min(len(data), max_examples)
    loader = Loader(data.subset(n, seed=0), batch_size=batch_size, shuffle=False, device=dev)

    def log_probs(p, x):
        return F.log_softmax(functional_call(model, p, (x[None], task_id))[0].float(), -1)  # [C]

    per_example = vmap(jacrev(log_probs), in_dims=(None, 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    was = model.training
    model.eval()
    try:
        for x, _ in loader:
            with torch.no_grad():
                probs = F.softmax(model(x, task_id).float(), -1)  # [B, C]
            jac = per_example(params, x)  # name -> [B, C, *shape]
            for k, j in jac.items():
                w = probs.reshape(*probs.shape, *([1] * (j.ndim - 2)))
                fisher[k] += (w * j.detach().pow(2)).sum((0, 1))
    finally:
        model.train(was)
    return {k: v / n for k, v in fisher.items()}


class EWC(Algorithm):
    """Elastic weight consolidation: ``consolidate(model, data, task_id)`` after each task stores its Fisher
    (:func:`diagonal_fisher` on ``fisher_examples`` of its training images) and weights; later tasks pay
    :func:`ewc_penalty` (logged as ``reg``)."""

    def __init__(self, strength: float = 100.0, fisher_examples: int | None = 500):
        if strength < 0:
            raise ValueError(f"strength must be at least 0, got {strength}")
        super().__init__(strength=strength, fisher_examples=fisher_examples)
        self.strength, self.fisher_examples = float(strength), fisher_examples
        self.anchors: list[dict[str, torch.Tensor]] = []
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.tasks: list[int] = []

    def config(self) -> dict[str, Any]:
        return {**super().config(), "tasks": list(self.tasks)}

    def consolidate(self, model: nn.Module, data: ImageDataset, task_id: int) -> None:
        self.fishers.append(diagonal_fisher(model, data, task_id, max_examples=self.fisher_examples))
        self.anchors.append({n: p.detach().clone() for n, p in model.named_parameters()})
        self.tasks.append(task_id)

    def on_after_loss(self, state) -> None:
        if self.anchors:
            term = ewc_penalty(dict(state.model.named_parameters()), self.anchors, self.fishers, self.strength)
            state.loss = state.loss + term
            state.logs["reg"] = term.detach()


@torch.no_grad()
def evaluate_task(model: nn.Module, data: ImageDataset, task_id: int, batch_size: int = 1000) -> float:
    """Accuracy of ``model(x, task_id)`` on ``data`` (eval mode, the train flag restored)."""
    dev = next(model.parameters()).device
    loader = Loader(data, batch_size=batch_size, shuffle=False, device=dev)
    return TaskIncremental(task_id).evaluate(model, loader)["acc"]


def _matrix(r: Any) -> np.ndarray:
    if isinstance(r, list):
        m = np.array([[np.nan if v is None else v for v in row] for row in r], dtype=float)
    else:
        m = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError("the accuracy matrix must be square, R[i, j] = accuracy on task j after task i; "
                         f"got shape {m.shape}")
    if np.isnan(np.diag(m)).any() or np.isnan(m[-1]).any():
        raise ValueError("the accuracy matrix needs its diagonal and its last row (every task after the last one)")
    return m


def average_accuracy(r: Any) -> float:
    """``mean_j R[T-1, j]``: the accuracy over all tasks after the last one."""
    return float(_matrix(r)[-1].mean())


def backward_transfer(r: Any) -> float:
    """``1 / (T - 1) * sum_{j < T-1} (R[T-1, j] - R[j, j])``: negative when later tasks made earlier ones worse."""
    m = _matrix(r)
    if len(m) < 2:
        raise ValueError("backward transfer needs at least two tasks")
    return float(np.mean(m[-1, :-1] - np.diag(m)[:-1]))


@torch.no_grad()
def task_network(model: _TaskConditioned, task_id: int) -> torch.Tensor:
    """The flat weights that answer ``task_id``: a hypernetwork's generated weights, or a
    :class:`MultiHeadNet`'s shared layers and that task's head."""
    if isinstance(model, Hypernetwork):
        return model.generate(task_id)[0].detach().clone()
    named = dict(model.named_parameters())
    return torch.cat([named[n].detach().flatten() for n in model.parameters_for(task_id)])


@dataclass
class ContinualResult:
    """What :func:`train_sequence` returns: the accuracy matrix (NaN above the diagonal), the histories, and
    ``drift[j]``: how far the network answering task ``j`` moved from the end of task ``j`` to the end of the
    sequence, ``||w_j(end) - w_j(after j)|| / ||w_j(after j)||`` (:func:`task_network`; 0 for the last task)."""

    model: nn.Module
    matrix: np.ndarray
    histories: list[pd.DataFrame]
    seconds: float
    drift: np.ndarray

    @property
    def acc(self) -> float:
        return average_accuracy(self.matrix)

    @property
    def bwt(self) -> float:
        return backward_transfer(self.matrix) if len(self.matrix) > 1 else float("nan")


def train_sequence(model: _TaskConditioned, trains: Sequence[ImageDataset], tests: Sequence[ImageDataset],
                   regularizer: OutputRegularizer | EWC | None = None, **fit_kwargs) -> ContinualResult:
    """Train task after task with :func:`workbench.fit` (one call per task) and fill the accuracy matrix.

    Args:
        model: a :class:`MultiHeadNet` or a hypernetwork; learning task ``t`` trains
            ``model.parameters_for(t)`` (a hypernetwork: its weights and task ``t``'s embedding).
        trains, tests: one data set per task, in order.
        regularizer: ``None`` (fine-tuning), :class:`EWC` or :class:`OutputRegularizer`; it acts in every
            ``fit`` call and is consolidated on each task's training data when the task ends.
        **fit_kwargs: the recipe for every task (``epochs``, ``batch_size``, ``optimizer``, ``lr``, ``seed``...).
    """
    if len(trains) != len(tests) or not trains:
        raise ValueError(f"one training and one test set per task: got {len(trains)} and {len(tests)}")
    if len(trains) > model.num_tasks:
        raise ValueError(f"{len(trains)} tasks but the model has ids for {model.num_tasks}; "
                         f"build it with num_tasks={len(trains)}")
    fit_kwargs.setdefault("progress", False)
    start, n = time.perf_counter(), len(trains)
    matrix, histories, learned = np.full((n, n), np.nan), [], []
    for t in range(n):
        res = fit(model, trains[t], None, task=TaskIncremental(t), params=model.parameters_for(t),
                  algorithms=[regularizer] if regularizer is not None else [], **fit_kwargs)
        histories.append(res.history.assign(task=t))
        for j in range(t + 1):
            matrix[t, j] = evaluate_task(model, tests[j], j)
        learned.append(task_network(model, t))
        if regularizer is not None:
            regularizer.consolidate(model, trains[t], t)
    drift = np.array([float((task_network(model, j) - w).norm() / w.norm()) for j, w in enumerate(learned)])
    return ContinualResult(model, matrix, histories, time.perf_counter() - start, drift)


def build_continual_model(method: str, num_tasks: int, in_chans: int, img_size: int,
                          widths: Sequence[int] = (16, 32, 64), embedding_dim: int = 32, chunk_size: int = 1000,
                          chunk_dim: int = 32, mlp_hidden: Sequence[int] = (85, 85),
                          rnn_hidden: int = 64) -> _TaskConditioned:
    """The network of one of :data:`METHODS` (``finetune`` and ``ewc`` share :class:`MultiHeadNet`).

    At the default sizes the two hypernetworks have the same number of parameters within 1%
    (MLP widths 85, 85 against an LSTM state of 64)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("finetune", "ewc"):
        return MultiHeadNet(num_tasks, in_chans, img_size, 2, widths)
    target = TargetNet(in_chans, img_size, 2, widths)
    kw = dict(embedding_dim=embedding_dim, chunk_size=chunk_size, chunk_dim=chunk_dim)
    if method == "hnet":
        return ChunkedHypernetwork(target, num_tasks, hidden=mlp_hidden, **kw)
    return RecurrentHypernetwork(target, num_tasks, hidden=rnn_hidden, **kw)


def continual_run(method: str, seed: int, *, dataset: str = "fashion_mnist", n_tasks: int = 5,
                  train_subset: int | None = None, test_subset: int | None = None, widths: Sequence[int] = (16, 32, 64),
                  beta: float | dict[str, float] = 0.01, ewc_strength: float = 100.0,
                  fisher_examples: int | None = 500, embedding_dim: int = 32, chunk_size: int = 1000,
                  chunk_dim: int = 32, mlp_hidden: Sequence[int] = (85, 85), rnn_hidden: int = 64,
                  **fit_kwargs) -> dict[str, Any]:
    """One method on one task sequence, as a ``wb.sweep`` record.

    The data: ``train_subset`` / ``test_subset`` images of ``dataset`` (the same for every seed), cut by
    :func:`split_tasks` into ``n_tasks`` two-class tasks. The seed fixes the initialization and the data
    order. ``beta``: the output regularizer's strength, or one per hypernetwork method
    (``{"hnet": 0.01, "hnet_rnn": 0.1}``). ``**fit_kwargs``: the recipe of every task (``epochs``,
    ``batch_size``, ``optimizer``, ``lr``...).

    Returns:
        ``matrix`` (``R[i][j]``, ``None`` above the diagonal), ``acc``, ``bwt``, ``drift`` (per task, see
        :class:`ContinualResult`), ``params`` (all
        parameters of the model), ``target_params`` (weights of one task's network), ``seconds``.
    """
    train = split_tasks(load(dataset, "train", subset=train_subset, seed=0), n_tasks)
    test = split_tasks(load(dataset, "test", subset=test_subset, seed=0), n_tasks)
    c, h, _ = train[0].shape
    torch.manual_seed(seed)
    model = build_continual_model(method, n_tasks, c, h, widths, embedding_dim, chunk_size, chunk_dim, mlp_hidden,
                                  rnn_hidden)
    if isinstance(beta, dict):
        beta = beta.get(method, 0.0) if method.startswith("hnet") else 0.0
    reg = (EWC(ewc_strength, fisher_examples) if method == "ewc" else
           OutputRegularizer(beta) if method.startswith("hnet") else None)
    out = train_sequence(model, train, test, reg, seed=seed, **fit_kwargs)
    target_params = (model.num_weights if isinstance(model, Hypernetwork)
                     else sum(p.numel() for n, p in model.named_parameters() if n in model.parameters_for(0)))
    return {"matrix": [[None if math.isnan(v) else float(v) for v in row] for row in out.matrix],
            "acc": out.acc, "bwt": out.bwt, "drift": out.drift.tolist(),
            "params": sum(p.numel() for p in model.parameters()), "target_params": int(target_params),
            "seconds": out.seconds}
