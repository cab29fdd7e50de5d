"""A mixture of probabilistic PCA models in pixel space: a generator without a neural network.

Tipping & Bishop, *Mixtures of Probabilistic Principal Component Analysers*, Neural Computation 1999
(and *Probabilistic Principal Component Analysis*, JRSS-B 1999, eq. 7-8 for the closed-form fit).

Each of ``K`` components is a Gaussian in pixel space with mean ``mu_k`` and covariance
``W_k W_k^T + s_k^2 I``; an image is drawn as::

    k ~ Categorical(pi),   z ~ N(0, I_rank),   eps ~ N(0, I_pixels),   x = mu_k + W_k z + s_k eps

Fitted in closed form per component rather than by EM: k-means (Lloyd's iterations from ``K``
random images) assigns the images, then each cluster's maximum-likelihood PPCA is
``s_k^2 = mean of the discarded eigenvalues`` and ``W_k = U_r (L_r - s_k^2 I)^(1/2)`` from the
cluster's top ``r`` eigenpairs ``(L_r, U_r)``. Its images are smooth where the top components are
and carry white noise of variance ``s_k^2`` everywhere: traces unlike a VAE's blur or a GAN's
upsampling, which is why it serves as a third, cheap family of generators.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import ImageDataset

__all__ = ["PPCAMixture", "fit_mixture"]


class PPCAMixture(nn.Module):
    """``K`` probabilistic PCA components over images in ``[-1, 1]`` (everything is a buffer).

    Attributes:
        weights: ``[K]`` mixture weights ``pi``; means ``[K, P]``; loadings ``[K, P, rank]``;
        noise ``[K]`` the standard deviations ``s_k``; ``P = C * 32 * 32`` pixels.
    """

    def __init__(self, components: int = 20, rank: int = 16, in_chans: int = 3, img_size: int = 32):
        super().__init__()
        for name, v in (("components", components), ("rank", rank)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        p = in_chans * img_size * img_size
        if rank >= p:
            raise ValueError(f"rank must be below the {p} pixels of an image, got {rank}")
        self.components, self.rank, self.in_chans, self.img_size = components, rank, in_chans, img_size
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, p))
        self.register_buffer("loadings", torch.zeros(components, p, rank))
        self.register_buffer("noise", torch.ones(components))

    @property
    def latent_dim(self) -> int:
        """Columns of :meth:`latents`: one uniform (the component), ``rank`` for ``z``, one per pixel for ``eps``."""
        return 1 + self.rank + self.means.shape[1]

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` rows ``[u, z, eps]`` drawn from ``generator`` on the CPU (``u`` uniform picks the component)."""
        u = torch.rand(n, 1, generator=generator)
        z = torch.randn(n, self.rank, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator)
        return torch.cat([u, z, eps], 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` (clipped) ``[B, C, 32, 32]`` from rows of :meth:`latents`."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"a PPCA mixture decodes rows [u, z, eps] of {self.latent_dim} values, got "
                             f"{list(latents.shape)}")
        u, z, eps = latents[:, 0], latents[:, 1:1 + self.rank], latents[:, 1 + self.rank:]
        cum = self.weights.cumsum(0)
        k = torch.searchsorted(cum / cum[-1], u.contiguous()).clamp(max=self.components - 1)   # [B]
        x = self.means[k] + (self.loadings[k] @ z[:, :, None]).squeeze(2) + self.noise[k, None] * eps
        return x.clamp(-1, 1).view(-1, self.in_chans, self.img_size, self.img_size)


def fit_mixture(train: ImageDataset, components: int = 20, rank: int = 16, iterations: int = 20,
                seed: int = 0) -> PPCAMixture:
    """Fit a :class:`PPCAMixture` to ``train``'s images (k-means, then each cluster's closed-form PPCA).

    Args:
        train: uint8 images ``[N, C, H, W]`` (labels are ignored).
        components: ``K``; every cluster needs more than ``rank`` images.
        rank: principal directions per component.
        iterations: Lloyd's iterations of k-means.
        seed: the initial centres (``K`` distinct random images).
    """
    if not isinstance(train, ImageDataset):
        raise TypeError(f"train must be an ImageDataset (wb.load), got {type(train).__name__}")
    model = PPCAMixture(components, rank, train.shape[0], train.shape[1])
    if train.shape[1] != train.shape[2]:
        raise ValueError(f"square images only, got {train.shape}")
    if len(train) < components * (rank + 2):
        raise ValueError(f"{len(train)} images are too few for {components} components of rank {rank}: "
                         f"give at least {components * (rank + 2)} or lower components/rank")
    x = train.images.cpu().flatten(1).double() / 127.5 - 1                       # [N, P]
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=g)[:components]].clone()
    sq = x.pow(2).sum(1, keepdim=True)
    for _ in range(iterations):
        assign = (sq - 2 * x @ centres.T + centres.pow(2).sum(1)).argmin(1)    # [N]
        for k in range(components):
            members = x[assign == k]
            if len(members):  # an emptied cluster keeps its centre
                centres[k] = members.mean(0)
    assign = (sq - 2 * x @ centres.T + centres.pow(2).sum(1)).argmin(1)
    p = x.shape[1]
    for k in range(components):
        members = x[assign == k]
        if len(members) <= rank + 1:  # too small for its own PPCA: fall back to the whole data
            members = x
        mu = members.mean(0)
        _, s, vh = torch.linalg.svd(members - mu, full_matrices=False)
        eig = s.pow(2) / (len(members) - 1)                                      # covariance eigenvalues
        noise_var = (eig[rank:].sum() / (p - rank)).clamp_min(1e-8)             # the discarded ones' mean over all P
        scale = (eig[:rank] - noise_var).clamp_min(0).sqrt()
        model.means[k] = mu.float()
        model.loadings[k] = (vh[:rank].T * scale).float()
        model.noise[k] = noise_var.sqrt().float()
        model.weights[k] = (assign == k).double().mean().float()
    model.weights /= model.weights.sum()
    return model
