"""How good is a representation? The standard protocols, on any model with features.

* :func:`encode`: the frozen features of a dataset;
* :func:`linear_probe`: logistic regression on frozen, standardized features (Kolesnikov, Zhai &
  Beyer 2019, arXiv 1901.09005, for why the probe's own training matters: here it is a full-batch
  L-BFGS fit, deterministic and converged, so two encoders are compared, not two probe runs);
* :func:`knn_accuracy`: the weighted k-nearest-neighbour vote on cosine similarity (Wu et al. 2018,
  arXiv 1805.01978, eq. 7: each of the ``k`` neighbours votes ``exp(s / T)`` for its class);
* :func:`label_subset`: the semi-supervised protocol's 1% and 10% of the labels, class-balanced;
* :func:`fine_tune`: train a copy of the encoder's classifier on labels (cached on the starting
  weights, the data and the recipe), from the backbone or from inside a SimCLRv2 projection head;
* :func:`distill`: SimCLRv2's third step, a student trained on a teacher's soft predictions for
  unlabeled images;
* :func:`to_shape`: a second dataset made to fit an encoder (gray to RGB, padded or resized), for
  transfer.

A model's features are ``model.features(x)`` when it has that method, else
``model.forward_features(x)``, else ``model(x)``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, Loader
from ..train import TrainResult, model_fingerprint
from ..train.cached import _data_key, cached_fit

__all__ = ["encode", "linear_probe", "linear_probe_features", "knn_accuracy", "knn_features", "label_subset",
           "fine_tune", "classifier_of", "distill", "pseudo_label", "to_shape"]


def _features_fn(model: nn.Module):
    for name in ("features", "forward_features"):
        fn = getattr(model, name, None)
        if callable(fn):
            return fn
    return model


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _each_batch(model: nn.Module, data: ImageDataset, batch_size: int, fn) -> list:
    """``fn(x)`` on every batch of ``data`` in order, with ``model`` in eval mode and no gradients; the
    model's train/eval flag is restored afterwards, also after an exception."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [fn(x) for x, _ in Loader(data, batch_size=batch_size, shuffle=False, device=_device_of(model))]
    finally:
        model.train(was)


def encode(model: nn.Module, data: ImageDataset, batch_size: int = 1000, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen features ``[N, D]`` (float32, on the CPU) and labels ``[N]`` of ``data``, in eval mode.

    ``kwargs`` go to the model's ``features`` (for example ``head_layers=1`` of an
    :class:`~workbench.ssl.encoder.SSLEncoder`).
    """
    if not isinstance(data, ImageDataset):
        raise TypeError(f"encode takes an ImageDataset (wb.data.load), got {type(data).__name__}")
    fn = _features_fn(model)
    if kwargs and fn is model:
        raise TypeError(f"{type(model).__name__} has no features() method to take {', '.join(kwargs)}")
    def one(x: torch.Tensor) -> torch.Tensor:
        z = fn(x, **kwargs)
        if z.ndim != 2:
            raise ValueError(f"features must be [B, D], got {list(z.shape)}; give the model a features(x) "
                             "method that pools them")
        return z.float().cpu()

    out = _each_batch(model, data, batch_size, one)
    return torch.cat(out), data.labels.cpu()


def _check_pair(z_train, y_train, z_test, y_test) -> None:
    if z_train.ndim != 2 or z_test.ndim != 2 or z_train.shape[1] != z_test.shape[1]:
        raise ValueError(f"features must be [N, D] with the same D for train and test, got {list(z_train.shape)} "
                         f"and {list(z_test.shape)}")
    if len(z_train) != len(y_train) or len(z_test) != len(y_test):
        raise ValueError("one label per feature row is needed for train and for test")


def linear_probe_features(z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor,
                          *, num_classes: int | None = None, steps: int = 200, weight_decay: float = 1e-4
                          ) -> dict[str, float]:
    """Multinomial logistic regression on standardized features, fitted by full-batch L-BFGS.

    Minimizes ``CE + weight_decay / 2 * ||W||^2`` over a weight matrix and a bias; the features are
    standardized with the training rows' mean and standard deviation. Deterministic.

    Returns:
        ``{"train_acc", "test_acc", "train_loss"}``.
    """
    _check_pair(z_train, y_train, z_test, y_test)
    if steps < 1 or weight_decay < 0:
        raise ValueError(f"steps must be at least 1 and weight_decay at least 0, got {steps} and {weight_decay}")
    z_train, z_test = z_train.double(), z_test.double()
    mu, sd = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    a, b = (z_train - mu) / sd, (z_test - mu) / sd
    k = int(num_classes or int(max(y_train.max(), y_test.max())) + 1)
    w = torch.zeros(a.shape[1], k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, y_train) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        train_logits, test_logits = a @ w + bias, b @ w + bias
        return {"train_acc": float((train_logits.argmax(1) == y_train).double().mean()),
                "test_acc": float((test_logits.argmax(1) == y_test).double().mean()),
                "train_loss": float(F.cross_entropy(train_logits, y_train))}


def linear_probe(model: nn.Module, train: ImageDataset, test: ImageDataset, *, steps: int = 200,
                 weight_decay: float = 1e-4, **kwargs) -> dict[str, float]:
    """:func:`linear_probe_features` on the frozen features of ``train`` and ``test`` (see :func:`encode`)."""
    z_train, y_train = encode(model, train, **kwargs)
    z_test, y_test = encode(model, test, **kwargs)
    return linear_probe_features(z_train, y_train, z_test, y_test, num_classes=max(train.num_classes, test.num_classes),
                                 steps=steps, weight_decay=weight_decay)


def knn_features(z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor, *,
                 k: int = 20, temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> float:
    """Accuracy of the weighted k-NN vote on cosine similarity: neighbour ``j`` gives ``exp(s_j / T)`` to its class."""
    _check_pair(z_train, y_train, z_test, y_test)
    if not 1 <= k <= len(z_train):
        raise ValueError(f"k must be between 1 and the {len(z_train)} training examples, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    c = int(num_classes or int(max(y_train.max(), y_test.max())) + 1)
    a, b = F.normalize(z_train.float(), dim=1), F.normalize(z_test.float(), dim=1)
    hits = 0
    for i in range(0, len(b), chunk):
        sim, idx = (b[i:i + chunk] @ a.T).topk(k, dim=1)                     # [n, k]
        votes = torch.zeros(len(sim), c).scatter_add_(1, y_train[idx], (sim / temperature).exp())
        hits += int((votes.argmax(1) == y_test[i:i + chunk]).sum())
    return hits / len(b)


def knn_accuracy(model: nn.Module, train: ImageDataset, test: ImageDataset, *, k: int = 20,
                 temperature: float = 0.07, **kwargs) -> float:
    """:func:`knn_features` on the frozen features of ``train`` (the database) and ``test`` (the queries)."""
    z_train, y_train = encode(model, train, **kwargs)
    z_test, y_test = encode(model, test, **kwargs)
    return knn_features(z_train, y_train, z_test, y_test, k=k, temperature=temperature,
                        num_classes=max(train.num_classes, test.num_classes))


def label_subset(data: ImageDataset, fraction: float, seed: int = 0) -> ImageDataset:
    """A class-balanced share of ``data``: ``round(fraction * n_c)`` random examples of each class ``c``.

    The semi-supervised protocol's 1% and 10% (SimCLRv2 samples its ImageNet subsets class-balanced too).
    A smaller fraction's subset is part of a larger one's for the same seed.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction is a share of the labels in (0, 1] (0.01 for 1%), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    labels = data.labels.cpu()
    keep = []
    for c in range(data.num_classes):
        idx = (labels == c).nonzero().squeeze(1)
        n = round(fraction * len(idx))
        if n == 0:
            have = len(idx)
            raise ValueError(f"fraction {fraction} leaves class {c} ({data.classes[c]!r}, {have} examples) with no "
                             f"example; raise the fraction to at least {1 / max(have, 1):.3g} or use more data")
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    idx = torch.cat(keep).sort().values.to(data.images.device)
    return data._replace(data.images[idx], data.labels[idx])


class _HeadClassifier(nn.Module):
    """An encoder's features after ``head_layers`` layers of its projection head, and a new linear layer."""

    def __init__(self, encoder: nn.Module, head_layers: int, num_classes: int):
        super().__init__()
        self.encoder, self.head_layers = encoder, head_layers
        self.in_chans, self.num_classes = encoder.in_chans, num_classes
        self.fc = nn.Linear(encoder.feature_dim, num_classes)  # the head's hidden layers keep the feature size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(x, head_layers=self.head_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def classifier_of(model: nn.Module, num_classes: int | None = None, head_layers: int = 0, seed: int = 0) -> nn.Module:
    """A copy of the classifier inside ``model``, ready to train on labels.

    For an :class:`~workbench.ssl.encoder.SSLEncoder`: its backbone (``head_layers=0``; the final layer
    re-initialized when ``num_classes`` differs) or, SimCLRv2's choice, the backbone and the first
    ``head_layers`` layers of the projection head with a new linear layer. Any other model is copied.
    """
    model = copy.deepcopy(model)
    if head_layers and not hasattr(model, "head"):
        raise ValueError(f"head_layers={head_layers} needs an encoder with a projection head (ssl_encoder)")
    torch.manual_seed(seed)
    if head_layers:
        return _HeadClassifier(model, head_layers, num_classes or model.num_classes)
    net = getattr(model, "backbone", model)
    fc = getattr(net, "fc", None)
    if num_classes is not None and num_classes != getattr(net, "num_classes", num_classes):
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"{type(net).__name__} has no linear fc to replace for {num_classes} classes")
        net.fc = nn.Linear(fc.in_features, num_classes).to(fc.weight.device)
        net.num_classes = num_classes
    return net


def fine_tune(model: nn.Module, train: ImageDataset, test: ImageDataset | None = None, *, seed: int = 0,
              head_layers: int = 0, cache: bool = True, **fit_kwargs) -> TrainResult:
    """Train :func:`classifier_of` ``model`` on ``train`` with :func:`workbench.fit`; ``model`` is left unchanged.

    Cached on the starting weights' fingerprint, ``head_layers``, the data and ``fit_kwargs`` (tasks and
    algorithms by their configuration), like :func:`workbench.train_model`.
    """
    start = classifier_of(model, train.num_classes, head_layers, seed)
    task = fit_kwargs.pop("task", None)
    key = {"start": model_fingerprint(start), "class": type(start).__name__, "head_layers": head_layers,
           "train": _data_key(train), "test": _data_key(test)}
    return cached_fit(lambda: copy.deepcopy(start), lambda: (train, test), task=task, key=key, name="fine_tune",
                      seed=seed, cache=cache, fit_kwargs={"progress": True, **fit_kwargs})


def pseudo_label(teacher: nn.Module, data: ImageDataset, batch_size: int = 1000) -> ImageDataset:
    """``data`` with its labels replaced by the teacher's predictions: unlabeled images for distillation
    (the true labels are never read, so the student's ``train_acc`` is its agreement with the teacher)."""
    preds = _each_batch(teacher, data, batch_size, lambda x: teacher(x).argmax(1).cpu())
    return data._replace(data.images, torch.cat(preds).to(data.labels.device))


def distill(teacher: nn.Module, student: nn.Module, unlabeled: ImageDataset, test: ImageDataset | None = None, *,
            temperature: float = 1.0, seed: int = 0, **fit_kwargs) -> TrainResult:
    """SimCLRv2's third step: ``student`` learns the teacher's softened predictions on ``unlabeled`` images only.

    The loss is the soft term alone (:class:`~workbench.transfer.Distillation` with ``alpha=1``; SimCLRv2
    eq. 2, temperature 1 in its experiments); labels of ``unlabeled`` are replaced by the teacher's
    predictions first (:func:`pseudo_label`), so none leaks in. Cached like :func:`fine_tune`.
    """
    from ..transfer import Distillation

    teacher = copy.deepcopy(teacher)
    data = pseudo_label(teacher, unlabeled)
    return fine_tune(student, data, test, seed=seed, task=Distillation(teacher, temperature=temperature, alpha=1.0),
                     **fit_kwargs)


def to_shape(data: ImageDataset, channels: int, size: int, mode: str = "pad") -> ImageDataset:
    """``data`` with ``channels`` channels (gray repeated to RGB, or RGB averaged to gray) at ``size`` x ``size``.

    Args:
        mode: ``"pad"`` (zero-pad a smaller image to the centre; a larger one is an error) or ``"resize"``
            (bilinear).
    """
    if mode not in ("pad", "resize"):
        raise ValueError(f"mode must be 'pad' or 'resize', got {mode!r}")
    x = data.images
    mean, std = tuple(data.mean), tuple(data.std)
    c = x.shape[1]
    if c != channels:
        if c == 1:
            x, mean, std = x.expand(-1, channels, -1, -1), mean * channels, std * channels
        elif channels == 1:
            x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
            mean, std = (sum(mean) / c,), (sum(std) / c,)
        else:
            raise ValueError(f"cannot turn {c} channels into {channels}: only gray <-> RGB is supported")
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        if mode == "pad":
            if h > size or w > size:
                raise ValueError(f"{data.name} images are {h}x{w}, larger than {size}: use mode='resize'")
            top, left = (size - h) // 2, (size - w) // 2
            x = F.pad(x, (left, size - w - left, top, size - h - top))
        else:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True).round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(x.contiguous(), data.labels, list(data.classes), data.name, data.split, mean, std,
                        f"{data.source} ({channels}x{size}x{size}, {mode})")

