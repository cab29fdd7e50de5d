"""wb.dense.compare: the single-resolution residual denoiser, width matching, mixed-level pairs, scoring and the
cached restoration training."""
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.data import paired
from workbench.dense import (mixed_pairs, psnr, restoration_scores, restore, train_restorer,
                             width_for_parameters)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_residual_denoiser_counts_and_is_the_identity_plus_a_correction():
    # head 3->w (27w + w), blocks x 2 convs (9w^2 + w), tail w->3 (27w + 3): a closed form
    for w, b in [(8, 0), (8, 2), (5, 3)]:
        m = wb.create_model("residual_denoiser", width=w, blocks=b)
        assert _count(m) == 27 * w + w + b * 2 * (9 * w * w + w) + 27 * w + 3
    m = wb.create_model("residual_denoiser", width=4, blocks=1)
    nn.init.zeros_(m.tail.weight), nn.init.zeros_(m.tail.bias)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(m(x), x)  # a zero correction returns the input: residual learning
    with pytest.raises(ValueError, match="width"):
        wb.create_model("residual_denoiser", width=0)
    with pytest.raises(ValueError, match="in_chans=1"):
        wb.create_model("residual_denoiser")(torch.randn(1, 1, 8, 8))


def test_width_for_parameters_finds_the_closest_width():
    # blocks=0: 27w + w + 27w + 3 = 55w + 3; 443 is w = 8 exactly, 470 lies nearer 8 (443) than 9 (498)
    assert width_for_parameters("residual_denoiser", 443, blocks=0) == (8, 443)
    assert width_for_parameters("residual_denoiser", 470, blocks=0) == (8, 443)
    assert width_for_parameters("residual_denoiser", 471, blocks=0) == (9, 498)
    assert width_for_parameters("residual_denoiser", 1, blocks=0) == (2, 113)  # below the smallest width
    n = _count(wb.create_model("mirnet_tiny", width=16, blocks=2))
    w, got = width_for_parameters("unet", n, levels=2, residual=True)
    assert _count(wb.create_model("unet", width=w, levels=2, residual=True)) == got
    assert abs(got - n) / n < 0.05
    with pytest.raises(ValueError, match="target"):
        width_for_parameters("unet", 0)
    with pytest.raises(ValueError, match="leave it out"):
        width_for_parameters("unet", 1000, width=4)


def test_mixed_pairs_take_each_level_pixels_from_paired():
    d = wb.load("cifar10", "train", subset=9)
    mixed = mixed_pairs(d, [2, 3, 5], seed=4)
    assert len(mixed) == 9 and torch.equal(mixed.clean, d.images)
    for k, s in enumerate([2, 3, 5]):
        ref = paired(d, "gaussian", s, seed=4)
        assert torch.equal(mixed.degraded[k::3], ref.degraded[k::3])
    one = mixed_pairs(d, [3], seed=4)
    assert torch.equal(one.degraded, paired(d, "gaussian", 3, seed=4).degraded)
    with pytest.raises(ValueError, match="severities"):
        mixed_pairs(d, [])


def test_restoration_scores_match_the_metrics_and_the_identity_scores_the_input():
    d = wb.load("cifar10", "test", subset=6)
    pairs = paired(d, "gaussian", 3, seed=0)
    clean, noisy = d.images.float() / 255, pairs.degraded.float() / 255
    ident = wb.create_model("residual_denoiser", width=4, blocks=0)
    nn.init.zeros_(ident.tail.weight), nn.init.zeros_(ident.tail.bias)
    out = restore(ident, pairs)
    assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, noisy, atol=1e-5)  # normalizing and back is the identity
    s_in = restoration_scores(None, pairs)
    s_id = restoration_scores(ident, pairs)
    assert torch.allclose(s_in["psnr"], psnr(noisy, clean))
    assert torch.allclose(s_id["psnr"], s_in["psnr"], atol=1e-3)
    assert torch.allclose(s_id["ssim"], s_in["ssim"], atol=1e-4)
    # by hand: sigma 25 noise clipped to [0, 255] is a PSNR a little above 20 log10(255 / 25) = 20.17 dB
    assert 19.5 < float(s_in["psnr"].mean()) < 21.5
    with pytest.raises(TypeError, match="paired"):
        restore(ident, d)


def test_train_restorer_trains_caches_and_refuses_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    d = wb.load("cifar10", "train", subset=64)
    pairs = mixed_pairs(d, [2, 5])
    kw = dict(model_kwargs=dict(width=8, blocks=1), seed=0, batch_size=16, epochs=4, optimizer="adam", lr=3e-3,
              weight_decay=0.0)
    first = train_restorer("residual_denoiser", pairs, pairs, **kw)
    again = train_restorer("residual_denoiser", pairs, pairs, **kw)  # from the cache
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert list(first.history["test_psnr"]) == list(again.history["test_psnr"])
    assert first.history["test_psnr"].iloc[-1] > first.history["test_psnr"].iloc[0]  # it learns
    with pytest.raises(TypeError, match="PairedImages"):
        train_restorer("residual_denoiser", d)
    with pytest.raises(ValueError, match="task"):
        train_restorer("residual_denoiser", pairs, task=None)


def test_skff_weights_are_the_softmax_the_fusion_computes():
    from workbench.dense import skff_weights
    torch.manual_seed(0)
    m = wb.create_model("mirnet_tiny", width=8, blocks=1)
    pairs = paired(wb.load("cifar10", "test", subset=5), "gaussian", 3)
    w = skff_weights(m, pairs, batch_size=2)
    assert set(w) == {"blocks.0.exchange.0", "blocks.0.exchange.1", "blocks.0.exchange.2", "blocks.0.final"}
    for v in w.values():
        assert v.shape == (3,) and abs(float(v.sum()) - 1) < 1e-5
    # zero selection layers: every stream gets 1/3 exactly
    final = m.blocks[0].final
    for conv in final.select:
        nn.init.zeros_(conv.weight), nn.init.zeros_(conv.bias)
    assert torch.allclose(skff_weights(m, pairs)["blocks.0.final"], torch.full((3,), 1 / 3))
    # a large bias on the quarter-resolution stream's selector: it takes (nearly) everything
    nn.init.constant_(final.select[2].bias, 30.0)
    assert float(skff_weights(m, pairs)["blocks.0.final"][2]) > 0.999
    with pytest.raises(ValueError, match="SKFF"):
        skff_weights(wb.create_model("residual_denoiser", width=4, blocks=1), pairs)


def test_train_restorer_refuses_an_unnamed_function_in_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    pairs = paired(wb.load("cifar10", "train", subset=8), "gaussian", 3)
    with pytest.raises(ValueError, match="cache_key"):
        train_restorer("residual_denoiser", pairs, model_kwargs=dict(width=4, blocks=0), optimizer=torch.optim.Adam)
