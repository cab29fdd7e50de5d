"""wb.generate: the VAE's ELBO (closed-form KL), the DCGAN loop's exact resume, the PPCA mixture's
closed-form fit, sampling as a pure function of the seed, and clear errors."""
import math

import pytest
import torch

import workbench as wb
from workbench.data import ImageDataset
from workbench.generate import ELBO, fit_gan, fit_mixture, sample, to_pm1, vae_kl
from workbench.train import CheckpointError


def _images(n, seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, c, 32, 32), generator=g, dtype=torch.uint8),
                        torch.zeros(n, dtype=torch.int64), ["x"], "noise")


# -- the VAE ---------------------------------------------------------------------------------------

def test_kl_equals_closed_form_on_hand_made_posteriors():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [math.log(0.5), 0.0], [0.0, 0.0]])
    want = torch.tensor([0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 2 - 1 - math.log(2)),
                         0.5 * (0 + 0.5 - 1 - math.log(0.5)) + 0.5 * (4 + 1 - 1 - 0),
                         0.0])
    assert torch.allclose(vae_kl(mu, logvar), want, atol=1e-6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(vae_kl(mu, logvar), ref, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        vae_kl(mu, logvar[:, :1])


def test_elbo_loss_is_reconstruction_plus_beta_kl():
    g = torch.Generator().manual_seed(0)
    x, recon = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    mu, logvar = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    task = ELBO(beta=0.5, sigma=0.2)
    rec = ((x - recon) ** 2).sum((1, 2, 3)) / (2 * 0.2 ** 2)
    want = (rec + 0.5 * vae_kl(mu, logvar)).mean()
    assert torch.allclose(task.loss((x, recon, mu, logvar), None), want)
    sums, n = task.metrics((x, recon, mu, logvar), None, task.loss((x, recon, mu, logvar), None))
    assert n == 4 and torch.allclose(sums["recon"].float(), rec.sum()) and torch.allclose(sums["kl"].float(),
                                                                                          vae_kl(mu, logvar).sum())
    with pytest.raises(ValueError, match="beta"):
        ELBO(beta=-1)
    with pytest.raises(ValueError, match="sigma"):
        ELBO(sigma=0)


def test_to_pm1_undoes_normalization():
    data = _images(5)
    x = data.normalize(data.images)
    assert torch.allclose(to_pm1(x, data.mean, data.std), data.images.float() * 2 / 255 - 1, atol=1e-5)


def test_vae_trains_through_fit_with_noise_a_function_of_the_step():
    data = _images(64)
    torch.manual_seed(0)
    vae = wb.create_model("conv_vae", latent_dim=4, width=4)
    assert vae(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    task = ELBO()
    res = wb.fit(vae, data, task=task, epochs=2, batch_size=32, optimizer="adam", lr=1e-3, augment=None,
                 progress=False, seed=0)
    assert {"train_loss", "train_recon", "train_kl"} <= set(res.history.columns)
    assert torch.isfinite(torch.tensor(res.history["train_loss"].values)).all()

    class S:
        seed, step = 3, 7
    batch = (data.normalize(data.images[:8]), data.labels[:8])
    a, b = task.forward(vae, batch, S()), task.forward(vae, batch, S())
    assert torch.equal(a[1], b[1])
    S.step = 8
    assert not torch.equal(a[1], task.forward(vae, batch, S())[1])


def test_vae_bad_arguments():
    with pytest.raises(ValueError, match="deconv, upsample"):
        wb.create_model("conv_vae", decoder="pixelshuffle")
    with pytest.raises(ValueError, match="32x32"):
        wb.create_model("conv_vae", img_size=28)
    with pytest.raises(ValueError, match="in_chans=1"):
        wb.create_model("conv_vae")(torch.zeros(2, 1, 32, 32))
    with pytest.raises(TypeError, match="encode"):
        wb.fit(wb.create_model("resnet8"), _images(16), task=ELBO(), epochs=1, progress=False)


# -- the DCGAN -------------------------------------------------------------------------------------

def _gan(seed=0):
    torch.manual_seed(seed)
    return wb.create_model("dcgan", latent_dim=8, width=4)


def test_dcgan_shapes():
    gan = _gan()
    z = gan.latents(5, torch.Generator().manual_seed(0))
    img = gan.decode(z)
    assert img.shape == (5, 3, 32, 32) and img.abs().max() <= 1
    assert gan(img).shape == (5,)
    with pytest.raises(ValueError, match=r"latents \[B, 8\]"):
        gan.decode(torch.zeros(5, 3))


def test_gan_loop_resumes_exactly_after_a_stop(tmp_path):
    data = _images(96)
    kw = dict(epochs=2, batch_size=32, seed=1, device="cpu")
    full = fit_gan(_gan(), data, **kw)
    first = fit_gan(_gan(), data, checkpoint_dir=tmp_path, stop_after_steps=4, **kw)  # stops mid-epoch 2
    assert len(first.history) == 1 and first.checkpoint is not None
    torch.manual_seed(123)  # the resumed run must not depend on the global RNG
    resumed = fit_gan(_gan(seed=5), data, checkpoint_dir=tmp_path, **kw)  # another init: the checkpoint wins
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    cols = ["epoch", "step", "d_loss", "g_loss", "d_real", "d_fake"]
    assert full.history[cols].equals(resumed.history[cols])
    assert list(full.history.step) == [3, 6]
    with pytest.raises(CheckpointError, match="lr"):
        fit_gan(_gan(), data, checkpoint_dir=tmp_path, lr=1e-3, **kw)


def test_gan_loop_bad_input():
    data = _images(16)
    with pytest.raises(ValueError, match="larger than the 16"):
        fit_gan(_gan(), data, batch_size=32)
    with pytest.raises(TypeError, match="DCGAN"):
        fit_gan(wb.create_model("resnet8"), data)
    with pytest.raises(ValueError, match="in_chans=1"):
        fit_gan(_gan(), _images(16, c=1), batch_size=8)
    with pytest.raises(ValueError, match="epochs"):
        fit_gan(_gan(), data, epochs=0, batch_size=8)


# -- the PPCA mixture ------------------------------------------------------------------------------

def test_ppca_fit_keeps_the_sample_covariance_trace_and_top_eigenvalues():
    data = _images(60)
    model = fit_mixture(data, components=1, rank=4)
    x = data.images.flatten(1).double() / 127.5 - 1
    eig = torch.linalg.svdvals(x - x.mean(0)).pow(2) / (len(x) - 1)
    w, s2 = model.loadings[0].double(), model.noise[0].double() ** 2
    p = x.shape[1]
    assert torch.allclose(model.means[0].double(), x.mean(0), atol=1e-5)
    # maximum likelihood PPCA: W W^T + s^2 I has the sample's top eigenvalues and its total variance
    assert torch.allclose(torch.linalg.svdvals(w).pow(2) + s2, eig[:4], rtol=1e-4)
    assert math.isclose(float(w.pow(2).sum() + p * s2), float(eig.sum()), rel_tol=1e-4)


def test_mixture_finds_two_separate_clusters():
    dark = torch.randint(0, 40, (30, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    light = torch.randint(215, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    data = ImageDataset(torch.cat([dark, light]), torch.zeros(80, dtype=torch.int64), ["x"])
    model = fit_mixture(data, components=2, rank=2, seed=0)
    assert sorted(model.weights.tolist()) == pytest.approx([30 / 80, 50 / 80])
    with pytest.raises(ValueError, match="too few"):
        fit_mixture(data, components=10, rank=8)


# -- sampling --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: _gan(), lambda: wb.create_model("conv_vae", latent_dim=4, width=4),
                                  lambda: fit_mixture(_images(40), components=2, rank=3)])
def test_sample_is_a_pure_function_of_the_seed(make):
    gen = make().train()
    a = sample(gen, 7, seed=3)
    assert gen.training  # sampling runs in eval mode and restores the flag
    assert a.dtype == torch.uint8 and a.shape == (7, 3, 32, 32)
    assert torch.equal(a, sample(gen, 7, seed=3, batch_size=2))   # the batches do not matter
    assert not torch.equal(a, sample(gen, 7, seed=4))


def test_sample_bad_input():
    gen = _gan()
    with pytest.raises(ValueError, match="positive integer"):
        sample(gen, 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        sample(gen, 3, seed=1.5)
    with pytest.raises(TypeError, match="latents"):
        sample(wb.create_model("resnet8"), 3)


def test_train_generator_is_cached_and_checks_its_arguments():
    data = _images(64)
    a = wb.generate.train_generator("gan", data, seed=0, epochs=1, width=4, latent_dim=8, batch_size=32)
    b = wb.generate.train_generator("gan", data, seed=0, epochs=1, width=4, latent_dim=8, batch_size=32)
    assert torch.equal(sample(a, 4, seed=0), sample(b, 4, seed=0)) and len(a.history) == 1
    with pytest.raises(ValueError, match="vae, gan, mixture"):
        wb.generate.train_generator("diffusion", data)
    with pytest.raises(ValueError, match="no setting 'depth'"):
        wb.generate.generator_config("vae", depth=3)
