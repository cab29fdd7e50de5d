"""wb.dynamics: gradient noise, the training-recipe switches (fit arguments, algorithms, resnet_cifar
options), and scaling a model family."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.dynamics import (EMA, RANDAUGMENT_OPS, GradientNoise, NoDecay, RandAugment, closest_in_budget,
                                noise_std, scale_grid, scaling_table, training_recipe)

FIT = dict(epochs=2, batch_size=64, lr=0.05, progress=False, seed=3)


@pytest.fixture(scope="module")
def data():
    return wb.load("shapes", "train", subset=256), wb.load("shapes", "test", subset=128)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=8, **kw)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ gradient noise
def test_noise_schedule_is_the_papers():
    assert noise_std(0, 0.01) == pytest.approx(0.1)
    assert noise_std(99, 0.3, 0.55) == pytest.approx(math.sqrt(0.3 / 100 ** 0.55))
    assert noise_std(10, 1.0, 0.0) == 1.0


def test_zero_noise_and_every_switch_off_leave_fit_bit_identical(data):
    train, test = data
    plain = wb.fit(_model(), train, test, **FIT)
    off = dict(se=0.0, shortcut="b", drop_path=0.0, dropout=0.0, resolution=None)
    algs = [GradientNoise(0.0), EMA(0.0), NoDecay(norm=False, bias=False), RandAugment(train.mean, train.std, layers=0)]
    other = wb.fit(_model(**off), train, test, algorithms=algs, **FIT)
    assert _same(_weights(plain.model), _weights(other.model))
    cols = ["train_loss", "train_acc", "test_loss", "test_acc"]
    assert plain.history[cols].equals(other.history[cols])


def test_noise_moves_the_weights_by_the_schedule(data):
    """One step of plain SGD (no momentum, no decay): the weights move by -lr * noise, whose spread is
    sigma_0 = sqrt(eta)."""
    train, _ = data
    kw = dict(epochs=1, batch_size=64, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant", max_steps=1,
              progress=False, seed=0, augment=None)
    a = wb.fit(_model(), train, **kw).model
    b = wb.fit(_model(), train, algorithms=[GradientNoise(eta=0.04)], **kw).model
    diffs = torch.cat([(pb - pa).flatten() for pa, pb in zip(a.parameters(), b.parameters())]) / -0.1
    assert diffs.std().item() == pytest.approx(0.2, rel=0.05)
    assert abs(diffs.mean().item()) < 0.01


def test_noise_resumes_exactly(data, tmp_path):
    train, test = data
    full = wb.fit(_model(), train, test, algorithms=[GradientNoise(0.01)], **FIT).model
    wb.fit(_model(), train, test, algorithms=[GradientNoise(0.01)], checkpoint_dir=tmp_path, stop_after_steps=3,
           **FIT)
    resumed = wb.fit(_model(), train, test, algorithms=[GradientNoise(0.01)], checkpoint_dir=tmp_path, **FIT).model
    assert _same(_weights(full), _weights(resumed))


@pytest.mark.parametrize("eta,gamma", [(-0.1, 0.55), (float("nan"), 0.55), (0.01, -1.0)])
def test_noise_rejects_bad_scales(eta, gamma):
    with pytest.raises(ValueError, match="eta|gamma"):
        GradientNoise(eta, gamma)


def test_gaussian_init():
    m = wb.create_model("mlp", depth=3, width=50, in_chans=1, img_size=28)
    wb.dynamics.gaussian_init(m, 0.1, bias=0.0, seed=1)
    w = m.layers[1][0].weight.detach()
    assert w.std().item() == pytest.approx(0.1, rel=0.05) and float(m.layers[1][0].bias.abs().max()) == 0.0
    wb.dynamics.gaussian_init(m, 2 ** 0.5, fan_in=True, seed=2)                 # He: std sqrt(2 / fan_in)
    assert m.layers[0][0].weight.detach().std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.05)
    assert m.layers[1][0].weight.detach().std().item() == pytest.approx((2 / 50) ** 0.5, rel=0.05)
    wb.dynamics.gaussian_init(m, 0.0)
    assert all(float(p.abs().max()) == 0 for p in m.parameters())
    with pytest.raises(ValueError, match="std"):
        wb.dynamics.gaussian_init(m, -1.0)


# ------------------------------------------------------------------------------------------ EMA
def test_ema_is_the_average_and_resumes(data, tmp_path):
    train, test = data
    kw = dict(FIT, epochs=1, max_steps=3)
    seen = []

    class Record(wb.train.Callback):
        def on_after_step(self, state):  # runs after EMA's own after_step only for the last step: record first
            seen.append(_weights(state.model))

    # the weights after each step, recorded before EMA acts (Record comes first)
    ema = EMA(0.5, warmup=False)
    res = wb.fit(_model(), train, test, algorithms=[Record(), ema], **kw)
    init = _weights(_model())
    expect = {k: v.clone() for k, v in init.items()}
    for w in seen:
        for k, v in w.items():
            expect[k] = expect[k].lerp(v, 0.5) if v.is_floating_point() else v
    got = _weights(res.model)
    for k in expect:
        assert torch.allclose(got[k].float(), expect[k].float(), atol=1e-6), k
    # resuming mid-run ends with the same average
    full = wb.fit(_model(), train, test, algorithms=[EMA(0.9)], **FIT).model
    wb.fit(_model(), train, test, algorithms=[EMA(0.9)], checkpoint_dir=tmp_path, stop_after_steps=5, **FIT)
    resumed = wb.fit(_model(), train, test, algorithms=[EMA(0.9)], checkpoint_dir=tmp_path, **FIT).model
    assert _same(_weights(full), _weights(resumed))


def test_ema_evaluates_the_average(data):
    """The epoch's test accuracy is that of the averaged weights the run returns."""
    train, test = data
    res = wb.fit(_model(), train, test, algorithms=[EMA(0.9)], **FIT)
    assert wb.evaluate(res.model, test)["acc"] == pytest.approx(res.history["test_acc"].iloc[-1])


# ------------------------------------------------------------------------------------------ NoDecay
def test_no_decay_selects_norms_and_biases(data):
    train, _ = data
    seen = {}

    class Peek(wb.train.Callback):
        def on_fit_start(self, state):
            seen.update({n: g["weight_decay"] for g in state.optimizer.param_groups for n, p in
                         state.model.named_parameters() if any(p is q for q in g["params"])})

    wb.fit(_model(), train, algorithms=[NoDecay(), Peek()], **dict(FIT, epochs=1, max_steps=1))
    assert seen["stem.1.weight"] == 0.0 and seen["fc.bias"] == 0.0 and seen["layer1.0.bn1.bias"] == 0.0
    assert seen["stem.0.weight"] == FIT.get("weight_decay", 5e-4) and seen["fc.weight"] > 0


# ------------------------------------------------------------------------------------------ RandAugment
def test_randaugment_at_magnitude_zero_keeps_the_magnitude_operations():
    ds = wb.load("shapes", "test", subset=16)
    x = ds.normalize(ds.images)
    ops = [o for o in RANDAUGMENT_OPS if o not in ("autocontrast", "equalize")]
    ra = RandAugment(ds.mean, ds.std, layers=3, magnitude=0, ops=ops)
    y = ra.augment(x, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-4)


def test_randaugment_ops_against_hand_computed_cases():
    img = torch.rand(2, 3, 8, 8)
    sign = torch.ones(2)
    from workbench.dynamics.recipe import _op
    assert torch.allclose(_op("solarize", img, 1.0, sign), 1 - img)                   # threshold 0: all inverted
    assert torch.allclose(_op("brightness", img, 10 / 9, -sign), torch.zeros_like(img))  # factor 0: black
    flipped = _op("rotate", img, 1.0, sign)  # 30 degrees: the centre pixel region stays close
    assert flipped.shape == img.shape and not torch.allclose(flipped, img)
    ramp = torch.linspace(0.2, 0.6, 64).view(1, 1, 8, 8).expand(1, 3, 8, 8).contiguous()
    ac = _op("autocontrast", ramp, 1.0, sign[:1])
    assert float(ac.min()) == pytest.approx(0.0) and float(ac.max()) == pytest.approx(1.0)
    eq = _op("equalize", ramp, 1.0, sign[:1])
    assert float(eq.max()) == pytest.approx(1.0) and float(eq.min()) == pytest.approx(0.0)
    # a translation by a quarter of an 8-pixel image samples 2 pixels to the right (the content moves left)
    shift = _op("translate_x", img[:1], 0.25 / 0.3, sign[:1])
    assert torch.allclose(shift[..., :-2], img[:1, ..., 2:], atol=1e-5)
    assert torch.allclose(shift[..., -2:], torch.full_like(shift[..., -2:], 0.5))  # grey fills the border


def test_randaugment_is_deterministic_per_step_and_changes_images(data):
    train, _ = data
    x = train.normalize(train.images[:32])
    ra = RandAugment(train.mean, train.std, layers=2, magnitude=9)
    a = ra.augment(x, torch.Generator().manual_seed(5))
    b = ra.augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.allclose(a, x)
    lo, hi = train.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)), train.normalize(
        torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
    assert (a >= lo - 1e-5).all() and (a <= hi + 1e-5).all()


def test_randaugment_bad_input():
    with pytest.raises(ValueError, match="did you mean 'rotate'"):
        RandAugment((0.5,), (0.5,), ops=["rotat"])
    with pytest.raises(ValueError, match="0..10"):
        RandAugment((0.5,), (0.5,), magnitude=30)


# ------------------------------------------------------------------------------------------ recipes
def test_recipe_switches_land_where_they_belong():
    p = training_recipe("resnet-rs", epochs=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert p.fit_kwargs["schedule"] == "cosine" and p.fit_kwargs["label_smoothing"] == 0.1
    assert p.fit_kwargs["weight_decay"] == 4e-5
    assert p.model_kwargs == {"drop_path": 0.1, "dropout": 0.25, "se": 0.25, "shortcut": "d"}
    assert [type(a).__name__ for a in p.algorithms] == ["EMA", "RandAugment"]
    plain = training_recipe("plain", epochs=8)
    assert plain.fit_kwargs["schedule"] == "multistep" and plain.fit_kwargs["milestones"] == (4, 6)
    assert plain.algorithms == [] and plain.model_kwargs == {}
    off = training_recipe({"ema": 0.0, "dropout": 0.0, "se": 0.0}, epochs=8)
    assert off.algorithms == [] and off.model_kwargs == {} and off.fit_kwargs == plain.fit_kwargs


def test_recipe_bad_input():
    with pytest.raises(ValueError, match="did you mean 'label_smoothing'"):
        training_recipe(["label_smothing"], epochs=4)
    with pytest.raises(ValueError, match="mean=train.mean"):
        training_recipe(["randaugment"], epochs=4)


def test_a_recipe_trains(data):
    train, test = data
    p = training_recipe("resnet-rs", epochs=1, mean=train.mean, std=train.std, base={"batch_size": 64})
    res = wb.fit(_model(**p.model_kwargs), train, test, algorithms=p.algorithms, progress=False, **p.fit_kwargs)
    assert math.isfinite(res.history["train_loss"].iloc[-1])


# ------------------------------------------------------------------------------------------ model options
def test_resnet_cifar_recipe_options():
    x = torch.randn(4, 3, 32, 32)
    m = wb.create_model("resnet8", width=8, se=0.25, shortcut="d", drop_path=0.2, dropout=0.5).eval()
    assert torch.equal(m(x), m(x))  # evaluation uses every block and no dropout
    # ResNet-D: the projection reads the 2x2 average, not one pixel in four
    sc = m.layer2[0].shortcut
    assert isinstance(sc[0], torch.nn.AvgPool2d) and sc[1].stride == (1, 1)
    # squeeze-and-excitation gates channels by sigmoid: a zero expand gives gates of 1/2
    blk = m.layer1[0]
    torch.nn.init.zeros_(blk.se.expand.weight), torch.nn.init.zeros_(blk.se.expand.bias)
    h = torch.randn(2, 8, 4, 4)
    assert torch.allclose(blk.se(h), h / 2)
    # stochastic depth: in training, the last block's branch is dropped at its rate, kept ones scaled
    rates = [b.drop_path for s in (m.layer1, m.layer2, m.layer3) for b in s]
    assert rates == pytest.approx([0.2 / 3, 0.4 / 3, 0.2])
    from workbench.models.resnet_cifar import drop_branch
    torch.manual_seed(0)
    out = drop_branch(torch.ones(20_000, 1, 1, 1), 0.25, training=True)
    assert torch.isclose(out.unique(), torch.tensor([0.0, 1 / 0.75])).all() and float(out.mean()) == pytest.approx(1.0, abs=0.02)
    # resolution: the network sees a resized input
    r = wb.create_model("resnet8", width=8, resolution=16).eval()
    base = wb.create_model("resnet8", width=8).eval()
    base.load_state_dict(r.state_dict())
    small = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(r(x), base(small), atol=1e-5)


@pytest.mark.parametrize("kw,msg", [(dict(se=2.0), "se"), (dict(shortcut="c"), "ResNet-D"),
                                    (dict(drop_path=1.0), "drop_path"), (dict(resolution=4), "resolution")])
def test_resnet_cifar_option_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        wb.create_model("resnet8", **kw)
    with pytest.raises(ValueError, match="plain network"):
        wb.create_model("plain8", drop_path=0.1)


# ------------------------------------------------------------------------------------------ scaling
def test_scaling_table_counts():
    t = scaling_table(scale_grid(depth=[14, 32], width=[32], resolution=[16]))
    base = t[t.scaled == "base"].iloc[0]
    assert base.params == sum(p.numel() for p in wb.create_model("resnet20").parameters())
    wide = t[t.scaled == "width"].iloc[0]
    assert 3.8 < wide.macs / base.macs < 4.05          # twice the width: about four times the work
    low = t[t.scaled == "resolution"].iloc[0]
    assert low.params == base.params and low.macs < base.macs / 3.9  # a quarter of the pixels (but the head)
    deep = t[(t.scaled == "depth") & (t.depth == 32)].iloc[0]
    assert deep.macs > base.macs * 1.5
    pick = closest_in_budget(t, wide.macs)
    assert set(pick.scaled) == {"base", "depth", "width", "resolution"}
    assert int(pick[pick.scaled == "depth"].depth.iloc[0]) == 32


def test_scaling_bad_input():
    with pytest.raises(ValueError, match="6n\\+2"):
        scale_grid(depth=[21])
    with pytest.raises(ValueError, match="width"):
        scaling_table([{"width": 0}])
    with pytest.raises(ValueError, match="depth, width or resolution"):
        scale_grid(height=[3])


def test_resolution_scaling_trains_in_channels_last():
    """The resized input's backward in channels-last memory (what fit uses on a CPU) must not crash."""
    torch.manual_seed(0)
    m = wb.create_model("resnet8", width=8, resolution=64).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    m(x).sum().backward()
    assert m.stem[0].weight.grad is not None
