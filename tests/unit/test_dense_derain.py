"""wb.dense.derain: the SSIM map, the edge/texture mask, SSIM by region, region scores of a model, multiply-adds
and interleaved inference timing (DPENet's notebook)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.data.dataset import ImageDataset
from workbench.dense import (edge_mask, multiply_adds, region_scores, region_ssim, restoration_scores,
                             seconds_per_image, ssim, ssim_map)


def _images(n=3, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, c, h, w, generator=g)
    noisy = (clean + 0.1 * torch.randn(n, c, h, w, generator=g)).clamp(0, 1)
    return noisy, clean


def _reference_ssim_map(x, y):
    """SSIM per pixel from its definition (Wang et al. 2004): Gaussian window 11, std 1.5, reflected borders,
    C1 = 0.01^2, C2 = 0.03^2, in float64; averaged over channels."""
    x, y = x.double(), y.double()
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-t ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(x.shape[1], 1, 11, 11)

    def blur(v):
        return F.conv2d(F.pad(v, (5, 5, 5, 5), mode="reflect"), k, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx.clamp(min=0) + vy.clamp(min=0)
                                                                                   + c2))).mean(1)


def test_ssim_map_means_to_wb_ssim_and_matches_the_definition():
    noisy, clean = _images()
    m = ssim_map(noisy, clean)
    assert m.shape == (3, 16, 16)
    assert torch.allclose(m.mean((1, 2)), ssim(noisy, clean), atol=1e-6)   # the per-image mean is wb.dense.ssim
    assert torch.allclose(m.double(), _reference_ssim_map(noisy, clean), atol=1e-5)
    assert torch.allclose(ssim_map(clean, clean), torch.ones(3, 16, 16), atol=1e-6)   # an image with itself: 1


def test_ssim_map_rejects_bad_input():
    noisy, clean = _images()
    with pytest.raises(ValueError, match="same shape"):
        ssim_map(noisy, clean[:, :, :8])
    with pytest.raises(ValueError, match="same shape"):
        ssim_map(noisy[0], clean[0])
    with pytest.raises(ValueError, match="6x6"):
        ssim_map(noisy[..., :4, :4], clean[..., :4, :4])
    with pytest.raises(TypeError, match="tensors"):
        ssim_map(noisy.numpy(), clean)


def test_edge_mask_of_a_step_image():
    # left half black, right half white: central differences give 0.5 in columns 3 and 4, zero elsewhere
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 1.0
    edges = torch.zeros(1, 8, 8, dtype=torch.bool)
    edges[..., 3:5] = True
    assert torch.equal(edge_mask(img, 0.5), edges)    # the median is 0: the 16 edge pixels lie above it
    assert torch.equal(edge_mask(img, 0.75), edges)   # the 0.75 quantile: 0.125, between 0 and 0.5
    assert not edge_mask(img, 0.8).any()             # the 0.8 quantile is 0.5 itself: nothing strictly above
    assert not edge_mask(torch.full((2, 1, 8, 8), 0.3), 0.5).any()   # a flat image has no edges
    # the grey image is the channel mean: an edge in one channel of three still counts
    one = torch.zeros(1, 3, 8, 8)
    one[:, 0, :, 4:] = 1.0
    assert torch.equal(edge_mask(one, 0.5), edges)


def test_edge_mask_is_per_image_and_marks_the_top_share():
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(4, 3, 16, 16, generator=g)
    imgs[1] *= 0.01                                  # a faint image still has its own top quarter
    m = edge_mask(imgs, 0.75)
    assert m.shape == (4, 16, 16) and m.dtype == torch.bool
    assert torch.equal(m.sum((1, 2)), torch.full((4,), 64))   # 25% of 256 pixels (distinct magnitudes)
    assert torch.equal(edge_mask(imgs[1:2], 0.75), m[1:2])    # the mask of an image does not depend on the batch


def test_edge_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="quantile"):
        edge_mask(torch.rand(1, 3, 8, 8), 1.0)
    with pytest.raises(ValueError, match="quantile"):
        edge_mask(torch.rand(1, 3, 8, 8), -0.1)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        edge_mask(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="2x2"):
        edge_mask(torch.rand(1, 3, 1, 8))


def test_region_ssim_averages_the_map_over_the_regions():
    noisy, clean = _images(seed=2)
    r = region_ssim(noisy, clean, 0.75, 0.25)
    smap = ssim_map(noisy, clean).double()
    edges = edge_mask(clean, 0.75)
    want_edges = torch.stack([smap[i][edges[i]].mean() for i in range(3)]).float()
    assert torch.allclose(r["edges"], want_edges, atol=1e-6)
    flat = ~edge_mask(clean, 0.25)                   # at or below the 0.25 quantile
    want_flat = torch.stack([smap[i][flat[i]].mean() for i in range(3)]).float()
    assert torch.allclose(r["flat"], want_flat, atol=1e-6)
    assert torch.allclose(r["all"], ssim(noisy, clean), atol=1e-6)


def test_region_ssim_with_one_quantile_splits_the_image():
    noisy, clean = _images(seed=3)
    r = region_ssim(noisy, clean, 0.6, 0.6)
    share = edge_mask(clean, 0.6).double().mean((1, 2)).float()
    assert torch.allclose(share * r["edges"] + (1 - share) * r["flat"], r["all"], atol=1e-5)


def test_region_ssim_hand_made_and_edge_cases():
    # restoring a step image perfectly scores 1 in every region; a uniform clean image has no edges: NaN
    img = torch.zeros(2, 3, 16, 16)
    img[..., 8:] = 1.0
    r = region_ssim(img, img)
    for k in ("all", "edges", "flat"):
        assert torch.allclose(r[k], torch.ones(2), atol=1e-6)
    flat_img = torch.full((1, 3, 16, 16), 0.5)
    r = region_ssim(flat_img, flat_img)
    assert math.isnan(float(r["edges"][0])) and float(r["flat"][0]) == pytest.approx(1.0, abs=1e-6)
    # damage on the edge pixels only lowers the edge SSIM far more than the flat SSIM
    g = torch.Generator().manual_seed(0)
    damaged = img.clone()
    damaged[..., 6:10] = torch.rand(2, 3, 16, 4, generator=g)
    r = region_ssim(damaged, img)
    assert float(r["edges"].mean()) < float(r["flat"].mean())
    with pytest.raises(ValueError, match="flat_quantile"):
        region_ssim(img, img, 0.25, 0.75)
    with pytest.raises(ValueError, match="edge_quantile"):
        region_ssim(img, img, 1.5, 0.25)


class _Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.w


def _pairs(n=4, seed=0):
    data = ImageDataset(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(seed)),
                        torch.zeros(n, dtype=torch.long), ["a"], "toy", "test", (0.5,) * 3, (0.25,) * 3)
    return wb.data.paired(data, "rain", 4, seed=0)


def test_region_scores_agree_with_restoration_scores():
    pairs = _pairs()
    for model in (None, _Identity()):
        got = region_scores(model, pairs)
        want = restoration_scores(model, pairs)
        assert set(got) == {"psnr", "ssim", "ssim_edges", "ssim_flat"}
        assert torch.allclose(got["psnr"], want["psnr"], atol=1e-4)
        assert torch.allclose(got["ssim"], want["ssim"], atol=1e-6)
        assert got["ssim_edges"].shape == (4,)
    with pytest.raises(TypeError, match="paired"):
        region_scores(None, (pairs.degraded, pairs.clean))


def test_multiply_adds_of_a_convolution():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    assert multiply_adds(conv, (1, 3, 8, 8)) == 4 * 27 * 64     # out channels x (3 x 3 x 3) x pixels
    assert multiply_adds(conv, (2, 3, 8, 8)) == 2 * 4 * 27 * 64
    with pytest.raises(ValueError, match="shape"):
        multiply_adds(conv, (3, 8, 8))


def test_dpenet_stages_share_the_rain_removal_stage_and_add_cost():
    one = wb.create_model("dpenet_tiny", width=8, stages=1)
    two = wb.create_model("dpenet_tiny", width=8, stages=2, detail_blocks=2)
    assert sum(p.numel() for p in one.parameters()) < sum(p.numel() for p in two.parameters())
    assert multiply_adds(one) < multiply_adds(two)


def test_seconds_per_image_times_every_model_and_restores_modes():
    a, b = nn.Conv2d(3, 3, 3, padding=1), nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    b.eval()
    t = seconds_per_image({"a": a, "b": b}, torch.randn(20, 3, 8, 8), repeats=2, batch_size=8)
    assert set(t) == {"a", "b"} and all(v > 0 and math.isfinite(v) for v in t.values())
    assert a.training and not b.training              # the models' modes are put back
    with pytest.raises(ValueError, match="non-empty"):
        seconds_per_image({}, torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="repeats"):
        seconds_per_image({"a": a}, torch.randn(2, 3, 8, 8), repeats=0)
    with pytest.raises(ValueError, match="images"):
        seconds_per_image({"a": a}, torch.randn(3, 8, 8))
