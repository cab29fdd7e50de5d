"""Defences against unlearnable data (wb.shift.defend): PGD on hand-made linear models, the bounds,
no side effects on the model, adversarial training at radius 0 equal to plain training, and CUDA's
random-filter augmentation equal to the committed uint8 filtering."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.data import ImageDataset, to_float
from workbench.shift import unlearnable as U
from workbench.shift.defend import (AdversarialTraining, StrongAugment, pgd_linf, poisoned_run, random_filter_views,
                                    shortcut_scores)

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _images(n=6, c=3, h=8, w=8, seed=0, lo=0, hi=256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, (n, c, h, w), generator=g, dtype=torch.uint8)


class _Linear(nn.Module):
    """Two-class logits ``[0, <v, x>]``: the cross-entropy of label 0 rises along ``v`` everywhere."""

    def __init__(self, v: torch.Tensor):
        super().__init__()
        self.v = nn.Parameter(v.clone())

    def forward(self, x):
        s = (x * self.v).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(s), s], 1)


def _pixels(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1) * 255
    return x.double() * (torch.tensor(std).view(1, -1, 1, 1).double() * 255) + m.double()


def test_one_pgd_step_of_the_full_radius_reaches_the_corner_of_a_linear_model():
    images = _images(lo=20, hi=236)  # at least 20 levels from either end: no clipping at the range
    x = to_float(images, MEAN, STD)
    v = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(1))
    model = _Linear(v)
    y = torch.zeros(len(x), dtype=torch.int64)
    adv = pgd_linf(model, x, y, MEAN, STD, epsilon=8, steps=1, step_size=8, random_start=False)
    want = _pixels(x) + 8 * v.sign().double()
    assert torch.allclose(_pixels(adv), want, atol=1e-3)
    for steps in (2, 5):  # the default steps travel 1.5 epsilon in all: to the same corner
        again = pgd_linf(model, x, y, MEAN, STD, epsilon=8, steps=steps, random_start=False)
        assert torch.allclose(_pixels(again), want, atol=1e-3)


def test_pgd_stays_in_the_ball_and_the_pixel_range_and_raises_the_loss():
    images = _images(n=16, seed=2)  # includes 0 and 255 values: the range clips there
    images[0, :, 0, 0], images[1, :, 0, 0] = 0, 255
    x = to_float(images, MEAN, STD)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(4))
    adv = pgd_linf(model, x, y, MEAN, STD, epsilon=6, steps=4, generator=torch.Generator().manual_seed(5))
    moved = (_pixels(adv) - _pixels(x)).abs()
    assert moved.max() <= 6 + 1e-3 and moved.max() > 5
    p = _pixels(adv)
    assert p.min() >= -1e-3 and p.max() <= 255 + 1e-3
    loss = nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)


def test_pgd_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4).train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = to_float(_images(n=4, h=32, w=32), MEAN, STD)
    pgd_linf(model, x, torch.tensor([0, 1, 2, 3]), MEAN, STD, epsilon=8, steps=3)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


def test_pgd_radius_zero_returns_the_batch_bitwise():
    x = to_float(_images(), MEAN, STD)
    model = _Linear(torch.ones(x.shape[1:]))
    adv = pgd_linf(model, x, torch.zeros(len(x), dtype=torch.int64), MEAN, STD, epsilon=0, steps=2)
    assert torch.equal(adv, x)


def _toy(n=64) -> ImageDataset:
    images = _images(n=n, h=32, w=32, seed=7)
    labels = torch.arange(n) % 10
    return ImageDataset(images, labels, [str(i) for i in range(10)], "toy", mean=MEAN, std=STD)


def _fit(algorithms=(), seed=0):
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4)
    wb.fit(model, _toy(), epochs=1, batch_size=16, lr=0.05, algorithms=list(algorithms), progress=False, seed=seed,
           device="cpu")
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_adversarial_training_at_radius_zero_is_plain_training_and_otherwise_deterministic():
    plain = _fit()
    assert _same(_fit([AdversarialTraining(MEAN, STD, epsilon=0, steps=2)]), plain)
    at = _fit([AdversarialTraining(MEAN, STD, epsilon=8, steps=2)])
    assert not _same(at, plain)
    assert _same(_fit([AdversarialTraining(MEAN, STD, epsilon=8, steps=2)]), at)
    assert not _same(_fit([AdversarialTraining(MEAN, STD, epsilon=8, steps=2)], seed=1), at)


def test_random_filter_views_match_cuda_filtering_of_uint8_images():
    images = _images(n=10, h=9, w=9, seed=3)
    x = to_float(images, MEAN, STD)
    got = random_filter_views(x, MEAN, STD, seed=11, size=3, blur=0.3)
    # image i, labelled i, filtered with filter i of the same key by the committed uint8 implementation
    want = U.apply_filters(images, torch.arange(10), U.cuda_filters(10, 3, 3, 0.3, seed=11))
    assert (_pixels(got).round() - want.double()).abs().max() <= 1
    assert (_pixels(got).round() == want.double()).float().mean() > 0.99


def test_random_filter_of_size_one_keeps_images_whose_brightest_value_is_255():
    images = _images(n=4, seed=5)
    images[:, 0, 0, 0] = 255
    x = to_float(images, MEAN, STD)
    assert torch.allclose(_pixels(random_filter_views(x, MEAN, STD, seed=0, size=1)), images.double(), atol=1e-3)


@pytest.mark.parametrize("recipe", ["simclr", "simclr_blur", "random_filter"])
def test_strong_augment_changes_the_batch_as_a_function_of_seed_and_step(recipe):
    aug = StrongAugment(MEAN, STD, recipe=recipe)
    x = to_float(_images(n=8, h=32, w=32), MEAN, STD)
    y = torch.arange(8)

    def view(seed, step):
        s = wb.train.State(model=nn.Identity(), forward=nn.Identity(), task=None, device=torch.device("cpu"),
                           precision="fp32", seed=seed, epochs=1, steps_per_epoch=1, total_steps=1, weight_decay=0.0,
                           step=step, batch=(x, y))
        aug.on_batch_loaded(s)
        assert s.batch[1] is y
        return s.batch[0]

    a = view(0, 0)
    assert a.shape == x.shape and a.dtype == x.dtype and not torch.equal(a, x)
    assert torch.equal(view(0, 0), a)
    assert not torch.equal(view(0, 1), a) and not torch.equal(view(1, 0), a)
    assert aug.config()["recipe"] == recipe


class _FilterReader(nn.Module):
    """Classifies an image by which class filter blurred it: the nearest filtered impulse (channel 0)."""

    def __init__(self, bank: torch.Tensor, mean, std):
        super().__init__()
        self.bank, self.mean, self.std = bank.double(), mean[0] * 255, std[0] * 255   # [K, 9, 9]

    def forward(self, x):
        pixels = x[:, 0].double() * self.std + self.mean
        return -((pixels[:, None] - self.bank[None]) ** 2).flatten(2).sum(2).float()


class _Constant(nn.Module):
    def __init__(self, c: int, k: int = 10):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.c), self.k).float()


def _impulses(labels: torch.Tensor) -> ImageDataset:
    images = torch.zeros(len(labels), 3, 9, 9, dtype=torch.uint8)
    images[:, :, 4, 4] = 255
    return ImageDataset(images, labels, [str(i) for i in range(10)], "impulses", "test", MEAN, STD)


def test_shortcut_scores_of_a_model_that_reads_only_the_filter_and_of_one_that_reads_nothing():
    filters = U.cuda_filters(10, 3, 3, 0.3, seed=4)
    bank = U.apply_filters(_impulses(torch.arange(10)).images, torch.arange(10), filters)[:, 0]
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3, 9, 0])
    test = _impulses(labels)
    reader = _FilterReader(bank, MEAN, STD)
    assert shortcut_scores(reader, test, filters) == {"own_filter_acc": 1.0, "swapped_filter_acc": 0.0,
                                                      "follows_filter": 1.0}
    assert shortcut_scores(reader, test, filters, shift=3)["follows_filter"] == 1.0
    share = lambda c: float((labels == c).double().mean())   # noqa: E731
    assert shortcut_scores(_Constant(3), test, filters) == {"own_filter_acc": share(3), "swapped_filter_acc": share(3),
                                                            "follows_filter": share(2)}
    with pytest.raises(ValueError, match="not a multiple"):
        shortcut_scores(reader, test, filters, shift=10)


def test_poisoned_run_is_the_run_record_plus_the_shortcut_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    train, test = _toy(40), _toy(20)
    filters = U.cuda_filters(10, 3, 3, 0.3, seed=0)
    fit = dict(epochs=1, batch_size=20, lr=0.05, device="cpu")
    rec = poisoned_run("resnet8", U.make_unlearnable(train, filters), test, 0, filters=filters,
                       model_kwargs={"width": 4}, **fit)
    model = wb.train_model("resnet8", U.make_unlearnable(train, filters), test, seed=0, model_kwargs={"width": 4},
                           progress=False, **fit).model
    assert rec["test_acc"] == wb.evaluate(model, test)["acc"]
    assert {k: rec[k] for k in ("own_filter_acc", "swapped_filter_acc", "follows_filter")} == \
        shortcut_scores(model, test, filters)


def test_bad_arguments_name_the_fix():
    x = to_float(_images(), MEAN, STD)
    y = torch.zeros(len(x), dtype=torch.int64)
    m = _Linear(torch.ones(x.shape[1:]))
    with pytest.raises(ValueError, match="choose one of simclr, simclr_blur, random_filter"):
        StrongAugment(MEAN, STD, recipe="mixup")
    with pytest.raises(ValueError, match="pixel levels"):
        AdversarialTraining(MEAN, STD, epsilon=-1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        AdversarialTraining(MEAN, STD, steps=0)
    with pytest.raises(ValueError, match="one per channel"):
        pgd_linf(m, x, y, (0.5,), (0.25,))
    with pytest.raises(ValueError, match="normalized float batch"):
        pgd_linf(m, _images(), y, MEAN, STD)
    with pytest.raises(ValueError, match="use size <= 8"):
        random_filter_views(x, MEAN, STD, seed=0, size=9)
    with pytest.raises(ValueError, match="blur"):
        StrongAugment(MEAN, STD, recipe="random_filter", blur=-0.1)
