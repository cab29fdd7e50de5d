"""HaloNet (Vaswani et al. 2021, arXiv 2103.12731): blocked local attention against global attention and
the naive loop, the masking of the padding, relative logits by hand, the layer and model, and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.models import count_parameters, create_model, hook_points
from workbench.models import halonet as H

torch.set_num_threads(1)


def _qkv(h, w, d=5, dv=6, b=2, heads=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, heads, h, w, n, generator=g, dtype=dtype) for n in (d, d, dv)]


def _rel(block, halo, d=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2 * (block + halo) - 1, d, generator=g, dtype=torch.float64) for _ in range(2)]


@pytest.mark.parametrize("h,w,block,halo", [(8, 8, 8, 0), (8, 8, 4, 4), (8, 8, 2, 7), (8, 12, 4, 8), (6, 6, 3, 5)])
def test_a_halo_that_covers_the_image_is_global_attention(h, w, block, halo):
    q, k, v = _qkv(h, w)
    want = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)).view(*q.shape[:4], -1)
    torch.testing.assert_close(H.halo_attention(q, k, v, block, halo), want, rtol=1e-12, atol=1e-12)


def test_a_small_halo_is_not_global_attention():  # the comparison above can fail
    q, k, v = _qkv(8, 8)
    glob = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)).view(*q.shape[:4], -1)
    assert (H.halo_attention(q, k, v, 4, 3) - glob).abs().max() > 1e-3


@pytest.mark.parametrize("h,w,block,halo", [(8, 8, 4, 0), (8, 8, 2, 3), (12, 8, 4, 1), (6, 9, 3, 4), (8, 8, 1, 1),
                                            (16, 16, 8, 3), (4, 4, 4, 2)])
@pytest.mark.parametrize("rel", [False, True])
def test_efficient_equals_the_naive_loop(h, w, block, halo, rel):
    q, k, v = _qkv(h, w, seed=h * w + block + halo)
    rh, rw = _rel(block, halo) if rel else (None, None)
    torch.testing.assert_close(H.halo_attention(q, k, v, block, halo, rh, rw),
                               H.halo_attention_naive(q, k, v, block, halo, rh, rw), rtol=1e-12, atol=1e-12)


def test_relative_logits_by_hand():
    """2x2 image, one 2x2 block, halo 1 (a 4x4 window, 12 of its pixels padding), d = 2: every query sees
    the 4 pixels with logit s q.k + s q.(r_h[dy + 2] + r_w[dx + 2]), s = 1/sqrt(2)."""
    q, k, v = _qkv(2, 2, d=2, dv=1, b=1, heads=1, seed=3)
    rh, rw = _rel(2, 1, d=2, seed=4)
    s = 2 ** -0.5
    out = H.halo_attention(q, k, v, 2, 1, rh, rw)
    pix = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for i, j in pix:
        qi = q[0, 0, i, j].tolist()
        logits = [s * sum(qi[c] * (k[0, 0, y, x, c] + rh[y - i + 2, c] + rw[x - j + 2, c]).item() for c in range(2))
                  for y, x in pix]
        z = sum(math.exp(a) for a in logits)
        want = sum(math.exp(a) / z * v[0, 0, y, x, 0].item() for a, (y, x) in zip(logits, pix))
        assert abs(out[0, 0, i, j, 0].item() - want) < 1e-12


@pytest.mark.parametrize("h,w,block,halo", [(8, 12, 4, 3), (6, 6, 2, 5), (4, 8, 4, 0)])
def test_padded_window_pixels_get_exactly_zero_weight(h, w, block, halo):
    q, k, v = _qkv(h, w)
    rh, rw = _rel(block, halo)
    _, attn = H.halo_attention(q, k, v, block, halo, rh, rw, return_weights=True)
    win = block + 2 * halo
    assert attn.shape == (2, 3, (h // block) * (w // block), block * block, win * win)
    blocks = [(r, c) for r in range(h // block) for c in range(w // block)]
    for n, (r, c) in enumerate(blocks):
        for u in range(win):
            for x in range(win):
                y0, x0 = r * block - halo + u, c * block - halo + x
                a = attn[:, :, n, :, u * win + x]
                if 0 <= y0 < h and 0 <= x0 < w:
                    assert (a > 0).all()
                else:
                    assert (a == 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn[..., 0]))


def test_weights_layout_one_hot_on_the_query_itself_returns_v():
    """A hook that puts all weight on the query's own pixel (window row i + halo, column j + halo) makes the
    output equal v: the weights' block and window orders are the documented ones."""
    block, halo = 2, 1
    q, k, v = _qkv(4, 6)
    win = block + 2 * halo
    own = torch.zeros(block * block, win * win, dtype=torch.float64)
    for i in range(block):
        for j in range(block):
            own[i * block + j, (i + halo) * win + j + halo] = 1.0
    out = H.halo_attention(q, k, v, block, halo, pattern_hook=lambda a: own.expand_as(a))
    torch.testing.assert_close(out, v, rtol=0, atol=0)


def test_gradients_flow_and_match_finite_differences():
    q, k, v = (t.requires_grad_() for t in _qkv(4, 4, d=3, dv=2, b=1, heads=2))
    rh, rw = (t.requires_grad_() for t in _rel(2, 1, d=3))
    assert torch.autograd.gradcheck(lambda *a: H.halo_attention(*a[:3], 2, 1, *a[3:]), (q, k, v, rh, rw))
    H.halo_attention(q, k, v, 2, 1, rh, rw).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v, rh, rw))


def test_layer_shapes_pattern_hook_and_stride():
    torch.manual_seed(0)
    layer = H.HaloAttention(6, 8, heads=2, block=4, halo=2)
    x = torch.randn(3, 6, 8, 12)
    out, cache = wb.run_with_cache(layer, x, ["hook_pattern"])
    assert out.shape == (3, 8, 8, 12)
    assert cache["hook_pattern"].shape == (3, 2, 6, 16, 64)
    strided = H.HaloAttention(6, 8, heads=2, block=4, halo=2, stride=2)
    strided.load_state_dict(layer.state_dict())
    torch.testing.assert_close(strided(x), F.avg_pool2d(layer(x), 2))
    # the layer is the functional on the heads' channels
    q, k = layer.qk(x).view(3, 2, 2, 4, 8, 12).permute(1, 0, 2, 4, 5, 3)
    v = layer.v(x).view(3, 2, 4, 8, 12).permute(0, 1, 3, 4, 2)
    want = H.halo_attention_naive(q, k, v, 4, 2, layer.rel_h, layer.rel_w).permute(0, 1, 4, 2, 3).reshape(3, 8, 8, 12)
    torch.testing.assert_close(out, want)


def test_model_matches_resnet20_parameters_and_has_hook_points():
    m, r = create_model("halonet"), create_model("resnet20")
    assert abs(count_parameters(m) / count_parameters(r) - 1) < 0.10
    assert "halonet" in wb.list_models("halo*")
    names = hook_points(m)
    assert names[0] == "stem" and "layer2.0" in names and "layer3.2.attn2.hook_pattern" in names
    i = names.index("layer1.0.attn1.hook_pattern")  # forward order within a block
    assert names[i:i + 5] == [f"layer1.0.{n}" for n in ("attn1.hook_pattern", "hook_relu1", "attn2.hook_pattern",
                                                         "hook_branch", "hook_out")]
    assert set(m.hook_layers) <= set(names) and len(m.hook_layers) == 1 + 3 * 4
    x = torch.randn(2, 3, 32, 32)
    out, cache = wb.run_with_cache(m, x, ["layer1.0.attn1.hook_pattern", "layer3.0", "hook_pool"])
    assert out.shape == (2, 10)
    assert cache["layer1.0.attn1.hook_pattern"].shape == (2, 4, 64, 16, 64)
    assert cache["layer3.0"].shape == (2, 112, 8, 8)
    torch.testing.assert_close(m.fc(cache["hook_pool"]), out)


def test_model_trains_one_step_with_fit():
    train = wb.load("shapes", "train", subset=32)
    model = create_model("halonet", width=8, depths=(1, 1, 1), heads=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wb.fit(model, train, epochs=1, batch_size=16, lr=0.05, max_steps=1, progress=False, device="cpu")
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert {"layer1.0.attn1.qk.weight", "layer1.0.attn1.rel_h", "layer3.0.attn2.v.weight", "fc.weight"} <= moved


# --- bad input -------------------------------------------------------------------------------------------------------
def test_image_not_divisible_by_block_names_the_sizes_that_work():
    q, k, v = _qkv(12, 8)
    with pytest.raises(ValueError, match=r"12x8 image is not divisible into 3x3 blocks; block sizes that divide it: "
                                         r"\[1, 2, 4\]"):
        H.halo_attention(q, k, v, 3, 1)
    with pytest.raises(ValueError, match="needs image sides that are multiples of 16"):
        create_model("halonet")(torch.zeros(1, 3, 24, 24))
    with pytest.raises(ValueError, match="total stride of 16"):
        create_model("halonet")(torch.zeros(1, 3, 8, 8))


def test_halo_larger_than_the_image():
    q, k, v = _qkv(8, 8)
    with pytest.raises(ValueError, match="halo 9 is larger than the 8x8 image.*halo = 4 already"):
        H.halo_attention(q, k, v, 4, 9)
    with pytest.raises(ValueError, match="halo must be an integer >= 0"):
        H.halo_attention(q, k, v, 4, -1)


@pytest.mark.parametrize("block", [0, -2, 2.0])
def test_block_must_be_a_positive_integer(block):
    q, k, v = _qkv(8, 8)
    with pytest.raises(ValueError, match="block must be an integer >= 1"):
        H.halo_attention(q, k, v, block, 1)
    with pytest.raises(ValueError, match="block must be an integer >= 1"):
        H.HaloAttention(4, 4, heads=2, block=block)


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"dim_out \(10\) must be divisible by heads \(4\); heads that divide it: "
                                         r"\[1, 2, 5, 10\]"):
        H.HaloAttention(8, 10, heads=4)
    with pytest.raises(ValueError, match=r"width \(30\) must be divisible by heads \(4\)"):
        create_model("halonet", width=30)


def test_bad_shapes_and_embeddings():
    q, k, v = _qkv(8, 8)
    with pytest.raises(ValueError, match=r"\[batch, heads, H, W, d\]"):
        H.halo_attention(q[0], k[0], v[0], 4, 1)
    with pytest.raises(ValueError, match="must share"):
        H.halo_attention(q, k[..., :3], v, 4, 1)
    rh, rw = _rel(4, 2)
    with pytest.raises(ValueError, match=r"rel_h and rel_w must have shape \(9, 5\)"):
        H.halo_attention(q, k, v, 4, 1, rh, rw)
    with pytest.raises(ValueError, match="both rel_h and rel_w"):
        H.halo_attention(q, k, v, 4, 2, rh, None)


# --- convolution-attention hybrids (attn_stages) ---------------------------------------------------------------------
def test_without_attention_stages_it_is_resnet20_exactly():
    torch.manual_seed(0)
    res, conv_only = create_model("resnet20"), create_model("halonet", width=16, attn_stages=())
    assert list(conv_only.state_dict()) == list(res.state_dict())
    conv_only.load_state_dict(res.state_dict())
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(conv_only.eval()(x), res.eval()(x), rtol=0, atol=0)
    assert hook_points(conv_only) == hook_points(res)
    assert conv_only.min_input_size is None and conv_only(torch.randn(1, 3, 12, 20)).shape == (1, 10)


def _hybrid_params(width, stages, heads=4, block=4, halo=2, n=3, classes=10):
    """By hand: a 3x3 convolution cin -> cout has 9 cin cout weights, an attention layer 3 cin cout (q, k, v)
    plus 2 (2 (block + halo) - 1) (cout / heads) relative offsets; BatchNorm 2 per channel; a 1x1 shortcut."""
    total, cin = 3 * width * 9 + 2 * width, width                                  # stem
    for s, cout in zip((1, 2, 3), (width, 2 * width, 4 * width)):
        def layer(ci, co):
            if s in stages:
                return 3 * ci * co + 2 * (2 * (block + halo) - 1) * (co // heads) + 2 * co
            return 9 * ci * co + 2 * co
        for b in range(n):
            ci = cin if b == 0 else cout
            total += layer(ci, cout) + layer(cout, cout) + ((ci * cout + 2 * cout) if ci != cout else 0)
        cin = cout
    return total + cin * classes + classes


@pytest.mark.parametrize("stages,width,params", [((3,), 22, 261_128), ((2, 3), 26, 275_792), ((1, 2, 3), 28, 291_770),
                                                 ((), 16, 272_474)])
def test_hybrid_parameter_counts_by_hand_and_near_resnet20(stages, width, params):
    m = create_model("halonet", width=width, attn_stages=stages)
    assert count_parameters(m) == _hybrid_params(width, stages) == params
    assert abs(params / count_parameters(create_model("resnet20")) - 1) < 0.10


def test_hybrid_attends_only_in_its_stages():
    m = create_model("halonet", width=8, depths=(1, 1, 2), heads=2, attn_stages=(3,))
    names = hook_points(m)
    assert "layer3.0.attn1.hook_pattern" in names and "layer3.1.attn2.hook_pattern" in names
    assert not any("hook_pattern" in n for n in names if n.startswith(("layer1", "layer2")))
    assert isinstance(m.layer3[0], H.HaloBlock) and not isinstance(m.layer2[0], H.HaloBlock)
    assert m.min_input_size == 16 and m.attn_stages == (3,)
    out, cache = wb.run_with_cache(m, torch.randn(2, 3, 32, 32), ["layer3.0.attn1.hook_pattern", "layer3.1.attn1.hook_pattern"])
    assert cache["layer3.0.attn1.hook_pattern"].shape == (2, 2, 16, 16, 64)  # strided block: attends at 16x16
    assert cache["layer3.1.attn1.hook_pattern"].shape == (2, 2, 4, 16, 64)
    with pytest.raises(ValueError, match="multiples of 32 \\(stride 4 of its last attention stage x block 8"):
        create_model("halonet", attn_stages=(2, 3), block=8, width=8)(torch.zeros(1, 3, 48, 48))
    assert create_model("halonet", attn_stages=(2,), block=8, width=8, heads=2)(torch.zeros(1, 3, 48, 48)).shape == (1, 10)


@pytest.mark.parametrize("stages", [(0,), (1, 1), (4,), (True,), "3"])
def test_bad_attention_stages(stages):
    with pytest.raises(ValueError, match="attn_stages must name distinct stages among 1, 2, 3"):
        create_model("halonet", attn_stages=stages)


def test_heads_must_divide_the_attention_stages_channels():
    create_model("halonet", width=11, attn_stages=(3,))  # 44 channels: fine, stages 1-2 are convolutions
    with pytest.raises(ValueError, match=r"stage 2's channels \(22 = 2 x width\) must be divisible by heads \(4\)"):
        create_model("halonet", width=11, attn_stages=(2, 3))


# --- window_to_image and time_per_image ------------------------------------------------------------------------------
def test_window_to_image_with_a_covering_halo_is_a_row_of_global_attention():
    q, k, v = _qkv(8, 8)
    _, attn = H.halo_attention(q, k, v, 4, 4, return_weights=True)
    glob = ((q.flatten(2, 3) @ k.flatten(2, 3).transpose(-1, -2)) * 5 ** -0.5).softmax(-1)  # [B, heads, 64, 64]
    for y, x in [(0, 0), (5, 2), (7, 7), (3, 6)]:
        torch.testing.assert_close(H.window_to_image(attn, 8, 8, 4, 4, (y, x)), glob[:, :, y * 8 + x].view(2, 3, 8, 8),
                                   rtol=1e-12, atol=1e-12)


def test_window_to_image_places_the_window_by_hand():
    """6x8 image, block 2, halo 1: query (3, 4) is in block (1, 2); its window covers rows 1-4 and columns 3-6.
    Weights numbered 1..16 over the window land there row-major; the rest of the image is 0."""
    block, halo, h, w = 2, 1, 6, 8
    weights = torch.zeros(1, 12, 4, 16, dtype=torch.float64)
    weights[0, 1 * 4 + 2, 1 * 2 + 0] = torch.arange(1.0, 17.0, dtype=torch.float64)
    img = H.window_to_image(weights, h, w, block, halo, (3, 4))
    want = torch.zeros(1, h, w, dtype=torch.float64)
    want[0, 1:5, 3:7] = torch.arange(1.0, 17.0, dtype=torch.float64).view(4, 4)
    torch.testing.assert_close(img, want, rtol=0, atol=0)
    corner = H.window_to_image(weights.roll(-6, 1), h, w, block, halo, (1, 0))  # block 0: its window starts in the padding
    assert corner.shape == (1, 6, 8) and corner[0, 0, 0] == 6 and corner[0, 2, 2] == 16 and corner[0, 3:].abs().sum() == 0


def test_window_to_image_bad_input():
    with pytest.raises(ValueError, match=r"weights must be \[..., blocks, block\^2, \(block \+ 2 halo\)\^2\] = "
                                         r"\[..., 4, 16, 64\]"):
        H.window_to_image(torch.zeros(1, 4, 16, 36), 8, 8, 4, 2, (0, 0))
    with pytest.raises(ValueError, match="query \\(8, 0\\) lies outside the 8x8 image"):
        H.window_to_image(torch.zeros(1, 4, 16, 64), 8, 8, 4, 2, (8, 0))


class _Slow(torch.nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.fc = seconds, torch.nn.Linear(4, 3)

    def forward(self, x):
        __import__("time").sleep(self.seconds)
        return self.fc(x)


def test_time_per_image_ratios_and_columns():
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    fast, slow = _Slow(0.0), _Slow(0.03)
    table = H.time_per_image({"fast": fast, "slow": slow}, x, y, repeats=2)
    assert list(table.columns) == ["model", "mode", "seconds_per_image", "relative"] and len(table) == 4
    rel = table.set_index(["model", "mode"]).relative
    assert rel["fast", "train"] == 1 and rel["fast", "inference"] == 1
    assert rel["slow", "train"] > 3 and rel["slow", "inference"] > 3  # 30 ms of sleep against well under 10 ms
    assert (table.set_index(["model", "mode"]).seconds_per_image.loc["slow"] >= 0.003).all()
    assert not slow.training and slow.fc.weight.grad is None
    with pytest.raises(ValueError, match="repeats >= 1"):
        H.time_per_image({"fast": fast}, x, y, repeats=0)
    with pytest.raises(ValueError, match="same non-zero number of images"):
        H.time_per_image({"fast": fast}, x, y[:3])
