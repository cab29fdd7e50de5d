"""ResGen's experiment in miniature: train a residual-VQ autoencoder, measure reconstruction level by level,
train the two token generators, and decode and score their samples.

Kim et al., *Efficient Generative Modeling with Residual Vector Quantization-Based Tokens* (ResGen,
`arXiv:2412.10208 <https://arxiv.org/abs/2412.10208>`_). The pieces this module joins are elsewhere:
the autoencoder ``wb.create_model("rvq_autoencoder")`` and its quantizer (:mod:`workbench.models.rvq`), the
generator ``wb.create_model("rvq_generator")`` and its task and sampler (:mod:`workbench.dense.tokens`).

* :class:`Reconstruction`: the ``wb.fit`` task of the autoencoder. A batch is ``(images, labels)`` of an
  ``ImageDataset``; the loss is the squared error of the reconstruction (normalized units) plus the quantizer's
  commitment loss ``beta ||z - sg(q)||^2`` (the codebooks themselves move by moving averages); metrics ``loss``
  and ``psnr`` (dB in the images' [0, 1] range).
* :func:`level_psnr`: the PSNR of decoding only the first ``d`` levels of each code stack, ``d = 1 .. D``.
* :func:`train_rvq_autoencoder` and :func:`train_token_generator`: ``wb.fit`` runs, cached with ``wb.cached``
  (``wb.train_model`` builds classifiers of an image dataset's classes; these models take no ``num_classes``).
* :func:`generate_images`: ``sample_tokens`` then the autoencoder's decoder, as uint8 images.
* :func:`fewest_steps_within`: the fewest sampling steps whose score is within a target.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ImageDataset
from ..train.tasks import Task
from .tokens import MaskedTokens, TokenData, TokenLoader, sample_tokens

__all__ = ["Reconstruction", "level_psnr", "train_rvq_autoencoder", "train_token_generator", "generate_images",
           "fewest_steps_within"]


def _psnr_db(diff01: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, at most 100) of differences given in [0, 1] units ``[N, C, H, W]``."""
    return -10 * torch.log10(diff01.float().pow(2).mean((1, 2, 3)).clamp(min=1e-10))


class Reconstruction(Task):
    """Autoencoding for ``rvq_autoencoder``: squared error of the reconstruction plus ``commitment_weight``
    times the quantizer's commitment loss. Metrics ``loss`` and ``psnr`` (dB, per image, averaged)."""

    metric_names = ("loss", "psnr")

    def __init__(self, commitment_weight: float = 1.0):
        if not (isinstance(commitment_weight, (int, float)) and commitment_weight >= 0):
            raise ValueError(f"commitment_weight must be a number >= 0, got {commitment_weight!r}")
        self.commitment_weight = float(commitment_weight)
        self.std: torch.Tensor | None = None

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not hasattr(model, "quantizer") or not hasattr(model, "decode_codes"):
            raise ValueError("Reconstruction trains a residual-VQ autoencoder: wb.create_model('rvq_autoencoder', ...)")
        if not isinstance(dataset, ImageDataset):
            raise ValueError(f"Reconstruction trains on images: pass a wb.data ImageDataset (wb.load(...)), got "
                             f"{type(dataset).__name__}")
        if dataset.shape[0] != model.in_chans:
            raise ValueError(f"the autoencoder takes {model.in_chans}-channel images but {dataset.name} has "
                             f"{dataset.shape[0]}: create it with in_chans={dataset.shape[0]}")
        if dataset.shape[1] % 4 or dataset.shape[2] % 4:
            raise ValueError(f"the autoencoder downsamples by 4: image sides must be multiples of 4, got "
                             f"{tuple(dataset.shape[1:])}")
        self.std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)

    def forward(self, model: nn.Module, batch: Any, state: Any = None):
        recon = model(batch[0])
        return recon, model.commitment

    def loss(self, outputs, batch: Any, state: Any = None) -> torch.Tensor:
        recon, commitment = outputs
        return F.mse_loss(recon.float(), batch[0].float()) + self.commitment_weight * commitment

    def metrics(self, outputs, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        x = batch[0]
        std = (self.std if self.std is not None else torch.ones(1, x.shape[1], 1, 1)).to(x.device)
        db = _psnr_db((outputs[0].detach().float() - x.float()) * std)
        return {"loss": loss.detach().double() * len(x), "psnr": db.double().sum()}, len(x)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "commitment_weight": self.commitment_weight}


@torch.no_grad()
def level_psnr(autoencoder: nn.Module, images: ImageDataset, batch_size: int = 500) -> list[float]:
    """Mean PSNR (dB, [0, 1] range) of decoding the first ``d`` levels of each image's code stack, for
    ``d = 1 .. depth``: entry ``d - 1``. The last entry is the autoencoder's full reconstruction."""
    if not hasattr(autoencoder, "decode_codes"):
        raise ValueError("level_psnr needs a residual-VQ autoencoder: wb.create_model('rvq_autoencoder'), trained")
    if not isinstance(images, ImageDataset):
        raise ValueError(f"images must be a wb.data ImageDataset (its mean and std undo the normalization), got "
                         f"{type(images).__name__}")
    was = autoencoder.training
    autoencoder.eval()
    dev = next(autoencoder.parameters()).device
    std = torch.tensor(images.std, dtype=torch.float32).view(1, -1, 1, 1).to(dev)
    depth = autoencoder.quantizer.codebooks.shape[0]
    sums = torch.zeros(depth, dtype=torch.float64)
    try:
        for i in range(0, len(images), batch_size):
            x = images.normalize(images.images[i:i + batch_size]).to(dev)
            codes = autoencoder.encode(x)
            for d in range(depth):
                sums[d] += _psnr_db((autoencoder.decode_codes(codes[..., :d + 1]) - x) * std).double().sum().cpu()
    finally:
        autoencoder.train(was)
    return (sums / len(images)).tolist()


def train_rvq_autoencoder(train: ImageDataset, test: ImageDataset | None = None, *, depth: int = 4, size: int = 64,
                          dim: int = 16, width: int = 32, seed: int = 0, commitment_weight: float = 1.0,
                          cache: bool = True, **fit_kwargs):
    """``rvq_autoencoder`` (``in_chans`` from the data) trained with :class:`Reconstruction` through ``wb.fit``;
    cached on the data, the architecture, the seed and ``fit_kwargs``. Returns ``(model, history)``."""
    from ..models import create_model
    from ..train.cached import cached_fit, data_fingerprint

    kwargs = dict(in_chans=train.shape[0], width=width, dim=dim, depth=depth, size=size)

    def build():
        torch.manual_seed(seed)
        return create_model("rvq_autoencoder", **kwargs)

    key = {"model": kwargs, "commitment_weight": commitment_weight,
           "train": [train.name, train.split, len(train), data_fingerprint(train)],
           "test": [test.name, test.split, len(test), data_fingerprint(test)] if test is not None else None}
    res = cached_fit(build, lambda: (train, test), task=Reconstruction(commitment_weight), key=key,
                     name="rvq_autoencoder", seed=seed, cache=cache, fit_kwargs=fit_kwargs)
    return res.model.eval(), res.history


def train_token_generator(autoencoder: nn.Module, tokens: TokenData, head: str, *, width: int = 64, layers: int = 2,
                          heads: int = 4, seed: int = 0, batch_size: int = 64, test: TokenData | None = None,
                          cache: bool = True, **fit_kwargs):
    """``rvq_generator`` with ``head`` (``"tokens"`` or ``"collective"``) on the autoencoder's code stacks
    ``tokens``, its codebooks loaded, trained with :class:`MaskedTokens` through ``wb.fit``; cached on the
    codebooks, the codes, the architecture, the seed and ``fit_kwargs``. Returns ``(model, history)``."""
    from ..cache import fingerprint
    from ..models import create_model
    from ..train.cached import cached_fit, model_fingerprint

    if not isinstance(tokens, TokenData):
        raise ValueError(f"tokens must be wb.dense.encode_tokens(autoencoder, images), got {type(tokens).__name__}")
    books = autoencoder.quantizer.codebooks.detach().cpu()
    depth, size, dim = books.shape
    grid = tokens.codes.shape[1]
    kwargs = dict(grid=grid, depth=depth, size=size, dim=dim, width=width, layers=layers, heads=heads, head=head)

    def build():
        torch.manual_seed(seed)
        return create_model("rvq_generator", **kwargs).load_codebooks(books)

    def loaders():
        return (TokenLoader(tokens, batch_size, seed=seed),
                TokenLoader(test, 500, shuffle=False) if test is not None else None)

    key = {"model": kwargs, "batch_size": batch_size, "autoencoder": model_fingerprint(autoencoder),
           "tokens": fingerprint(tokens.codes), "test": fingerprint(test.codes) if test is not None else None}
    res = cached_fit(build, loaders, task=MaskedTokens(), key=key, name="rvq_generator", seed=seed, cache=cache,
                     fit_kwargs={"augment": None, **fit_kwargs})
    res.model.codebooks_loaded = True
    return res.model.eval(), res.history


@torch.no_grad()
def generate_images(generator: nn.Module, autoencoder: nn.Module, like: ImageDataset, n: int, steps: int,
                    temperature: float = 1.0, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``n`` uint8 images ``[n, C, H, W]``: code stacks from :func:`~workbench.dense.sample_tokens` (``steps``
    calls of the generator), decoded by the autoencoder and un-normalized with ``like``'s mean and std."""
    if not isinstance(like, ImageDataset):
        raise ValueError(f"like must be the ImageDataset the autoencoder was trained on (its mean and std), got "
                         f"{type(like).__name__}")
    was = autoencoder.training
    autoencoder.eval()
    try:
        out = []
        for i, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            codes = sample_tokens(generator, m, steps, temperature=temperature, seed=seed * 100_003 + i)
            out.append(like.to_uint8(autoencoder.decode_codes(codes).cpu()))
    finally:
        autoencoder.train(was)
    return torch.cat(out)


def fewest_steps_within(steps: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The fewest sampling steps (of those measured, ``steps`` increasing) whose score (lower is better, e.g. a
    Fréchet distance) is at most ``target``; ``inf`` if none is."""
    steps, scores = list(steps), [float(s) for s in scores]
    if len(steps) != len(scores) or not steps:
        raise ValueError(f"steps and scores must be non-empty and of one length, got {len(steps)} and {len(scores)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"steps must increase, got {steps}")
    if any(math.isnan(s) for s in scores) or math.isnan(target):
        raise ValueError("scores and target must be numbers, not NaN")
    return next((float(s) for s, v in zip(steps, scores) if v <= target), math.inf)

