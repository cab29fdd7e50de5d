"""A small DCGAN for 32x32 images and its two-player training loop, with checkpoints and resume.

Radford, Metz & Chintala, *Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks*, 2015, https://arxiv.org/abs/1511.06434 (section 3: strided convolutions
instead of pooling, BatchNorm in both players except the generator's output and the
discriminator's input, ReLU in the generator with ``tanh`` at its output, LeakyReLU (0.2) in the
discriminator, Adam with learning rate 2e-4 and ``beta1 = 0.5``).

Each step takes a batch of real images ``x`` and latents ``z ~ N(0, I)``, then::

    discriminator:  minimize  BCE(D(x), 1) + BCE(D(G(z)), 0)
    generator:      minimize  BCE(D(G(z)), 1)            (the non-saturating loss of Goodfellow et al. 2014)

Two players are not a :func:`workbench.fit` extension (fit steps one loss), so :func:`fit_gan` is
its own small loop, built like fit's: the data order and the latents are pure functions of
``(seed, step)``, a checkpoint (both players, the optimizer, the history, the CPU RNG) is written
after every epoch and every ``checkpoint_every`` steps, and a run resumed from any of them ends
bitwise equal to an uninterrupted one on the CPU.

Hook points: ``generator.hook_features`` (the ``4 x 4`` map after the generator's first layer),
``discriminator.hook_features`` (the discriminator's last ``4 x 4`` map).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..data import ImageDataset, random_stream
from ..models import register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..train.checkpoint import load_checkpoint, resume_point, save_checkpoint

__all__ = ["DCGAN", "dcgan", "fit_gan", "GANResult"]


class _Generator(nn.Module):
    def __init__(self, latent_dim: int, width: int, out_chans: int):
        super().__init__()
        w = width
        self.first = nn.Sequential(nn.ConvTranspose2d(latent_dim, 4 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * w),
                                   nn.ReLU())                                            # [B, 4w, 4, 4]
        self.hook_features = HookPoint()
        self.rest = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
                                  nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.ConvTranspose2d(w, out_chans, 4, 2, 1), nn.Tanh())  # [B, C, 32, 32]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.rest(self.hook_features(self.first(z[:, :, None, None])))


class _Discriminator(nn.Module):
    def __init__(self, width: int, in_chans: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(nn.Conv2d(in_chans, w, 4, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
                                  nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w),
                                  nn.LeakyReLU(0.2))                                     # [B, 4w, 4, 4]
        self.hook_features = HookPoint()
        self.out = nn.Conv2d(4 * w, 1, 4, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hook_features(self.body(x))).flatten()  # [B] logits


class DCGAN(WorkbenchModel):
    """Both players: ``generator`` (latents ``[B, latent_dim]`` to images in ``[-1, 1]``) and ``discriminator``.

    ``forward(x)`` is the discriminator's logit ``[B]`` of images in ``[-1, 1]``; :meth:`decode` and
    :meth:`latents` are what :func:`workbench.generate.sample` uses. Weights start as in DCGAN
    (convolutions ``N(0, 0.02)``, BatchNorm scales ``N(1, 0.02)``).
    """

    def __init__(self, latent_dim: int = 64, width: int = 32, in_chans: int = 3, img_size: int = 32):
        super().__init__()
        for name, v in (("latent_dim", latent_dim), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if img_size != 32:
            raise ValueError(f"DCGAN here is built for 32x32 images (4x4 doubled three times), got img_size={img_size}")
        self.in_chans, self.img_size, self.num_classes, self.latent_dim = in_chans, img_size, 0, latent_dim
        self.generator = _Generator(latent_dim, width, in_chans)
        self.discriminator = _Discriminator(width, in_chans)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` from latents ``[B, latent_dim]``."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the generator takes latents [B, {self.latent_dim}], got {list(z.shape)}")
        return self.generator(z)

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws of the prior ``N(0, I)`` (on the CPU, from ``generator``)."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.discriminator(x)


@register_model
def dcgan(latent_dim: int = 64, width: int = 32, in_chans: int = 3, img_size: int = 32, num_classes: int = 0) -> DCGAN:
    """A small DCGAN for 32x32 images (``num_classes`` is not used; accepted as the registry passes it)."""
    return DCGAN(latent_dim=latent_dim, width=width, in_chans=in_chans, img_size=img_size)


@dataclass
class GANResult:
    """What :func:`fit_gan` returns: the trained pair, one history row per epoch (``epoch``, ``step``,
    ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake``, the discriminator's mean probability of "real" on
    real and generated images, ``seconds``), the configuration and the last checkpoint."""

    model: DCGAN
    history: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None


def _check_finite(loss: torch.Tensor, player: str, step: int, lr: float) -> None:
    if not torch.isfinite(loss):
        from ..train import NonFiniteLossError
        err = NonFiniteLossError(f"the {player}'s loss became {float(loss)} at step {step + 1} (not applied, no "
                                 f"checkpoint written from it); try a lower lr (now {lr:g})")
        err.step = step + 1
        raise err


def _write(folder: Path, model: DCGAN, opt, meta: dict, keep: int = 2) -> Path:
    path = save_checkpoint(folder / f"gan-{meta['step']:09d}", model, opt, meta=meta,
                           extra_tensors={"rng_cpu": torch.get_rng_state()})
    for old in sorted(folder.glob("gan-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return path


def fit_gan(model: DCGAN, train: ImageDataset, *, epochs: int = 5, batch_size: int = 64, lr: float = 2e-4,
            betas: tuple[float, float] = (0.5, 0.999), flip: bool = True, seed: int = 0,
            checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = True,
            stop_after_steps: int | None = None, device: torch.device | str | None = None,
            progress: bool = False) -> GANResult:
    """Train a :class:`DCGAN` on ``train``'s images (labels are ignored).

    Args:
        model: the pair to train (in place).
        train: uint8 images ``[N, C, 32, 32]``; an epoch is one random order of them in batches of
            ``batch_size`` (the last, incomplete batch is dropped: BatchNorm needs a full batch).
        epochs, batch_size, lr, betas: DCGAN's Adam for both players.
        flip: flip each real image horizontally with probability 1/2 (drawn per step).
        seed: the data order, the flips and the latents (all pure functions of ``(seed, step)``).
        checkpoint_dir: write a checkpoint after every epoch (and every ``checkpoint_every`` steps);
            with ``resume=True`` continue from the latest one there, which must come from the same
            configuration (else a :class:`~workbench.train.CheckpointError` says what differs).
        stop_after_steps: return after this many steps of this call (a checkpoint is written when
            ``checkpoint_dir`` is given), to resume later.
        device: default :func:`workbench.config.device`.
        progress: a progress bar over steps.

    Returns:
        :class:`GANResult`.
    """
    if not isinstance(model, DCGAN):
        raise TypeError(f"fit_gan trains a DCGAN (wb.create_model('dcgan')), got {type(model).__name__}")
    if not isinstance(train, ImageDataset):
        raise TypeError(f"train must be an ImageDataset (wb.load), got {type(train).__name__}")
    if train.shape != (model.in_chans, 32, 32):
        raise ValueError(f"the DCGAN makes {model.in_chans}x32x32 images but {train.name} has {train.shape}; "
                         f"create it with in_chans={train.shape[0]} (and resize the data to 32x32)")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if batch_size > len(train):
        raise ValueError(f"batch_size {batch_size} is larger than the {len(train)} training images; lower it")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    dev = torch.device(device) if device is not None else config.device()
    model.to(dev).train()
    images = train.images.to(dev)
    spe = len(train) // batch_size
    total = epochs * spe
    # one Adam over two parameter groups: a player whose gradients are None (the other player's step)
    # is skipped by Adam, and each parameter keeps its own step count, so this is two Adams in one state
    opt = torch.optim.Adam([{"params": list(model.generator.parameters())},
                            {"params": list(model.discriminator.parameters())}], lr=lr, betas=tuple(betas))
    cfg = json.loads(json.dumps({"model_kwargs": getattr(model, "model_kwargs", {}), "data": train.name,
                                 "n_train": len(train), "epochs": epochs, "batch_size": batch_size, "lr": lr,
                                 "betas": list(betas), "flip": flip, "seed": seed}))
    rows: list[dict[str, Any]] = []
    step, sums, last = 0, {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "n": 0, "seconds": 0.0}, None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        found = resume_point(folder, "gan", cfg, resume)
        if found is not None:
            meta, _, extra = load_checkpoint(found, model, opt)
            torch.set_rng_state(extra["rng_cpu"])
            rows, step, sums, last = meta["history"], meta["step"], meta["sums"], found

    def meta() -> dict[str, Any]:
        return {"config": cfg, "step": step, "history": rows, "sums": sums}

    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=step, desc="DCGAN", unit="step", disable=not progress)
    this_call = 0
    try:
        while step < total and (stop_after_steps is None or this_call < stop_after_steps):
            t0 = time.perf_counter()
            epoch, b = divmod(step, spe)
            order = torch.randperm(len(train), generator=random_stream(seed, epoch)).to(dev)
            x = images[order[b * batch_size:(b + 1) * batch_size]].float() / 127.5 - 1   # [B, C, 32, 32]
            g = random_stream(seed, epoch, b)
            if flip:
                do = (torch.rand(batch_size, generator=g) < 0.5).to(dev)
                x = torch.where(do[:, None, None, None], x.flip(3), x)
            z = torch.randn(batch_size, model.latent_dim, generator=g).to(dev)
            fake = model.generator(z)
            # the discriminator's step (the generator's output detached: its gradients stay None)
            opt.zero_grad(set_to_none=True)
            real_logit, fake_logit = model.discriminator(x), model.discriminator(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                      + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
            d_loss.backward()
            _check_finite(d_loss, "discriminator", step, lr)
            opt.step()
            # the generator's step (the discriminator frozen: its gradients stay None)
            opt.zero_grad(set_to_none=True)
            model.discriminator.requires_grad_(False)
            try:
                g_logit = model.discriminator(fake)
                g_loss = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
                g_loss.backward()
            finally:
                model.discriminator.requires_grad_(True)
            _check_finite(g_loss, "generator", step, lr)
            opt.step()
            step, this_call = step + 1, this_call + 1
            sums["d_loss"] += float(d_loss.detach()) * batch_size
            sums["g_loss"] += float(g_loss.detach()) * batch_size
            sums["d_real"] += float(torch.sigmoid(real_logit.detach()).sum())
            sums["d_fake"] += float(torch.sigmoid(fake_logit.detach()).sum())
            sums["n"] += batch_size
            sums["seconds"] += time.perf_counter() - t0
            bar.update(1)
            if step % spe == 0:  # an epoch ends
                n = max(sums["n"], 1)
                rows.append({"epoch": step // spe, "step": step, **{k: sums[k] / n for k in
                                                                   ("d_loss", "g_loss", "d_real", "d_fake")},
                             "seconds": sums["seconds"]})
                sums = {**{k: 0.0 for k in ("d_loss", "g_loss", "d_real", "d_fake")}, "n": 0,
                        "seconds": sums["seconds"]}
                if folder is not None:
                    last = _write(folder, model, opt, meta())
            elif folder is not None and checkpoint_every and step % checkpoint_every == 0:
                last = _write(folder, model, opt, meta())
        if folder is not None and step < total and (last is None or json.loads(last.read_text())["step"] != step):
            last = _write(folder, model, opt, meta())  # stopped early on purpose: resume from here
    finally:
        bar.close()
    history = pd.DataFrame(rows, columns=["epoch", "step", "d_loss", "g_loss", "d_real", "d_fake", "seconds"])
    return GANResult(model=model, history=history, config=cfg, checkpoint=last)
