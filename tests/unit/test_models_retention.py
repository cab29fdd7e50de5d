"""Attention with a spatial prior (papers 44, RMT, and 32, RetNet viewed through convolution): the decay
masks' closed forms, MaSA with constant scores as a convolution, the limits gamma -> 0 and gamma = 1,
rmt_tiny, and the ViT's attn_mask options (bit-identical without a mask)."""
import math

import pytest
import torch
import torch.nn.functional as F

from workbench.models import count_parameters, create_model, hook_points
from workbench.models.retention import (ManhattanAttention, axis_decay, decay_as_conv_kernel, gaussian_mixture_mask,
                                        head_gammas, manhattan_decay)
from workbench.models.vit import Attention
from workbench.probe import run_with_cache

# Manhattan distances between the 16 tokens of a 4x4 grid, row-major, written out by hand
DIST_4X4 = torch.tensor([
    [0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6],
    [1, 0, 1, 2, 2, 1, 2, 3, 3, 2, 3, 4, 4, 3, 4, 5],
    [2, 1, 0, 1, 3, 2, 1, 2, 4, 3, 2, 3, 5, 4, 3, 4],
    [3, 2, 1, 0, 4, 3, 2, 1, 5, 4, 3, 2, 6, 5, 4, 3],
    [1, 2, 3, 4, 0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5],
    [2, 1, 2, 3, 1, 0, 1, 2, 2, 1, 2, 3, 3, 2, 3, 4],
    [3, 2, 1, 2, 2, 1, 0, 1, 3, 2, 1, 2, 4, 3, 2, 3],
    [4, 3, 2, 1, 3, 2, 1, 0, 4, 3, 2, 1, 5, 4, 3, 2],
    [2, 3, 4, 5, 1, 2, 3, 4, 0, 1, 2, 3, 1, 2, 3, 4],
    [3, 2, 3, 4, 2, 1, 2, 3, 1, 0, 1, 2, 2, 1, 2, 3],
    [4, 3, 2, 3, 3, 2, 1, 2, 2, 1, 0, 1, 3, 2, 1, 2],
    [5, 4, 3, 2, 4, 3, 2, 1, 3, 2, 1, 0, 4, 3, 2, 1],
    [3, 4, 5, 6, 2, 3, 4, 5, 1, 2, 3, 4, 0, 1, 2, 3],
    [4, 3, 4, 5, 3, 2, 3, 4, 2, 1, 2, 3, 1, 0, 1, 2],
    [5, 4, 3, 4, 4, 3, 2, 3, 3, 2, 1, 2, 2, 1, 0, 1],
    [6, 5, 4, 3, 5, 4, 3, 2, 4, 3, 2, 1, 3, 2, 1, 0]], dtype=torch.float64)


def test_decay_masks_match_their_closed_forms():
    assert torch.equal(manhattan_decay(4, 4, torch.tensor(0.5, dtype=torch.float64)), 0.5 ** DIST_4X4)
    per_head = manhattan_decay(4, 4, torch.tensor([0.5, 0.9], dtype=torch.float64))
    assert per_head.shape == (2, 16, 16) and torch.allclose(per_head[1], 0.9 ** DIST_4X4, rtol=1e-12, atol=0)
    assert torch.equal(axis_decay(3, 0.5), torch.tensor([[1, .5, .25], [.5, 1, .5], [.25, .5, 1]]))
    # the 2-D decay is separable: D = D^H (x) D^W on a 3x5 grid, row-major
    assert torch.allclose(manhattan_decay(3, 5, 0.7), torch.kron(axis_decay(3, 0.7), axis_decay(5, 0.7)))
    assert torch.equal(decay_as_conv_kernel(0.5, 1), torch.tensor([[.25, .5, .25], [.5, 1, .5], [.25, .5, .25]]))
    # RMT's per-head decays 1 - 2^(-2 - 4 h / 4): 1 - 1/4, 1 - 1/8, 1 - 1/16, 1 - 1/32
    assert head_gammas(4).tolist() == [0.75, 0.875, 0.9375, 0.96875]
    assert head_gammas(3, 2, 6).tolist() == pytest.approx([0.75, 0.9375, 1 - 2 ** -6])


def test_gaussian_mixture_mask_closed_form():
    alpha, sigma = torch.tensor([[0.5, 2.0]]), torch.tensor([[1.0, 2.0]])
    m = gaussian_mixture_mask(1, 3, alpha, sigma)                                        # patches at x = 0, 1, 2
    g = lambda d2: 0.5 * math.exp(-d2 / (2 * (1 + 1e-5))) + 2 * math.exp(-d2 / (2 * (4 + 1e-5)))  # noqa: E731
    assert m.shape == (1, 3, 3)
    expected = torch.tensor([[g(0), g(1), g(4)], [g(1), g(0), g(1)], [g(4), g(1), g(0)]])
    assert torch.allclose(m[0], expected, rtol=1e-6, atol=0)
    # a single Gaussian of infinite width and weight 1 is the constant 1, exactly
    assert torch.equal(gaussian_mixture_mask(2, 2, torch.ones(3, 1), torch.full((3, 1), math.inf)), torch.ones(3, 4, 4))


def _value_only(dim: int, heads: int, **kwargs) -> ManhattanAttention:
    """MaSA whose queries and keys are zero (constant scores), V = x and an identity output projection."""
    m = ManhattanAttention(dim, heads, lce=False, **kwargs).double()
    with torch.no_grad():
        m.qkv.weight.zero_(), m.qkv.bias.zero_(), m.proj.bias.zero_()
        m.qkv.weight[2 * dim:].copy_(torch.eye(dim))
        m.proj.weight.copy_(torch.eye(dim))
    return m


def test_masa_with_constant_scores_is_a_depthwise_convolution():
    """Paper 32's point: with q = k = 0 the decayed attention IS a convolution of V with gamma^(|i|+|j|)."""
    torch.manual_seed(0)
    dim, heads, h, w = 6, 2, 5, 4
    gammas = torch.tensor([0.6, 0.85], dtype=torch.float64)
    x = torch.randn(2, dim, h, w, dtype=torch.float64)
    r = max(h, w) - 1
    kernel = decay_as_conv_kernel(gammas, r).repeat_interleave(dim // heads, 0)[:, None]  # [C, 1, 2r+1, 2r+1]
    conv = F.conv2d(x, kernel, padding=r, groups=dim)
    rowsum = F.conv2d(torch.ones(1, dim, h, w, dtype=torch.float64), kernel, padding=r, groups=dim)
    for decomposed in (False, True):
        paper = _value_only(dim, heads, decomposed=decomposed, gammas=gammas)(x)
        assert torch.allclose(paper, conv / (h * w), rtol=0, atol=1e-13)     # softmax = 1/N, times D
        renorm = _value_only(dim, heads, decomposed=decomposed, gammas=gammas, renormalize=True)(x)
        assert torch.allclose(renorm, conv / rowsum, rtol=0, atol=1e-13)      # rows of D normalised to 1


def test_gamma_to_zero_leaves_each_token_with_itself():
    """gamma -> 0: D -> I. The paper's form keeps softmax's diagonal, p_nn v_n (no renormalisation);
    the renormalised form is the identity on V."""
    torch.manual_seed(1)
    dim, heads, h, w = 4, 2, 3, 3
    x = torch.randn(2, dim, h, w, dtype=torch.float64)
    tiny = torch.full((heads,), 1e-30, dtype=torch.float64)
    m = _value_only(dim, heads, gammas=tiny)
    with torch.no_grad():
        m.qkv.weight[:2 * dim].normal_()                                      # non-trivial scores
    _, cache = run_with_cache(m, x, ["hook_pattern"])
    pattern = cache["hook_pattern"]                                           # [batch, heads, 9, 9]
    t = x.flatten(2).transpose(1, 2)
    q, k = (t @ m.qkv.weight[i * dim:(i + 1) * dim].T for i in (0, 1))
    q, k = (z.view(2, h * w, heads, dim // heads).transpose(1, 2) for z in (q, k))
    p = (q @ k.transpose(-1, -2) / math.sqrt(dim // heads)).softmax(-1)
    diag = p.diagonal(dim1=-2, dim2=-1)
    assert torch.allclose(pattern.diagonal(dim1=-2, dim2=-1), diag, rtol=1e-12, atol=0)   # p_nn kept, not 1
    assert (pattern - torch.diag_embed(pattern.diagonal(dim1=-2, dim2=-1))).abs().max() < 1e-25
    assert diag.max() < 1
    expected = diag.repeat_interleave(dim // heads, 1).view(2, dim, h, w) * x
    assert torch.allclose(m(x), expected, atol=1e-12)
    for decomposed in (False, True):
        r = _value_only(dim, heads, gammas=tiny, renormalize=True, decomposed=decomposed)
        with torch.no_grad():
            r.qkv.weight[:2 * dim].normal_()
        assert torch.allclose(r(x), x, atol=1e-12)


def test_masa_matches_torch_attention_at_gamma_one_and_renormalized():
    torch.manual_seed(2)
    dim, heads, h, w = 8, 2, 3, 4
    x = torch.randn(2, h * w, dim, dtype=torch.float64)

    def sdpa(m, mask=None):  # the tool a user would pick: torch's attention with an additive float mask
        q, k, v = m.qkv(x).view(2, h * w, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        return m.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(2, h * w, dim))

    plain = ManhattanAttention(dim, heads, lce=False, decay=False).double()
    assert torch.equal(plain.gammas, torch.ones(heads, dtype=torch.float64))
    assert torch.allclose(plain(x, grid=(h, w)), sdpa(plain), atol=1e-12)
    # RMT's released code: softmax(S + log D), i.e. the paper's weights renormalised per row
    renorm = ManhattanAttention(dim, heads, lce=False, renormalize=True).double()
    log_d = manhattan_decay(h, w, renorm.gammas).log()
    assert torch.allclose(renorm(x, grid=(h, w)), sdpa(renorm, log_d), atol=1e-12)
    # the image and token interfaces agree, and LCE adds a depthwise convolution of V
    lce = ManhattanAttention(dim, heads, decomposed=True).double()
    img = x.transpose(1, 2).reshape(2, dim, h, w)
    assert torch.allclose(lce(img), lce(x, grid=(h, w)).transpose(1, 2).reshape(2, dim, h, w), atol=1e-12)
    no_lce = ManhattanAttention(dim, heads, decomposed=True, lce=False).double()
    no_lce.load_state_dict({k: v for k, v in lce.state_dict().items() if not k.startswith("lce")})
    assert not torch.allclose(lce(img), no_lce(img))
    assert count_parameters(lce) - count_parameters(no_lce) == dim * 25 + dim


def test_rmt_tiny_shapes_hooks_and_parameter_match():
    torch.manual_seed(0)
    m = create_model("rmt_tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 10)
    assert {"stem", "blocks.0", "blocks.5", "blocks.0.attn.hook_pattern_w", "blocks.5.attn.hook_pattern",
            "hook_pool"} <= set(hook_points(m))
    _, cache = run_with_cache(m, x, ["blocks.0.attn.hook_pattern_w", "blocks.2.attn.hook_pattern_h",
                                     "blocks.5.attn.hook_pattern", "blocks.5"])
    assert cache["blocks.0.attn.hook_pattern_w"].shape == (2, 2, 16, 16, 16)   # 16x16 tokens, rows of 16
    assert cache["blocks.2.attn.hook_pattern_h"].shape == (2, 4, 8, 8, 8)
    full = cache["blocks.5.attn.hook_pattern"]
    assert full.shape == (2, 8, 16, 16) and cache["blocks.5"].shape == (2, 128, 4, 4)
    assert (full.sum(-1) < 1).all() and (full.sum(-1) > 0).all()                # the paper's D after softmax
    # parameter-matched ViT named in the docstring
    vit = create_model("vit_tiny", dim=96, depth=7, heads=3)
    assert abs(count_parameters(m) / count_parameters(vit) - 1) < 0.15
    # decay=False: the same parameters, plain softmax attention
    torch.manual_seed(0)
    flat = create_model("rmt_tiny", decay=False).eval()
    assert count_parameters(flat) == count_parameters(m)
    flat.load_state_dict(m.state_dict())
    assert all(torch.equal(b.attn.gammas, torch.ones_like(b.attn.gammas)) for b in flat.blocks)
    assert not torch.allclose(flat(x), m(x))
    assert create_model("rmt_tiny", dims=(16, 32), depths=(1, 1), heads=(1, 2), decomposed=(True, False),
                        heads_ranges=(4, 6))(torch.randn(1, 3, 12, 20)).shape == (1, 10)


def _old_attention_forward(self, x):  # vit.Attention.forward before attn_mask existed, copied verbatim
    b, t, d = x.shape
    q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    p = self.dropout if self.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    return self.proj(out.transpose(1, 2).reshape(b, t, d))


def _vit(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model("vit_tiny", dim=24, depth=2, heads=2, img_size=16, patch=4, **kw).eval()


def test_vit_without_mask_is_bit_identical_to_before():
    x = torch.randn(3, 3, 16, 16)
    new = _vit()
    old = _vit()
    for blk in old.blocks:
        blk.attn.forward = _old_attention_forward.__get__(blk.attn)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))
    # the same seed gives the same weights whatever the mask (the masks' initial values use no randomness)
    for mask in ("manhattan", "elm", "gmm"):
        masked = _vit(attn_mask=mask).state_dict()
        assert all(torch.equal(v, masked[k]) for k, v in new.state_dict().items())
    # a hook on hook_pattern switches to explicit weights: rows sum to 1, same output up to rounding
    out, cache = run_with_cache(new, x, ["blocks.1.attn.hook_pattern"])
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 2, 17, 17)
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"].sum(-1), torch.ones(3, 2, 17))
    assert torch.allclose(out, old(x), atol=1e-6) and not torch.equal(cache["blocks.1.attn.hook_pattern"], 0 * out)


def test_vit_masks_that_are_one_change_nothing():
    x = torch.randn(3, 3, 16, 16)
    ref = _vit()
    for blk in ref.blocks:                                    # force the explicit path, the masks' own
        blk.attn.hook_pattern.register_forward_hook(lambda *a: None)
    elm, gmm, man = _vit(attn_mask="elm"), _vit(attn_mask="gmm"), _vit(attn_mask="manhattan")
    with torch.no_grad():
        for blk in gmm.blocks:
            blk.attn.gmm_alpha.copy_(torch.tensor([1.0, 0, 0, 0, 0])), blk.attn.gmm_sigma.fill_(math.inf)
        for blk in man.blocks:
            blk.attn.gammas.fill_(1.0)
        expected = ref(x)
        for m in (elm, gmm, man):
            assert torch.equal(m(x), expected)
        assert torch.allclose(expected, _vit()(x), atol=1e-6)
    # the initial masks do change the attention (scores made large enough to matter: at init they are near 0)
    plain = _vit()
    for mask in ("gmm", "manhattan"):
        m = _vit(attn_mask=mask)
        with torch.no_grad():
            for a, b in zip(plain.blocks, m.blocks):
                b.attn.qkv.weight.copy_(a.attn.qkv.weight.normal_())
            assert not torch.allclose(m(x), plain(x), atol=1e-3)


def test_vit_mask_patterns_and_parameter_counts():
    x = torch.randn(2, 3, 16, 16)
    base = count_parameters(_vit())
    t, heads, depth = 16, 2, 2                                # 4x4 patches
    assert count_parameters(_vit(attn_mask="elm")) - base == depth * heads * t * t
    assert count_parameters(_vit(attn_mask="gmm")) - base == depth * heads * 2 * 5
    assert count_parameters(_vit(attn_mask="gmm", gmm_kernels=3)) - base == depth * heads * 2 * 3
    assert count_parameters(_vit(attn_mask="manhattan")) == base
    man = _vit(attn_mask="manhattan")
    _, cache = run_with_cache(man, x, ["blocks.0.attn.hook_pattern"])
    a = cache["blocks.0.attn.hook_pattern"]                   # [batch, heads, 17, 17]
    plain = _vit()
    plain.blocks[0].attn.hook_pattern.register_forward_hook(lambda *a: None)
    _, ref = run_with_cache(plain, x, ["blocks.0.attn.hook_pattern"])
    p = ref["blocks.0.attn.hook_pattern"]
    d = manhattan_decay(4, 4, head_gammas(heads))
    assert torch.allclose(a[..., 1:, 1:], p[..., 1:, 1:] * d, atol=1e-7)      # patches: softmax * D
    assert torch.allclose(a[..., 0, :], p[..., 0, :]) and torch.allclose(a[..., :, 0], p[..., :, 0])  # class token
    # gradients reach the learnable masks
    gmm = _vit(attn_mask="gmm").train()
    gmm(x).square().sum().backward()
    assert gmm.blocks[0].attn.gmm_sigma.grad.abs().sum() > 0 and gmm.blocks[0].attn.gmm_alpha.grad.abs().sum() > 0


def test_bad_input_names_the_fix():
    for g in (0.0, 1.5, -0.2, [0.5, 0.0]):
        with pytest.raises(ValueError, match=r"gamma must lie in \(0, 1\]"):
            manhattan_decay(3, 3, g)
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, 1\]"):
        ManhattanAttention(8, 2, gammas=[0.5, 2.0])
    with pytest.raises(ValueError, match="one value per head"):
        ManhattanAttention(8, 2, gammas=[0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="valid values: 'none', 'manhattan', 'elm', 'gmm'"):
        create_model("vit_tiny", attn_mask="gaussian")
    with pytest.raises(ValueError, match="gmm_kernels must be a positive integer"):
        create_model("vit_tiny", attn_mask="gmm", gmm_kernels=0)
    with pytest.raises(ValueError, match="needs grid"):
        Attention(8, 2, attn_mask="elm")
    with pytest.raises(ValueError, match=r"built for a 4x4 patch grid plus a class token \(17 tokens\), got 10"):
        Attention(8, 2, attn_mask="manhattan", grid=4)(torch.randn(1, 10, 8))
    with pytest.raises(ValueError, match=r"grid 3x3 has 9 tokens but the input has 12"):
        ManhattanAttention(8, 2)(torch.randn(1, 12, 8), grid=(3, 3))
    with pytest.raises(ValueError, match="or tokens"):
        ManhattanAttention(8, 2)(torch.randn(1, 12, 8))
    with pytest.raises(ValueError, match="one entry per stage"):
        create_model("rmt_tiny", dims=(16, 32))
    with pytest.raises(ValueError, match="total stride of 8"):
        create_model("rmt_tiny")(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="in_chans=1"):
        create_model("rmt_tiny")(torch.randn(1, 1, 32, 32))
