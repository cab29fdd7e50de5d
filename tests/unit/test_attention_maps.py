"""Attention weights read as convolution kernels (paper 32, arXiv 2309.05375): closed forms for decay masks,
the equivalence (A V)[n] = sum of K_n * V around n, class tokens, and the mean attention distance."""
import math

import pytest
import torch
import torch.nn.functional as F

from workbench.attention.maps import effective_kernel, mean_attention_distance
from workbench.models import create_model
from workbench.models.retention import decay_as_conv_kernel, manhattan_decay
from workbench.probe import run_with_cache


def test_a_decay_mask_averages_to_the_decay_kernel():
    g = torch.tensor([0.5, 0.8], dtype=torch.float64)
    k = effective_kernel(manhattan_decay(4, 4, g), 4)                   # [2, 7, 7]
    assert torch.allclose(k, decay_as_conv_kernel(g, 3), rtol=1e-12, atol=0)
    # a rectangular grid: gamma^(|dy| + |dx|) for |dy| <= 2, |dx| <= 4
    k = effective_kernel(manhattan_decay(3, 5, 0.6), (3, 5))
    dy, dx = torch.arange(-2, 3).abs(), torch.arange(-4, 5).abs()
    assert k.shape == (5, 9) and torch.allclose(k, 0.6 ** (dy[:, None] + dx[None, :]).float())


def test_one_query_kernel_is_its_row_on_the_offset_grid():
    d = manhattan_decay(3, 4, torch.tensor(0.5, dtype=torch.float64))
    corner = effective_kernel(d, (3, 4), query=(0, 0))                  # keys only below and to the right
    expected = torch.zeros(5, 7, dtype=torch.float64)
    for y in range(3):
        for x in range(4):
            expected[2 + y, 3 + x] = 0.5 ** (y + x)
    assert torch.equal(corner, expected)
    # a hand-made row: query (1, 2) of a 2x3 grid puts 0.7 on itself, 0.2 on (0, 0) and 0.1 on (1, 0)
    a = torch.zeros(6, 6)
    a[5, 5], a[5, 0], a[5, 3] = 0.7, 0.2, 0.1
    k = effective_kernel(a, (2, 3), query=(1, 2))
    assert k.shape == (3, 5) and k[1, 2] == pytest.approx(0.7) and k[0, 0] == pytest.approx(0.2)
    assert k[1, 0] == pytest.approx(0.1) and k.sum() == pytest.approx(1.0)


def test_attention_is_the_convolution_of_v_with_each_querys_kernel():
    """(A V)[n] equals F.conv2d of zero-padded V with K_n, read at n: attention as a per-query convolution."""
    torch.manual_seed(0)
    h, w, c = 3, 4, 5
    a = torch.randn(2, h * w, h * w, dtype=torch.float64).softmax(-1)  # [batch, T, T]
    v = torch.randn(2, h * w, c, dtype=torch.float64)                  # [batch, T, C]
    out = a @ v
    img = v.transpose(1, 2).reshape(2, c, h, w)
    for y in range(h):
        for x in range(w):
            k = effective_kernel(a, (h, w), query=(y, x))               # [batch, 2h-1, 2w-1]
            for b in range(2):
                conv = F.conv2d(img[b:b + 1], k[b].expand(c, 1, -1, -1), padding=(h - 1, w - 1), groups=c)
                assert torch.allclose(conv[0, :, y, x], out[b, y * w + x], atol=1e-12)


def test_class_token_is_dropped_and_the_vit_hook_fits():
    torch.manual_seed(1)
    a = torch.rand(2, 3, 5, 5)
    assert torch.equal(effective_kernel(a, 2, cls_token=True), effective_kernel(a[..., 1:, 1:], 2))
    assert torch.equal(mean_attention_distance(a, 2, cls_token=True), mean_attention_distance(a[..., 1:, 1:], 2))
    vit = create_model("vit_tiny", dim=32, depth=1, heads=2, attn_mask="manhattan").eval()
    _, cache = run_with_cache(vit, torch.randn(2, 3, 32, 32), ["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"]                      # [2, 2, 65, 65]
    assert effective_kernel(pattern, 8, (4, 4), cls_token=True).shape == (2, 2, 15, 15)
    assert mean_attention_distance(pattern, 8, cls_token=True).shape == (2, 2)


def test_mean_attention_distance_hand_cases():
    uniform = torch.full((4, 4), 0.25, dtype=torch.float64)            # 2x2 grid: distances 0, 1, 1, sqrt 2
    assert float(mean_attention_distance(uniform, 2)) == pytest.approx((2 + math.sqrt(2)) / 4, rel=1e-12)
    assert float(mean_attention_distance(uniform, 2, metric="manhattan")) == pytest.approx(1.0, rel=1e-12)
    assert float(mean_attention_distance(torch.eye(9), 3)) == 0.0      # attending to oneself: distance 0
    # a 1x3 grid, rows not summing to one (as a decayed row): each is normalised first
    a = torch.tensor([[0.2, 0.2, 0.0], [0.0, 0.5, 0.5], [0.1, 0.0, 0.0]], dtype=torch.float64)
    assert float(mean_attention_distance(a, (1, 3))) == pytest.approx((0.5 + 0.5 + 2.0) / 3, rel=1e-12)
    # a decay mask looks less far as gamma falls
    near, far = (float(mean_attention_distance(manhattan_decay(6, 6, g), 6)) for g in (0.3, 0.9))
    assert 0 < near < far


def test_bad_input_is_refused_with_the_fix():
    a = torch.rand(5, 5)
    with pytest.raises(ValueError, match="cls_token=True"):
        effective_kernel(a, 2)
    with pytest.raises(ValueError, match="grid must be"):
        effective_kernel(a, (2, 0))
    with pytest.raises(ValueError, match="query must be"):
        effective_kernel(torch.rand(4, 4), 2, query=(2, 0))
    with pytest.raises(ValueError, match="'euclidean', 'manhattan'"):
        mean_attention_distance(torch.rand(4, 4), 2, metric="cosine")
