"""DiMR's comparison tools (workbench/dense/dimr.py): padding, equal multiply-adds, the distortion scores, the
Frechet distance in a classifier's features, the noise-prediction loss per t, the coarse-pass ablation and
TD-LN's weights."""
import math

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.dense import dimr
from workbench.dense import NoiseSchedule


def _ds(n=4, c=1, h=28, w=28):
    images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return wb.data.ImageDataset(images, torch.arange(n) % 2, ["a", "b"], "toy", "train")


def test_pad_images_centres_and_sets_the_normalization():
    ds = _ds()
    p = dimr.pad_images(ds, 32)
    assert p.images.shape == (4, 1, 32, 32) and p.mean == (0.5,) and p.std == (0.5,)
    assert torch.equal(p.images[:, :, 2:30, 2:30], ds.images) and int(p.images.sum()) == int(ds.images.sum())
    assert torch.equal(p.labels, ds.labels)
    assert float(p.normalize(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).max()) == pytest.approx(1.0)
    odd = dimr.pad_images(_ds(h=29, w=29), 32)   # margin 3: one row and column on top/left, two below/right
    assert torch.equal(odd.images[:, :, 1:30, 1:30], _ds(h=29, w=29).images)
    with pytest.raises(ValueError, match="only pads"):
        dimr.pad_images(ds, 16)
    with pytest.raises(TypeError, match="ImageDataset"):
        dimr.pad_images(ds.images, 32)


def test_dit_macs_counts_linear_work_and_width_for_macs_finds_the_width():
    kw = dict(in_chans=1, img_size=16, patch=4, depth=1, heads=2)
    m = wb.create_model("dit_tiny", width=16, **kw)
    d, n, p = 16, 16, 4
    # patch embedding, time MLP, one block (q, k, v, out projections, two attention products, MLP), output layer
    expected = (n * d * p * p + 2 * d * d + n * 4 * d * d + 2 * n * n * d + n * 8 * d * d + 2 * 3 * d * d
                + n * d * p * p)
    assert dimr.dit_macs(m) == expected
    assert m.training                                           # the mode is restored
    assert dimr.width_for_macs(dimr.dit_macs(m), widths=[8, 12, 16, 20], **kw) == (16, expected)
    multi = wb.create_model("dit_tiny", width=16, multires=True, **kw)
    # multi-resolution: no adaLN projections, a coarse embedding (patches 2p: n / 4 of them) and one coarse block
    q = n // 4
    assert dimr.dit_macs(multi) == expected - 2 * 3 * d * d + q * d * (2 * p) ** 2 + 12 * q * d * d + 2 * q * q * d
    with pytest.raises(ValueError, match="chooses the width"):
        dimr.width_for_macs(1000, width=8, **kw)
    with pytest.raises(ValueError, match="positive"):
        dimr.width_for_macs(0, **kw)
    with pytest.raises(ValueError, match="img_size"):
        dimr.dit_macs(nn.Linear(2, 2))


def test_distortion_scores_known_answers():
    class Fixed(nn.Module):                                   # logits log(p): the softmax gives p back
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x.flatten(1)[:, :3].log()

    probs = torch.tensor([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    mp = dimr.max_probability(Fixed(), probs.view(4, 3, 1, 1), batch_size=3)
    assert torch.allclose(mp, torch.tensor([0.5, 0.9, 0.4, 1 / 3]))
    assert dimr.distorted_fraction(mp, 0.5) == 0.5              # 0.4 and 1/3 are below 0.5; 0.5 is not
    assert dimr.distorted_fraction(mp, 0.95) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        dimr.distorted_fraction(mp, 0.0)
    with pytest.raises(ValueError, match="float images"):
        dimr.max_probability(Fixed(), torch.zeros(2, 3, 1, 1, dtype=torch.uint8))


def test_patch_boundary_score_hand_made_images():
    j = torch.arange(8.0)
    ramp = j.expand(8, 8)[None, None]                           # every horizontal step 1, no vertical steps
    assert float(dimr.patch_boundary_score(ramp, 4)) == pytest.approx(1.0)
    # steps of 1 inside a patch and 3 across the border: borders 8 steps of 3 and 8 of 0 (vertical), inside
    # 48 steps of 1 and 48 of 0: (24 / 16) / (48 / 96) = 3
    stepped = (j + 2 * (j // 4)).expand(8, 8)[None, None]
    assert float(dimr.patch_boundary_score(stepped, 4)) == pytest.approx(3.0)
    # transposed, and in three channels: the same
    assert float(dimr.patch_boundary_score(stepped.transpose(-1, -2).expand(1, 3, 8, 8), 4)) == pytest.approx(3.0)
    assert float(dimr.patch_boundary_score(torch.ones(1, 1, 8, 8), 4)) == pytest.approx(1.0)
    blocky = (j // 4).expand(8, 8)[None, None]                  # nothing changes inside a patch
    assert float(dimr.patch_boundary_score(blocky, 4)) > 1e6
    both = torch.cat([ramp, stepped])
    assert dimr.patch_boundary_score(both, 4).shape == (2,)
    with pytest.raises(ValueError, match="divide the image"):
        dimr.patch_boundary_score(ramp, 3)


def test_feature_frechet_is_zero_for_the_same_images_and_positive_otherwise():
    torch.manual_seed(0)
    clf = wb.create_model("resnet8", num_classes=2, in_chans=1).eval()
    a, b = torch.randn(40, 1, 8, 8), torch.randn(40, 1, 8, 8) * 2 + 1
    assert dimr.feature_frechet(clf, a, a) == pytest.approx(0.0, abs=1e-6)
    assert dimr.feature_frechet(clf, a, b) > 0.01


def test_denoising_loss_by_t_exact_for_the_zero_and_oracle_predictors():
    s = NoiseSchedule(100)
    x0 = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    zero = dimr.denoising_loss_by_t(lambda x, t: torch.zeros_like(x), x0, s, [1, 50, 100], seed=7, batch_size=4)
    assert torch.allclose(zero, torch.full((3,), float(noise.double().pow(2).mean()), dtype=torch.float64), atol=1e-12)

    def oracle(x, t):                                           # knows x0: the noise exactly
        a = s.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0[:len(x)]) / (1 - a).sqrt()

    assert dimr.denoising_loss_by_t(oracle, x0, s, [10, 90], seed=7).abs().max() < 1e-10
    with pytest.raises(ValueError, match="1..100"):
        dimr.denoising_loss_by_t(oracle, x0, s, [0])


def test_ablate_coarse_removes_exactly_the_coarse_contribution():
    torch.manual_seed(0)
    kw = dict(in_chans=1, img_size=16, patch=2, width=16, depth=2, heads=2)
    m = wb.create_model("dit_tiny", multires=True, **kw)
    for p in m.parameters():                                    # leave the zero-initialized state
        nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 700])
    full = m(x, t)
    with dimr.ablate_coarse(m):
        cut = m(x, t)
    # by hand: the fine transformer alone, with the same weights
    emb = m.time(wb.models.restore.timestep_embedding(t, 16))
    tok = m.embed(x).flatten(2).transpose(1, 2) + m.pos
    for blk in m.blocks:
        tok = blk(tok, t, emb)
    y = m.out(m.out_norm(tok)).view(2, 8, 8, 1, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(2, 1, 16, 16)
    assert torch.allclose(cut, y, atol=1e-6) and not torch.allclose(full, cut, atol=1e-4)
    assert torch.allclose(m(x, t), full)                        # the hook is gone afterwards
    with pytest.raises(ValueError, match="multires=True"):
        with dimr.ablate_coarse(wb.create_model("dit_tiny", **kw)):
            pass


def test_tdln_weights_closed_form():
    m = wb.create_model("dit_tiny", in_chans=1, img_size=16, patch=2, width=16, depth=2, heads=2, multires=True,
                        steps=100)
    names, w = dimr.tdln_weights(m, [0, 50, 100])
    init = torch.sigmoid(torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64))              # a = 4, b = -2 at init
    assert len(names) == 2 * 2 + 2 * 1 and torch.allclose(w, init.expand_as(w))
    blk = m.blocks[0].n1
    blk.a.data.fill_(2.0), blk.b.data.fill_(-1.0)
    names, w = dimr.tdln_weights(m, [0, 50, 100])
    row = w[names.index("blocks.0.n1")]
    assert torch.allclose(row, torch.tensor([1 / (1 + math.e), 0.5, 1 / (1 + math.exp(-1))], dtype=torch.float64))
    with pytest.raises(ValueError, match="TD-LN"):
        dimr.tdln_weights(wb.create_model("dit_tiny", width=16, depth=1, heads=2), [1])


def test_train_diffusion_is_cached_and_generate_gives_8_bit_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    d = dimr.pad_images(wb.load("fashion_mnist", "train", subset=32, seed=0), 32)
    s = NoiseSchedule(20)
    kw = dict(model_kwargs=dict(width=8, depth=1, heads=2, patch=8), noise=s, seed=0, batch_size=16, epochs=1,
              optimizer="adam", lr=1e-3, weight_decay=0.0)
    a, b = dimr.train_diffusion(d, **kw), dimr.train_diffusion(d, **kw)
    assert a.model.steps == 20 and a.model.in_chans == 1
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)
    g1 = dimr.generate(a.model, s, 5, mean=d.mean, std=d.std, steps=4, seed=1, batch_size=2)
    g2 = dimr.generate(a.model, s, 5, mean=d.mean, std=d.std, steps=4, seed=1)
    assert g1.dtype == torch.uint8 and g1.shape == (5, 1, 32, 32) and torch.equal(g1, g2)
    with pytest.raises(ValueError, match="sets augment"):
        dimr.train_diffusion(d, augment="flip", **kw)
    with pytest.raises(ValueError, match="NoiseSchedule"):
        dimr.train_diffusion(d, **{**kw, "noise": 20})
    with pytest.raises(ValueError, match="one per channel"):
        dimr.generate(a.model, s, 2, mean=(0.5, 0.5), std=(0.5,))


def test_tdln_starts_as_layer_norm_and_learns_a_time_dependence():
    """The two scale (shift) vectors start equal, so a new block is a plain layer norm; the weight differs
    between timesteps, so one step of training parts them and gives a and b a gradient (with a = b = 0 the
    weight would be 0.5 at every t, the two vectors would get equal gradients and never part)."""
    torch.manual_seed(0)
    m = wb.create_model("dit_tiny", in_chans=1, img_size=16, patch=2, width=16, depth=1, heads=2, multires=True,
                        steps=100)
    norm = m.blocks[0].n1
    x, t = torch.randn(4, 5, 16), torch.tensor([0, 30, 70, 100])
    y, _ = norm(x, t, None)
    assert torch.allclose(y, torch.nn.functional.layer_norm(x, (16,)), atol=1e-6)
    (y * torch.randn_like(y)).sum().backward()
    assert not torch.allclose(norm.gamma.grad[0], norm.gamma.grad[1])
    assert not torch.allclose(norm.beta.grad[0], norm.beta.grad[1])
    torch.optim.SGD(norm.parameters(), lr=0.1).step()
    norm.zero_grad()
    y, _ = norm(x, t, None)
    (y * torch.randn_like(y)).sum().backward()
    assert float(norm.a.grad.abs()) > 0 and float(norm.b.grad.abs()) > 0


def test_tdln_time_change_is_zero_at_init_and_the_closed_form_after():
    m = wb.create_model("dit_tiny", in_chans=1, img_size=16, patch=2, width=4, depth=1, heads=2, multires=True,
                        steps=100)
    names, change = dimr.tdln_time_change(m, 1, 100)
    assert len(names) == 4 and torch.equal(change, torch.zeros(4, dtype=torch.float64))   # the two vectors equal
    blk = m.blocks[0].n1
    with torch.no_grad():
        blk.gamma[0] = torch.tensor([1.0, 1.0, 2.0, 1.0])                       # |gamma_0 - gamma_1| = 0, 0, 1, 0
        blk.beta[1] = torch.tensor([0.0, -1.0, 0.0, 1.0])                       # |beta_0 - beta_1| = 0, 1, 0, 1
        blk.a.fill_(2.0), blk.b.fill_(0.0)
    names, change = dimr.tdln_time_change(m, 0, 100)
    want = (1 / (1 + math.exp(-2)) - 0.5) * (3 / 4)
    assert math.isclose(float(change[names.index("blocks.0.n1")]), want, rel_tol=1e-9)

