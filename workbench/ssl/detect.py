"""Real or synthetic? A detector of generated images, trained with cross-entropy or contrastively.

Boychev & Cholakov, *ImagiNet: A Multi-Content Dataset for Generalizable Synthetic Image Detection via
Contrastive Learning*, 2024, https://arxiv.org/abs/2407.20020. ImagiNet trains a ResNet-50 with a
supervised contrastive objective (SelfCon, Bae et al. 2023, arXiv 2106.15499: a SupCon whose second
view comes from a sub-network) over two labels at once, real-or-synthetic and, among the synthetic
images, the generator (its training code's ``MultiLabelLossImagiNet``), then a linear classifier on
the frozen features; its images pass through the perturbations of social networks (random resizing,
JPEG compression) in training and test.

What is here:

* :func:`perturb`: a social network's treatment of an image, as a pure function of the seed: with
  probability ``resize_prob`` downscaled by a random factor and scaled back up (bilinear,
  antialiased), then with probability ``jpeg_prob`` JPEG-compressed at a random quality (PIL);
* :func:`detection_data`: real images (label 0) against synthetic ones (label 1) with a source id
  per image (``"real"`` and one per generator), perturbed alike in both classes;
* :class:`Detection`: a task of :func:`workbench.fit` for an :class:`~workbench.ssl.encoder.SSLEncoder`
  whose classifier has one output per source. Both objectives see the same two views of every image,
  the same labels and step the same model: ``"ce"`` trains the backbone and its classifier with
  cross-entropy over the sources; ``"supcon"`` trains the backbone and projection with ImagiNet's
  two supervised contrastive terms (:func:`~workbench.ssl.contrastive.supcon_loss`) and, at the same
  time, the classifier on the *detached* features: a linear classifier on frozen features, trained
  online. Either way the detector's score is ``1 - p(real)``;
* :func:`detector_scores`, :func:`roc_auc`, :func:`balanced_accuracy`, :func:`evaluate_detector`:
  the paper's two measures (area under the ROC curve, balanced accuracy) overall and per source;
* :func:`train_detector`: a detector trained (and cached) by ``wb.train_model``;
* :func:`detector_run`: one leave-one-family-out run (train on the other families, test on the
  held-out one) as a ``wb.sweep`` record.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, Loader, random_stream
from ..train import Task
from ..train.tasks import check_image_batch
from .contrastive import supcon_loss
from .views import VIEW_RECIPES, make_views

__all__ = ["OBJECTIVES", "perturb", "DetectionData", "detection_data", "Detection", "detector_scores", "roc_auc",
           "balanced_accuracy", "evaluate_detector", "train_detector", "detector_run"]

OBJECTIVES = ("ce", "supcon")


# -- the data ------------------------------------------------------------------------------------

def _check_uint8(images: Any, what: str) -> torch.Tensor:
    if isinstance(images, ImageDataset):
        images = images.images
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
            and images.shape[1] in (1, 3)):
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what} must be uint8 images [N, C, H, W] with 1 or 3 channels (an ImageDataset or "
                         f"wb.generate.sample's output), got {got}")
    return images


def perturb(images: torch.Tensor, seed: int, *, resize_prob: float = 0.5, scale: tuple[float, float] = (0.5, 1.0),
            jpeg_prob: float = 0.75, quality: tuple[int, int] = (50, 95)) -> torch.Tensor:
    """Random down-then-up resizing and JPEG compression, as a social network does; a pure function of ``seed``.

    Every image gets its own draws (made for all ``N`` images in one go from ``seed``: image ``i``'s
    treatment is a function of the seed, ``N`` and ``i``): with probability ``resize_prob`` it is downscaled to ``round(s H)``
    pixels, ``s`` uniform in ``scale``, and scaled back to ``H`` (bilinear, antialiased; images of one
    size are resized as one batch); then with probability ``jpeg_prob`` it is JPEG-compressed at a
    quality drawn uniformly from ``quality`` (both ends included; PIL's encoder, 4:2:0 chroma
    subsampling). The defaults follow ImagiNet's training perturbations (JPEG quality 50-95).

    Args:
        images: uint8 ``[N, C, H, W]`` (C = 1 or 3) on any device; the result is on the CPU.

    Returns:
        uint8 ``[N, C, H, W]``.
    """
    images = _check_uint8(images, "images").cpu()
    for name, p in (("resize_prob", resize_prob), ("jpeg_prob", jpeg_prob)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} is a probability in [0, 1], got {p}")
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale is a range (low, high) of downscaling factors with 0 < low <= high <= 1, got {scale}")
    qlo, qhi = quality
    if not (isinstance(qlo, int) and isinstance(qhi, int) and 1 <= qlo <= qhi <= 100):
        raise ValueError(f"quality is a range (low, high) of JPEG qualities, integers with 1 <= low <= high <= 100, "
                         f"got {quality}")
    n, c, h, w = images.shape
    g = torch.Generator().manual_seed(int(seed))
    do_resize = torch.rand(n, generator=g) < resize_prob
    factor = lo + (hi - lo) * torch.rand(n, generator=g)
    do_jpeg = torch.rand(n, generator=g) < jpeg_prob
    q = torch.randint(qlo, qhi + 1, (n,), generator=g)
    out = images.clone()
    small = (factor * h).round().clamp(min=2).long()
    small_w = (factor * w).round().clamp(min=2).long()
    for sh in small[do_resize].unique().tolist():
        idx = (do_resize & (small == sh)).nonzero().squeeze(1)
        sw = int(small_w[idx[0]])
        x = out[idx].float()
        down = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
        up = F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)
        out[idx] = up.round().clamp(0, 255).to(torch.uint8)
    if do_jpeg.any():
        from PIL import Image

        mode = "RGB" if c == 3 else "L"
        arr = out.permute(0, 2, 3, 1).numpy()  # [N, H, W, C], a view of out
        for i in do_jpeg.nonzero().squeeze(1).tolist():
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(arr[i] if c == 3 else arr[i, :, :, 0])).save(buf, "JPEG", quality=int(q[i]))
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(mode))
            arr[i] = dec if c == 3 else dec[:, :, None]
    return out


@dataclass(repr=False)
class DetectionData(ImageDataset):
    """Real (label 0) and synthetic (label 1) images with the source of each; :meth:`by_source` makes
    the sources the labels (what :class:`Detection` trains on).

    Attributes:
        sources: int64 ``[N]``, an index into ``source_names`` (``"real"`` is 0, then each generator).
        source_names: the sources, index order.
    """

    sources: torch.Tensor | None = None
    source_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sources is None or self.sources.shape != self.labels.shape or self.sources.dtype != torch.int64:
            raise ValueError("sources must be an int64 tensor [N], one source index per image")
        if len(self.sources) and (int(self.sources.min()) < 0 or int(self.sources.max()) >= len(self.source_names)):
            raise ValueError(f"sources must index source_names ({len(self.source_names)} names)")

    def __repr__(self) -> str:
        counts = {name: int((self.sources == i).sum()) for i, name in enumerate(self.source_names)}
        return f"DetectionData({self.name!r}, split={self.split!r}, {len(self)} images, sources {counts})"

    def select(self, idx: torch.Tensor) -> "DetectionData":
        """The images at ``idx`` (indices or a boolean mask)."""
        idx = idx.to(self.images.device)
        return DetectionData(self.images[idx], self.labels[idx], list(self.classes), self.name, self.split, self.mean,
                             self.std, self.source, self.sources[idx.to(self.sources.device)].clone(),
                             list(self.source_names))

    def by_source(self) -> "DetectionData":
        """The same images labelled by their source (0 is ``"real"``, then each generator), classes ``source_names``."""
        return DetectionData(self.images, self.sources.to(self.labels.device), list(self.source_names), self.name,
                             self.split, self.mean, self.std, self.source, self.sources, list(self.source_names))

    def of_source(self, name: str) -> "DetectionData":
        """The images of one source (``"real"`` or a generator's name)."""
        if name not in self.source_names:
            raise ValueError(f"unknown source {name!r}; this data has {', '.join(self.source_names)}")
        return self.select(self.sources == self.source_names.index(name))

    def subset(self, n: int | None, seed: int = 0, offset: int = 0) -> "DetectionData":
        if offset == 0 and (n is None or n >= len(self)):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[offset:]
        return self.select(order[:n].sort().values)

    def to(self, device: torch.device | str) -> "DetectionData":
        device = torch.device(device)
        if self.images.device == device:
            return self
        return DetectionData(self.images.to(device), self.labels.to(device), list(self.classes), self.name, self.split,
                             self.mean, self.std, self.source, self.sources, list(self.source_names))


def detection_data(real: ImageDataset | torch.Tensor, synthetic: Mapping[str, torch.Tensor | ImageDataset], *,
                   seed: int = 0, perturbation: Mapping[str, Any] | None = None, name: str = "real_vs_synthetic",
                   split: str = "train") -> DetectionData:
    """Real against synthetic images, every image perturbed by :func:`perturb` (the same law for both classes).

    Args:
        real: the real images (an ImageDataset, whose ``mean``/``std`` the result keeps, or uint8 ``[N, C, H, W]``).
        synthetic: ``{generator name: uint8 images}`` (for example ``wb.generate.sample``'s outputs).
        seed: the perturbations' seed.
        perturbation: arguments of :func:`perturb`; ``None`` for its defaults; ``{"resize_prob": 0,
            "jpeg_prob": 0}`` for no perturbation.

    Returns:
        :class:`DetectionData`: the real images first, then each generator's, labels 0 and 1,
        ``source_names = ["real", *synthetic]``.
    """
    real_images = _check_uint8(real, "real")
    if not synthetic:
        raise ValueError("synthetic needs at least one generator's images: {name: uint8 images}")
    if "real" in synthetic:
        raise ValueError("'real' names the real images' source; give the generators other names")
    parts = [real_images.cpu()]
    for key, imgs in synthetic.items():
        imgs = _check_uint8(imgs, f"synthetic[{key!r}]").cpu()
        if imgs.shape[1:] != real_images.shape[1:]:
            raise ValueError(f"synthetic[{key!r}] has images of shape {list(imgs.shape[1:])} but the real ones are "
                             f"{list(real_images.shape[1:])}; generate them at the same size")
        parts.append(imgs)
    images = torch.cat(parts)
    images = perturb(images, seed, **dict(perturbation or {}))
    sources = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)])
    stats = (tuple(real.mean), tuple(real.std)) if isinstance(real, ImageDataset) else ((), ())
    return DetectionData(images, (sources > 0).long(), ["real", "synthetic"], name, split, *stats,
                         source="real images and generated ones, perturbed", sources=sources,
                         source_names=["real", *synthetic])


# -- the detector ---------------------------------------------------------------------------------

class Detection(Task):
    """Training of a real-or-synthetic detector, an :class:`~workbench.ssl.encoder.SSLEncoder` whose
    classifier has one output per source.

    The labels of a batch are *sources* (:meth:`DetectionData.by_source`): 0 for a real image, ``1..K``
    for the generators; real against synthetic (labels 0 and 1) is the case of one generator. As in
    ImagiNet, both objectives get the same labels:

    * ``"ce"``: cross-entropy over the sources through the whole network (ImagiNet's baseline trains
      a classifier of real images and generator groups the same way);
    * ``"supcon"``: ImagiNet's multi-label contrastive loss on the projection,
      ``SupCon(origin) + SupCon(generator, among the synthetic images)`` (origin: real or synthetic),
      plus cross-entropy of the classifier over the sources on the *detached* features: a linear
      classifier on frozen features, trained online.

    A detector's score of "synthetic" is ``1 - p(real)`` (:func:`detector_scores`).

    Args:
        objective: ``"ce"`` or ``"supcon"``.
        temperature: SupCon's ``tau`` (0.07, ImagiNet's training script; SupCon's paper uses 0.1).
        views: how each of the two views of an image is made
            (:data:`~workbench.ssl.views.VIEW_RECIPES`; ``"crop_flip"`` keeps the pixels' statistics,
            the traces a detector reads).

    Both objectives make the same views from the same seeds, so at an equal number of steps they
    see the same pixels. Train with ``augment=None``. Metrics: ``loss`` and ``acc`` (the classifier's,
    over the views); evaluation classifies the images themselves.
    """

    metric_names = ("loss", "acc")

    def __init__(self, objective: str = "ce", temperature: float = 0.07, views: str = "crop_flip"):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if views not in VIEW_RECIPES:
            raise ValueError(f"unknown views {views!r}; choose one of {', '.join(VIEW_RECIPES)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive (ImagiNet uses 0.07, SupCon 0.1), got {temperature}")
        self.objective, self.temperature, self.views = objective, float(temperature), views
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "objective": self.objective, "temperature": self.temperature, "views": self.views}

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        for attr in ("backbone", "project", "features"):
            if not hasattr(model, attr):
                raise TypeError(f"Detection trains an encoder with a backbone classifier and a projection head "
                                f"(wb.create_model('ssl_encoder', num_classes=...)), got {type(model).__name__}")
        n = getattr(dataset, "num_classes", None)
        if n is not None and getattr(model, "num_classes", None) != n:
            raise ValueError(f"the detector's classifier has {getattr(model, 'num_classes', None)} outputs but the data "
                             f"has {n} sources (real and {n - 1} generators); create the encoder with num_classes={n}")
        if self.mean is None:
            self.mean, self.std = tuple(dataset.mean), tuple(dataset.std)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)
        if self.objective == "supcon" and len(batch[0]) < 2:
            raise ValueError("the supcon objective needs at least 2 images per batch; raise batch_size")

    def forward(self, model: nn.Module, batch: Any, state: Any = None):
        x, y = batch
        inner = getattr(model, "_orig_mod", model)
        if state is None:  # evaluation: the images themselves
            return inner.backbone.fc(inner.features(x)), None, y
        seeds = [int(torch.randint(0, 2 ** 62, (1,), generator=random_stream(state.seed, state.step, v)))
                 for v in (0, 1)]
        views = torch.cat([make_views(x, self.mean, self.std, s, self.views) for s in seeds])   # [2B, C, H, W]
        h = inner.features(views)                                                              # [2B, F]
        y2 = y.repeat(2)
        if self.objective == "ce":
            return inner.backbone.fc(h), None, y2
        z = inner.project(h)                                                                   # [2B, proj_dim]
        return inner.backbone.fc(h.detach()), torch.stack(z.chunk(2), 1), y2                   # z: [B, 2, D]

    def contrastive_loss(self, z: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """ImagiNet's ``SupCon(origin) + SupCon(generator | synthetic)`` of embeddings ``[B, V, D]``."""
        loss = supcon_loss(z, (sources > 0).long(), self.temperature)
        synthetic = sources > 0
        if synthetic.any():
            loss = loss + supcon_loss(z[synthetic], sources[synthetic], self.temperature)
        return loss

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        logits, z, y = outputs
        loss = F.cross_entropy(logits.float(), y)
        if z is not None:
            loss = loss + self.contrastive_loss(z, batch[1])
        return loss

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        logits, _, y = outputs
        hits = (logits.detach().argmax(1) == y).sum()
        return {"loss": loss.detach().double() * len(y), "acc": hits.double()}, len(y)


# -- measures --------------------------------------------------------------------------------------

@torch.no_grad()
def detector_scores(model: nn.Module, data: ImageDataset, batch_size: int = 1000) -> torch.Tensor:
    """The probability of "synthetic", ``1 - p(real)`` ``[N]`` (float64, CPU), of every image of ``data``,
    in eval mode.

    Reads ``model.backbone`` when the model has one (an :class:`~workbench.ssl.encoder.SSLEncoder`),
    else ``model`` itself: any classifier whose output 0 is "real" (two outputs: real, synthetic; or
    one per source)."""
    if not isinstance(data, ImageDataset):
        raise TypeError(f"data must be an ImageDataset (wb.ssl.detection_data), got {type(data).__name__}")
    net = getattr(model, "backbone", model)
    p = next(net.parameters(), None)
    was = net.training
    net.eval()
    try:
        out = [torch.softmax(net(x).float(), 1) for x, _ in
               Loader(data, batch_size=batch_size, shuffle=False, device=p.device if p is not None else None)]
    finally:
        net.train(was)
    probs = torch.cat(out)
    if probs.shape[1] < 2:
        raise ValueError(f"a detector has 2 or more outputs (real first), this one has {probs.shape[1]}")
    return (1 - probs[:, 0].double()).cpu()


def _check_scores(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s, y = torch.as_tensor(scores).double().flatten(), torch.as_tensor(labels).flatten()
    if len(s) != len(y):
        raise ValueError(f"one label per score: got {len(s)} scores and {len(y)} labels")
    if not set(y.tolist()) <= {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (synthetic)")
    return s, y.long()


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random synthetic image (label 1) scores higher
    than a random real one (label 0), ties counting one half (the Mann-Whitney statistic, from
    average ranks)."""
    s, y = _check_scores(scores, labels)
    n1, n0 = int(y.sum()), int((1 - y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"the AUC needs both classes: got {n0} real and {n1} synthetic")
    order = torch.argsort(s, stable=True)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg = ends - (counts.double() - 1) / 2                     # the mean rank of each run of ties
    ranks[order] = avg[inverse]
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def balanced_accuracy(predictions: Any, labels: Any) -> float:
    """The mean of the accuracy on real images and the accuracy on synthetic ones (each class present)."""
    p, y = _check_scores(predictions, labels)
    if not set(p.long().tolist()) <= {0, 1} or not torch.equal(p, p.round()):
        raise ValueError("predictions must be 0 or 1; threshold the scores first (scores > 0.5)")
    accs = [float((p[y == c] == c).double().mean()) for c in (0, 1) if (y == c).any()]
    if len(accs) < 2:
        raise ValueError("balanced accuracy needs both classes among the labels")
    return sum(accs) / 2


def evaluate_detector(model: nn.Module, data: DetectionData, threshold: float = 0.5) -> dict[str, float]:
    """``auc``, ``balanced_acc`` (at ``threshold``) and ``acc_<source>`` for every source of ``data``."""
    if not isinstance(data, DetectionData):
        raise TypeError(f"data must be DetectionData (wb.ssl.detection_data), got {type(data).__name__}")
    scores = detector_scores(model, data)
    pred = (scores > threshold).long()
    y = data.labels.cpu()
    out = {"auc": roc_auc(scores, y), "balanced_acc": balanced_accuracy(pred, y)}
    for i, name in enumerate(data.source_names):
        mask = data.sources.cpu() == i
        if mask.any():
            out[f"acc_{name}"] = float((pred[mask] == y[mask]).double().mean())
    return out


def train_detector(objective: str, train: DetectionData, seed: int = 0, *, model_kwargs: Mapping[str, Any] | None = None,
                   temperature: float = 0.07, views: str = "crop_flip", **fit_kwargs):
    """Train a detector on ``train`` (labelled by source, :meth:`DetectionData.by_source`) with
    :class:`Detection` through ``wb.train_model`` (cached: a second call with the same arguments
    loads the result).

    Args:
        objective: ``"ce"`` or ``"supcon"``.
        train: real against synthetic images (:func:`detection_data`).
        seed: initialization and data order.
        model_kwargs: of the registered ``ssl_encoder`` (default: ``resnet8`` of width 16, projection 64).
        temperature, views: of :class:`Detection` (0.07: ImagiNet's training script).
        **fit_kwargs: the recipe (``epochs``, ``batch_size``, ``optimizer``, ``lr``, ...).

    Returns:
        :class:`~workbench.train.TrainResult`; ``.model`` is the encoder, scored by :func:`detector_scores`.
    """
    from ..train import train_model

    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not isinstance(train, DetectionData):
        raise TypeError(f"train must be DetectionData (wb.ssl.detection_data), got {type(train).__name__}")
    kwargs = {"backbone": "resnet8", "backbone_kwargs": {"width": 16}, "proj_dim": 64, **dict(model_kwargs or {})}
    fit_kwargs.setdefault("progress", False)
    return train_model("ssl_encoder", train.by_source(), None, model_kwargs=kwargs, seed=seed, augment=None,
                       task=Detection(objective, temperature=temperature, views=views), **fit_kwargs)


def detector_run(objective: str, held_out: str, seed: int, *, real_train: ImageDataset, real_test: ImageDataset,
                 synthetic_train: Mapping[str, torch.Tensor], synthetic_test: Mapping[str, torch.Tensor],
                 perturbation: Mapping[str, Any] | None = None, **train_kwargs) -> dict[str, Any]:
    """One leave-one-family-out run as a ``wb.sweep`` record: train a detector on the real images against
    every generator except ``held_out`` (:func:`train_detector`), then measure it on the held-out
    generator's images and on fresh images of the generators it saw, each against the real test images.

    Args:
        objective: ``"ce"`` or ``"supcon"`` (:class:`Detection`).
        held_out: the generator left out of training (a key of both ``synthetic_*`` mappings).
        seed: the detector's initialization and data order (the data and perturbations do not change with it).
        real_train, real_test: real images for training and for testing.
        synthetic_train, synthetic_test: ``{generator: uint8 images}``; training draws on the first,
            testing on the second.
        perturbation: arguments of :func:`perturb`, for training (seed 1) and test data (seed 2) alike.
        **train_kwargs: for :func:`train_detector` (``model_kwargs``, ``temperature``, the recipe).

    Returns:
        ``{"objective", "held_out", "seed", "auc", "balanced_acc", "acc_real", "acc_held_out",
        "seen_auc", "seen_balanced_acc", "train_acc", "seconds"}``: ``auc`` etc. on the held-out
        generator, ``seen_*`` on the generators seen in training.
    """
    import time

    if held_out not in synthetic_train or held_out not in synthetic_test:
        raise ValueError(f"held_out must name a generator of both synthetic_train and synthetic_test "
                         f"({', '.join(synthetic_train)}), got {held_out!r}")
    seen = [k for k in synthetic_train if k != held_out]
    if not seen:
        raise ValueError("holding out the only generator leaves nothing synthetic to train on; give two or more")
    start = time.perf_counter()
    train = detection_data(real_train, {k: synthetic_train[k] for k in seen}, seed=1, perturbation=perturbation)
    res = train_detector(objective, train, seed, **train_kwargs)
    test_seen = detection_data(real_test, {k: synthetic_test[k] for k in seen}, seed=2, perturbation=perturbation,
                               split="test")
    test_held = detection_data(real_test, {held_out: synthetic_test[held_out]}, seed=2, perturbation=perturbation,
                               split="test")
    held = evaluate_detector(res.model, test_held)
    seen_m = evaluate_detector(res.model, test_seen)
    return {"objective": objective, "held_out": held_out, "seed": seed, "auc": held["auc"],
            "balanced_acc": held["balanced_acc"], "acc_real": held["acc_real"], "acc_held_out": held[f"acc_{held_out}"],
            "seen_auc": seen_m["auc"], "seen_balanced_acc": seen_m["balanced_acc"],
            "train_acc": float(res.history["train_acc"].iloc[-1]), "seconds": time.perf_counter() - start}
