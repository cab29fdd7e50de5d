"""Degradations as data, PSNR/SSIM, the effective receptive field, restoration through fit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.data import PairLoader, degrade, paired
from workbench.dense import Restoration, effective_receptive_field, erf_radius, psnr, ssim


def test_psnr_known_values_and_ssim_of_identity():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    assert torch.isinf(psnr(x, x)).all() and torch.allclose(ssim(x, x), torch.ones(3))
    grey = torch.full((4, 3, 64, 64), 128, dtype=torch.uint8)
    noisy = degrade(grey, "gaussian", 1, seed=0)                              # sigma 10 levels, no clipping here
    got = psnr(noisy.float() / 255, grey.float() / 255)
    want = 20 * math.log10(255 / math.sqrt(10 ** 2 + 1 / 12))               # + the rounding to whole levels
    assert got.mean().item() == pytest.approx(want, abs=0.15)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :, :8])


def test_degradations_identity_shapes_and_determinism():
    d = wb.load("cifar10", "test", subset=6)
    assert torch.equal(degrade(d.images, "rain", 0), d.images)              # rain at density zero: the identity
    assert degrade(d.images, "down4", 3).shape == (6, 3, 8, 8)
    for kind in ("gaussian", "poisson_gaussian", "rain", "jpeg", "blur"):
        a = degrade(d.images, kind, 4, seed=2)
        assert torch.equal(a, degrade(d.images, kind, 4, seed=2)) and not torch.equal(a, d.images), kind
        # a subset's pixels are the whole set's: image i depends on (seed, offset + i) only
        assert torch.equal(degrade(d.images[3:], kind, 4, seed=2, offset=3), a[3:]), kind
    stronger = [float(psnr(degrade(d.images, "gaussian", s).float() / 255, d.images.float() / 255).mean())
                for s in (1, 3, 5)]
    assert stronger[0] > stronger[1] > stronger[2]
    with pytest.raises(ValueError, match="unknown degradation 'snow'"):
        degrade(d.images, "snow")


def test_erf_of_one_convolution_is_its_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, padding=1)
    erf = effective_receptive_field(conv, torch.randn(2, 1, 15, 15))
    nz = (erf > 0).nonzero()
    assert nz[:, 0].min() == 6 and nz[:, 0].max() == 8 and nz[:, 1].min() == 6 and nz[:, 1].max() == 8
    assert erf_radius(erf, 1.0) == 1
    two = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))
    assert erf_radius(effective_receptive_field(two, torch.randn(2, 1, 15, 15)), 1.0) == 2


def test_restoration_trains_through_fit():
    d = wb.load("cifar10", "train", subset=128)
    pairs = paired(d, "gaussian", 3)
    loader = PairLoader(pairs, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    res = wb.fit(model, loader, PairLoader(pairs, batch_size=128, shuffle=False), task=Restoration("l2"),
                 epochs=6, lr=1e-3, optimizer="adam", weight_decay=0.0, progress=False)
    assert res.history["test_psnr"].iloc[-1] > res.history["test_psnr"].iloc[0] + 1
    # the task's PSNR is the PSNR of the output image in [0, 1] against the clean one
    x, y = PairLoader(pairs, batch_size=128, shuffle=False).batch(torch.arange(128))
    std = torch.tensor(pairs.std).view(1, -1, 1, 1)
    mean = torch.tensor(pairs.mean).view(1, -1, 1, 1)
    with torch.no_grad():
        out = model(x) * std + mean
    direct = psnr(out, y * std + mean).mean().item()
    assert res.history["test_psnr"].iloc[-1] == pytest.approx(direct, abs=1e-3)
    with pytest.raises(ValueError, match="pairs"):
        wb.fit(model, d, task=Restoration(), progress=False)


# ------------------------------------------------------------------------------------------ RVQ and diffusion
def test_rvq_matches_vector_quantize_pytorch_and_one_level_is_vq():
    from vector_quantize_pytorch import ResidualVQ as Reference

    from workbench.dense import ResidualVQ, residual_quantize
    torch.manual_seed(0)
    ref = Reference(dim=8, num_quantizers=3, codebook_size=16).eval()
    x = torch.randn(2, 50, 8)
    with torch.no_grad():
        q_ref, codes_ref, _ = ref(x)
    books = ref.codebooks.detach()                                   # [3, 16, 8]
    codes, q = residual_quantize(x, books)
    assert torch.equal(codes, codes_ref) and torch.allclose(q, q_ref, atol=1e-5)
    one_codes, one_q = residual_quantize(x, books[:1])               # one level: nearest code
    nearest = torch.cdist(x.reshape(-1, 8), books[0]).argmin(1)
    assert torch.equal(one_codes.reshape(-1), nearest) and torch.equal(one_q.reshape(-1, 8), books[0][nearest])
    # the trainable layer: straight-through gradient, codebooks that move towards their vectors
    layer = ResidualVQ(8, depth=2, size=16)
    before = layer.codebooks.clone()
    xx = torch.randn(64, 8, requires_grad=True)
    out, c, commit = layer(xx)
    (out.sum() + commit).backward()
    assert torch.allclose(xx.grad, torch.ones_like(xx) + 0.25 * 2 * (xx - residual_quantize(xx.detach(), before)[1])
                          .detach() / xx.numel(), atol=1e-5)
    assert not torch.equal(layer.codebooks, before)
    err_before = (residual_quantize(xx.detach(), before)[1] - xx.detach()).pow(2).mean()
    for _ in range(30):
        layer(xx.detach())
    assert (residual_quantize(xx.detach(), layer.codebooks)[1] - xx.detach()).pow(2).mean() < err_before


def test_diffusion_closed_form_and_oracle_samplers():
    from workbench.dense import NoiseSchedule, ddim_sample, ddpm_sample
    for kind in ("linear", "cosine"):
        s = NoiseSchedule(100, kind)
        x0 = torch.randn(4, 3, 8, 8)
        assert torch.equal(s.q_sample(x0, torch.zeros(4, dtype=torch.long), torch.randn_like(x0)), x0)  # t = 0
        t = torch.full((20_000,), 60, dtype=torch.long)
        one = torch.full((20_000, 1), 2.0)
        xt = s.q_sample(one, t, torch.randn_like(one))
        abar = float(s.alphas_cumprod[60])
        assert float(xt.mean()) == pytest.approx(2.0 * abar ** 0.5, abs=0.02)
        assert float(xt.var()) == pytest.approx(1 - abar, rel=0.05)
        assert 0 < float(s.alphas_cumprod[-1]) < 0.1 if kind == "cosine" else float(s.alphas_cumprod[-1]) < 0.7
        # the exact noise predictor of a one-point data distribution: both samplers return the point
        target = torch.full((2, 1, 4, 4), 0.7)

        def oracle(x, tt, s=s):
            a = s.alphas_cumprod[tt].float().view(-1, 1, 1, 1)
            return (x - a.sqrt() * target) / (1 - a).sqrt()

        assert torch.allclose(ddim_sample(oracle, s, (2, 1, 4, 4), steps=10), target, atol=1e-4)
        assert torch.allclose(ddpm_sample(oracle, s, (2, 1, 4, 4)), target, atol=1e-4)
    with pytest.raises(ValueError, match="kind is one of linear, cosine"):
        NoiseSchedule(10, "sigmoid")


def test_denoising_task_trains_a_noise_predictor_through_fit_and_resumes_exactly(tmp_path):
    from workbench.dense import Denoising, NoiseSchedule
    s = NoiseSchedule(50)
    d = wb.load("cifar10", "train", subset=64)

    class Zero(nn.Module):   # predicts no noise: the loss is E[noise^2] = 1
        steps = 50

        def forward(self, x, t):
            return torch.zeros_like(x)

    task = Denoising(s)
    zero = task.evaluate(Zero(), wb.data.Loader(d, batch_size=64, shuffle=False))["loss"]
    assert zero == pytest.approx(1.0, abs=3 * (2 / (64 * 3 * 32 * 32)) ** 0.5)
    # the draws: t in 1..T, and the same for the same (seed, step) whatever the batch's device
    g1, g2 = wb.data.loader.random_stream(0, 1), wb.data.loader.random_stream(0, 1)
    t1, n1 = task.draw(torch.zeros(1000, 1, 2, 2), g1)
    t2, n2 = task.draw(torch.zeros(1000, 1, 2, 2), g2)
    assert torch.equal(t1, t2) and torch.equal(n1, n2) and int(t1.min()) == 1 and int(t1.max()) == 50

    def run(ckpt=None, stop=None):
        torch.manual_seed(0)
        m = wb.create_model("dit_tiny", width=16, depth=1, heads=2, steps=50)
        return wb.fit(m, wb.data.Loader(d, batch_size=16, seed=0, augment=None), wb.data.Loader(d, 64, shuffle=False),
                      task=Denoising(s), epochs=8, lr=1e-2, optimizer="adam", weight_decay=0.0, progress=False,
                      seed=0, checkpoint_dir=ckpt, stop_after_steps=stop)

    full = run()
    # from the zero-initialized output layer's 1.0 (about 0.97 after the first epoch) to about 0.80
    assert full.history["test_loss"].iloc[-1] < min(0.88, full.history["test_loss"].iloc[0] - 0.08)
    run(tmp_path, stop=5)
    resumed = run(tmp_path)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="steps=50"):
        wb.fit(wb.create_model("dit_tiny", width=16, depth=1, heads=2), d, task=Denoising(s), progress=False)
    with pytest.raises(ValueError, match="NoiseSchedule"):
        Denoising(50)


# ------------------------------------------------------------------------------------------ models
def test_dense_models_shapes_and_known_answers():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for name in ("seg_resnet", "seg_hrnet"):
        m = wb.create_model(name, num_classes=5, width=8).eval()
        assert m(x).shape == (2, 5, 32, 32)
        assert "hook_features" in wb.models.hook_points(m)
    u = wb.create_model("unet", residual=True, width=8).eval()
    torch.nn.init.zeros_(u.out.weight), torch.nn.init.zeros_(u.out.bias)
    assert torch.equal(u(x), x)                         # a residual U-Net with a zero output layer is the identity
    with pytest.raises(ValueError, match="divisible by 4"):
        u(torch.randn(1, 3, 30, 30))
    sr = wb.create_model("srresnet", scale=2, width=8, blocks=2)
    assert sr(x).shape == (2, 3, 64, 64) and wb.create_model("sr_discriminator", width=8)(x).shape == (2, 1)
    ae = wb.create_model("rvq_autoencoder", width=8, dim=4, depth=2, size=8).eval()
    codes = ae.encode(x)
    assert codes.shape == (2, 8, 8, 2) and torch.allclose(ae.decode_codes(codes), ae(x), atol=1e-5)
    with pytest.raises(ValueError, match="scale is 2 or 4"):
        wb.create_model("srresnet", scale=3)


def test_restoration_and_diffusion_backbones():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    mir = wb.create_model("mirnet_tiny", width=8, blocks=1).eval()
    torch.nn.init.zeros_(mir.tail.weight), torch.nn.init.zeros_(mir.tail.bias)
    assert torch.equal(mir(x), x)                       # a zero last layer: the residual network is the identity
    one, two = wb.create_model("dpenet_tiny", width=8, stages=1), wb.create_model("dpenet_tiny", width=8)
    assert one(x).shape == two(x).shape == x.shape
    two.load_state_dict({k: v for k, v in two.state_dict().items()}, strict=True)
    assert sum(p.numel() for p in two.parameters()) > sum(p.numel() for p in one.parameters())
    for multires in (False, True):
        dit = wb.create_model("dit_tiny", width=32, depth=2, multires=multires, img_size=32)
        t = torch.tensor([5, 900])
        out = dit(x, t)
        assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))  # zero-initialized output layer
        out.sum().backward()
    with pytest.raises(ValueError, match="divisible by 4"):
        mir(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="stages is 1"):
        wb.create_model("dpenet_tiny", stages=3)


def test_frechet_distance_known_answers():
    from workbench.dense import frechet_distance
    torch.manual_seed(0)
    a = torch.randn(4000, 3)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # two Gaussians N(0, I) and N(m, 4 I): |m|^2 + tr(I + 4I - 2 * 2I) = |m|^2 + 3 in 3 dimensions
    b = torch.randn(4000, 3) * 2 + torch.tensor([1.0, 0.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(1.0 + 3.0, rel=0.1)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, torch.randn(10, 4))


def test_segmentation_task_and_mean_iou():
    from workbench.dense import SegLoader, Segmentation, SegmentationData, mean_iou
    items = wb.load("fashion_mnist", "train", subset=500)
    sc = wb.data.make_scenes(items, 32, size=32, seed=0)
    data = SegmentationData.from_scenes(sc)
    assert data.masks.max() <= 10 and torch.equal(data.masks == 0, sc.masks == 0)
    torch.manual_seed(0)
    model = wb.create_model("seg_resnet", num_classes=11, width=8)
    res = wb.fit(model, SegLoader(data, 16), SegLoader(data, 32, shuffle=False), task=Segmentation(11), epochs=3,
                 lr=0.05, progress=False)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    miou, per_class = mean_iou(model, data)
    assert 0 <= miou <= 1 and per_class.shape == (11,)

    class Oracle(torch.nn.Module):   # answers the true masks (of a batch holding the whole set): IoU 1
        def __init__(self, masks):
            super().__init__()
            self.masks, self.w = masks, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return F.one_hot(self.masks, 11).permute(0, 3, 1, 2).float() + self.w

    assert mean_iou(Oracle(data.masks), data, batch_size=len(data))[0] == pytest.approx(1.0)


def test_srgan_adversary_trains_inside_fit_and_resumes_exactly(tmp_path):
    from workbench.dense import Adversary, Restoration
    d = wb.load("cifar10", "train", subset=64)
    pairs = paired(d, "down2", 3)
    classifier = wb.create_model("resnet8", width=8)

    def run(ckpt=None, stop=None):
        torch.manual_seed(0)
        g = wb.create_model("srresnet", scale=2, width=8, blocks=1)
        disc = wb.create_model("sr_discriminator", width=8, stages=2)
        task = Restoration("l2", feature_model=classifier, feature_weight=0.1)
        res = wb.fit(g, PairLoader(pairs, 16, seed=0), task=task, algorithms=[Adversary(disc, weight=1e-2)],
                     epochs=2, lr=1e-3, optimizer="adam", weight_decay=0.0, progress=False, seed=0,
                     checkpoint_dir=ckpt, stop_after_steps=stop)
        return res, disc

    full, disc_full = run()
    assert {"adv", "d_loss"} <= set(full.history.columns)
    run(tmp_path, stop=3)
    resumed, disc_resumed = run(tmp_path)
    for a, b in zip(list(full.model.state_dict().values()) + list(disc_full.state_dict().values()),
                    list(resumed.model.state_dict().values()) + list(disc_resumed.state_dict().values())):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="CIFAR ResNet"):
        Restoration(feature_weight=1.0)
