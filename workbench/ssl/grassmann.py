"""Grassmann class representation: each class a subspace, its logit the length of a feature's
projection onto it (Wang, Li & Zhang, *Get the Best of Both Worlds: Improving Accuracy and
Transferability by Grassmann Class Representation*, ICCV 2023, https://arxiv.org/abs/2308.01547).

Class ``i`` is a ``k``-dimensional subspace of the ``D``-dimensional feature space, held as an
orthonormal basis ``S_i`` ``[D, k]`` (``S_i^T S_i = I``). The paper defines the logit of a feature
``x`` as the norm of its projection, ``||S_i^T x||``; here, as in a cosine classifier, the feature is
first scaled to a fixed length ``s`` (``normalize=False`` gives the raw form), so that the logits
are bounded and the Grassmann and cosine heads are compared at one scale::

    logit_i(x) = s * ||S_i^T x|| / ||x||                   (0 <= logit_i <= s)

It depends on the subspace only, not on the basis chosen in it (``S_i Q`` for an orthogonal
``Q`` gives the same logit), and a feature may move freely inside the class's subspace without
changing it: the freedom the paper credits for the larger intra-class variability of the
features and their better transfer. With ``k = 1`` the subspace is a line ``s_i``, and the logit
is ``s * |cos(x, s_i)|``: a cosine classifier with the same vectors, up to the sign a line does not
have (they agree wherever ``s_i . x >= 0``, for example for non-negative features and bases).

Training keeps every ``S_i`` a point of the Grassmann manifold (:class:`GrassmannUpdate`, an
algorithm of :func:`workbench.fit` around its SGD step). With ``G`` the Euclidean gradient of a
basis and ``M`` its momentum buffer:

1. the gradient is projected onto the tangent space at ``S``: ``G <- (I - S S^T) G``
   (:func:`tangent_project`; the basis gets no weight decay);
2. SGD's own step: ``M <- mu M + G``, ``S' = S - lr M`` (Nesterov: ``S - lr (G + mu M)``), a
   tangent move ``Delta = S' - S``;
3. ``S`` moves along the geodesic instead, ``S <- exp_S(Delta) = S V cos(Sigma) V^T + U sin(Sigma) V^T``
   with ``Delta = U Sigma V^T`` (:func:`grassmann_exp`), then a QR re-orthonormalization removes the
   rounding drift (``retraction="qr"`` or ``"polar"``: ``S'`` orthonormalized directly, first-order
   equivalent);
4. the momentum buffer is carried to the new point by projecting it onto the new tangent space,
   ``M <- (I - S S^T) M``, so that the next step adds tangent vectors of one space. The paper
   transports the momentum along the geodesic; projection is the standard vector transport
   (Absil, Mahony & Sepulchre 2008, section 8.1.3), equal to parallel transport to first order in
   the step. ``transport=False`` leaves the buffer tangent at the previous point; the normal part
   it then adds to the next move is dropped before the geodesic is taken.

Beside the heads: :func:`within_class_ratio` and :func:`class_separation` measure how much
features vary inside their class (Kornblith et al. 2021, arXiv 2010.16402: less of it goes with
worse transfer), and :func:`head_run` trains one head and measures accuracy, transfer and both.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import create_model, register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..train import Algorithm, State

__all__ = ["HEADS", "RETRACTIONS", "GrassmannHead", "CosineHead", "ClassHeadNet", "class_head_net",
           "GrassmannUpdate", "tangent_project", "grassmann_exp", "orthonormalize", "orthonormality_error",
           "principal_angles", "within_class_ratio", "class_separation", "feature_statistics", "head_model",
           "head_run"]

HEADS = ("softmax", "cosine", "grassmann")
RETRACTIONS = ("exp", "qr", "polar")


# ----------------------------------------------------------------------------- the geometry
def tangent_project(bases: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``(I - S S^T) G`` for bases ``S`` and matrices ``G`` ``[..., D, k]``: the part of ``G`` that
    moves the subspace (the tangent space of the Grassmannian at ``span S``, for orthonormal ``S``)."""
    if bases.shape != g.shape or bases.ndim < 2:
        raise ValueError(f"tangent_project needs bases and gradients of one shape [..., D, k], got "
                         f"{list(bases.shape)} and {list(g.shape)}")
    return g - bases @ (bases.transpose(-1, -2) @ g)


def orthonormalize(a: torch.Tensor, method: str = "qr") -> torch.Tensor:
    """An orthonormal basis ``[..., D, k]`` of the span of ``a``'s columns.

    ``"qr"``: the Q factor with the signs fixed so that ``R`` has a positive diagonal (an
    orthonormal ``a`` comes back unchanged); ``"polar"``: ``U V^T`` of ``a = U Sigma V^T``, the
    orthonormal matrix nearest to ``a``.
    """
    if method == "qr":
        q, r = torch.linalg.qr(a)
        sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        return q * torch.where(sign == 0, torch.ones_like(sign), sign).unsqueeze(-2)
    if method == "polar":
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        return u @ vh
    raise ValueError(f"unknown method {method!r}; choose 'qr' or 'polar'")


def grassmann_exp(bases: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The geodesic from ``span S`` in the tangent direction ``Delta`` ``[..., D, k]``, at time 1:
    ``S V cos(Sigma) V^T + U sin(Sigma) V^T`` with ``Delta = U Sigma V^T`` (Edelman, Arias & Smith 1998,
    theorem 2.3). Its principal angles to ``span S`` are the singular values of ``Delta`` (those below pi/2)."""
    u, sig, vh = torch.linalg.svd(delta, full_matrices=False)
    v = vh.transpose(-1, -2)
    return (bases @ v) * torch.cos(sig).unsqueeze(-2) @ vh + u * torch.sin(sig).unsqueeze(-2) @ vh


def orthonormality_error(bases: torch.Tensor) -> float:
    """``max |S^T S - I|`` over all entries and classes (0 for orthonormal bases)."""
    k = bases.shape[-1]
    eye = torch.eye(k, dtype=bases.dtype, device=bases.device)
    return float((bases.transpose(-1, -2) @ bases - eye).abs().max())


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the spans of orthonormal ``a`` and ``b`` ``[..., D, k]``."""
    cos = torch.linalg.svdvals(a.transpose(-1, -2) @ b).clamp(-1.0, 1.0)
    return torch.arccos(cos)  # cosines descend, so the angles ascend


# ----------------------------------------------------------------------------- the heads
def _check_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number (the length features are scaled to; 10-30 is usual), "
                         f"got {scale!r}")
    return float(scale)


class GrassmannHead(nn.Module):
    """``logit_i = scale * ||S_i^T x|| / ||x||`` with orthonormal bases ``S`` ``[classes, D, k]``.

    Args:
        in_features: ``D``, the feature size.
        num_classes: one subspace per class.
        k: each subspace's dimension, ``1 <= k <= D``. Subspaces of different classes may share
            directions, so ``k * num_classes`` may exceed ``D`` (the paper's ImageNet heads: 1,000
            classes of ``k = 8`` in 2,048 dimensions).
        scale: ``s``, the length the feature is scaled to.
        normalize: ``False`` gives the raw ``||S_i^T x||`` (the paper's definition; ``scale`` is
            then unused).

    The bases start as independent uniformly random subspaces (QR of Gaussian matrices). Train
    them with :class:`GrassmannUpdate` among ``fit``'s algorithms: plain SGD would leave the manifold.
    """

    def __init__(self, in_features: int, num_classes: int, k: int = 8, scale: float = 16.0, normalize: bool = True):
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k, the dimension of each class's subspace, must be an integer >= 1 (1 is a cosine "
                             f"classifier up to sign, the paper uses 8), got {k!r}")
        if k > in_features:
            raise ValueError(f"k={k} exceeds the feature size D={in_features}: a subspace of R^{in_features} has "
                             f"at most {in_features} dimensions; choose k in 1..{in_features}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.in_features, self.num_classes, self.k = int(in_features), int(num_classes), int(k)
        self.scale, self.normalize = _check_scale(scale), bool(normalize)
        self.bases = nn.Parameter(torch.empty(num_classes, in_features, k))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bases.copy_(orthonormalize(torch.randn_like(self.bases)))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, k={self.k}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D]
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"GrassmannHead expects features [batch, {self.in_features}], got {list(x.shape)}")
        proj = torch.einsum("bd,cdk->bck", x, self.bases.to(x.dtype))    # [B, C, k]: coordinates in each subspace
        logits = torch.linalg.vector_norm(proj, dim=2)                   # [B, C]
        if self.normalize:
            logits = self.scale * logits / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
        return logits


class CosineHead(nn.Module):
    """``logit_i = scale * w_i . x / (||w_i|| ||x||)``: the cosine classifier (normalized softmax)."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 16.0):
        super().__init__()
        self.in_features, self.num_classes, self.scale = int(in_features), int(num_classes), _check_scale(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D]
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"CosineHead expects features [batch, {self.in_features}], got {list(x.shape)}")
        return self.scale * F.normalize(x, dim=1) @ F.normalize(self.weight.to(x.dtype), dim=1).T


class ClassHeadNet(WorkbenchModel):
    """A registered classifier's pooled features and one of three class heads.

    ``head``: ``"softmax"`` (a linear layer with bias, the usual classifier), ``"cosine"``
    (:class:`CosineHead`) or ``"grassmann"`` (:class:`GrassmannHead`). ``features(x)`` is the
    backbone's pooled features ``[B, D]``, what :func:`workbench.ssl.encode` and
    :func:`workbench.ssl.linear_probe` read; ``forward(x)`` the logits.

    Hook points: ``hook_features`` (pooled features), ``hook_logits``.
    """

    hook_layers = ("hook_features", "hook_logits")

    def __init__(self, backbone: nn.Module, head: str = "grassmann", k: int = 8, scale: float = 16.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if not callable(getattr(backbone, "forward_features", None)):
            raise TypeError(f"{type(backbone).__name__} has no forward_features(x); the head reads the backbone's "
                            "pooled features: pick a registered classifier (resnet20, vgg11, ...)")
        fc = getattr(backbone, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"{type(backbone).__name__} has no linear fc whose input size gives the feature size")
        self.in_chans, self.num_classes = backbone.in_chans, backbone.num_classes
        self.img_size = getattr(backbone, "img_size", None)
        self.feature_dim, self.head_kind = fc.in_features, head
        backbone.fc = nn.Identity()  # the head below replaces it
        self.backbone = backbone
        if head == "softmax":
            self.head: nn.Module = nn.Linear(self.feature_dim, self.num_classes)
        elif head == "cosine":
            self.head = CosineHead(self.feature_dim, self.num_classes, scale)
        else:
            self.head = GrassmannHead(self.feature_dim, self.num_classes, k, scale)
        self.hook_features, self.hook_logits = HookPoint(), HookPoint()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_features(self.backbone.forward_features(x))  # [B, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_logits(self.head(self.features(x)))  # [B, classes]


@register_model
def class_head_net(backbone: str = "resnet20", head: str = "grassmann", k: int = 8, scale: float = 16.0,
                   backbone_kwargs: dict | None = None, num_classes: int = 10, in_chans: int = 3) -> ClassHeadNet:
    """A registered classifier ``backbone`` (built with ``backbone_kwargs``) with a softmax, cosine or
    Grassmann class head (``k``: subspace dimension, ``scale``: feature length; unused by softmax)."""
    if backbone == "class_head_net":
        raise ValueError("backbone must be a classifier such as resnet20, not class_head_net itself")
    net = create_model(backbone, num_classes=num_classes, in_chans=in_chans, **dict(backbone_kwargs or {}))
    return ClassHeadNet(net, head=head, k=k, scale=scale)


# ----------------------------------------------------------------------------- the Riemannian update
class GrassmannUpdate(Algorithm):
    """Riemannian SGD with momentum for every :class:`GrassmannHead` of the model, around ``fit``'s SGD step.

    Acts at ``init`` (the bases get no weight decay), ``after_backward`` (gradient projected onto
    the tangent space) and ``after_step`` (geodesic or retraction back to orthonormal bases, momentum
    carried to the new tangent space); see the module docstring for the steps. Needs
    ``optimizer="sgd"`` (the paper's optimizer); other parameters train as usual.

    Args:
        retraction: ``"exp"`` (the geodesic, as the paper; then a QR clean-up), ``"qr"`` or ``"polar"``.
        transport: project the momentum buffer onto the new tangent space after each step.

    Example:
        >>> model = wb.create_model("class_head_net", head="grassmann", k=8)            # doctest: +SKIP
        >>> wb.fit(model, train, test, algorithms=[wb.ssl.GrassmannUpdate()])          # doctest: +SKIP
    """

    def __init__(self, retraction: str = "exp", transport: bool = True):
        if retraction not in RETRACTIONS:
            raise ValueError(f"unknown retraction {retraction!r}; choose one of {', '.join(RETRACTIONS)}")
        super().__init__(retraction=retraction, transport=bool(transport))
        self.retraction, self.transport = retraction, bool(transport)
        self.params: dict[str, nn.Parameter] = {}
        self._before: dict[str, torch.Tensor] = {}
        self.optimizer: torch.optim.Optimizer | None = None  # the SGD of the current (last) fit

    def on_init(self, state: State) -> None:
        heads = [n for n, m in state.model.named_modules() if isinstance(m, GrassmannHead)]
        if not heads:
            raise ValueError("GrassmannUpdate found no GrassmannHead in the model; build it with "
                             "create_model('class_head_net', head='grassmann') or leave the algorithm out")
        named = dict(state.model.named_parameters())
        trained = state.trainable or {n: p for n, p in named.items() if p.requires_grad}
        self.params = {n: named[n] for h in heads for n in [f"{h}.bases" if h else "bases"] if n in trained}
        state.no_decay.extend(n for n in self.params if n not in state.no_decay)

    def on_fit_start(self, state: State) -> None:
        self.optimizer = state.optimizer
        if not isinstance(self.optimizer, torch.optim.SGD):
            raise ValueError(f"GrassmannUpdate works with optimizer='sgd' (Riemannian SGD with momentum, as the "
                             f"paper), got {type(self.optimizer).__name__}")

    def on_after_backward(self, state: State) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                if p.grad is not None:
                    p.grad.copy_(tangent_project(p.detach(), p.grad))
                    self._before[name] = p.detach().clone()

    def on_after_step(self, state: State) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                before = self._before.pop(name, None)
                if self.retraction == "exp" and before is not None:
                    new = orthonormalize(grassmann_exp(before, tangent_project(before, p.detach() - before)))
                else:
                    new = orthonormalize(p.detach(), "polar" if self.retraction == "polar" else "qr")
                p.copy_(new)
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer") if self.optimizer is not None else None
                if self.transport and buf is not None:
                    buf.copy_(tangent_project(new, buf))


# ----------------------------------------------------------------------------- what explains transfer
def _check_features(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(z, torch.Tensor) and z.ndim == 2 and isinstance(y, torch.Tensor) and y.shape == (len(z),)):
        raise ValueError(f"features must be [N, D] with one integer label each [N], got "
                         f"{list(getattr(z, 'shape', []))} and {list(getattr(y, 'shape', []))}")
    if len(torch.unique(y)) < 2:
        raise ValueError("within-class and total variation need at least two classes among the labels")
    return z.double(), y.long()


def within_class_ratio(z: torch.Tensor, y: torch.Tensor, normalize: bool = True) -> float:
    """Within-class over total variance: ``sum_i ||z_i - m_{y_i}||^2 / sum_i ||z_i - m||^2`` (class means ``m_c``,
    overall mean ``m``). 0 when every class collapses to its mean (neural collapse), 1 when the
    class means coincide. ``normalize``: on unit-length features (the heads compare directions,
    and the feature norms of the three heads differ by construction)."""
    z, y = _check_features(z, y)
    if normalize:
        z = F.normalize(z, dim=1)
    classes, idx = torch.unique(y, return_inverse=True)
    means = torch.zeros(len(classes), z.shape[1], dtype=z.dtype).index_add_(0, idx, z)
    means /= torch.bincount(idx, minlength=len(classes)).unsqueeze(1)
    within = (z - means[idx]).pow(2).sum()
    total = (z - z.mean(0)).pow(2).sum()
    return float(within / total)


def class_separation(z: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al.'s class separation ``R^2 = 1 - d_within / d_total`` (arXiv 2010.16402, eq. 2) with
    the cosine distance ``d = 1 - cos``: ``d_within`` the mean over classes of the mean distance between
    two examples of the class, ``d_total`` the mean over pairs of classes ``(c, c')`` of the mean distance
    between their examples (pairs of an example with itself included, which makes both closed forms
    in the class means of the unit features). 1: classes collapsed; 0: no class structure."""
    z, y = _check_features(z, y)
    z = F.normalize(z, dim=1)
    classes, idx = torch.unique(y, return_inverse=True)
    means = torch.zeros(len(classes), z.shape[1], dtype=z.dtype).index_add_(0, idx, z)
    means /= torch.bincount(idx, minlength=len(classes)).unsqueeze(1)
    d_within = 1 - means.pow(2).sum(1).mean()
    d_total = 1 - means.mean(0).pow(2).sum()
    return float(1 - d_within / d_total)


def feature_statistics(z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``norm_mean`` and ``norm_cv`` (the features' length and its coefficient of variation),
    ``within_ratio`` (:func:`within_class_ratio` of unit features) and ``separation`` (:func:`class_separation`)."""
    z, y = _check_features(z, y)
    norms = torch.linalg.vector_norm(z, dim=1)
    return {"norm_mean": float(norms.mean()), "norm_cv": float(norms.std() / norms.mean()),
            "within_ratio": within_class_ratio(z, y), "separation": class_separation(z, y)}


def head_model(head: str, seed: int, *, k: int = 8, scale: float = 16.0, backbone: str = "resnet20",
               backbone_kwargs: dict | None = None, train_subset: int | None = None, test_subset: int | None = None,
               **fit_kwargs):
    """``class_head_net`` with ``head`` trained on CIFAR-10 by :func:`workbench.train_model` (cached): the
    Grassmann head with :class:`GrassmannUpdate` among the algorithms, the others without. Returns the
    :class:`~workbench.train.TrainResult`; ``k`` and ``scale`` are passed only to the heads that use them."""
    from ..data import load
    from ..train import train_model

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    train = load("cifar10", "train", subset=train_subset, seed=0)
    test = load("cifar10", "test", subset=test_subset, seed=0)
    kwargs = {"backbone": backbone, "head": head, "backbone_kwargs": dict(backbone_kwargs or {})}
    if head != "softmax":
        kwargs["scale"] = scale
    if head == "grassmann":
        kwargs["k"] = k
    algorithms = [GrassmannUpdate()] if head == "grassmann" else []
    return train_model("class_head_net", train, test, seed=seed, model_kwargs=kwargs, algorithms=algorithms,
                       progress=False, **fit_kwargs)


def head_run(head: str, seed: int, *, k: int = 8, scale: float = 16.0, backbone: str = "resnet20",
             backbone_kwargs: dict | None = None, train_subset: int | None = None, test_subset: int | None = None,
             transfer: str = "fashion_mnist", transfer_train: int = 2_000, transfer_test: int = 2_000,
             probe_steps: int = 200, **fit_kwargs) -> dict[str, Any]:
    """:func:`head_model`, then measured: a ``wb.sweep`` record.

    Measured: CIFAR-10 ``test_acc`` (after the last epoch), the training loss per epoch; the
    statistics of the CIFAR-10 test features (:func:`feature_statistics`, prefixed ``cifar_``) and of
    the ``transfer`` test features (``transfer_``); a linear probe of the frozen features on
    ``transfer`` (``transfer_acc``, its images made 3x32x32 by :func:`workbench.ssl.to_shape`) and on
    CIFAR-10 itself (``probe_acc``, fitted on the training subset); ``orthonormality`` of the trained
    bases (``None`` for the other heads).
    """
    from ..data import load
    from .evaluate import encode, linear_probe_features, to_shape

    res = head_model(head, seed, k=k, scale=scale, backbone=backbone, backbone_kwargs=backbone_kwargs,
                     train_subset=train_subset, test_subset=test_subset, **fit_kwargs)
    model, h = res.model, res.history
    train = load("cifar10", "train", subset=train_subset, seed=0)
    test = load("cifar10", "test", subset=test_subset, seed=0)
    size = train.shape[-1]
    t_train = to_shape(load(transfer, "train", subset=transfer_train, seed=0), train.shape[0], size)
    t_test = to_shape(load(transfer, "test", subset=transfer_test, seed=0), train.shape[0], size)
    z_tr, y_tr = encode(model, train)
    z_te, y_te = encode(model, test)
    zt_tr, yt_tr = encode(model, t_train)
    zt_te, yt_te = encode(model, t_test)
    probe = linear_probe_features(z_tr, y_tr, z_te, y_te, num_classes=train.num_classes, steps=probe_steps)
    moved = linear_probe_features(zt_tr, yt_tr, zt_te, yt_te, num_classes=t_train.num_classes, steps=probe_steps)
    bases = [m.bases.detach() for m in model.modules() if isinstance(m, GrassmannHead)]
    return {"head": head, "seed": seed, "test_acc": float(h["test_acc"].iloc[-1]),
            "train_acc": float(h["train_acc"].iloc[-1]), "train_loss": float(h["train_loss"].iloc[-1]),
            "steps": int(h["step"].iloc[-1]), "curve_train_loss": [float(v) for v in h["train_loss"]],
            "probe_acc": probe["test_acc"], "transfer_acc": moved["test_acc"],
            "transfer_train_acc": moved["train_acc"],
            **{f"cifar_{n}": v for n, v in feature_statistics(z_te, y_te).items()},
            **{f"transfer_{n}": v for n, v in feature_statistics(zt_te, yt_te).items()},
            "orthonormality": orthonormality_error(bases[0]) if bases else None}
