"""CUDA unlearnable data and its controls: exact answers on small hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from torch import nn

import workbench as wb
from workbench.data import ImageDataset
from workbench.shift import unlearnable as U


def _data(n=12, c=3, h=9, w=9, classes=3, seed=0, lo=0, hi=256) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(lo, hi, (n, c, h, w), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    return ImageDataset(images, labels, [str(i) for i in range(classes)], "toy")


def _delta(classes, c, k):
    f = torch.zeros(classes, c, k, k)
    f[:, :, k // 2, k // 2] = 1
    return f


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("normalize", ["none", "sum"])
def test_delta_filter_leaves_images_unchanged(k, normalize):
    ds = _data()
    out = U.apply_filters(ds.images, ds.labels, _delta(3, 3, k), normalize=normalize)
    assert torch.equal(out, ds.images)


def test_delta_filter_with_max_normalization_keeps_images_whose_max_is_255():
    ds = _data()
    ds.images[:, 0, 0, 0] = 255
    poisoned = U.make_unlearnable(ds, _delta(3, 3, 3))
    assert torch.equal(poisoned.images, ds.images)
    assert poisoned.name == "toy_cuda" and torch.equal(poisoned.labels, ds.labels)


def test_filters_are_deterministic_per_seed_and_differ_across_classes():
    a, b = U.cuda_filters(10, 3, 3, 0.3, seed=0), U.cuda_filters(10, 3, 3, 0.3, seed=0)
    assert torch.equal(a, b) and a.shape == (10, 3, 3, 3)
    assert not torch.equal(a, U.cuda_filters(10, 3, 3, 0.3, seed=1))
    flat = a[:, 0].flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(10) for j in range(i))
    # entries in [0, p_b] except exactly one 1 per filter; the reference shares one filter over channels
    assert ((flat == 1).sum(1) == 1).all() and (flat[flat != 1] <= 0.3).all() and (flat >= 0).all()
    assert torch.equal(a[:, 0], a[:, 2])
    per_channel = U.cuda_filters(10, 3, 3, 0.3, seed=0, share_channels=False)
    assert not torch.equal(per_channel[:, 0], per_channel[:, 1])


def test_blur_zero_is_a_one_pixel_shift():
    f = U.cuda_filters(4, 1, 3, 0.0, seed=3)
    assert ((f.flatten(1) == 1).sum(1) == 1).all() and f.sum() == 4
    ds = _data(n=4, c=1, classes=4)
    out = U.apply_filters(ds.images, ds.labels, f, normalize="none")
    for i in range(4):
        r, c = divmod(int(f[i, 0].flatten().argmax()), 3)          # out[y, x] = img[y + r - 1, x + c - 1]
        padded = torch.nn.functional.pad(ds.images[i, 0], (1, 1, 1, 1))
        assert torch.equal(out[i, 0], padded[r:r + 9, c:c + 9])


def test_filtering_matches_scipy_correlation_with_the_reference_rescaling():
    ds = _data(n=6, c=3, h=10, w=8)
    f = U.cuda_filters(3, 3, 3, 0.3, seed=2, share_channels=False)
    out = U.apply_filters(ds.images, ds.labels, f)                   # normalize="max"
    for i in range(6):
        y = int(ds.labels[i])
        ref = np.stack([correlate2d(ds.images[i, ch].double().numpy(), f[y, ch].double().numpy(), mode="same")
                        for ch in range(3)])
        ref = np.clip(np.round(ref * 255 / ref.max()), 0, 255)
        assert np.abs(out[i].numpy().astype(float) - ref).max() <= 1     # float32 vs float64 rounding
        assert (out[i].numpy() == ref).mean() > 0.99


def test_bad_filters_get_clear_errors():
    ds = _data(c=3, h=4, w=4)
    with pytest.raises(ValueError, match=r"5x5.*4x4"):
        U.make_unlearnable(ds, U.cuda_filters(3, 3, 5, 0.3))
    with pytest.raises(ValueError, match="channels"):
        U.make_unlearnable(ds, U.cuda_filters(3, 1, 3, 0.3))
    with pytest.raises(ValueError, match="one per class"):
        U.make_unlearnable(ds, U.cuda_filters(2, 3, 3, 0.3))
    with pytest.raises(ValueError, match="max, sum, none"):
        U.apply_filters(ds.images, ds.labels, U.cuda_filters(3, 3, 3), normalize="l2")
    with pytest.raises(ValueError, match="blur"):
        U.cuda_filters(3, 3, 3, blur=-0.1)


def test_fraction_poisons_only_a_seeded_subset():
    ds = _data(n=40)
    f = U.cuda_filters(3, 3, 3, 0.3, seed=0)
    assert torch.equal(U.make_unlearnable(ds, f, fraction=0.0).images, ds.images)
    half = U.make_unlearnable(ds, f, fraction=0.5, seed=1)
    changed = (half.images != ds.images).flatten(1).any(1)
    assert int(changed.sum()) <= 20 and int((~changed).sum()) >= 20
    assert torch.equal(half.images, U.make_unlearnable(ds, f, fraction=0.5, seed=1).images)


def test_perturbation_size_on_a_hand_made_case():
    clean = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    poisoned = clean.clone()
    poisoned[0, 0, 0, 0] = 3
    poisoned[1] = 4
    out = U.perturbation_size(clean, poisoned)
    assert out["l2"] == pytest.approx((3 + 8) / 2) and out["linf"] == pytest.approx(3.5) and out["linf_max"] == 4
    assert out["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / (73 / 8)))
    assert U.perturbation_size(clean, clean)["psnr"] == math.inf
    with pytest.raises(ValueError, match="shape"):
        U.perturbation_size(clean, poisoned[:1])


@pytest.mark.parametrize("mode", ["classwise", "samplewise"])
def test_noise_like_has_exactly_the_stated_energy_after_clipping(mode):
    ds = _data(n=20, h=6, w=6)
    ds.images[:5] = 250                                                  # near the top: clipping matters
    energy = torch.linspace(0, 600, 20, dtype=torch.float64)
    delta = U.noise_like(ds.images, ds.labels, energy, mode=mode, seed=4)
    assert torch.allclose(delta.flatten(1).norm(dim=1), energy, rtol=1e-9, atol=1e-9)
    x = ds.images.double() + delta
    assert x.min() >= -1e-9 and x.max() <= 255 + 1e-9


def test_noise_like_saturates_when_the_energy_is_unreachable():
    white = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    delta = U.noise_like(white, torch.zeros(1, dtype=torch.long), torch.tensor([1e6]), "samplewise", seed=0)
    negative = int((delta < 0).sum())                                    # only downward moves are possible
    assert torch.allclose(delta[delta < 0], torch.tensor(-255.0, dtype=torch.float64))
    assert float(delta.norm()) == pytest.approx(255 * math.sqrt(negative))


def test_equal_energy_noise_matches_cuda_energy_per_image():
    ds = _data(n=30, h=8, w=8, lo=40, hi=200)
    poisoned = U.make_unlearnable(ds, U.cuda_filters(3, 3, 3, 0.3, seed=0))
    target = (poisoned.images.double() - ds.images.double()).flatten(1).norm(dim=1)
    bound = 0.5 * math.sqrt(3 * 8 * 8)                                   # rounding to uint8, per image
    for mode in ("classwise", "samplewise"):
        noisy = U.equal_energy_noise(ds, like=poisoned, seed=1, mode=mode)
        got = (noisy.images.double() - ds.images.double()).flatten(1).norm(dim=1)
        assert (got - target).abs().max() <= bound
        assert noisy.name == f"toy_noise_{mode}"
    # class-wise: one pattern per class, so two images of a class move in the same direction
    mid = ImageDataset(torch.full((6, 3, 8, 8), 128, dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]),
                       ["a", "b", "c"])
    d = U.noise_like(mid.images, mid.labels, torch.full((6,), 50.0), "classwise", seed=0).flatten(1)
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    assert cos(d[0], d[1]) == pytest.approx(1) and abs(cos(d[0], d[2])) < 0.5
    s = U.noise_like(mid.images, mid.labels, torch.full((6,), 50.0), "samplewise", seed=0).flatten(1)
    assert abs(cos(s[0], s[1])) < 0.5
    with pytest.raises(ValueError, match="poisoned copy"):
        U.equal_energy_noise(ds, like=_data(n=10, h=8, w=8))
    with pytest.raises(ValueError, match="classwise, samplewise"):
        U.equal_energy_noise(ds, like=poisoned, mode="pixelwise")


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128, 10))


@pytest.mark.parametrize("mode,eps", [("samplewise", 8.0), ("classwise", 3.5)])
def test_error_minimizing_noise_is_bounded_and_lowers_the_surrogate_loss(mode, eps):
    ds = wb.data.load("shapes", "train", subset=192)
    model = _tiny_model()
    poisoned = U.error_minimizing_noise(ds, model, epsilon=eps, mode=mode, rounds=2, model_steps=5, pgd_steps=5,
                                        batch_size=64, device="cpu")
    diff = poisoned.images.int() - ds.images.int()
    assert diff.abs().max() <= eps and diff.abs().max() >= 1
    assert torch.equal(poisoned.labels, ds.labels) and poisoned.name == f"shapes_em_{mode}"
    assert all(p.requires_grad for p in model.parameters())
    clean_loss, poisoned_loss = wb.evaluate(model, ds)["loss"], wb.evaluate(model, poisoned)["loss"]
    assert poisoned_loss < clean_loss - 0.05
    if mode == "classwise":   # one delta per class: equal wherever no clipping interferes
        d = diff.flatten(1)
        inner = ((ds.images.int() >= 8) & (ds.images.int() <= 247)).flatten(1)
        a, b = (ds.labels == 0).nonzero().flatten()[:2]
        both = inner[a] & inner[b]
        assert torch.equal(d[a][both], d[b][both])


def test_error_minimizing_noise_rejects_bad_arguments():
    ds = _data()
    with pytest.raises(ValueError, match="classwise, samplewise"):
        U.error_minimizing_noise(ds, _tiny_model(), mode="pixelwise")
    with pytest.raises(ValueError, match="epsilon"):
        U.error_minimizing_noise(ds, _tiny_model(), epsilon=0)
