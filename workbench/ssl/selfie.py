"""Selfie's masked patch selection (Trinh, Luong & Le, *Selfie: Self-supervised Pretraining for Image
Embedding*, 2019, https://arxiv.org/abs/1906.02940) as a task of :func:`workbench.fit`.

An image is cut into a grid of ``N`` patches; a *patch network* ``P`` (the first stages of a
CIFAR ResNet, with global average pooling) maps every patch to a vector ``h``. For each image
``M`` patches are masked out. The visible patches' vectors, each plus the embedding ``pos`` of its
location, are summarized by an *attention pooling network*: a small transformer over a learned
query token ``u0`` followed by them, whose output at the query token is ``u``. The query for masked
location ``i`` is ``v_i = u + pos_i``, and the loss asks it to pick the patch that was there among
the ``M`` masked patches of the same image (the other ``M - 1`` are the *distractors*)::

    l_i = -log( exp(v_i . h_i) / sum over masked j of exp(v_i . h_j) )

the contrastive predictive (CPC) loss; ``selfie_loss`` is the mean of ``l_i`` over the batch's
``B x M`` queries, and its top-1 (``acc``) how often ``v_i . h_j`` is largest at ``j = i``
(chance: ``1 / M``). Masked patches pass through ``P`` but never reach the pooling network.
Since ``v_i . h_j = u . h_j + pos_i . h_j`` and ``u`` is shared by an image's queries, the context
raises or lowers a candidate for every location alike; which patch goes where is told by
``pos_i . h_j``, so ``P`` must learn what a patch at each location looks like.

After pre-training, the patch network's weights go back into a full ResNet (the paper's
fine-tuning step): :func:`selfie_patch_state` takes them out, :func:`selfie_setup` makes the
``setup=`` of :func:`workbench.train.train_model` that loads them into a freshly built network::

    net = wb.train_model("selfie_net", unlabeled, task=wb.ssl.Selfie(mask_ratio=0.25), augment="flip",
                         epochs=10, optimizer="adamw", lr=2e-3, weight_decay=0.05, schedule="cosine").model
    setup, key = wb.ssl.selfie_setup(net)
    wb.train_model("resnet20", labelled, test, setup=setup, setup_key=key, **recipe)

What differs from the paper: it pre-trains the first three of ResNet-50's four block groups on
8x8 (CIFAR) or 32x32 patches; here the first ``stages`` of ResNet-20's three (default 2). The
location embedding is one learned vector per patch (the paper's choice at 32x32 images; it
factorizes rows and columns at 224x224), added both to the visible patches and to ``u``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..models import create_model
from ..models._registry import register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..models.vit import Block
from ..train import Task
from ..train.tasks import check_image_batch

__all__ = ["Selfie", "SelfieNet", "selfie_net", "selfie_loss", "selfie_masks", "num_masked", "selfie_patches",
           "selfie_patch_state", "selfie_setup"]

EVAL_SEED = 12345  # evaluation masks: the same every time, so test figures of two epochs compare


def selfie_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Images ``[B, C, H, W]`` to their patches ``[B, N, C, p, p]``, row by row (``N = H/p * W/p``)."""
    if x.ndim != 4:
        raise ValueError(f"selfie_patches takes images [B, C, H, W], got shape {list(x.shape)}")
    b, c, h, w = x.shape
    _check_patch_size(h, w, patch_size)
    p = patch_size
    patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, rows, cols, C, p, p]
    return patches.reshape(b, (h // p) * (w // p), c, p, p)


def _check_patch_size(h: int, w: int, p: int) -> None:
    if isinstance(p, bool) or not isinstance(p, int) or p < 1 or h % p or w % p:
        valid = [d for d in range(1, min(h, w)) if h % d == 0 and w % d == 0]
        raise ValueError(f"the image size {h}x{w} is not divisible by patch_size {p!r}; choose a patch size that "
                         f"divides both sides: one of {', '.join(map(str, valid))}")


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """How many of ``num_patches`` a ``mask_ratio`` masks (rounded), or a clear error when the task
    would have no distractor (fewer than 2 masked) or nothing to look at (no visible patch)."""
    if not 0 < mask_ratio < 1:
        raise ValueError(f"mask_ratio must be strictly between 0 and 1 (a share of the patches to mask; 0 masks "
                         f"nothing, 1 leaves nothing to see), got {mask_ratio}")
    m = round(mask_ratio * num_patches)
    if m < 2:
        raise ValueError(f"mask_ratio {mask_ratio} masks {m} of {num_patches} patches; Selfie needs at least 2 masked "
                         f"patches (the right one and at least one distractor): raise mask_ratio to at least "
                         f"{1.5 / num_patches:.3g} or use smaller patches")
    if m > num_patches - 1:
        raise ValueError(f"mask_ratio {mask_ratio} masks {m} of {num_patches} patches and leaves none visible; lower "
                         f"it to at most {(num_patches - 1.5) / num_patches:.3g}")
    return m


def selfie_masks(batch: int, num_patches: int, masked: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which patches each image hides: a pure function of ``(seed, step)``.

    Returns:
        ``(masked [batch, masked], visible [batch, num_patches - masked])``, int64 patch indices
        (row-major), each row sorted; the two rows of an image split ``range(num_patches)``.
    """
    if not 2 <= masked <= num_patches - 1:
        raise ValueError(f"masked must be between 2 (the right patch and a distractor) and num_patches - 1 "
                         f"({num_patches - 1}: one patch left to see), got {masked}")
    order = torch.rand(batch, num_patches, generator=random_stream(seed, step)).argsort(dim=1)
    return order[:, :masked].sort(dim=1).values, order[:, masked:].sort(dim=1).values


def selfie_loss(queries: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Selfie's loss: query ``i`` of an image picks its patch ``i`` among that image's ``M`` patches.

    Args:
        queries: ``[B, M, D]``, one query per masked location (``v_i = u + pos_i``).
        patches: ``[B, M, D]``, the masked patches' vectors, in the same order.

    Returns:
        ``(loss, hits)``: the mean cross-entropy of the scores ``v_i . h_j`` over the ``B x M``
        queries, and how many queries score their own patch highest (top-1 among distractors).
    """
    if queries.ndim != 3 or queries.shape != patches.shape:
        raise ValueError(f"selfie_loss takes queries and patches of one shape [B, M, D], got {list(queries.shape)} and "
                         f"{list(patches.shape)}")
    b, m, _ = queries.shape
    if m < 2:
        raise ValueError(f"selfie_loss needs at least 2 masked patches per image (the right one and a distractor), "
                         f"got {m}")
    dtype = torch.promote_types(queries.dtype, torch.float32)           # bf16 under autocast: score in fp32
    scores = queries.to(dtype) @ patches.to(dtype).transpose(1, 2)     # [B, M, M]: query i against patch j
    target = torch.arange(m, device=scores.device).repeat(b)
    loss = F.cross_entropy(scores.reshape(b * m, m), target)
    hits = (scores.argmax(dim=2).reshape(-1) == target).sum()
    return loss, hits


class SelfieNet(WorkbenchModel):
    """Selfie's pre-training network around a registered CIFAR ResNet; see the module docstring.

    ``backbone`` is the whole registered classifier (its later stages and ``fc`` do not take part in
    pre-training); the patch network is its ``stem`` and ``layer1`` .. ``layer{stages}`` with global
    average pooling. Hook points: ``hook_patches`` (every patch's vector ``[B, N, D]``) and
    ``hook_pool`` (``u``, ``[B, D]``).
    """

    def __init__(self, backbone: str = "resnet20", backbone_kwargs: dict | None = None, stages: int = 2,
                 img_size: int = 32, patch_size: int = 8, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0,
                 num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        _check_patch_size(img_size, img_size, patch_size)
        self.backbone = create_model(backbone, num_classes=num_classes, in_chans=in_chans, **(backbone_kwargs or {}))
        have = [s for s in (1, 2, 3, 4) if isinstance(getattr(self.backbone, f"layer{s}", None), nn.Module)]
        if not isinstance(getattr(self.backbone, "stem", None), nn.Module) or not have:
            raise ValueError(f"backbone {backbone!r} has no stem and layer1, layer2, ... stages; use a CIFAR ResNet "
                             "(resnet8 ... resnet110, resnet_cifar)")
        if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= len(have):
            raise ValueError(f"stages must be one of {', '.join(map(str, have))} (how many of the backbone's stages "
                             f"form the patch network), got {stages!r}")
        self.stages, self.patch_size, self.img_size = stages, patch_size, img_size
        self.in_chans, self.num_classes = in_chans, num_classes
        self.grid = img_size // patch_size
        self.num_patches = self.grid ** 2
        self.dim = dim = _out_channels(getattr(self.backbone, f"layer{stages}"))
        if dim % heads:
            raise ValueError(f"the patch vectors have {dim} dimensions, not divisible by heads={heads}; choose heads "
                             f"among {', '.join(str(h) for h in range(1, dim + 1) if dim % h == 0)}")
        self.pos = nn.Parameter(torch.randn(self.num_patches, dim) * 0.02)   # one embedding per location
        self.query = nn.Parameter(torch.zeros(1, 1, dim))                    # u0
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, 0.0) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.hook_patches = HookPoint()
        self.hook_pool = HookPoint()

    def patch_prefixes(self) -> tuple[str, ...]:
        """The backbone's modules that form the patch network (state-dict prefixes)."""
        return ("stem.",) + tuple(f"layer{s}." for s in range(1, self.stages + 1))

    def patch_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """Every patch of every image through the patch network: ``[B, N, D]``."""
        self.check_input(x)
        b = x.shape[0]
        p = selfie_patches(x, self.patch_size).flatten(0, 1)                       # [B*N, C, p, p]
        f = self.backbone.stem(p)
        for s in range(1, self.stages + 1):
            f = getattr(self.backbone, f"layer{s}")(f)
        return self.hook_patches(F.adaptive_avg_pool2d(f, 1).flatten(1).view(b, self.num_patches, self.dim))

    def forward(self, x: torch.Tensor, masked: torch.Tensor,
                visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(queries [B, M, D], patches [B, M, D])`` for :func:`selfie_loss`; ``masked`` and ``visible`` are
        patch indices ``[B, M]`` and ``[B, N - M]`` (:func:`selfie_masks`)."""
        h = self.patch_vectors(x)                                            # [B, N, D]
        d = h.shape[2]
        seen = h.gather(1, visible[..., None].expand(-1, -1, d)) + self.pos[visible]  # [B, N-M, D]
        tokens = torch.cat([self.query.expand(len(h), -1, -1), seen], dim=1)           # [B, 1+N-M, D]
        u = self.hook_pool(self.norm(self.blocks(tokens))[:, 0])                       # [B, D]
        queries = u[:, None, :] + self.pos[masked]                                     # [B, M, D]
        return queries, h.gather(1, masked[..., None].expand(-1, -1, d))


def _out_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the backbone's stage has no convolution to read its width from")
    return convs[-1].out_channels


@register_model
def selfie_net(backbone: str = "resnet20", backbone_kwargs: dict | None = None, stages: int = 2, img_size: int = 32,
               patch_size: int = 8, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0, num_classes: int = 10,
               in_chans: int = 3) -> SelfieNet:
    """Selfie's pre-training network (arXiv 1906.02940): the first ``stages`` of ``backbone`` encode
    ``patch_size`` patches, a ``depth``-block transformer pools the visible ones (``wb.ssl.Selfie``)."""
    return SelfieNet(backbone, backbone_kwargs, stages, img_size, patch_size, depth, heads, mlp_ratio, num_classes,
                     in_chans)


class Selfie(Task):
    """Selfie's masked patch selection as a task of :func:`workbench.fit` (the model: a :class:`SelfieNet`).

    Args:
        mask_ratio: the share of each image's patches that are masked (rounded to a whole number,
            at least 2 and leaving at least one visible); the masks are a pure function of
            ``(seed, step)``, so a resumed run and SAM's second pass see the same ones.

    Labels are ignored. Metrics: ``loss`` and ``acc``, the top-1 of the queries among each image's
    masked patches (chance: ``1 / M``); test masks use a fixed seed.
    """

    metric_names = ("loss", "acc")

    def __init__(self, mask_ratio: float = 0.25):
        if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be strictly between 0 and 1 (a share of the patches to mask; 0 masks "
                             f"nothing, 1 leaves nothing to see), got {mask_ratio!r}")
        self.mask_ratio = float(mask_ratio)
        self._eval_calls = 0

    def config(self) -> dict[str, Any]:
        return {"name": "Selfie", "mask_ratio": self.mask_ratio}

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(getattr(model, "num_patches", None), int) or not hasattr(model, "patch_vectors"):
            raise ValueError(f"the Selfie task trains a Selfie network, got {type(model).__name__}; build it with "
                             "wb.create_model('selfie_net', backbone='resnet20', patch_size=8)")
        num_masked(model.num_patches, self.mask_ratio)
        shape = getattr(dataset, "shape", None)
        if shape is not None and (shape[0] != model.in_chans or tuple(shape[1:]) != (model.img_size,) * 2):
            raise ValueError(f"the Selfie network takes {model.in_chans}x{model.img_size}x{model.img_size} images but "
                             f"{getattr(dataset, 'name', 'the data')} has {'x'.join(map(str, shape))}; create it with "
                             f"in_chans={shape[0]}, img_size={shape[2]} and a patch_size that divides it")

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        n = model.num_patches
        if state is not None:
            seed, step = state.seed, state.step
        else:  # evaluation: the same masks every time
            self._eval_calls += 1
            seed, step = EVAL_SEED, self._eval_calls
        masked, visible = selfie_masks(len(x), n, num_masked(n, self.mask_ratio), seed, step)
        return model(x, masked.to(x.device), visible.to(x.device))

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        return selfie_loss(*outputs)[0]

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        queries, patches = (o.detach() for o in outputs)
        _, hits = selfie_loss(queries, patches)
        n = queries.shape[0] * queries.shape[1]
        return {"loss": loss.detach().double() * n, "acc": hits.double()}, n

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        self._eval_calls = 0
        return super().evaluate(model, loader, precision)


def selfie_patch_state(model: SelfieNet) -> dict[str, torch.Tensor]:
    """The pre-trained patch network's weights (and BatchNorm statistics), named as in the backbone's
    own state dict (``stem.0.weight``, ``layer1.0.conv1.weight``, ...), on the CPU."""
    if not isinstance(model, SelfieNet):
        raise TypeError(f"selfie_patch_state takes a SelfieNet (wb.create_model('selfie_net', ...)), got "
                        f"{type(model).__name__}")
    prefixes = model.patch_prefixes()
    return {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items() if k.startswith(prefixes)}


def selfie_setup(pretrained: SelfieNet | dict[str, torch.Tensor]) -> tuple[Callable[[nn.Module], dict], str]:
    """``(setup, setup_key)`` for :func:`workbench.train.train_model`: ``setup(model)`` loads the
    pre-trained patch network into the freshly built classifier (everything else keeps the seed's
    initialization, as in the run without pre-training) and returns no ``fit`` arguments; the key
    names the weights by a hash, so runs from other pre-trainings never share a cache entry.

    Args:
        pretrained: a trained :class:`SelfieNet`, or :func:`selfie_patch_state`'s dict.
    """
    state = selfie_patch_state(pretrained) if isinstance(pretrained, SelfieNet) else dict(pretrained)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("selfie_setup needs a SelfieNet or a non-empty {name: tensor} dict from selfie_patch_state")
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(str(state[k].dtype).encode())
        digest.update(state[k].contiguous().numpy().tobytes())
    key = f"selfie-patch-network-{digest.hexdigest()[:16]}"

    def setup(model: nn.Module) -> dict:
        own = model.state_dict()
        missing = [k for k in state if k not in own]
        if missing:
            raise ValueError(f"the pre-trained patch network does not fit {type(model).__name__}: it has no "
                             f"{missing[0]!r}; train the same backbone as the Selfie network's")
        wrong = [k for k in state if own[k].shape != state[k].shape]
        if wrong:
            k = wrong[0]
            raise ValueError(f"the pre-trained {k!r} has shape {list(state[k].shape)} but the model's has "
                             f"{list(own[k].shape)}; build the model with the Selfie backbone's backbone_kwargs "
                             "(the same width)")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
        return {}

    setup.cache_key = key
    return setup, key
