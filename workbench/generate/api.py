"""Train a generator family once (cached) and sample images from it."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..cache import cached
from ..data import ImageDataset
from ..models import create_model
from ..train import data_fingerprint, load_state_checked, train_model
from .gan import fit_gan
from .mixture import PPCAMixture, fit_mixture
from .vae import ELBO

__all__ = ["FAMILIES", "sample", "train_generator", "generator_config"]

FAMILIES = ("vae", "gan", "mixture")

# what each family trains with unless told otherwise (chosen for a minute or two on a laptop's CPU)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "vae": {"model": {"latent_dim": 64, "width": 16, "decoder": "deconv"},
            "fit": {"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0,
                    "schedule": "onecycle", "augment": "flip", "beta": 1.0, "sigma": 0.1}},
    "gan": {"model": {"latent_dim": 64, "width": 16},
            "fit": {"epochs": 10, "batch_size": 64, "lr": 2e-4, "betas": (0.5, 0.999), "flip": True}},
    "mixture": {"model": {"components": 20, "rank": 16}, "fit": {"iterations": 20}},
}


def generator_config(family: str, **overrides) -> dict[str, dict[str, Any]]:
    """The architecture (``"model"``) and training (``"fit"``) settings of a family, with overrides
    (a key of either part; an unknown key is an error that lists the valid ones)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; choose one of {', '.join(FAMILIES)}")
    cfg = {"model": dict(_DEFAULTS[family]["model"]), "fit": dict(_DEFAULTS[family]["fit"])}
    for k, v in overrides.items():
        part = "model" if k in cfg["model"] else "fit" if k in cfg["fit"] else None
        if part is None:
            raise ValueError(f"{family} has no setting {k!r}; valid: {', '.join([*cfg['model'], *cfg['fit']])}")
        cfg[part][k] = v
    return cfg


def train_generator(family: str, train: ImageDataset, *, seed: int = 0, refresh: bool = False,
                    progress: bool = False, **overrides) -> nn.Module:
    """Train one generator of ``family`` on ``train``'s images, once: later calls load it from the cache.

    Args:
        family: ``"vae"`` (:class:`~workbench.generate.vae.ConvVAE` by :func:`workbench.fit` with the
            :class:`~workbench.generate.vae.ELBO` task, through ``wb.train_model``), ``"gan"``
            (:class:`~workbench.generate.gan.DCGAN` by :func:`~workbench.generate.gan.fit_gan`) or
            ``"mixture"`` (:class:`~workbench.generate.mixture.PPCAMixture` by
            :func:`~workbench.generate.mixture.fit_mixture`).
        train: the real images (labels are ignored).
        seed: initialization, data order and noise.
        **overrides: settings of :func:`generator_config` (``epochs=3``, ``latent_dim=32``, ...).

    Returns:
        The trained generator in eval mode, ready for :func:`sample`.
    """
    cfg = generator_config(family, **overrides)
    if not isinstance(train, ImageDataset):
        raise TypeError(f"train must be an ImageDataset (wb.load), got {type(train).__name__}")
    if family == "vae":
        fit_kw = dict(cfg["fit"])
        task = ELBO(beta=fit_kw.pop("beta"), sigma=fit_kw.pop("sigma"))
        res = train_model("conv_vae", train, None, model_kwargs={**cfg["model"], "num_classes": 0}, seed=seed,
                          task=task, refresh=refresh, progress=progress, **fit_kw)
        res.model.history = res.history
        return res.model.eval()
    key = {"family": family, "config": cfg, "seed": seed,
           "train": [train.name, train.split, len(train), data_fingerprint(train)]}
    if family == "gan":
        def run() -> dict:
            torch.manual_seed(seed)
            model = create_model("dcgan", in_chans=train.shape[0], **cfg["model"])
            res = fit_gan(model, train, seed=seed, progress=progress, **cfg["fit"])
            return {"state": {k: v.detach().cpu() for k, v in res.model.state_dict().items()}, "history": res.history}
        out = cached(run, key=key, name="train_generator", refresh=refresh)
        model = create_model("dcgan", in_chans=train.shape[0], **cfg["model"])
    else:
        def run() -> dict:
            m = fit_mixture(train, seed=seed, **cfg["model"], **cfg["fit"])
            return {"state": dict(m.state_dict())}
        out = cached(run, key=key, name="train_generator", refresh=refresh)
        model = PPCAMixture(in_chans=train.shape[0], img_size=train.shape[1], **cfg["model"])
    load_state_checked(model, out["state"], "cached generator")
    if "history" in out:
        model.history = out["history"]
    return model.eval()


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``n`` images from ``generator`` as uint8 ``[n, C, 32, 32]`` on the CPU, a pure function of ``seed``.

    The latents are drawn at once on the CPU from ``seed`` (so the images do not depend on
    ``batch_size`` or the device), then decoded in batches in eval mode; ``[-1, 1]`` maps to
    ``0..255`` by ``round((x + 1) * 127.5)``.

    Args:
        generator: a model with ``latents(n, torch.Generator)`` and ``decode(latents)`` (every family
            of :func:`train_generator`).
    """
    if not (callable(getattr(generator, "latents", None)) and callable(getattr(generator, "decode", None))):
        raise TypeError(f"sample needs a generator with latents(n, generator) and decode(latents) (a ConvVAE, DCGAN "
                        f"or PPCAMixture from wb.generate.train_generator), got {type(generator).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer number of images, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    z = generator.latents(n, torch.Generator().manual_seed(seed))
    p = next(iter(generator.parameters()), None)
    buf = next(iter(generator.buffers()), None)
    dev = p.device if p is not None else buf.device if buf is not None else torch.device("cpu")
    was = generator.training
    generator.eval()
    try:
        out = [generator.decode(z[i:i + batch_size].to(dev)).float().cpu() for i in range(0, n, batch_size)]
    finally:
        generator.train(was)
    return ((torch.cat(out) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
