"""ResGen's pieces in workbench.dense.resgen: the reconstruction task, PSNR by levels, the cached training of
both models, decoding samples, and the fewest steps within a target."""
from __future__ import annotations

import math

import pytest
import torch

import workbench as wb
from workbench.data import ImageDataset
from workbench.dense import resgen as R


def _images(n: int = 32, side: int = 8, chans: int = 1, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, chans, side, side), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.zeros(n, dtype=torch.long), ["x"], "noise", "train", (0.5,) * chans,
                        (0.25,) * chans)


def test_reconstruction_loss_and_psnr_by_hand():
    ae = wb.create_model("rvq_autoencoder", in_chans=1, width=4, dim=2, depth=1, size=4)
    task = R.Reconstruction(commitment_weight=2.0)
    data = _images()
    task.check_data(ae, data)
    x = torch.zeros(2, 1, 4, 4)
    recon = torch.full((2, 1, 4, 4), 0.4)              # normalized units: 0.4 * std 0.25 = 0.1 in [0, 1] units
    loss = task.loss((recon, torch.tensor(0.5)), (x, None))
    assert math.isclose(float(loss), 0.16 + 2 * 0.5, rel_tol=1e-6)          # MSE + weight x commitment
    sums, n = task.metrics((recon, torch.tensor(0.5)), (x, None), loss)
    assert n == 2 and math.isclose(float(sums["psnr"]) / n, 20.0, rel_tol=1e-5)   # -10 log10(0.01) = 20 dB
    assert task.config() == {"name": "Reconstruction", "commitment_weight": 2.0}


def test_reconstruction_refuses_bad_models_data_and_weights():
    ae = wb.create_model("rvq_autoencoder", in_chans=1, width=4, dim=2, depth=1, size=4)
    with pytest.raises(ValueError, match="commitment_weight"):
        R.Reconstruction(-1.0)
    with pytest.raises(ValueError, match="rvq_autoencoder"):
        R.Reconstruction().check_data(wb.create_model("resnet8", num_classes=2), _images())
    with pytest.raises(ValueError, match="in_chans=3"):
        R.Reconstruction().check_data(ae, _images(chans=3))
    with pytest.raises(ValueError, match="multiples of 4"):
        R.Reconstruction().check_data(ae, _images(side=10))
    with pytest.raises(ValueError, match="ImageDataset"):
        R.Reconstruction().check_data(ae, torch.zeros(4, 1, 8, 8))


def test_level_psnr_decodes_the_first_levels_and_matches_a_hand_computation():
    torch.manual_seed(0)
    ae = wb.create_model("rvq_autoencoder", in_chans=1, width=4, dim=2, depth=3, size=4).eval()
    data = _images(n=6)
    got = R.level_psnr(ae, data, batch_size=4)
    assert len(got) == 3
    x = data.normalize(data.images)
    codes = ae.encode(x)
    for d in range(3):
        diff = (ae.decode_codes(codes[..., :d + 1]) - x) * 0.25
        want = float((-10 * torch.log10(diff.detach().pow(2).mean((1, 2, 3)))).mean())
        assert math.isclose(got[d], want, rel_tol=1e-5)
    with torch.no_grad():
        full = float((-10 * torch.log10(((ae(x) - x) * 0.25).pow(2).mean((1, 2, 3)))).mean())
    assert math.isclose(got[-1], full, rel_tol=1e-4)                        # all levels: the forward pass
    with pytest.raises(ValueError, match="ImageDataset"):
        R.level_psnr(ae, x)
    with pytest.raises(ValueError, match="rvq_autoencoder"):
        R.level_psnr(torch.nn.Linear(2, 2), data)


def test_training_both_models_is_cached_and_samples_decode_to_images(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    data = _images(n=64)
    fit = dict(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0, augment=None)
    ae, hist = R.train_rvq_autoencoder(data, depth=2, size=4, dim=2, width=4, seed=0, **fit)
    assert {"train_loss", "train_psnr"} <= set(hist.columns) and not ae.training
    again, _ = R.train_rvq_autoencoder(data, depth=2, size=4, dim=2, width=4, seed=0, **fit)
    assert all(torch.equal(a, b) for a, b in zip(ae.state_dict().values(), again.state_dict().values()))
    tokens = wb.dense.encode_tokens(ae, data)
    assert tokens.codes.shape == (64, 2, 2, 2)
    for head in ("tokens", "collective"):
        gen, h = R.train_token_generator(ae, tokens, head, width=8, layers=1, heads=2, seed=0, batch_size=16,
                                         epochs=1)
        assert gen.head == head and gen.codebooks_loaded and torch.equal(gen.codebooks, ae.quantizer.codebooks)
        assert math.isfinite(float(h["train_loss"].iloc[-1]))
        images = R.generate_images(gen, ae, data, 5, 3, seed=1, batch_size=2)
        assert images.shape == (5, 1, 8, 8) and images.dtype == torch.uint8
        assert torch.equal(images, R.generate_images(gen, ae, data, 5, 3, seed=1, batch_size=2))  # seeded
    with pytest.raises(ValueError, match="encode_tokens"):
        R.train_token_generator(ae, tokens.codes, "tokens")
    with pytest.raises(ValueError, match="ImageDataset"):
        R.generate_images(gen, ae, data.images, 2, 1)


def test_fewest_steps_within_a_target():
    steps, fd = [1, 2, 4, 8, 16], [30.0, 12.0, 9.0, 8.0, 8.5]
    assert R.fewest_steps_within(steps, fd, 9.0) == 4.0                 # at the target counts
    assert R.fewest_steps_within(steps, fd, 8.8) == 8.0
    assert R.fewest_steps_within(steps, fd, 40.0) == 1.0
    assert R.fewest_steps_within(steps, fd, 7.0) == math.inf
    with pytest.raises(ValueError, match="increase"):
        R.fewest_steps_within([1, 4, 2], [1.0, 2.0, 3.0], 2.0)
    with pytest.raises(ValueError, match="one length"):
        R.fewest_steps_within([1, 2], [1.0], 2.0)
    with pytest.raises(ValueError, match="NaN"):
        R.fewest_steps_within([1, 2], [1.0, float("nan")], 2.0)

