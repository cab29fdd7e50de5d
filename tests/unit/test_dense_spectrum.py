"""The radially averaged power spectrum and the measures built on it (wb.dense.spectrum)."""
from __future__ import annotations

import math

import pytest
import torch

from workbench.dense import high_frequency_ratio, power_spectrum, radial_power_spectrum, spectral_distance


def _cos(h, w, a, b, amp=1.0):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return amp * torch.cos(2 * math.pi * (a * y / h + b * x / w))


def test_parseval_and_constant_image_has_all_power_at_zero():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 16, 12)
    assert torch.allclose(power_spectrum(x).sum((1, 2)), x.double().pow(2).mean((1, 2, 3)))
    c = torch.full((2, 3, 16, 16), 0.3)
    r, p = radial_power_spectrum(c)
    assert r.tolist() == list(range(9))
    assert p[0].item() == pytest.approx(0.09) and torch.all(p[1:].abs() < 1e-20)
    assert torch.equal(high_frequency_ratio(c, 4), torch.zeros(2))       # no power away from zero


def test_impulse_is_exactly_flat_and_white_noise_is_flat_on_average():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 5, 7] = 1.0
    _, p = radial_power_spectrum(x)
    assert torch.allclose(p, torch.full_like(p, 1 / 256 ** 2))
    torch.manual_seed(0)
    _, p = radial_power_spectrum(torch.randn(400, 3, 32, 32))
    # E|FFT|^2 = H W sigma^2 at every frequency, so the mean spectrum is 1 / (H W) everywhere (the rings average
    # 400 x 3 x (4 .. 100) draws; the smallest ring, r = 0, one frequency)
    assert torch.allclose(p[1:] * 1024, torch.ones(16, dtype=torch.float64), rtol=0.1)


def test_a_sinusoid_puts_its_power_at_its_radius():
    img = _cos(32, 32, 3, 4).expand(1, 3, 32, 32).clone()                 # radius 5 exactly
    _, p = radial_power_spectrum(img)
    assert int(p.argmax()) == 5
    assert torch.all(p[torch.arange(17) != 5] < 1e-20)
    ring5 = sum(1 for fy in range(-16, 16) for fx in range(-16, 16) if round(math.hypot(fy, fx)) == 5)
    assert p[5].item() * ring5 == pytest.approx(0.5)                         # the mean square of a cosine
    assert high_frequency_ratio(img, 5).item() == pytest.approx(1.0)
    assert high_frequency_ratio(img, 6).item() == pytest.approx(0.0, abs=1e-12)
    # two sinusoids of equal amplitude at radii 2 and 7: half the power above radius 4
    two = (_cos(32, 32, 2, 0) + _cos(32, 32, 0, 7))[None, None]
    assert high_frequency_ratio(two, 4).item() == pytest.approx(0.5)
    # per image, and non-square images ring up to min(H, W) // 2
    r, per = radial_power_spectrum(torch.stack([_cos(16, 24, 0, 3), _cos(16, 24, 2, 0)])[:, None], mean=False)
    assert per.shape == (2, 9) and r[-1] == 8 and per[0].argmax() == 3 and per[1].argmax() == 2


def test_spectral_distance_counts_decades():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    assert spectral_distance(x, x) == 0.0
    centred = x - x.mean((2, 3), keepdim=True)
    # ten times the amplitude is a hundred times the power: two decades in every ring away from zero
    assert spectral_distance(10 * centred, centred, r_min=1) == pytest.approx(2.0)
    assert spectral_distance(10 * centred + 0.5, centred + 0.5, r_min=1) == pytest.approx(2.0)


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        radial_power_spectrum(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="floating point"):
        power_spectrum(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="cutoff is a whole radius from 1 to 8"):
        high_frequency_ratio(torch.rand(1, 1, 16, 16), 9)
    with pytest.raises(ValueError, match="same size"):
        spectral_distance(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="zero power"):
        spectral_distance(torch.full((2, 1, 8, 8), 0.5), torch.rand(2, 1, 8, 8))
