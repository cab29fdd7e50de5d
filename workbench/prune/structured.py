"""Structured pruning of residual networks: masks that remove whole filters (channels) or whole
residual blocks, and the physical removal of pruned channels.

Li, Kadav, Durdanovic, Samet & Graf, *Pruning Filters for Efficient ConvNets*, ICLR 2017,
https://arxiv.org/abs/1608.08710: rank the filters of a layer by their L1 norm ``sum |W[c, :, :, :]|``
and remove the smallest, together with the feature map they make and the kernels that read it. In a
ResNet only the blocks' inner convolutions (``conv1``, whose channels feed nothing but ``conv2`` of the
same block) can lose channels freely: the outputs of ``conv2``, of a projection shortcut and of the
stem are added to the skip path, so their channels are tied across the whole stage.

What is ours and what is Torch-Pruning's, and why. The masks stay data, ``{parameter name: 0/1
tensor of its shape}`` as in :mod:`workbench.prune.masks`, so a structured mask trains through the same
sparse-training loop (``wb.fit`` with :class:`~workbench.prune.masks.Masked`) and the same reports as an
unstructured one: :func:`channel_masks` zeroes a removed filter's whole weight slice and the matching
BatchNorm weight and bias (so the channel is exactly zero after BN, in train and eval mode), and
:func:`block_masks` zeroes a block's whole residual branch. Turning zeros into a smaller network is
:func:`compact`, which hands the removal to Torch-Pruning's dependency graph (Fang et al., *DepGraph:
Towards Any Structural Pruning*, CVPR 2023, https://arxiv.org/abs/2301.12900): it traces the model and
finds every layer coupled to a channel (the BN entries, the next conv's input kernels), which is what
that library exists for; we only choose the channels and check that the group stays inside its block.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from ..models.count import example_input
from ..models.resnet_cifar import BasicBlock
from .masks import _keep_top, apply_masks

__all__ = ["channel_masks", "block_masks", "compact"]

CRITERIA = ("l1", "random")


def _blocks(model: nn.Module) -> dict[str, BasicBlock]:
    """The residual blocks by module name (``layer1.0``, ...)."""
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, BasicBlock)}
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no residual blocks (wb.models.BasicBlock); structured "
                         "pruning here works on the CIFAR ResNets, e.g. wb.create_model('resnet20')")
    return blocks


def _inner_convs(model: nn.Module) -> dict[str, BasicBlock]:
    """``{conv name: its block}`` for the convs whose output channels may be removed: ``conv1`` of each
    block, read only by ``conv2`` of the same block (through ``bn1`` and a ReLU)."""
    return {f"{n}.conv1": b for n, b in _blocks(model).items()}


def _why_not(model: nn.Module, name: str) -> str:
    """Why the conv ``name`` (not a block's ``conv1``) cannot lose output channels."""
    blocks = _blocks(model)
    owner, _, leaf = name.rpartition(".")
    if owner in blocks and leaf == "conv2":
        if blocks[owner].skip:
            return ("its output channels are added to the skip path (out = bn2(conv2(.)) + shortcut(x)): removing "
                    "them breaks the addition's shapes, and zeroing them changes what the block adds to its skip")
        return "its output channels feed the next block (and the classifier), not only its own block"
    if owner.endswith(".shortcut") and owner[: -len(".shortcut")] in blocks:
        return ("it is the projection shortcut of block " + repr(owner[: -len(".shortcut")]) + ": its output channels "
                "are the skip path that the branch is added to, so removing them breaks the addition's shapes")
    if any(b.skip for b in blocks.values()):
        return ("its output channels are the residual stream that the blocks' skip paths carry and add to: removing "
                "them breaks the additions' shapes")
    return "its output channels feed other layers than its own block's conv2"


def _resolve_layers(model: nn.Module, layers: Sequence[str] | str | None) -> dict[str, BasicBlock]:
    """The chosen inner convs by name; a clear error for an unknown layer or one tied to a residual addition."""
    inner = _inner_convs(model)
    if layers is None:
        return inner
    if isinstance(layers, str):
        layers = [layers]
    modules = dict(model.named_modules())
    out: dict[str, BasicBlock] = {}
    for raw in layers:
        name = raw[: -len(".weight")] if raw.endswith(".weight") else raw
        if name in inner:
            out[name] = inner[name]
            continue
        examples = list(inner)[:4]
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ValueError(f"unknown layer {raw!r}: not a conv layer of {type(model).__name__}; channel_masks "
                             f"prunes the blocks' inner convs, named like {examples}")
        raise ValueError(f"cannot remove output channels of {name!r}: {_why_not(model, name)}. Prune the blocks' "
                         f"inner convs instead (conv1, e.g. {examples}), or drop whole blocks with "
                         "wb.prune.block_masks")
    if not out:
        raise ValueError("layers is empty: name some inner convs (e.g. 'layer1.0.conv1') or leave it None for all")
    return out


def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the share of each layer's channels (filters) removed, in [0, 1): got "
                         f"{sparsity!r} (0.5 removes half the filters)")
    return float(sparsity)


def _channel_scores(convs: Mapping[str, BasicBlock], criterion: str, seed: int) -> dict[str, torch.Tensor]:
    """One score per output channel of each conv (a low score goes first)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion is 'l1' or 'random', got {criterion!r}")
    gen = torch.Generator().manual_seed(seed)
    scores = {}
    for name, block in convs.items():
        w = block.conv1.weight.detach()  # [out, in, kh, kw]
        if criterion == "l1":
            scores[name] = w.abs().sum(dim=(1, 2, 3)).cpu()  # [out], Li et al.'s filter norm
        else:
            scores[name] = torch.rand(w.shape[0], generator=gen)  # [out]
    return scores


def channel_masks(model: nn.Module, sparsity: float, criterion: str = "l1",
                  layers: Sequence[str] | str | None = None, scope: str = "layer",
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Structured masks that remove whole output channels (filters) of the blocks' inner convs.

    A removed channel ``c`` of ``layerS.B.conv1`` has its whole filter ``weight[c, :, :, :]`` masked, and
    the matching entries ``c`` of ``layerS.B.bn1.weight`` and ``.bias`` too, so after ``apply_masks`` the
    channel is exactly zero after the BatchNorm (and the ReLU), whatever the BN statistics; the BN
    parameters are in the returned dict. Only ``conv1`` layers can be chosen: the outputs of ``conv2``, of
    a projection shortcut and of the stem are added to the skip path (use :func:`block_masks` to drop
    whole blocks). Every layer keeps at least one channel.

    Args:
        model: a CIFAR ResNet (any module with ``wb.models.BasicBlock`` blocks).
        sparsity: the share of channels removed, in [0, 1): ``round(sparsity * channels)`` per layer
            (``scope="layer"``), or of all chosen channels together (``scope="global"``).
        criterion: ``"l1"`` (the smallest filter L1 norms go, Li et al. 2017) or ``"random"``.
        layers: the conv names (``"layer1.0.conv1"``, a trailing ``.weight`` is fine); ``None``: every
            block's ``conv1``.
        scope: ``"layer"`` (each layer by ``sparsity``) or ``"global"`` (rank all chosen filters
            together; an L1 norm depends on the layer's fan-in and weight scale, so layers do not
            compete on equal terms, which is why Li et al. prune layer by layer).
        seed: the seed of ``criterion="random"``.

    Returns:
        ``{parameter name: 0/1 float tensor of its shape}`` for each chosen ``conv1.weight`` and its
        ``bn1.weight`` and ``bn1.bias``; train with ``wb.prune.Masked(masks)``, shrink with :func:`compact`.

    Example:
        >>> model = wb.create_model("resnet8", width=4)                      # doctest: +SKIP
        >>> masks = wb.prune.channel_masks(model, 0.5)                        # doctest: +SKIP
        >>> small = wb.prune.compact(wb.prune.apply_masks(model, masks), masks)  # doctest: +SKIP
    """
    sparsity = _check_sparsity(sparsity)
    convs = _resolve_layers(model, layers)
    scores = _channel_scores(convs, criterion, seed)  # {conv: [out]}
    if scope == "layer":
        # remove round(sparsity * channels), but keep at least one channel
        keep = {n: _keep_top(s, max(s.numel() - round(sparsity * s.numel()), 1)) for n, s in scores.items()}
    elif scope == "global":
        keep = _keep_global(scores, sparsity)
    else:
        raise ValueError(f"scope is 'layer' or 'global', got {scope!r}")
    masks: dict[str, torch.Tensor] = {}
    for name, block in convs.items():
        k = keep[name]  # [out], 1 = kept channel
        bn = name[: -len("conv1")] + "bn1"
        masks[f"{name}.weight"] = k[:, None, None, None].expand(block.conv1.weight.shape).clone()  # [out, in, kh, kw]
        masks[f"{bn}.weight"] = k.clone()  # [out]
        masks[f"{bn}.bias"] = k.clone()  # [out]
    return masks


def _keep_global(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Remove the ``round(sparsity * total)`` lowest scores of all layers together, in ascending order,
    skipping a channel whose removal would leave its layer empty."""
    names = list(scores)
    flat = torch.cat([scores[n].double() for n in names])  # [total]
    layer = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(names)])  # [total]
    left = [scores[n].numel() for n in names]
    todo = round(sparsity * flat.numel())
    keep = torch.ones(flat.numel())
    for i in torch.sort(flat, stable=True).indices.tolist():
        if todo == 0:
            break
        if left[layer[i]] > 1:
            keep[i], left[layer[i]], todo = 0.0, left[layer[i]] - 1, todo - 1
    out, at = {}, 0
    for n in names:
        out[n] = keep[at:at + scores[n].numel()]
        at += scores[n].numel()
    return out


def block_masks(model: nn.Module, blocks: Sequence[str] | str) -> dict[str, torch.Tensor]:
    """Masks that drop whole residual blocks: every parameter of the residual branch (``conv1``, ``bn1``,
    ``conv2``, ``bn2``) is masked, so the branch outputs exactly zero and the block computes
    ``relu(0 + x) = x`` (its input comes after a ReLU, so it is nonnegative): the same function as
    ``block.active = False``, as masks that ``wb.prune.Masked`` keeps through training (Veit et al. 2016,
    *Residual Networks Behave Like Ensembles of Relatively Shallow Networks*, https://arxiv.org/abs/1605.06431,
    delete single blocks this way).

    Only blocks with an identity skip can go: a block with a projection shortcut (stride 2 or a change
    of channels) would still output its projection, not its input.

    Args:
        model: a CIFAR ResNet.
        blocks: block names, e.g. ``["layer1.1", "layer3.2"]``.

    Returns:
        ``{parameter name: zeros of its shape}`` for the branch parameters of each block.
    """
    all_blocks = _blocks(model)
    droppable = [n for n, b in all_blocks.items() if b.skip and b.shortcut is None]
    if isinstance(blocks, str):
        blocks = [blocks]
    if not blocks:
        raise ValueError(f"blocks is empty: name the blocks to drop, among {droppable}")
    masks: dict[str, torch.Tensor] = {}
    for name in blocks:
        block = all_blocks.get(name)
        if block is None:
            raise ValueError(f"unknown block {name!r} of {type(model).__name__}: its blocks are {list(all_blocks)}; "
                             f"those block_masks can drop (identity skip) are {droppable}")
        if not block.skip:
            raise ValueError(f"block {name!r} has no skip connection (a plain network): a zeroed branch outputs zeros, "
                             "not the block's input; block_masks drops blocks of residual networks")
        if block.shortcut is not None:
            conv = block.shortcut[0]
            raise ValueError(f"block {name!r} has a projection shortcut (1x1 conv, stride {conv.stride[0]}, "
                             f"{conv.in_channels}->{conv.out_channels} channels): its skip is not the identity, so "
                             f"zeroing its branch would leave the projection, not the block's input. Drop blocks "
                             f"with an identity skip instead: {droppable}")
        for part in ("conv1", "bn1", "conv2", "bn2"):
            for pname, p in getattr(block, part).named_parameters():
                masks[f"{name}.{part}.{pname}"] = torch.zeros(p.shape)  # the whole branch, [shape of p]
    return masks


def _removed_channels(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    """``{conv1 name: channels its mask zeroes}``, checked to be whole filters whose BN entries are zero too
    (in ``model``, after ``apply_masks``), so removing them leaves the function as it is."""
    out: dict[str, list[int]] = {}
    for name, block in _inner_convs(model).items():
        m = masks.get(f"{name}.weight")
        if m is None:
            continue
        flat = m.detach().reshape(m.shape[0], -1) != 0  # [out, in * kh * kw]
        gone, kept = ~flat.any(1), flat.all(1)  # [out] each
        if not (gone | kept).all():
            raise ValueError(f"the mask of {name!r} zeroes parts of filters (unstructured): compact removes whole "
                             "channels; make the masks with wb.prune.channel_masks")
        idxs = torch.nonzero(gone).flatten().tolist()
        if len(idxs) == m.shape[0]:
            raise ValueError(f"the mask of {name!r} zeroes every filter (a block_masks mask?): compact keeps at least "
                             f"one channel per layer; to remove the whole block set model.{name[:-len('.conv1')]}"
                             ".active = False")
        if not idxs:
            continue
        bn = block.bn1
        live = (bn.weight.detach()[idxs] != 0) | (bn.bias.detach()[idxs] != 0)  # [removed]
        if live.any():
            raise ValueError(f"channels {[idxs[i] for i in torch.nonzero(live).flatten().tolist()]} of {name!r} are "
                             f"zeroed but its bn1 keeps a nonzero weight or bias there: the channel outputs a nonzero "
                             f"constant, so removing it would change the function; mask the bn1 entries too "
                             f"(wb.prune.channel_masks does)")
        out[name] = idxs
    return out


def compact(model: nn.Module, masks: Mapping[str, torch.Tensor], example: torch.Tensor | None = None) -> nn.Module:
    """A smaller copy of ``model`` without the channels that ``masks`` (from :func:`channel_masks`) remove.

    The copy gets the masks applied, then each block's ``conv1`` loses the output channels whose filters
    are masked, ``bn1`` the same entries and ``conv2`` the matching input channels, through Torch-Pruning's
    dependency graph. Since a removed channel was exactly zero after ``bn1``, the smaller model computes
    the same function (up to float rounding); it has fewer parameters and multiply-accumulates. Mask
    entries of other layers stay applied as zeros. ``model`` itself is left untouched.

    Args:
        model: a CIFAR ResNet.
        masks: masks from :func:`channel_masks` (other entries are applied, not removed).
        example: an input batch for tracing (default: zeros of the model's input shape).

    Returns:
        The compacted copy, in the train/eval mode ``model`` was in.
    """
    small = copy.deepcopy(model)
    apply_masks(small, masks)
    removed = _removed_channels(small, masks)  # {conv1 name: [channel]}
    if not removed:
        return small
    try:
        import torch_pruning as tp
    except ImportError as e:  # a core dependency, but say what to run if it is missing
        raise ImportError("compact needs Torch-Pruning: pip install 'torch-pruning>=1.5'") from e
    blocks = _inner_convs(small)
    was_training = small.training
    active = {b: b.active for b in _blocks(small).values()}
    x = example_input(small, 1) if example is None else example[:1]  # [1, c, h, w]
    try:
        for b in active:  # trace every block, also those switched off (their convs must be in the graph)
            b.active = True
        with torch.enable_grad():  # the graph is traced through autograd
            # forward_fn: Torch-Pruning would first try model(*example_inputs), splitting a tensor along the batch
            graph = tp.DependencyGraph().build_dependency(small, example_inputs=x, forward_fn=lambda m, x: m(x),
                                                          verbose=False)
        for name, idxs in removed.items():
            block = blocks[name]
            group = graph.get_pruning_group(block.conv1, tp.prune_conv_out_channels, idxs=idxs)
            # the coupled layers must be this block's conv1, bn1 and conv2 (and the ReLU between): nothing else
            touched = {dep.target.module for dep, _ in group
                       if isinstance(dep.target.module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))}
            if not touched <= {block.conv1, block.bn1, block.conv2}:
                raise RuntimeError(f"Torch-Pruning couples {name!r} to layers outside its block; this model's blocks "
                                   "are not wired as conv1 -> bn1 -> relu -> conv2")
            group.prune()
    finally:
        for b, flag in active.items():
            b.active = flag
        small.train(was_training)  # build_dependency leaves the model in eval mode
    return small
