"""One-shot architecture search: train a weight-sharing supernet once through ``wb.fit`` with an
architecture drawn before every batch, score sub-networks with the shared weights, and search the space
with random search, regularized evolution or Optuna.

* :class:`SampleArch` (an algorithm of ``wb.fit``): a uniform draw from the space before every batch,
  as in single-path one-shot NAS (Guo et al. 2020, https://arxiv.org/abs/1904.00420) and ViT-ResNAS's
  super-network training (https://arxiv.org/abs/2109.00642).
* :func:`evaluate`: a supernet's accuracy under one architecture (optionally after re-estimating
  BatchNorm statistics for it) and its multiply-adds, cached on disk per architecture.
* Strategies over any :class:`~workbench.nas.space.SearchSpace` and any ``evaluate(arch) -> {"score",
  "cost", ...}``: :func:`random_search` (the honest baseline), :func:`evolution` (regularized, aging
  evolution: Real et al. 2019, https://arxiv.org/abs/1802.01548, optionally under a cost limit as in
  ViT-ResNAS) and :func:`optuna_search` (TPE for one objective, NSGA-II for two). Each returns one row
  per proposed candidate (``order, key, arch, score, cost`` and the evaluator's other numbers), is
  deterministic for a seed, and scores a candidate met again from memory; :func:`cached_evaluator`
  keeps the scores on disk, so a rerun evaluates nothing.
* :func:`rank_correlation`: Kendall's tau and Spearman's rho of two rankings (proxy scores against
  full training).

This is the one search loop of the package: ``wb.quant.joint_search`` (architecture and bits together,
SimQ-NAS) runs :func:`optuna_search` over an architecture space joined with a bit-width space.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..cache import cached
from ..train.events import Algorithm, State
from .space import SearchSpace

__all__ = ["SampleArch", "evaluate", "recalibrate_bn", "cached_evaluator", "random_search", "evolution",
           "optuna_search", "rank_correlation"]

Evaluator = Callable[[dict], Mapping[str, Any]]


class SampleArch(Algorithm):
    """Before every training batch of ``wb.fit``, a supernet's architecture drawn uniformly from ``space``.

    Args:
        space: the space to draw from (default: the model's own ``model.space``).
        seed: of the draws; the generator is checkpointed, so a resumed run draws the same architectures.
        eval_arch: the architecture set after every step and at the end (what ``fit`` evaluates on the
            test set); ``None`` leaves the last drawn one (a ViT supernet: pass its ``max_arch``).
    The model needs ``set_arch(arch)`` (:class:`~workbench.nas.CellSupernet`,
    :class:`~workbench.nas.ViTStagesSupernet`).
    """

    def __init__(self, space: SearchSpace | Mapping | None = None, seed: int = 0, eval_arch: Mapping | None = None):
        self.space = None if space is None else SearchSpace(space)
        super().__init__(space=None if space is None else {k: list(v) for k, v in self.space.choices.items()},
                         seed=seed, eval_arch=None if eval_arch is None else dict(eval_arch))
        self.seed, self.eval_arch = seed, eval_arch
        self.gen = torch.Generator().manual_seed(seed)
        self.archs: list[dict] = []  # drawn in this process, in order

    def on_init(self, state: State) -> None:
        if not callable(getattr(state.model, "set_arch", None)):
            raise ValueError(f"SampleArch needs a supernet with set_arch(arch) (wb.nas.CellSupernet, "
                             f"wb.nas.ViTStagesSupernet); {type(state.model).__name__} has none")
        if self.space is None:
            self.space = getattr(state.model, "space", None)
            if not isinstance(self.space, SearchSpace):
                raise ValueError("SampleArch(space=None) takes the model's .space, but it has none: pass space=")
        if self.eval_arch is not None:
            self.space.validate(self.eval_arch)

    def on_batch_loaded(self, state: State) -> None:
        arch = self.space.sample(self.gen)
        self.archs.append(arch)
        state.model.set_arch(arch)

    def on_after_step(self, state: State) -> None:
        if self.eval_arch is not None:
            state.model.set_arch(self.eval_arch)

    on_fit_end = on_after_step

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def _images(data, who: str) -> torch.Tensor:
    if isinstance(data, torch.Tensor) and data.is_floating_point() and data.ndim == 4:
        return data
    if hasattr(data, "images") and hasattr(data, "normalize"):
        return data.normalize(data.images)
    raise ValueError(f"{who} is an ImageDataset or a float tensor [N, C, H, W] of normalized images, "
                     f"got {type(data).__name__}")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data, batch_size: int = 256) -> nn.Module:
    """Recompute every BatchNorm's running statistics as the plain average over ``data``'s batches, for
    the architecture the supernet runs now (in place; each sub-network of a supernet sees other
    statistics than the mixture that training accumulated). Returns ``model``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to recalibrate; pass bn_recalibration=None")
    x = _images(data, "bn_recalibration")
    dev = next(model.parameters()).device
    was, moms = model.training, [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # a cumulative average
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(dev))
    finally:
        for b, m in zip(bns, moms):
            b.momentum = m
        model.train(was)
    return model


def evaluate(supernet: nn.Module, arch: Mapping[str, Any], data, *, bn_recalibration=None, batch_size: int = 1000,
             cache: bool = True) -> dict[str, float]:
    """Accuracy and loss on ``data`` of ``supernet`` under ``arch`` with the shared weights (no training),
    and its multiply-adds for one image.

    Args:
        supernet: a :class:`~workbench.nas.CellSupernet` or :class:`~workbench.nas.ViTStagesSupernet` (any
            module with ``space``, ``set_arch`` and ``macs``); its architecture and BatchNorm statistics are
            left as they were.
        data: an :class:`~workbench.data.ImageDataset` held out from training.
        bn_recalibration: images (an ImageDataset or a normalized tensor) to re-estimate the BatchNorm
            statistics on for this architecture first (:func:`recalibrate_bn`).
        cache: keep the result on disk (``wb.cached``) keyed by the supernet's weights, the data and the
            architecture, so a second search evaluates nothing.
    Returns:
        ``{"score": acc, "cost": macs, "acc", "loss", "macs"}``: ready for the search strategies.
    """
    from ..train.cached import data_fingerprint, model_fingerprint
    from ..train.trainer import evaluate as evaluate_model

    key = supernet.space.key(arch)
    # price the architecture at the data's image size where the supernet takes any (cells do; a ViT's is fixed)
    size = {"img_size": int(data.images.shape[-1])} if "img_size" in inspect.signature(supernet.macs).parameters else {}

    def run() -> dict[str, float]:
        saved_arch = supernet.arch
        saved = {k: v.clone() for k, v in supernet.state_dict().items()
                 if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}
        try:
            supernet.set_arch(supernet.space.from_key(key))
            if bn_recalibration is not None:
                recalibrate_bn(supernet, bn_recalibration)
            r = evaluate_model(supernet, data, batch_size=batch_size)
        finally:
            supernet.load_state_dict(saved, strict=False)
            supernet.set_arch(saved_arch)
        macs = supernet.macs(supernet.space.from_key(key), **size)
        return {"score": r["acc"], "cost": float(macs), "acc": r["acc"], "loss": r["loss"], "macs": int(macs)}

    if not cache:
        return run()
    bn = None if bn_recalibration is None else (
        data_fingerprint(bn_recalibration) if hasattr(bn_recalibration, "labels") else bn_recalibration)
    return cached(run, key={"model": model_fingerprint(supernet), "data": data_fingerprint(data), "arch": key,
                            "bn": bn, **size}, name="nas_evaluate")


def cached_evaluator(evaluate: Evaluator, key: Any, space: SearchSpace, name: str = "nas_scores") -> Evaluator:
    """``evaluate`` with each architecture's result kept on disk (``wb.cached``) under ``key`` (everything
    that tells this evaluator apart: the supernet's training configuration, the data, the metric) and the
    architecture's :meth:`~workbench.nas.SearchSpace.key`. ``.calls`` counts the evaluations that ran."""

    def run(arch: dict) -> Mapping[str, Any]:
        def compute():
            run.calls += 1
            return dict(evaluate(arch))
        return cached(compute, key={"evaluator": key, "arch": space.key(arch)}, name=name)

    run.calls = 0
    return run


class _Scores:
    """Scores each proposed architecture once (a candidate met again comes from memory) and records rows."""

    def __init__(self, space: SearchSpace, evaluate: Evaluator, progress: bool, total: int, desc: str):
        if not isinstance(space, SearchSpace):
            space = SearchSpace(space)
        if not callable(evaluate):
            raise TypeError("evaluate is a function arch -> {'score': float, 'cost': float, ...}")
        self.space, self.evaluate, self.memo, self.rows = space, evaluate, {}, []
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="arch")

    def __call__(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        arch = self.space.validate(arch)
        key = self.space.key(arch)
        if key not in self.memo:
            r = self.evaluate(dict(arch))
            if not isinstance(r, Mapping) or "score" not in r:
                raise ValueError(f"evaluate(arch) must return a dict with 'score' (higher is better) and "
                                 f"optionally 'cost'; got {r!r}")
            self.memo[key] = {"score": float(r["score"]), "cost": float(r.get("cost", math.nan)),
                              **{k: v for k, v in r.items() if k not in ("score", "cost")}}
        row = {"order": len(self.rows), "key": key, "arch": arch, **self.memo[key]}
        self.rows.append(row)
        if self.bar is not None:
            self.bar.update(1)
        return row

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def frame(self) -> pd.DataFrame:
        self.close()
        return pd.DataFrame(self.rows)


def _check_count(**counts: int) -> None:
    for name, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} is a whole number of at least 1, got {v!r}")


def random_search(space: SearchSpace, evaluate: Evaluator, n: int, seed: int = 0,
                  progress: bool = False) -> pd.DataFrame:
    """``n`` architectures drawn uniformly (:meth:`SearchSpace.sample` with a generator seeded ``seed``)
    and scored: the baseline every search strategy must beat. Returns one row per draw."""
    _check_count(n=n)
    scores, gen = _Scores(space, evaluate, progress, n, "random search"), torch.Generator().manual_seed(seed)
    try:
        for _ in range(n):
            scores(scores.space.sample(gen))
    finally:
        scores.close()
    return scores.frame()


def evolution(space: SearchSpace, evaluate: Evaluator, population: int = 20, cycles: int = 100,
              sample_size: int = 5, seed: int = 0, max_cost: float | None = None, p: float | None = None,
              progress: bool = False) -> pd.DataFrame:
    """Regularized (aging) evolution (Real et al. 2019, https://arxiv.org/abs/1802.01548, Algorithm 1).

    ``population`` random architectures are scored; then each of ``cycles`` cycles draws ``sample_size``
    members of the population, mutates the best of them (:meth:`SearchSpace.mutate` with ``p``: by default
    one choice changes), scores the child, adds it and removes the *oldest* member. With ``max_cost`` a
    member costing more ranks below every member within it, and among those over it the cheaper ranks
    higher (the cost-constrained search of ViT-ResNAS). Returns one row per scored candidate
    (``population + cycles``), with ``parent`` (the ``order`` of the mutated member, -1 for the first
    ones).
    """
    _check_count(population=population, cycles=cycles, sample_size=sample_size)
    if sample_size > population:
        raise ValueError(f"sample_size ({sample_size}) cannot exceed population ({population})")
    scores, gen = _Scores(space, evaluate, progress, population + cycles, "evolution"), \
        torch.Generator().manual_seed(seed)

    def fitness(row):
        ok = max_cost is None or not row["cost"] > max_cost
        return (ok, row["score"] if ok else -row["cost"])

    alive = []
    try:
        for _ in range(population):
            alive.append(scores(scores.space.sample(gen)))
            alive[-1]["parent"] = -1
        for _ in range(cycles):
            picks = torch.randperm(len(alive), generator=gen)[:sample_size].tolist()
            parent = max((alive[i] for i in picks), key=fitness)
            child = scores(scores.space.mutate(parent["arch"], gen, p))
            child["parent"] = parent["order"]
            alive.append(child)
            alive.pop(0)  # the oldest dies, however good
    finally:
        scores.close()
    return scores.frame()


def optuna_search(space: SearchSpace, evaluate: Evaluator, n_trials: int, seed: int = 0,
                  directions: Sequence[str] = ("maximize",), objectives: Sequence[str] = ("score", "cost"),
                  sampler: Any = None, population_size: int = 20, progress: bool = False,
                  desc: str = "optuna search") -> pd.DataFrame:
    """Search with an Optuna sampler: TPE for one objective, NSGA-II (``population_size`` per generation)
    for two or more, or ``sampler`` as given.

    A choice of consecutive whole numbers (depths, block inputs) is suggested as an integer range, so
    samplers see its order; any other as a categorical. Each trial is told the evaluator's values of
    ``objectives[:len(directions)]`` (default ``score``, then ``cost``).

    Returns:
        one row per trial (``order`` is the trial number).
    Raises:
        ImportError: without Optuna (``pip install optuna``).
    """
    _check_count(n_trials=n_trials)
    directions = list(directions)
    if not directions or any(d not in ("maximize", "minimize") for d in directions) or \
            len(directions) > len(objectives):
        raise ValueError(f"directions are 'maximize' or 'minimize', one per objective of {list(objectives)}, "
                         f"got {directions}")
    try:
        import optuna
    except ImportError as e:
        raise ImportError("optuna_search needs Optuna (TPE and NSGA-II samplers): pip install optuna") from e
    scores = _Scores(space, evaluate, progress, n_trials, desc)
    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed) if len(directions) == 1 else \
            optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    ranges = {n: v for n, v in scores.space.choices.items()
              if all(type(x) is int for x in v) and list(v) == list(range(v[0], v[0] + len(v)))}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions, sampler=sampler)
        for _ in range(n_trials):
            trial = study.ask()
            arch = {n: trial.suggest_int(n, v[0], v[-1]) if n in ranges else trial.suggest_categorical(n, v)
                    for n, v in scores.space.choices.items()}
            row = scores(arch)
            values = [row[k] for k in objectives[:len(directions)]]
            study.tell(trial, values if len(values) > 1 else values[0])
    finally:
        optuna.logging.set_verbosity(verbosity)
        scores.close()
    return scores.frame()


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Kendall's tau (tau-b) and Spearman's rho between two scorings of the same candidates (scipy): how
    well a proxy (supernet accuracy, a short run) ranks architectures as full training does."""
    from scipy import stats

    a, b = list(map(float, a)), list(map(float, b))
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"rank_correlation needs two equally long sequences of at least 2 scores, got {len(a)} "
                         f"and {len(b)}")
    return {"kendall": float(stats.kendalltau(a, b).statistic), "spearman": float(stats.spearmanr(a, b).statistic)}
