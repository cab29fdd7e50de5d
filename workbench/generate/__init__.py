"""Small image generators for 32x32 images, trained here in a minute or two on a CPU, and sampling.

Three families, each leaving its own traces in its images:

* ``"vae"``: a convolutional variational autoencoder (Kingma & Welling 2013, arXiv 1312.6114), the
  registered model ``conv_vae`` trained by :func:`workbench.fit` with the :class:`ELBO` task;
* ``"gan"``: a small DCGAN (Radford et al. 2015, arXiv 1511.06434), the registered model ``dcgan``
  trained by its own two-player loop :func:`fit_gan`, with checkpoints and resume like fit's;
* ``"mixture"``: a mixture of probabilistic PCA models in pixel space (Tipping & Bishop 1999), fitted
  in closed form in seconds: a generator without a neural network.

>>> train = wb.load("cifar10", "train", subset=5_000)                   # doctest: +SKIP
>>> vae = wb.generate.train_generator("vae", train, seed=0)              # doctest: +SKIP
>>> images = wb.generate.sample(vae, 1_000, seed=1)                      # uint8 [1000, 3, 32, 32]  # doctest: +SKIP

They were written for the synthetic-image detection notebook (ImagiNet, Boychev & Cholakov 2024,
arXiv 2407.20020), which needs several generator families to hold one out.
"""
from .api import FAMILIES, generator_config, sample, train_generator
from .gan import DCGAN, GANResult, dcgan, fit_gan
from .mixture import PPCAMixture, fit_mixture
from .vae import DECODERS, ELBO, ConvVAE, conv_vae, to_pm1, vae_kl

__all__ = ["FAMILIES", "generator_config", "sample", "train_generator", "DCGAN", "GANResult", "dcgan", "fit_gan",
           "PPCAMixture", "fit_mixture", "DECODERS", "ELBO", "ConvVAE", "conv_vae", "to_pm1", "vae_kl"]
