import pytest
import torch

import workbench as wb
from workbench.data.corruptions import corrupt
from workbench.shift.robustify import (CorruptionAugment, corrupt_batch, corruption_plan, step_macs, trainable_fraction,
                                       trainable_names, training_macs)

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _images(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def _normalize(u8):
    m = torch.tensor(MEAN).view(1, -1, 1, 1)
    s = torch.tensor(STD).view(1, -1, 1, 1)
    return (u8.float() / 255 - m) / s


def test_plan_draws_from_the_given_choices():
    which, sev = corruption_plan(2000, ["fog", "contrast", "pixelate"], (2, 4), p_clean=0.25,
                                 generator=torch.Generator().manual_seed(1))
    clean = which == -1
    assert abs(float(clean.float().mean()) - 0.25) < 0.04
    assert set(sev[clean].tolist()) == {0}
    assert set(sev[~clean].tolist()) == {2, 4}
    assert set(which[~clean].tolist()) == {0, 1, 2}
    again = corruption_plan(2000, ["fog", "contrast", "pixelate"], (2, 4), 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(which, again[0]) and torch.equal(sev, again[1])
    w0, _ = corruption_plan(100, ["fog"], p_clean=0.0)
    assert (w0 == 0).all()


@pytest.mark.parametrize("kw, match", [(dict(corruptions=[]), "at least one"), (dict(corruptions=["rain"]), "unknown"),
                                       (dict(severities=(0, 1)), "1..5"), (dict(p_clean=1.0), "p_clean")])
def test_plan_bad_input(kw, match):
    args = {**dict(corruptions=["fog"], severities=(1, 2), p_clean=0.5), **kw}
    with pytest.raises(ValueError, match=match):
        corruption_plan(4, **args)


def test_corrupt_batch_matches_corrupt_on_pixels_and_keeps_clean_images():
    u8 = _images(6)
    x = _normalize(u8)
    names = ["gaussian_noise", "contrast"]
    which = torch.tensor([-1, 0, 1, 0, -1, 1])
    sev = torch.tensor([0, 3, 2, 5, 0, 2])
    out = corrupt_batch(x, MEAN, STD, names, which, sev, seed=7)
    assert torch.equal(out[0], x[0]) and torch.equal(out[4], x[4])
    for i in (1, 2, 3, 5):
        ref = corrupt(u8[i:i + 1], names[which[i]], int(sev[i]), seed=7, index=[i])
        assert torch.allclose(out[i:i + 1], _normalize(ref), atol=1e-5), i
    assert not torch.allclose(out[1], x[1])


def test_corrupt_batch_keeps_memory_format_and_rejects_bad_input():
    x = _normalize(_images(4)).contiguous(memory_format=torch.channels_last)
    out = corrupt_batch(x, MEAN, STD, ["fog"], torch.zeros(4), torch.full((4,), 3))
    assert out.shape == x.shape and out.dtype == x.dtype
    with pytest.raises(ValueError, match="one entry per image"):
        corrupt_batch(x, MEAN, STD, ["fog"], torch.zeros(3), torch.full((3,), 3))
    with pytest.raises(ValueError, match="normalized float batch"):
        corrupt_batch(_images(4), MEAN, STD, ["fog"], torch.zeros(4), torch.full((4,), 3))
    with pytest.raises(ValueError, match="positions in corruptions"):
        corrupt_batch(x, MEAN, STD, ["fog"], torch.ones(4), torch.full((4,), 3))


def test_corruption_augment_in_fit_is_deterministic_and_logs():
    data = wb.data.ImageDataset(_images(64, 3), torch.arange(64) % 10, [str(i) for i in range(10)], "toy", "train",
                                MEAN, STD)
    aug = CorruptionAugment(MEAN, STD, ["gaussian_noise", "gaussian_blur"], severities=(3,), p_clean=0.5)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = wb.create_model("resnet8", width=4)
        res = wb.fit(model, data, None, algorithms=[aug], epochs=1, batch_size=32, progress=False, seed=0,
                     device="cpu")
        runs.append(torch.cat([p.detach().flatten() for p in res.model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert "corrupted" in res.history.columns or "train_corrupted" in res.history.columns
    with pytest.raises(ValueError, match="unknown"):
        CorruptionAugment(MEAN, STD, ["hail"])


def test_trainable_names_and_fraction():
    model = wb.create_model("resnet8", width=8)
    names = trainable_names(model, ["stem", "layer1"])
    assert names and all(n.startswith(("stem.", "layer1.")) for n in names)
    assert trainable_fraction(model, names) == pytest.approx((232 + 1184) / 19954)
    bn = trainable_names(model, ["fc"], batchnorm=True)
    assert "fc.weight" in bn and "layer3.0.bn2.weight" in bn and "layer3.0.conv1.weight" not in bn
    assert trainable_fraction(model, [n for n, _ in model.named_parameters()]) == 1.0
    with pytest.raises(ValueError, match="not modules"):
        trainable_names(model, ["layer9"])
    with pytest.raises(ValueError, match="not parameters"):
        trainable_fraction(model, ["nope"])


def test_fit_with_trainable_names_leaves_the_rest():
    data = wb.data.ImageDataset(_images(32, 4), torch.arange(32) % 10, [str(i) for i in range(10)], "toy", "train",
                                MEAN, STD)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = trainable_names(model, ["stem", "layer1"])
    wb.fit(model, data, None, params=names, epochs=1, batch_size=16, progress=False, seed=0, device="cpu")
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]) != (n in names), n


def test_step_macs_hand_made():
    assert step_macs([1, 2, 3], [False, True, False]) == 6 + 3 + 2
    assert step_macs([1, 2, 3], [True, True, True]) == 3 * 6 - 1
    assert step_macs([1, 2, 3], [False, False, True]) == 6 + 0 + 3
    assert step_macs([1, 2, 3], [False] * 3) == 6
    with pytest.raises(ValueError, match="one entry per block"):
        step_macs([1, 2], [True])
    with pytest.raises(ValueError, match=">= 0"):
        step_macs([-1, 2], [True, True])


def test_training_macs_full_and_partial_with_teacher():
    model = wb.create_model("resnet8", width=8)
    s = wb.models.summary(model, (3, 32, 32))
    f, m0 = s.macs, int(s.table.macs.iloc[0])
    assert training_macs(model, None, steps=3, batch_size=2) == 6 * (3 * f - m0)
    teacher = wb.create_model("resnet8", width=4)
    tf = wb.models.summary(teacher, (3, 32, 32)).macs
    last = trainable_names(model, ["fc"])
    assert training_macs(model, last, 1, 1, teachers=[teacher]) == f + int(s.table.macs.iloc[-1]) + tf
