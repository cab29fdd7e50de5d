"""A small convolutional variational autoencoder for 32x32 images, trained by :func:`workbench.fit`.

Kingma & Welling, *Auto-Encoding Variational Bayes*, 2013, https://arxiv.org/abs/1312.6114.

The encoder maps an image ``x`` to a Gaussian posterior ``q(z | x) = N(mu, diag(exp(logvar)))``; the
decoder maps a latent ``z`` back to an image. Training maximizes the evidence lower bound, that is it
minimizes, per image::

    loss = ||x - decoder(z)||^2 / (2 sigma^2) + beta * KL(q(z | x) || N(0, I)),   z = mu + exp(logvar / 2) eps

(the first term is the negative log-likelihood of a Gaussian decoder of fixed standard deviation
``sigma``, without its constant), where the KL term has the closed form::

    KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)

Images live in ``[-1, 1]`` inside the generators of :mod:`workbench.generate` (DCGAN's convention);
the :class:`ELBO` task converts the normalized batches of :class:`~workbench.data.Loader` back to it.
``decoder="deconv"`` upsamples with transposed convolutions, ``decoder="upsample"`` with
nearest-neighbour upsampling and a 3x3 convolution: two decoders that leave different traces in
their images (Odena et al. 2016, *Deconvolution and Checkerboard Artifacts*).

Hook points: ``hook_mu`` (the posterior mean ``[B, latent_dim]``), ``hook_decoded`` (the decoder's
output before ``tanh``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..models import register_model
from ..models.base import WorkbenchModel
from ..models.hooks import HookPoint
from ..train import Task
from ..train.tasks import check_image_batch

__all__ = ["ConvVAE", "conv_vae", "vae_kl", "ELBO", "DECODERS", "to_pm1"]

DECODERS = ("deconv", "upsample")


def vae_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per row of ``[B, D]`` posteriors, shape ``[B]``."""
    if not (isinstance(mu, torch.Tensor) and isinstance(logvar, torch.Tensor)) or mu.shape != logvar.shape \
            or mu.ndim != 2:
        raise ValueError(f"vae_kl needs mu and logvar of the same shape [B, D], got "
                         f"{getattr(mu, 'shape', type(mu).__name__)} and {getattr(logvar, 'shape', type(logvar).__name__)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def to_pm1(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalized images ``(x / 255 - mean) / std`` back to ``[-1, 1]`` (``2 x / 255 - 1``)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * s + m) * 2 - 1


def _up(cin: int, cout: int, decoder: str) -> nn.Module:
    if decoder == "deconv":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1))


class ConvVAE(WorkbenchModel):
    """Three stride-2 convolutions to a ``4 x 4`` map, a linear layer to ``(mu, logvar)``; the decoder mirrors it.

    Args:
        latent_dim: size of ``z``.
        width: channels of the first convolution (then ``2 width``, ``4 width``).
        decoder: ``"deconv"`` (transposed convolutions) or ``"upsample"`` (nearest upsampling + conv).
        in_chans: image channels.
        img_size: 32 (three halvings to ``4 x 4``).

    ``forward(x)`` reconstructs ``x`` from the posterior mean (deterministic); :meth:`encode`,
    :meth:`decode`, :meth:`latents` are what training and :func:`workbench.generate.sample` use.
    """

    def __init__(self, latent_dim: int = 64, width: int = 32, decoder: str = "deconv", in_chans: int = 3,
                 img_size: int = 32):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        for name, v in (("latent_dim", latent_dim), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if img_size != 32:
            raise ValueError(f"ConvVAE is built for 32x32 images (three halvings to 4x4), got img_size={img_size}")
        self.in_chans, self.img_size, self.num_classes = in_chans, img_size, 0
        self.latent_dim, self.decoder_kind = latent_dim, decoder
        w = width
        act = nn.LeakyReLU(0.2)
        self.encoder = nn.Sequential(nn.Conv2d(in_chans, w, 4, 2, 1), act, nn.Conv2d(w, 2 * w, 4, 2, 1), act,
                                     nn.Conv2d(2 * w, 4 * w, 4, 2, 1), act, nn.Flatten())   # [B, 4w * 16]
        self.to_posterior = nn.Linear(4 * w * 16, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, 4 * w * 16)
        self.decoder = nn.Sequential(nn.Unflatten(1, (4 * w, 4, 4)), nn.ReLU(), _up(4 * w, 2 * w, decoder), nn.ReLU(),
                                     _up(2 * w, w, decoder), nn.ReLU(), _up(w, in_chans, decoder))
        self.hook_mu, self.hook_decoded = HookPoint(), HookPoint()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` ``[B, latent_dim]`` of images in ``[-1, 1]``."""
        self.check_input(x)
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=1)
        return self.hook_mu(mu), logvar.clamp(-12, 8)  # clamped: exp(logvar) stays finite early in training

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` ``[B, C, 32, 32]`` from latents ``[B, latent_dim]``."""
        return torch.tanh(self.hook_decoded(self.decoder(self.from_latent(z))))

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws of the prior ``N(0, I)`` (on the CPU, from ``generator``)."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decode(mu)


@register_model
def conv_vae(latent_dim: int = 64, width: int = 32, decoder: str = "deconv", in_chans: int = 3, img_size: int = 32,
             num_classes: int = 0) -> ConvVAE:
    """A small convolutional VAE for 32x32 images (``num_classes`` is not used: an unconditional VAE has
    no classes; the argument is accepted because ``wb.train_model`` passes the data's class count)."""
    return ConvVAE(latent_dim=latent_dim, width=width, decoder=decoder, in_chans=in_chans, img_size=img_size)


class ELBO(Task):
    """The VAE's negative evidence lower bound as a task of :func:`workbench.fit` (see the module docstring).

    Args:
        beta: weight of the KL term (1: the ELBO; ``beta > 1``: Higgins et al.'s beta-VAE).
        sigma: the decoder's fixed standard deviation in ``[-1, 1]`` pixel units.

    The noise ``eps`` of the reparameterization is a pure function of the run's seed and step, so a
    resumed run ends where an uninterrupted one ends; evaluation uses a fixed seed per batch. Metrics
    (per image, nats): ``loss``, ``recon`` (the reconstruction term) and ``kl``. Train with
    ``augment=None`` or ``"flip"`` (a crop would pad the images with black borders the decoder then learns).
    """

    metric_names = ("loss", "recon", "kl")

    def __init__(self, beta: float = 1.0, sigma: float = 0.1):
        if not beta >= 0:
            raise ValueError(f"beta weighs the KL term and must be at least 0, got {beta}")
        if not sigma > 0:
            raise ValueError(f"sigma is the decoder's standard deviation and must be positive, got {sigma}")
        self.beta, self.sigma = float(beta), float(sigma)
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self._eval_calls = 0

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta, "sigma": self.sigma}

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not callable(getattr(model, "encode", None)) or not callable(getattr(model, "decode", None)):
            raise TypeError(f"ELBO trains a VAE with encode(x) and decode(z) (wb.create_model('conv_vae')), "
                            f"got {type(model).__name__}")
        if self.mean is None:  # the batches are normalized with the training data's statistics
            self.mean, self.std = tuple(dataset.mean), tuple(dataset.std)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def forward(self, model: nn.Module, batch: Any, state: Any = None):
        if self.mean is None:
            raise ValueError("ELBO needs the data's mean and std: train with wb.fit, which hands them over, "
                             "or set task.mean and task.std")
        x = to_pm1(batch[0], self.mean, self.std)
        inner = getattr(model, "_orig_mod", model)  # a compiled model: encode/decode live on the original
        mu, logvar = inner.encode(x)
        if state is not None:
            g = random_stream(state.seed, state.step)
        else:
            self._eval_calls += 1
            g = random_stream(12345, self._eval_calls)
        eps = torch.randn(mu.shape, generator=g).to(mu)
        recon = inner.decode(mu + (0.5 * logvar).exp() * eps)
        return x, recon, mu, logvar

    def terms(self, outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: the reconstruction term ``[B]`` and the KL term ``[B]``."""
        x, recon, mu, logvar = outputs
        rec = (x.float() - recon.float()).pow(2).flatten(1).sum(1) / (2 * self.sigma ** 2)
        return rec, vae_kl(mu.float(), logvar.float())

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        rec, kl = self.terms(outputs)
        return (rec + self.beta * kl).mean()

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        rec, kl = self.terms(tuple(o.detach() for o in outputs))
        n = len(rec)
        return {"loss": loss.detach().double() * n, "recon": rec.double().sum(), "kl": kl.double().sum()}, n

    def evaluate(self, model: nn.Module, loader: Any, precision: str = "fp32") -> dict[str, float]:
        self._eval_calls = 0
        return super().evaluate(model, loader, precision)
