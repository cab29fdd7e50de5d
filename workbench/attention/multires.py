"""Multi-resolution training with ResFormer's scale-consistency loss, as a task of :func:`workbench.fit`.

Tian, Wu, Dai, Hu, Qiao & Jiang, *ResFormer: Scaling ViTs with Multi-Resolution Training*, CVPR 2023,
https://arxiv.org/abs/2212.00776 (section 3.2).

Each batch is replicated at ``n`` resolutions ``r_1 > r_2 > ... > r_n`` (resized with
``F.interpolate``, antialiased when shrinking). With logits ``y_i`` and pooled features (the class token)
``f_i`` of the copy at ``r_i``, the loss is the mean over the resolutions of::

    CE(y_i, labels)  +  [i > 1] * ( w_feat * smooth_l1(f_i, LN(sg(f_t)))  +  w_kl * T^2 KL(softmax(sg(y_t) / T) || softmax(y_i / T)) )

where ``sg`` stops the gradient and ``t`` is the teacher of ``r_i``: the adjacent higher resolution
``i - 1`` (``teacher="adjacent"``, the authors' code) or the highest, ``t = 1`` (``teacher="highest"``).
``LN`` whitens the teacher's features (a layer norm without parameters), as in the authors' code; their
default is the feature term alone (smooth-L1 on the class token, weight 1), which is the default here.
The highest resolution learns from the labels only; with one resolution the task is plain
classification. Dividing by ``n`` (the authors' code does) keeps the learning rate's meaning whatever
the number of resolutions.

Evaluation: loss and accuracy at one resolution (``eval_size``); :func:`evaluate_at_resolutions`
measures a whole curve.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, Loader
from ..train import Task
from ..train.tasks import autocast, check_data_fits_model, check_image_batch, classification_loss

__all__ = ["MultiResolution", "resize", "scale_consistency", "evaluate_at_resolutions", "RESIZE_MODES", "TEACHERS"]

RESIZE_MODES = ("bilinear", "bicubic")
TEACHERS = ("adjacent", "highest")


def _pair(size: int | tuple[int, int], what: str = "size") -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in hw):
        raise ValueError(f"{what} must be a positive integer or a pair (height, width) of them, got {size!r}")
    return hw


def resize(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Images ``[B, C, H, W]`` resized to ``size`` (a side or ``(height, width)``), antialiased when shrinking.

    ``F.interpolate`` with ``align_corners=False``: a resize to the same size returns the images unchanged.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        got = f"shape {list(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"resize takes float images [B, C, H, W], got {got}")
    h, w = _pair(size)
    shrink = h < x.shape[-2] or w < x.shape[-1]
    return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=shrink)


def scale_consistency(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      student_features: torch.Tensor | None = None, teacher_features: torch.Tensor | None = None, *,
                      kl_weight: float = 0.0, feature_weight: float = 1.0, temperature: float = 1.0,
                      whiten: bool = True) -> torch.Tensor:
    """ResFormer's consistency term of one lower resolution against its (detached) teacher.

    ``feature_weight * smooth_l1(f_s, LN(f_t))`` (``LN`` only with ``whiten``) ``+ kl_weight * T^2
    KL(softmax(y_t / T) || softmax(y_s / T))`` (batch mean); the teacher's tensors are detached here.
    """
    zero = student_logits.new_zeros((), dtype=torch.float32)
    out = zero
    if kl_weight:
        t = temperature
        log_s = F.log_softmax(student_logits.float() / t, dim=1)
        log_t = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
        out = out + kl_weight * t * t * F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
    if feature_weight:
        if student_features is None or teacher_features is None:
            raise ValueError("the feature term needs the pooled features of both resolutions; give "
                             "student_features and teacher_features, or feature_weight=0")
        target = teacher_features.detach().float()
        if whiten:
            target = F.layer_norm(target, target.shape[-1:], eps=1e-6)
        out = out + feature_weight * F.smooth_l1_loss(student_features.float(), target)
    return out


def _pool_module(model: nn.Module) -> nn.Module:
    base = getattr(model, "_orig_mod", model)  # a torch.compile'd model keeps the real one here
    pool = getattr(base, "hook_pool", None)
    if not isinstance(pool, nn.Module):
        raise ValueError(f"the feature term of the scale-consistency loss reads the pooled features at the model's "
                         f"`hook_pool`, which {type(base).__name__} lacks; use a workbench model that has one "
                         "(wb.models.hook_points(model)) or MultiResolution(feature_weight=0, kl_weight=1)")
    return pool


def _logits_and_features(model: nn.Module, x: torch.Tensor, features: bool
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not features:
        return model(x), None
    seen: list[torch.Tensor] = []
    handle = _pool_module(model).register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, seen[-1]


class MultiResolution(Task):
    """Train on every batch at several resolutions with ResFormer's scale-consistency loss (module docstring).

    Args:
        sizes: the training resolutions (sides in pixels, or ``(height, width)`` pairs), any order.
        eval_size: the resolution of the test-set evaluation during training (default: the largest).
        feature_weight: weight of the smooth-L1 term on the pooled features (the model's ``hook_pool``).
        kl_weight: weight of the KL term on the logits; ``temperature`` its ``T``.
        teacher: ``"adjacent"`` (the next higher resolution teaches, as the authors' code) or ``"highest"``.
        whiten: layer-normalize the teacher's features (the authors' code does).
        label_smoothing: of the cross-entropy at every resolution.
        mode: how images are resized, ``"bilinear"`` or ``"bicubic"``.

    Metrics: ``loss``, ``acc`` (at the largest training resolution), ``consistency`` (the summed
    consistency terms) and ``ce_<size>`` per resolution; the test set gives ``loss`` and ``acc`` at
    ``eval_size``.
    """

    metric_names = ("loss", "acc")

    def __init__(self, sizes: Iterable[int | tuple[int, int]] = (40, 32, 24), eval_size: int | None = None, *,
                 feature_weight: float = 1.0, kl_weight: float = 0.0, temperature: float = 1.0,
                 teacher: str = "adjacent", whiten: bool = True, label_smoothing: float = 0.0, mode: str = "bilinear"):
        pairs = [_pair(s, "each of sizes") for s in (sizes if not isinstance(sizes, int) else [sizes])]
        if not pairs or len(set(pairs)) != len(pairs):
            raise ValueError(f"sizes must name one or more different resolutions, got {sizes!r}")
        if feature_weight < 0 or kl_weight < 0:
            raise ValueError(f"feature_weight and kl_weight must be >= 0, got {feature_weight}, {kl_weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mode not in RESIZE_MODES:
            raise ValueError(f"mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        self.sizes = sorted(pairs, key=lambda hw: (hw[0] * hw[1], hw), reverse=True)  # highest first
        self.eval_size = _pair(eval_size, "eval_size") if eval_size is not None else self.sizes[0]
        self.feature_weight, self.kl_weight, self.temperature = float(feature_weight), float(kl_weight), float(temperature)
        self.teacher, self.whiten, self.label_smoothing, self.mode = teacher, bool(whiten), float(label_smoothing), mode

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sizes": [list(s) for s in self.sizes], "eval_size": list(self.eval_size),
                "feature_weight": self.feature_weight, "kl_weight": self.kl_weight, "temperature": self.temperature,
                "teacher": self.teacher, "whiten": self.whiten, "label_smoothing": self.label_smoothing,
                "mode": self.mode}

    @staticmethod
    def _label(hw: tuple[int, int]) -> str:
        return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)
        check = getattr(model, "check_size", None)
        if callable(check):
            for h, w in self.sizes + [self.eval_size]:
                check(h, w)
        if self.feature_weight and len(self.sizes) > 1:
            _pool_module(model)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``[(logits, features or None)]`` per resolution, highest first."""
        features = bool(self.feature_weight) and len(self.sizes) > 1
        return [_logits_and_features(model, resize(batch[0], hw, self.mode), features) for hw in self.sizes]

    def parts(self, outputs, batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The cross-entropy at each resolution (highest first) and the consistency term of each lower one."""
        y = batch[1]
        ces = [classification_loss(logits, y, self.label_smoothing) for logits, _ in outputs]
        terms = []
        for i in range(1, len(outputs)):
            t_logits, t_feat = outputs[i - 1 if self.teacher == "adjacent" else 0]
            s_logits, s_feat = outputs[i]
            terms.append(scale_consistency(s_logits, t_logits, s_feat, t_feat, kl_weight=self.kl_weight,
                                           feature_weight=self.feature_weight, temperature=self.temperature,
                                           whiten=self.whiten))
        return ces, terms

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        ces, terms = self.parts(outputs, batch)
        return (sum(ces) + sum(terms)) / len(ces)

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[1])
        ces, terms = self.parts([(lg.detach(), None if f is None else f.detach()) for lg, f in outputs], batch)
        out = {"loss": loss.detach().double() * n, "acc": (outputs[0][0].detach().argmax(1) == batch[1]).sum().double(),
               "consistency": (sum(terms).double() if terms else torch.zeros((), dtype=torch.float64)) * n}
        out.update({f"ce_{self._label(hw)}": ce.double() * n for hw, ce in zip(self.sizes, ces)})
        return out, n

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        return _evaluate_at(model, loader, self.eval_size, self.mode, precision)


@torch.no_grad()
def _predict_at(model: nn.Module, loader: Any, size: tuple[int, int], mode: str, precision: str = "fp32"
                ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Summed cross-entropy, predicted classes and labels of ``loader``'s images resized to ``size`` (eval mode)."""
    was = model.training
    model.eval()
    loss, preds, labels = 0.0, [], []
    try:
        for x, y in loader:
            with autocast(x.device, precision):
                logits = model(resize(x, size, mode))
            loss += float(classification_loss(logits, y, reduction="sum"))
            preds.append(logits.argmax(1))
            labels.append(y)
    finally:
        model.train(was)
    return loss, torch.cat(preds), torch.cat(labels)


def _evaluate_at(model: nn.Module, loader: Any, size: tuple[int, int], mode: str, precision: str = "fp32"
                 ) -> dict[str, float]:
    loss, preds, labels = _predict_at(model, loader, size, mode, precision)
    n = max(len(labels), 1)
    return {"loss": loss / n, "acc": float((preds == labels).sum()) / n}


def evaluate_at_resolutions(model: nn.Module, test: ImageDataset, sizes: Iterable[int], *, reference: int | None = None,
                            mode: str = "bilinear", batch_size: int = 500, precision: str = "fp32") -> pd.DataFrame:
    """Test loss and accuracy of ``model`` with the test images resized to each of ``sizes``.

    Args:
        reference: a size (say the training size) whose predictions the others are compared with: adds the
            column ``agree``, the share of test images whose predicted class at ``size`` is the one at ``reference``.

    Returns:
        A DataFrame with one row per size: ``size``, ``acc``, ``loss``, ``n`` (images) and, with a reference,
        ``agree``.

    Example:
        >>> curve = evaluate_at_resolutions(model, wb.load("cifar10", "test"), [16, 24, 32, 48, 64])  # doctest: +SKIP
    """
    if not isinstance(test, ImageDataset):
        raise TypeError(f"test must be an ImageDataset (wb.load(name, 'test')), got {type(test).__name__}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    if not sizes:
        raise ValueError("sizes must name at least one resolution, for example [16, 24, 32, 48, 64]")
    pairs = [_pair(s, "each of sizes") for s in sizes]
    ref = _pair(reference, "reference") if reference is not None else None
    check = getattr(model, "check_size", None)
    for h, w in pairs + ([ref] if ref else []):
        if callable(check):
            check(h, w)
    check_data_fits_model(model, test)
    p = next(model.parameters(), None)
    loader = Loader(test, batch_size=batch_size, shuffle=False, device=p.device if p is not None else "cpu")
    ref_preds = _predict_at(model, loader, ref, mode, precision)[1] if ref else None
    rows = []
    for s, hw in zip(sizes, pairs):
        loss, preds, labels = _predict_at(model, loader, hw, mode, precision)
        row = {"size": s, "acc": float((preds == labels).sum()) / len(labels), "loss": loss / len(labels),
               "n": len(labels)}
        if ref_preds is not None:
            row["agree"] = float((preds == ref_preds).sum()) / len(labels)
        rows.append(row)
    return pd.DataFrame(rows, columns=["size", "acc", "loss", "n"] + (["agree"] if ref else []))
