"""Architecture and quantization policy searched together on one weight-sharing CIFAR ResNet supernet
(SimQ-NAS: Sridhar et al. 2023, *SimQ-NAS: Simultaneous Quantization Policy and Neural Architecture
Search*, https://arxiv.org/abs/2312.13301), against the two-step baseline: search the architecture
with a fixed policy, then quantize the front uniformly.

The elastic architecture of a ``resnet_cifar`` model (plain or from :func:`~workbench.quant.quantize`)::

    {"depth": (d1, d2, d3), "width": (r1, r2, r3)}

per stage: ``d`` residual blocks kept (the first, which may downsample, always; later ones drop from
the stage's end, and a dropped block passes its input through without running: exact for this
post-activation ResNet, whose block input is already a ReLU output), and the fraction ``r`` of each
block's inner channels kept (``conv1``'s output channels past ``round(r * C)``, half up, are zeroed
after the block's first ReLU, so ``conv2`` sees only the kept ones). Module names and the state
dict never change, so policies name layers as before (``"layer1.1.conv1"``).

:class:`RandomArch` draws an architecture before every batch of ``wb.fit``; with
:class:`~workbench.quant.RandomFormats` in the same fit the shared weights learn every architecture
at every bit width. :func:`joint_search` then searches both with NSGA-II (Optuna, through
:func:`wb.nas.optuna_search <workbench.nas.optuna_search>`, the package's one search loop), scoring each
candidate by the supernet's accuracy (no retraining; the paper fits light predictors instead) and
its cost as :func:`arch_cost` counts it: only the blocks and channels that run.
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..models.resnet_cifar import BasicBlock
from ..train.events import Algorithm, State
from .layers import _QuantMixin, cost, quantize
from .mixed import pareto_front
from .search import _formats, _label, _layers, _resolve_choices, _restore, get_policy, set_policy

__all__ = ["set_arch", "get_arch", "arch_space", "RandomArch", "arch_cost", "evaluate_arch", "joint_search",
           "quantize_front", "compare_fronts"]

STAGES = ("layer1", "layer2", "layer3")
METRICS = ("gbops", "weight_mb", "macs")


def _stages(model: nn.Module) -> list[list[BasicBlock]]:
    out = []
    for name in STAGES:
        stage = getattr(model, name, None)
        if not isinstance(stage, nn.Sequential) or not len(stage) or not all(isinstance(b, BasicBlock) for b in stage):
            raise ValueError(f"expected a CIFAR ResNet of wb.models (resnet8 ... resnet110, resnet_cifar; plain or "
                             f"from wb.quant.quantize) with stages {', '.join(STAGES)} of BasicBlocks; "
                             f"{type(model).__name__} has no {name} of them")
        out.append(list(stage))
    return out


def _kept(r: float, channels: int) -> int:
    return max(1, int(r * channels + 0.5))


def _check_widths(widths: Sequence[float], who: str) -> tuple[float, ...]:
    widths = tuple(widths)
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, numbers.Real) or not 0 < w <= 1]
    if not widths or bad:
        raise ValueError(f"{who}: width ratios are fractions of a block's channels in (0, 1], like (0.5, 0.75, 1.0); "
                         f"got {list(widths)}")
    return tuple(float(w) for w in widths)


def _check_arch(stages: list[list[BasicBlock]], arch: Mapping[str, Sequence] | None) -> dict[str, tuple]:
    """The architecture with every value checked, as ``{"depth": ints, "width": floats}``; ``None``
    (or a missing key) is the full network."""
    full = {"depth": tuple(len(b) for b in stages), "width": (1.0,) * len(stages)}
    if arch is None:
        return full
    if not isinstance(arch, Mapping) or set(arch) - set(full):
        raise ValueError(f"an architecture is {{'depth': (d1, d2, d3), 'width': (r1, r2, r3)}}, got {arch!r}")
    out = {}
    for key in full:
        value = tuple(arch.get(key, full[key]))
        if len(value) != len(stages):
            raise ValueError(f"arch[{key!r}] needs one value per stage ({len(stages)}), got {value}")
        out[key] = value
    for s, (d, blocks) in enumerate(zip(out["depth"], stages)):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 1 <= d <= len(blocks):
            raise ValueError(f"arch depth for stage {s + 1} is {d!r}, but {STAGES[s]} has {len(blocks)} blocks: "
                             f"choose a whole number from 1 to {len(blocks)}")
    out["depth"] = tuple(int(d) for d in out["depth"])
    out["width"] = _check_widths(out["width"], "arch width")
    return out


def _width_hook(module: nn.Module, args, out: torch.Tensor):
    """Forward hook on a block's ``hook_relu1``: channels past ``module.keep`` become zeros."""
    k = getattr(module, "keep", None)
    if k is None:
        return None
    return F.pad(out[:, :k], (0, 0, 0, 0, 0, out.shape[1] - k))  # [batch, C, h, w], zeros past k


def set_arch(model: nn.Module, arch: Mapping[str, Sequence] | None = None) -> nn.Module:
    """Give a CIFAR ResNet the architecture ``{"depth": (d1, d2, d3), "width": (r1, r2, r3)}`` in place
    (``None``: the full network; see the module docstring). Returns ``model``.

    Raises:
        ValueError: a depth out of 1..blocks of its stage, a width ratio outside (0, 1], or a model that
            is not a CIFAR ResNet.
    """
    stages = _stages(model)
    arch = _check_arch(stages, arch)
    for blocks, d, r in zip(stages, arch["depth"], arch["width"]):
        for i, block in enumerate(blocks):
            block.active, block.width_ratio = i < d, r
            c, hp = block.conv1.out_channels, block.hook_relu1
            k = _kept(r, c)
            if k < c and not getattr(hp, "width_hooked", False):
                hp.register_forward_hook(_width_hook)
                hp.width_hooked = True
            hp.keep = k if k < c else None
    return model


def get_arch(model: nn.Module) -> dict[str, tuple]:
    """The architecture a CIFAR ResNet runs now: ``{"depth": (d1, d2, d3), "width": (r1, r2, r3)}``."""
    stages = _stages(model)
    return {"depth": tuple(sum(bool(b.active) for b in blocks) for blocks in stages),
            "width": tuple(float(getattr(blocks[0], "width_ratio", 1.0)) for blocks in stages)}


def arch_space(model: nn.Module, widths: Sequence[float] = (0.5, 0.75, 1.0)) -> dict[str, tuple]:
    """The choices per stage: ``{"depth": ((1, ..., n1), ...), "width": (widths, ...)}``; the space holds
    the product of all their lengths."""
    stages = _stages(model)
    widths = _check_widths(widths, "arch_space")
    return {"depth": tuple(tuple(range(1, len(b) + 1)) for b in stages), "width": (widths,) * len(stages)}


def _draw(space: Mapping[str, Sequence[Sequence]], generator: torch.Generator) -> dict[str, tuple]:
    return {k: tuple(opts[int(torch.randint(len(opts), (), generator=generator))] for opts in space[k])
            for k in ("depth", "width")}


class RandomArch(Algorithm):
    """Elastic depth and width for ``wb.fit``: before every batch an architecture drawn uniformly from
    :func:`arch_space` (``widths`` per stage, every depth), so that the shared weights learn all of them;
    the first batch of a run trains the full network (every quantizer then has observed its range).

    Args:
        widths: the width ratios to draw from, in (0, 1].
        seed: of the draws (the generator is checkpointed, so a resumed run draws the same architectures).
    After each optimizer step and at the end of training the model gets its full architecture back
    (so the test set of each epoch is scored on the full network). With
    ``algorithms=[QAT(...), RandomArch(...), RandomFormats(...)]`` every architecture trains at every
    bit width.
    """

    def __init__(self, widths: Sequence[float] = (0.5, 0.75, 1.0), seed: int = 0):
        super().__init__(widths=list(widths), seed=seed)
        self.widths, self.seed = _check_widths(widths, "RandomArch"), seed
        self.gen = torch.Generator().manual_seed(seed)
        self.space: dict[str, tuple] = {}

    def on_init(self, state: State) -> None:
        self.space = arch_space(state.model, self.widths)

    def on_batch_loaded(self, state: State) -> None:
        # the first step runs the full network, so every block's quantizers observe their ranges at
        # least once (a block dropped in every draw would leave them uncalibrated); then random draws
        set_arch(state.model, None if state.step == 0 else _draw(self.space, self.gen))

    def on_after_step(self, state: State) -> None:
        set_arch(state.model, None)

    def on_fit_end(self, state: State) -> None:
        set_arch(state.model, None)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


def _quantized(model: nn.Module) -> bool:
    return any(isinstance(m, _QuantMixin) for m in model.modules())


def _bits(layer: nn.Module, kind: str) -> float:
    """A layer's bits of ``kind`` (``"weights"`` or ``"acts"``) as ``cost`` counts them: 32 for float."""
    f = getattr(getattr(layer, "spec", None), kind, None)
    return 32 if f is None else f.bits


@torch.no_grad()
def arch_cost(model: nn.Module, arch: Mapping[str, Sequence] | None = None, policy: Mapping[str, Any] | None = None,
              example: torch.Tensor | None = None) -> pd.DataFrame:
    """:func:`~workbench.quant.cost` counting only what runs under ``arch``: a dropped block's layers
    count zero, and in a kept block of width ratio ``r`` (``k`` of ``C`` channels kept) ``conv1`` has
    ``k`` output channels and ``conv2`` ``k`` input channels (``k / C`` of their weights and MACs).

    Args:
        model: a CIFAR ResNet, float or quantized; its architecture and formats are left as they were.
        arch: ``None`` for the full network.
        policy: formats by layer as for :func:`~workbench.quant.set_policy` (``None``: the model's own).
        example: one input (default: zeros of the model's input size).
    Returns:
        per conv / linear layer the columns of ``cost`` and ``kept`` (the fraction counted); ``attrs``
        with the totals ``weight_bits``, ``weight_mb``, ``macs``, ``gbops``.
    """
    arch = _check_arch(_stages(model), arch)
    target, saved = model, None
    if policy is not None and _quantized(model):
        layers = _layers(model)
        saved = _formats(model, [n for n in policy if n in layers])
        set_policy(model, policy)
    elif policy is not None:  # a float model priced under a policy: a quantized copy
        target = quantize(model, {"default": None, **{n: tuple(v) if isinstance(v, (tuple, list)) else (v, None)
                                                        for n, v in policy.items()}})
    was = get_arch(target)
    try:
        set_arch(target, None)  # every layer runs once, so each one's MACs are traced
        df = cost(target, example)
        bits = {n: (_bits(m, "weights"), _bits(m, "acts")) for n, m in target.named_modules()}  # before a restore
    finally:
        set_arch(target, was)
        if saved is not None:
            _restore(model, saved)
    kept = {}  # {layer: (k, C)}: the layer counts k / C of its weights and MACs
    for stage, blocks, d, r in zip(STAGES, _stages(target), arch["depth"], arch["width"]):
        for i, block in enumerate(blocks):
            c = block.conv1.out_channels
            for n, m in block.named_modules():
                if isinstance(m, nn.Conv2d):
                    inner = n in ("conv1", "conv2")
                    kept[f"{stage}.{i}.{n}"] = (0, 1) if i >= d else (_kept(r, c), c) if inner else (1, 1)
    k, c = zip(*(kept.get(n, (1, 1)) for n in df.layer))
    k, c = pd.Series(k, index=df.index), pd.Series(c, index=df.index)
    wbits, abits = df.layer.map(lambda n: bits[n][0]), df.layer.map(lambda n: bits[n][1])
    df = df.assign(params=df.params * k // c, macs=df.macs * k // c, kept=k / c)
    df = df.assign(weight_bits=df.params * wbits, bops=df.macs * wbits * abits)
    df.attrs.update(weight_bits=float(df.weight_bits.sum()), weight_mb=float(df.weight_bits.sum()) / 8e6,
                    macs=int(df.macs.sum()), gbops=float(df.bops.sum()) / 1e9)
    return df


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}


def _measure(supernet: nn.Module, arch, data, example, batch_size: int, bn_data) -> dict[str, float]:
    """Cost and accuracy of ``supernet`` with its formats as set now under ``arch`` (left set)."""
    from ..train import evaluate
    from .ptq import reestimate_bn

    c = arch_cost(supernet, arch, example=example).attrs
    set_arch(supernet, arch)
    saved = None
    if bn_data is not None:
        saved = _bn_buffers(supernet)
        reestimate_bn(supernet, bn_data)
    try:
        r = evaluate(supernet, data, batch_size=batch_size)
    finally:
        if saved is not None:
            supernet.load_state_dict(saved, strict=False)
    return {"acc": r["acc"], "loss": r["loss"], "weight_mb": c["weight_mb"], "gbops": c["gbops"], "macs": c["macs"]}


def evaluate_arch(supernet: nn.Module, data, arch: Mapping[str, Sequence] | None = None,
                  policy: Mapping[str, Any] | None = None, bn_data=None, batch_size: int = 1000) -> dict[str, float]:
    """Accuracy, loss and cost (``weight_mb``, ``gbops``, ``macs`` for one image) of the supernet's
    subnet ``arch`` with formats ``policy`` (as for :func:`~workbench.quant.set_policy`), no retraining.
    ``bn_data``: re-estimate the BatchNorm statistics on it first (for this subnet only). The supernet
    is left as it was."""
    saved_arch = get_arch(supernet)
    saved = _formats(supernet, _layers(supernet)) if policy is not None else None
    try:
        if policy is not None:
            set_policy(supernet, policy)
        return _measure(supernet, arch, data, data.normalize(data.images[:1]), batch_size, bn_data)
    finally:
        set_arch(supernet, saved_arch)
        if saved is not None:
            _restore(supernet, saved)


def _uniform(supernet: nn.Module, option: Any) -> dict[str, Any]:
    return {n: option for n in _layers(supernet)}


def joint_search(supernet: nn.Module, data, objective_metric: str = "gbops", n_trials: int = 100, seed: int = 0,
                 bits: Sequence[Any] | Mapping[str, Sequence[Any]] = ("int2_pc", "int4_pc", "int8_pc"),
                 search: str = "joint", fixed_policy: Any = None, widths: Sequence[float] = (0.5, 0.75, 1.0),
                 population_size: int = 20, bn_data=None, batch_size: int = 1000,
                 progress: bool = True) -> pd.DataFrame:
    """Multi-objective search of a supernet's subnets with NSGA-II (Optuna's ``NSGAIISampler``):
    maximize the accuracy on ``data``, minimize ``objective_metric``, with no retraining.

    ``search="joint"`` (SimQ-NAS) draws each stage's depth and width and a format per quantized layer
    from ``bits``; ``search="arch"`` draws only the architecture, under ``fixed_policy`` (the first
    step of the two-step baseline; :func:`quantize_front` is the second).

    Args:
        supernet: a CIFAR ResNet trained with :class:`RandomArch` (and, for ``"joint"``, quantized and
            trained with :class:`~workbench.quant.RandomFormats`); its architecture and formats are
            restored when the search ends, also on an error.
        data: an :class:`~workbench.data.ImageDataset` held out from training and from the final test.
        objective_metric: ``"gbops"``, ``"weight_mb"`` or ``"macs"``, for one image, as
            :func:`arch_cost` counts them.
        bits: options for every quantized layer, or ``{layer: [options]}``, as for RandomFormats: a
            weight format name (the layer keeps its activation format, 8-bit after ``quantize(m,
            "w8a8")``) or a ``(weights, acts)`` pair such as ``("int4_pc", "uint4_asym")`` to search
            activations too.
        fixed_policy: ``None`` (the supernet's formats as they are), one option for every quantized
            layer (``("fp32", "fp32")`` for float, ``"int8_pc"``), or a policy dict: the formats of
            ``"arch"``'s candidates, and with ``"joint"`` those of the layers ``bits`` leaves out.
        widths: the width ratios per stage.
        population_size: NSGA-II's generation size; the first generation is random.
        bn_data: re-estimate BatchNorm statistics on it for each candidate (see :func:`evaluate_arch`).
    Returns:
        one row per trial: ``trial, arch, policy, acc, loss, weight_mb, gbops, macs`` and ``pareto``
        (on the front of accuracy against ``objective_metric``). ``policy`` is ``{layer: option}``
        (``{layer: (weights, acts)}`` for ``"arch"``, ``None`` for a float model), ready for
        :func:`~workbench.quant.set_policy`.
    """
    if search not in ("joint", "arch"):
        raise ValueError(f"search is 'joint' (architecture and formats) or 'arch' (architecture only), got {search!r}")
    if objective_metric not in METRICS:
        raise ValueError(f"objective_metric is one of {METRICS}, got {objective_metric!r}")
    if n_trials < 1 or population_size < 2:
        raise ValueError(f"n_trials must be at least 1 and population_size at least 2, got {n_trials} and "
                         f"{population_size}")
    space = arch_space(supernet, widths)
    quantized = _quantized(supernet)
    if search == "joint" and not quantized:
        raise ValueError("search='joint' needs a quantized supernet (wb.quant.quantize, trained with RandomArch and "
                         "RandomFormats); for a float one use search='arch'")
    if fixed_policy is not None and not quantized:
        raise ValueError("fixed_policy needs a quantized supernet (wb.quant.quantize); leave it None for a float one")
    opts = _resolve_choices(_layers(supernet), bits, "joint_search") if search == "joint" else {}
    labels = {n: {_label(o): o for o in v} for n, v in opts.items()}

    from ..nas import SearchSpace, optuna_search

    # one flat space for wb.nas's search loop: depth{s} (a range, suggested as integers), width{s}, and a
    # format label per searched layer; the same names and order of suggestions as the trials always had
    n = len(space["depth"])
    space_nas = SearchSpace({**{f"depth{s + 1}": d for s, d in enumerate(space["depth"])},
                             **{f"width{s + 1}": w for s, w in enumerate(space["width"])},
                             **{name: tuple(labels[name]) for name in opts}})
    saved_arch, saved = get_arch(supernet), _formats(supernet, _layers(supernet)) if quantized else None
    example = data.normalize(data.images[:1])

    def arch_of(flat):
        return {"depth": tuple(flat[f"depth{s + 1}"] for s in range(n)),
                "width": tuple(flat[f"width{s + 1}"] for s in range(n))}

    def policy_of(flat):
        return {name: labels[name][flat[name]] for name in opts} if opts else fixed

    def score(flat):
        if opts:
            set_policy(supernet, policy_of(flat))
        r = _measure(supernet, arch_of(flat), data, example, batch_size, bn_data)
        return {"score": r["acc"], "cost": r[objective_metric], **r}

    try:
        if fixed_policy is not None:
            set_policy(supernet, fixed_policy if isinstance(fixed_policy, Mapping)
                       else _uniform(supernet, fixed_policy))
        fixed = get_policy(supernet) if quantized and search == "arch" else None
        found = optuna_search(space_nas, score, n_trials, seed=seed, directions=("maximize", "minimize"),
                              population_size=population_size, progress=progress, desc=f"{search} search")
    finally:
        set_arch(supernet, saved_arch)
        if saved is not None:
            _restore(supernet, saved)
    rows = []
    for row in found.itertuples(index=False):
        policy = policy_of(row.arch)
        rows.append({"trial": row.order, "arch": arch_of(row.arch), "policy": dict(policy) if policy is not None
                     else None, **{k: getattr(row, k) for k in ("acc", "loss", "weight_mb", "gbops", "macs")}})
    df = pd.DataFrame(rows)
    df["pareto"] = pareto_front(df, objective_metric, "acc")
    return df


def quantize_front(supernet: nn.Module, front, data, bits: Sequence[Any] = ("int2_pc", "int4_pc", "int8_pc"),
                   objective_metric: str = "gbops", bn_data=None, batch_size: int = 1000,
                   progress: bool = True) -> pd.DataFrame:
    """The two-step baseline's second step: each architecture of ``front`` (a :func:`joint_search`
    result with ``search="arch"``, its ``pareto`` rows taken when it has that column, or a list of
    architectures) quantized uniformly at each option of ``bits`` (every quantized layer the same, as
    for :func:`joint_search`) and scored in the supernet, no retraining.

    Returns:
        one row per architecture and option: ``arch, bits`` (the option's label), ``policy, acc, loss,
        weight_mb, gbops, macs`` and ``pareto`` (among these rows, on ``objective_metric``). The
        supernet's architecture and formats are restored.
    """
    if objective_metric not in METRICS:
        raise ValueError(f"objective_metric is one of {METRICS}, got {objective_metric!r}")
    if isinstance(front, pd.DataFrame):
        if "arch" not in front:
            raise ValueError(f"front needs a column 'arch' (a joint_search result); columns are {list(front.columns)}")
        archs = list((front[front.pareto] if "pareto" in front else front).arch)
    else:
        archs = list(front)
    stages = _stages(supernet)
    archs = list({repr(a): a for a in (_check_arch(stages, a) for a in archs)}.values())  # each once
    if isinstance(bits, Mapping):
        raise ValueError("quantize_front quantizes uniformly: bits is one list of options for every layer, not a dict")
    options = list(_resolve_choices(_layers(supernet), bits, "quantize_front").values())[0]
    if not archs:
        raise ValueError("front holds no architecture")
    saved_arch, saved = get_arch(supernet), _formats(supernet, _layers(supernet))
    example = data.normalize(data.images[:1])
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(archs) * len(options), desc="quantize front", unit="subnet")
    try:
        for arch in archs:
            for option in options:
                policy = _uniform(supernet, option)
                set_policy(supernet, policy)
                rows.append({"arch": arch, "bits": _label(option), "policy": policy,
                             **_measure(supernet, arch, data, example, batch_size, bn_data)})
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        set_arch(supernet, saved_arch)
        _restore(supernet, saved)
    df = pd.DataFrame(rows)
    df["pareto"] = pareto_front(df, objective_metric, "acc")
    return df


def compare_fronts(fronts: Mapping[str, pd.DataFrame], budgets: Sequence[float], metric: str = "gbops",
                   score: str = "acc") -> pd.DataFrame:
    """For each budget, each front's best ``score`` among its rows with ``metric`` at most the budget
    (NaN where none fits): a row per budget, a column per front, so that a notebook can check
    ``(table.joint >= table["two-step"]).mean()``."""
    if not fronts or not len(budgets):
        raise ValueError("compare_fronts needs at least one front ({name: rows}) and one budget")
    out = {"budget": [float(b) for b in budgets]}
    for name, df in fronts.items():
        missing = [c for c in (metric, score) if c not in df]
        if missing:
            raise ValueError(f"front {name!r} has no column {missing[0]!r}; columns are {list(df.columns)}")
        c, s = df[metric].to_numpy(float), df[score].to_numpy(float)
        out[name] = [float(s[c <= b].max()) if (c <= b).any() else float("nan") for b in out["budget"]]
    return pd.DataFrame(out)
