"""Large-batch training: adversarial examples from stale weights (ConAdv), the linear learning-rate scaling
rule with warm-up, and the layer-wise adaptive optimizers LARS and LAMB.

Liu, Chen, Cheng, Hsieh & You, *Concurrent Adversarial Learning for Large-Batch Training*
(arXiv:2106.00221): adversarial training smooths the loss surface that large batches make sharp, but it
needs two gradient computations in sequence per step (one for the attack, one for the weights). ConAdv
computes the attack on step ``t``'s batch with the weights of step ``t - tau`` (stale by ``tau`` steps),
so that it can run on other workers while step ``t - 1`` is being taken: one gradient computation per step
stays on the critical path. :class:`StaleAdversarial` reproduces ConAdv's *examples* (and so its training)
exactly. By default it makes them in turn with the step, so its wall-clock time is that of ordinary
adversarial training; with ``concurrent=True`` it makes step ``t + 1``'s examples while step ``t`` trains
(the next batch from ``state.peek_batch()``, the attack on a worker thread, on a side CUDA stream on a GPU),
as ConAdv does, with the same examples and the same training to the bit (tested).

>>> adv = StaleAdversarial(train.mean, train.std, epsilon=2, staleness=1)                 # doctest: +SKIP
>>> wb.fit(model, train, test, algorithms=[adv], **large_batch(4096, len(train)))          # doctest: +SKIP

LARS (You, Gitman & Ginsburg, arXiv:1708.03888) is ``torch-optimizer``'s implementation. LAMB (You et
al., arXiv:1904.00962) is :class:`Lamb` here, as the paper's algorithm 2: ``torch-optimizer``'s ``Lamb``
multiplies the step by Adam's bias correction *after* the trust ratio has normalized its length, so its
first steps are up to ``1 / sqrt(1 - beta2)`` times shorter than the paper's; with ``debias=False`` ours
is theirs step for step (tested). :func:`layerwise_optimizer` builds either for ``fit(optimizer=...)``.
"""
from __future__ import annotations

import copy
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..shift.defend import pgd_linf
from ..train.events import Algorithm, Callback, State

__all__ = ["fgsm", "StaleAdversarial", "StalenessProbe", "large_batch", "Lamb", "layerwise_optimizer",
           "LAYERWISE_OPTIMIZERS"]

MIXES = ("both", "adversarial")
LAYERWISE_OPTIMIZERS = ("lars", "lamb")


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: Sequence[float], std: Sequence[float],
         epsilon: float = 2.0, precision: str = "fp32") -> torch.Tensor:
    """The fast gradient sign attack (Goodfellow et al., arXiv:1412.6572) on a normalized batch: one signed
    step of ``epsilon`` pixel levels up the cross-entropy of ``y``, clipped to the image range (the model
    in eval mode, no parameter gradient touched). ``pgd_linf`` with one step and no random start."""
    return pgd_linf(model, x, y, mean, std, epsilon=epsilon, steps=1, step_size=epsilon, random_start=False,
                    precision=precision)


class StaleAdversarial(Algorithm):
    """FGSM adversarial training whose attack uses the weights of ``staleness`` steps ago (ConAdv).

    Args:
        mean, std: the training set's statistics (``data.mean``, ``data.std``).
        epsilon: the attack's radius in pixel levels (2 = 2/255).
        staleness: ``tau``: 0 is ordinary (fresh) FGSM adversarial training, 1 ConAdv's default. The first
            ``tau`` steps, which have no older weights, attack with the initial ones.
        mix: ``"both"`` trains on the clean batch and its adversarial copy together (the loss is their
            mean, as ConAdv does), ``"adversarial"`` on the adversarial copy alone.
        concurrent: with ``staleness >= 1``, make the next step's examples while this step trains (a worker
            thread; on a GPU its own CUDA stream), from ``state.peek_batch()``. The examples and so the run
            are those of ``concurrent=False`` to the bit, so it is not part of the recorded configuration
            (the cache key is the same). It attacks the next batch before the algorithms before it in
            ``algorithms=`` have seen it: one that edits the batch at ``batch_loaded`` must come after it
            (an error says so otherwise). The first batch of an epoch is attacked in turn with its step.

    The history gets ``adv_gap``: the mean loss of the adversarial copy minus the clean batch's, under the
    weights being trained (how strong the possibly stale examples still are).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], epsilon: float = 2.0, staleness: int = 1,
                 mix: str = "both", concurrent: bool = False):
        if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
            raise ValueError(f"epsilon is the L_inf radius in pixel levels (2 = 2/255), >= 0; got {epsilon!r}")
        if not (isinstance(staleness, int) and staleness >= 0):
            raise ValueError(f"staleness is a number of steps, an integer >= 0 (0: fresh weights), got {staleness!r}")
        if mix not in MIXES:
            raise ValueError(f"mix is one of {', '.join(MIXES)}, got {mix!r}")
        super().__init__(mean=tuple(mean), std=tuple(std), epsilon=float(epsilon), staleness=staleness, mix=mix)
        self.mean, self.std, self.epsilon, self.staleness, self.mix = tuple(mean), tuple(std), float(epsilon), \
            staleness, mix
        if concurrent and staleness == 0:
            raise ValueError("concurrent=True makes the next step's examples while this step trains, which needs "
                             "stale weights: use staleness >= 1 (ConAdv: 1), or concurrent=False for fresh FGSM")
        self.concurrent = bool(concurrent)  # how, not what: not recorded (the run is the same to the bit)
        self.attacker: nn.Module | None = None
        self.past: deque[dict[str, torch.Tensor]] = deque()
        self.worker: ThreadPoolExecutor | None = None
        self.pending: tuple[torch.Tensor, Future] | None = None  # (the next batch's images, its attack)
        self.side = None  # the attack's CUDA stream

    @property
    def critical_path_gradients(self) -> int:
        """Gradient computations per step that must run one after the other: 2 for fresh adversarial training
        (the attack needs the current weights), 1 with stale weights (the attack runs concurrently)."""
        return 1 if self.staleness > 0 else 2

    def _snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_init(self, state: State) -> None:
        if self.staleness > 0:
            self.attacker = copy.deepcopy(state.model)
            for p in self.attacker.parameters():
                p.requires_grad_(False)
            self.past = deque([self._snapshot(state.model)], maxlen=self.staleness)

    def on_fit_start(self, state: State) -> None:
        self.pending = None
        if self.concurrent:
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="StaleAdversarial")
            self.side = torch.cuda.Stream(state.device) if state.device.type == "cuda" else None

    def on_fit_end(self, state: State) -> None:
        if self.worker is not None:
            self.worker.shutdown(wait=True)
        self.worker, self.pending, self.side = None, None, None

    def _attack(self, x: torch.Tensor, y: torch.Tensor, precision: str, ready) -> tuple[torch.Tensor, Any]:
        """On the worker thread: FGSM with the attacker's (stale) weights; on a GPU on the side stream, after
        ``ready`` (the weights and the batch are in place), returning the event that marks it done."""
        if self.side is None:
            return fgsm(self.attacker, x, y, self.mean, self.std, self.epsilon, precision), None
        with torch.cuda.stream(self.side):
            self.side.wait_event(ready)
            out = fgsm(self.attacker, x, y, self.mean, self.std, self.epsilon, precision)
            done = torch.cuda.Event()
            done.record(self.side)
        return out, done

    def _collect(self, state: State) -> torch.Tensor | None:
        """The examples made for this batch while the last step trained, or None if none were made."""
        if self.pending is None:
            return None
        images, future = self.pending
        self.pending = None
        out, done = future.result()
        if images is not state.batch[0]:
            raise RuntimeError("StaleAdversarial(concurrent=True) attacked the next batch as the loader gave it, but "
                               "an algorithm before it in algorithms= changed the batch at batch_loaded; put "
                               "StaleAdversarial before the algorithms that edit batches, or use concurrent=False")
        if done is not None:
            stream = torch.cuda.current_stream(state.device)
            stream.wait_event(done)
            out.record_stream(stream)
        return out

    def on_batch_loaded(self, state: State) -> None:
        x, y = state.batch[0], state.batch[1]
        if self.staleness == 0:
            x_adv = fgsm(state.model, x, y, self.mean, self.std, self.epsilon, state.precision)
        else:  # the weights of step (t - staleness), or the oldest there are
            x_adv = self._collect(state)
            if x_adv is None:
                self.attacker.load_state_dict(self.past[0])
                x_adv = fgsm(self.attacker, x, y, self.mean, self.std, self.epsilon, state.precision)
            self.past.append(self._snapshot(state.model))  # this step's weights, for step t + staleness
            nxt = state.peek_batch() if self.worker is not None and state.step + 1 < state.total_steps else None
            if nxt is not None:  # step t + 1's examples, with the weights it will use, while this step trains
                self.attacker.load_state_dict(self.past[0])
                ready = None
                if self.side is not None:
                    ready = torch.cuda.Event()
                    ready.record(torch.cuda.current_stream(state.device))
                self.pending = (nxt[0], self.worker.submit(self._attack, nxt[0], nxt[1], state.precision, ready))
        if self.mix == "both":
            state.batch = (torch.cat([x, x_adv]), torch.cat([y, y]), *state.batch[2:])
        else:
            state.batch = (x_adv, y, *state.batch[2:])

    def on_after_loss(self, state: State) -> None:
        if self.mix == "both" and isinstance(state.outputs, torch.Tensor):
            with torch.no_grad():
                per = torch.nn.functional.cross_entropy(state.outputs.float(), state.batch[1], reduction="none")
                n = len(per) // 2
                state.logs["adv_gap"] = per[n:].mean() - per[:n].mean()

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": len(self.past)}
        for i, snap in enumerate(self.past):
            out.update({f"past{i}.{k}": v for k, v in snap.items()})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.staleness == 0:
            return
        snaps = []
        for i in range(int(state["count"])):
            prefix = f"past{i}."
            snaps.append({k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)})
        self.past = deque(snaps, maxlen=self.staleness)


class StalenessProbe(Callback):
    """How strong are adversarial examples made with old weights? A callback that only observes.

    At ``probes`` evenly spread steps, on the first ``images`` images of the step's batch, at the current
    weights ``w_t`` in eval mode: the clean loss, the loss increase of FGSM made with ``w_t`` (``fresh``), and for
    every ``tau`` in ``taus`` the loss increase of FGSM made with the weights of ``tau`` steps before
    (``stale<tau>``; ``None`` until that many steps have passed), and ``move``, the relative change of the
    weights over the last step. Rows in ``.rows``; the processor seconds it took in ``.seconds``. The run is
    bit-identical with and without it (tested).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], epsilon: float = 2.0,
                 taus: Sequence[int] = (1, 2, 4), probes: int = 12, images: int = 128):
        if not taus or any(not (isinstance(t, int) and t >= 1) for t in taus):
            raise ValueError(f"taus are staleness values, integers >= 1, got {list(taus)}")
        super().__init__()
        self.mean, self.std, self.epsilon, self.taus = tuple(mean), tuple(std), float(epsilon), tuple(taus)
        self.probes, self.images = int(probes), int(images)
        self.rows: list[dict[str, Any]] = []
        self.seconds = 0.0

    def on_init(self, state: State) -> None:
        self.attacker = copy.deepcopy(state.model)
        self.past: deque[dict[str, torch.Tensor]] = deque(maxlen=max(self.taus))
        self.every = max(1, state.total_steps // max(self.probes, 1))
        self.rows, self.seconds = [], 0.0

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(x).float(), y))

    def on_batch_loaded(self, state: State) -> None:
        start, model = time.process_time(), state.model
        if state.step % self.every == 0 and self.past:
            x, y = state.batch[0][:self.images], state.batch[1][:self.images]
            was = model.training
            model.eval()
            try:
                clean = self._loss(model, x, y)
                fresh = fgsm(model, x, y, self.mean, self.std, self.epsilon, state.precision)
                row: dict[str, Any] = dict(step=state.step, lr=state.lr, clean=clean,
                                           fresh=self._loss(model, fresh, y) - clean)
                for tau in self.taus:
                    if len(self.past) >= tau:
                        self.attacker.load_state_dict(self.past[-tau])
                        stale = fgsm(self.attacker, x, y, self.mean, self.std, self.epsilon, state.precision)
                        row[f"stale{tau}"] = self._loss(model, stale, y) - clean
                    else:
                        row[f"stale{tau}"] = None
                names = [n for n, _ in model.named_parameters()]
                now = torch.cat([p.detach().flatten() for p in model.parameters()])
                old = torch.cat([self.past[-1][n].flatten() for n in names])
                row["move"] = float((now - old).norm() / old.norm().clamp(min=1e-12))
            finally:
                model.train(was)
            self.rows.append(row)
        self.past.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        self.seconds += time.process_time() - start


def large_batch(batch_size: int, n_train: int, *, base_lr: float = 0.1, base_batch: int = 128,
                warmup_epochs: float = 1.0, epochs: int = 10, exact: bool = False) -> dict[str, Any]:
    """``fit`` arguments for a large batch: the learning rate scaled linearly with the batch (Goyal et al.,
    arXiv:1706.02677: ``lr = base_lr * batch_size / base_batch``), a linear warm-up over ``warmup_epochs``,
    then a cosine decay.

    ``exact=True`` asks that the batch divide the training set (every step a full batch); a batch that does
    not is refused with the sizes that would.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size > n_train:
        raise ValueError(f"a batch of {batch_size} is larger than the {n_train} training images: use at most "
                         f"{n_train}, or more data")
    if exact and n_train % batch_size:
        divisors = [d for d in range(max(1, batch_size // 2), min(n_train, 2 * batch_size) + 1) if n_train % d == 0]
        raise ValueError(f"batch_size {batch_size} does not divide the {n_train} training images (the last batch "
                         f"would hold {n_train % batch_size}); sizes near it that do: {divisors[:6]}, or take "
                         f"a subset of {n_train - n_train % batch_size} images")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    return dict(batch_size=batch_size, lr=base_lr * batch_size / base_batch, schedule="cosine",
                warmup=min(warmup_epochs / epochs, 1.0), epochs=epochs)


class Lamb(torch.optim.Optimizer):
    """LAMB, the LAMB paper's algorithm 2 (arXiv:1904.00962), per parameter tensor ("layer"):

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``; with ``debias``, ``m^ = m / (1 - b1^t)`` and
    ``v^ = v / (1 - b2^t)``; ``r = m^ / (sqrt(v^) + eps) + decay * w``; ``w -= lr * phi(||w||) / ||r|| * r``
    with ``phi(z) = min(z, clamp_value)`` and a trust ratio of 1 where ``||w||`` or ``||r||`` is 0.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, clamp_value: float = 10.0, debias: bool = True):
        if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and eps >= 0 and weight_decay >= 0
                and clamp_value > 0):
            raise ValueError(f"LAMB needs lr > 0, betas in [0, 1), eps >= 0, weight_decay >= 0 and clamp_value > 0; "
                             f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}, "
                             f"clamp_value={clamp_value}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      clamp_value=clamp_value, debias=debias))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["step"] += 1
                m, v, t = st["m"], st["v"], st["step"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                if group["debias"]:
                    r = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + group["eps"])
                else:
                    r = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    r.add_(p, alpha=group["weight_decay"])
                w_norm, r_norm = p.norm().clamp(max=group["clamp_value"]), r.norm()
                trust = torch.where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, torch.ones_like(w_norm))
                p.sub_(group["lr"] * trust * r)
        return loss


def layerwise_optimizer(name: str, **options: Any) -> Callable:
    """``fit(optimizer=layerwise_optimizer("lamb"))``: LARS or LAMB from ``torch-optimizer``, built on
    ``fit``'s parameter groups (so ``fit``'s weight decay and schedule apply).

    ``options`` go to the optimizer: LARS's ``momentum`` (default 0.9) and ``trust_coefficient``
    (default 0.001, the LARS paper's eta), :class:`Lamb`'s ``betas``, ``eps``, ``clamp_value`` and ``debias``.
    """
    if name not in LAYERWISE_OPTIMIZERS:
        raise ValueError(f"unknown layer-wise optimizer {name!r}; choose one of {', '.join(LAYERWISE_OPTIMIZERS)}")
    if name == "lars":
        try:
            import torch_optimizer
        except ImportError as e:  # pragma: no cover - a dependency of the workbench
            raise ImportError("LARS comes from torch-optimizer: pip install torch-optimizer") from e
        opts = {"momentum": 0.9, "trust_coefficient": 0.001, **options}

        def build(groups):  # fit sets every group's learning rate at every step
            return torch_optimizer.LARS(groups, **opts)
    else:
        opts = dict(options)

        def build(groups):
            return Lamb(groups, **opts)
    build.__qualname__ = f"layerwise_optimizer({name!r}, {', '.join(f'{k}={v!r}' for k, v in sorted(opts.items()))})"
    build.cache_key = build.__qualname__
    return build
