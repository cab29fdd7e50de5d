"""Temporal models over **frozen** per-frame features: the recipe of Ma, Chen, Kira & AlRegib, *TS-LSTM and
Temporal-Inception: Exploiting Spatiotemporal Dynamics for Activity Recognition* (arXiv:1703.10667).

The paper trains a per-frame two-stream ConvNet first (a spatial stream on RGB frames, a temporal stream on
optical flow), freezes it, and stores every frame's feature vector; the temporal models (mean pooling, LSTMs over
temporal segments, Inception-style temporal convolutions) are then trained on those stored ``[T, F]`` feature
matrices alone. Here:

* :func:`clip_features` runs a trained ``video_net``'s trunk once over a set of clips and returns
  :class:`ClipFeatures` (``x`` ``[N, T, F]``, ``y`` ``[N]``): the feature matrices, the trunk never runs again.
* :class:`FeatureHead` is a temporal head alone (``video_net``'s :class:`~workbench.models.video.TemporalHead`)
  reading ``[B, T, F]``; :func:`head_from_model` copies a trained ``video_net``'s head into one, so that
  ``head_from_model(m)(clip_features(m, clips).x)`` gives ``m``'s own logits.
* :class:`FeatureLoader` and :class:`FeatureClassification` serve the stored features to ``wb.fit`` (a loader
  and a task; the training loop is ``fit``'s), and :func:`train_head` trains a head on them, cached like
  ``wb.train_model``.

Example::

    trunk = wb.train_model("video_net", clips, model_kwargs={"head": "mean"}, augment=None, epochs=3).model
    tr, te = wb.sequence.clip_features(trunk, clips), wb.sequence.clip_features(trunk, test_clips)
    r = wb.sequence.train_head("segments", tr, te, seed=0, epochs=20, optimizer="adam", lr=1e-3)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..data.dataset import ImageDataset
from ..data.loader import Loader, TensorLoader
from ..models.video import HEADS, TemporalHead, VideoClassifier, frame_differences
from ..train.tasks import Classification

__all__ = ["ClipFeatures", "FeatureLoader", "FeatureClassification", "FeatureHead", "clip_features",
           "head_from_model", "train_head", "fuse_logits", "concat_features", "compare_heads"]


@dataclass
class ClipFeatures:
    """Per-frame feature matrices of clips: ``x`` float ``[N, T, F]``, ``y`` int64 ``[N]`` class labels."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = "clip_features"
    split: str = "train"
    source: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.x, torch.Tensor) and self.x.ndim == 3 and self.x.is_floating_point()):
            got = tuple(self.x.shape) if isinstance(self.x, torch.Tensor) else type(self.x).__name__
            raise ValueError(f"x must be float feature matrices [N, T, F] (wb.sequence.clip_features), got {got}")
        if not (isinstance(self.y, torch.Tensor) and self.y.ndim == 1 and not self.y.is_floating_point()
                and len(self.y) == len(self.x)):
            got = tuple(self.y.shape) if isinstance(self.y, torch.Tensor) else type(self.y).__name__
            raise ValueError(f"y must be integer class labels [{len(self.x)}], one per clip, got {got}")
        if not self.classes:
            self.classes = [str(i) for i in range(int(self.y.max()) + 1 if len(self.y) else 0)]

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def frames(self) -> int:
        return self.x.shape[1]

    @property
    def features(self) -> int:
        return self.x.shape[2]

    def to(self, device: torch.device | str) -> "ClipFeatures":
        return ClipFeatures(self.x.to(device), self.y.to(device), list(self.classes), self.name, self.split,
                            self.source)

    def fingerprint(self) -> str:
        """A hash of the features and labels (for cache keys)."""
        h = hashlib.sha256()
        h.update(self.x.detach().cpu().float().contiguous().numpy().tobytes())
        h.update(self.y.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:20]


class FeatureLoader(TensorLoader):
    """Batches ``(x [B, T, F], y [B])`` of :class:`ClipFeatures`, shuffled per epoch from ``seed``."""

    data_type, made_by = ClipFeatures, "wb.sequence.clip_features"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.x[idx], self.dataset.y[idx]


class FeatureClassification(Classification):
    """Classification (cross-entropy, accuracy) of stored feature matrices ``[B, T, F]`` instead of images."""

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not isinstance(dataset, ClipFeatures):
            raise ValueError(f"{self.name} trains on stored features: pass a wb.sequence.FeatureLoader of "
                             f"wb.sequence.clip_features(...), got {type(dataset).__name__}")
        n_cls = getattr(model, "num_classes", None)
        if n_cls is not None and n_cls != dataset.num_classes:
            raise ValueError(f"the head predicts {n_cls} classes but the features have {dataset.num_classes}; "
                             f"create it with num_classes={dataset.num_classes}")
        f = getattr(model, "features", None)
        if f is not None and f != dataset.features:
            raise ValueError(f"the head reads {f} features per frame but the data have {dataset.features}; create it "
                             f"with features={dataset.features}")

    def check_batch(self, batch: Any) -> None:
        x, y = batch
        if not (isinstance(x, torch.Tensor) and x.ndim == 3 and x.is_floating_point()):
            raise ValueError(f"{self.name} expects float features [B, T, F], got {getattr(x, 'shape', type(x))}")
        if not (isinstance(y, torch.Tensor) and y.ndim == 1 and len(y) == len(x)):
            raise ValueError(f"{self.name} expects integer labels [{len(x)}], got {getattr(y, 'shape', type(y))}")


class FeatureHead(nn.Module):
    """A temporal head alone: per-frame features ``[B, T, F]`` -> clip logits ``[B, classes]``.

    Args:
        head: ``"mean"`` (mean pooling of per-frame logits), ``"lstm"`` / ``"gru"`` (the last step's state),
            ``"segments"`` (TS-LSTM: an LSTM per contiguous temporal segment, final states averaged),
            ``"tconv"`` (Temporal-Inception: parallel temporal convolutions of widths ``kernel_sizes``).
        features, frames, num_classes: the feature size ``F``, the clip length ``T``, the classes.
        hidden, segments, kernel_sizes, tconv_channels, tconv_relu: as in ``video_net``.
    """

    def __init__(self, head: str, features: int, frames: int, num_classes: int, hidden: int = 64, segments: int = 2,
                 kernel_sizes: tuple[int, ...] = (1, 3, 5), tconv_channels: int = 32, tconv_relu: bool = True):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head is one of {', '.join(HEADS)}, got {head!r}")
        for k, v in {"features": features, "frames": frames, "num_classes": num_classes}.items():
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        self.head_kind, self.features, self.frames, self.num_classes = head, features, frames, num_classes
        self.head = TemporalHead(head, features, num_classes, hidden, segments, tuple(kernel_sizes), tconv_channels,
                                 tconv_relu, frames)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # f: [B, T, F]
        if not (isinstance(f, torch.Tensor) and f.ndim == 3 and f.shape[1:] == (self.frames, self.features)):
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"FeatureHead takes features [batch, {self.frames}, {self.features}] (frames, features), "
                             f"got {got}")
        return self.head(f)


def _check_video(model: Any, stream: int) -> None:
    if not isinstance(model, VideoClassifier):
        raise TypeError(f"expected a video_net model (wb.create_model('video_net', ...)), got {type(model).__name__}")
    if not (isinstance(stream, int) and 0 <= stream < len(model.trunks)):
        raise ValueError(f"stream is the index of one of the model's {len(model.trunks)} trunk(s) "
                         f"(0 .. {len(model.trunks) - 1}; for stream='two' 0 is RGB, 1 the differences), got {stream!r}")


@torch.no_grad()
def clip_features(model: VideoClassifier, clips: ImageDataset, stream: int = 0, batch_size: int = 250,
                  device: torch.device | str | None = None) -> ClipFeatures:
    """The frozen per-frame features ``[N, T, F]`` of trunk ``stream`` of a ``video_net`` over ``clips``
    (filmstrips as ``wb.load("motion")`` gives them), in eval mode, on the input that trunk reads (the frames, or
    their differences for a ``"diff"`` stream); labels and classes are the clips'. The model's train flag is
    restored. Features come back on the CPU."""
    _check_video(model, stream)
    if not isinstance(clips, ImageDataset):
        raise TypeError(f"clips must be an ImageDataset of filmstrips (wb.load('motion')), got {type(clips).__name__}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    try:
        for x, _ in Loader(clips, batch_size=batch_size, shuffle=False, device=dev):
            model.check_input(x)
            b, c, _, w = x.shape
            frames = x.reshape(b, c, model.frames, model.frame_size, w).transpose(1, 2)   # [B, T, C, H, W]
            kind = model.stream if model.stream != "two" else ("rgb", "diff")[stream]
            inp = frame_differences(frames) if kind == "diff" else frames
            out.append(model.frame_features(inp, model.trunks[stream]).float().cpu())    # [B, T, F]
    finally:
        model.train(was)
    return ClipFeatures(torch.cat(out), clips.labels.cpu(), list(clips.classes), f"{clips.name}/features{stream}",
                        clips.split, f"frozen per-frame features of trunk {stream} of a video_net over {clips.source}")


def head_from_model(model: VideoClassifier, stream: int = 0) -> FeatureHead:
    """A :class:`FeatureHead` holding a copy of the trained temporal head of trunk ``stream`` of a ``video_net``."""
    _check_video(model, stream)
    th = model.heads[stream]
    kw: dict[str, Any] = {}
    if th.head == "mean":
        features = th.fc.in_features
    elif th.head in ("lstm", "gru"):
        features = th.rnn.input_size
        kw["hidden"] = th.rnn.hidden_size
    elif th.head == "segments":
        features = th.rnns[0].input_size
        kw.update(hidden=th.rnns[0].hidden_size, segments=th.segments)
    else:
        features = th.convs[0].in_channels
        kw.update(kernel_sizes=tuple(c.kernel_size[0] for c in th.convs), tconv_channels=th.convs[0].out_channels,
                  tconv_relu=th.tconv_relu)
    h = FeatureHead(th.head, features, model.frames, model.num_classes, **kw)
    h.head.load_state_dict(th.state_dict())
    return h.to(next(model.parameters()).device)


def fuse_logits(*logits: torch.Tensor) -> torch.Tensor:
    """Late fusion of two-stream networks: the mean of the streams' logits (each ``[N, classes]``)."""
    if not logits or any(not isinstance(z, torch.Tensor) or z.shape != logits[0].shape for z in logits):
        raise ValueError("fuse_logits takes one or more logit tensors of the same shape [N, classes]")
    return torch.stack(logits, 0).mean(0)


def train_head(head: str, train: ClipFeatures, test: ClipFeatures | None = None, *, seed: int = 0,
               head_kwargs: dict | None = None, batch_size: int = 128, cache: bool = True, **fit_kwargs):
    """A :class:`FeatureHead` of kind ``head`` built with ``seed`` and trained by ``wb.fit`` on stored features
    (:class:`FeatureLoader`, :class:`FeatureClassification`); cached on the features' fingerprints, the head, the
    seed and the fit arguments. Returns ``fit``'s :class:`~workbench.train.TrainResult`."""
    from ..train.cached import cached_fit

    for nm, d in (("train", train), ("test", test)):
        if d is not None and not isinstance(d, ClipFeatures):
            raise TypeError(f"{nm} must be ClipFeatures (wb.sequence.clip_features), got {type(d).__name__}")
    head_kwargs = dict(head_kwargs or {})

    def build() -> FeatureHead:
        torch.manual_seed(seed)
        return FeatureHead(head, train.features, train.frames, train.num_classes, **head_kwargs)

    def loaders() -> tuple:
        return (FeatureLoader(train, batch_size=batch_size, seed=seed),
                FeatureLoader(test, batch_size=1000, shuffle=False) if test is not None else None)

    key = {"head": head, "head_kwargs": head_kwargs, "batch_size": batch_size,
           "train": [train.name, train.split, len(train), train.fingerprint()],
           "test": [test.name, test.split, len(test), test.fingerprint()] if test is not None else None}
    return cached_fit(build, loaders, task=FeatureClassification(), key=key, name="feature_head", seed=seed,
                      cache=cache, fit_kwargs={"progress": True, **fit_kwargs, "augment": None})


def concat_features(*feats: ClipFeatures, name: str | None = None) -> ClipFeatures:
    """Several streams' features of the same clips side by side: ``x`` ``[N, T, F1 + F2 + ...]`` (early fusion of
    stored features); the clips' labels must agree."""
    if not feats or any(not isinstance(f, ClipFeatures) for f in feats):
        raise TypeError("concat_features takes one or more ClipFeatures (wb.sequence.clip_features)")
    a = feats[0]
    for f in feats[1:]:
        if f.x.shape[:2] != a.x.shape[:2] or not torch.equal(f.y, a.y):
            raise ValueError("concat_features needs features of the same clips: the same number of clips and frames "
                             f"and the same labels, got {tuple(a.x.shape)} and {tuple(f.x.shape)}")
    return ClipFeatures(torch.cat([f.x for f in feats], -1), a.y, list(a.classes),
                        name or "+".join(f.name for f in feats), a.split, "concatenated features")


def compare_heads(feats: dict[str, tuple[ClipFeatures, ClipFeatures]], heads, seeds, *,
                  fuse: dict[str, tuple[str, ...]] | None = None, **train_kwargs):
    """Train every temporal head on every stream's stored features, for every seed (:func:`train_head`, cached),
    and late-fuse streams (:func:`fuse_logits`).

    Args:
        feats: stream name -> ``(train, test)`` :class:`ClipFeatures`; the test labels must agree across streams.
        heads, seeds: the head kinds (``"mean"``, ``"segments"``, ...) and the seeds.
        fuse: name -> the streams whose test logits are averaged, e.g. ``{"two streams": ("rgb", "flow")}``.
        train_kwargs: passed to :func:`train_head` (``head_kwargs``, ``epochs``, ``optimizer``, ``lr`` ...).

    Returns:
        ``(runs, preds)``: a DataFrame with one row per stream (fused ones included), head and seed (columns
        ``stream``, ``head``, ``seed``, ``acc`` the test accuracy), and a dict ``(stream, head, seed)`` -> the
        test predictions ``[N]``.
    """
    if not feats:
        raise ValueError("compare_heads needs at least one stream of features")
    fuse = dict(fuse or {})
    y = next(iter(feats.values()))[1].y
    for name, pair in feats.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"feats[{name!r}] must be a (train, test) pair of ClipFeatures")
        if not torch.equal(pair[1].y, y):
            raise ValueError(f"the test labels of stream {name!r} differ from the others': streams must be of the "
                             "same clips")
    for name, parts in fuse.items():
        missing = [p for p in parts if p not in feats]
        if missing or not parts:
            raise ValueError(f"fused stream {name!r} names streams {missing or parts} that are not in feats "
                             f"({', '.join(feats)})")
    rows, preds = [], {}
    for seed in seeds:
        for head in heads:
            logits = {}
            for name, (tr, te) in feats.items():
                r = train_head(head, tr, te, seed=seed, **train_kwargs)
                with torch.no_grad():
                    logits[name] = r.model.eval()(te.x)
            for name, parts in fuse.items():
                logits[name] = fuse_logits(*(logits[p] for p in parts))
            for name, z in logits.items():
                preds[name, head, seed] = z.argmax(1)
                rows.append({"stream": name, "head": head, "seed": seed,
                             "acc": float((z.argmax(1) == y).float().mean())})
    return pd.DataFrame(rows), preds
