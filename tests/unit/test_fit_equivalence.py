"""The loop over a task and algorithms gives bit-identical runs to the loop it replaced.

``tests/reference/legacy_fit.py`` is the old ``fit`` frozen as it was; every kind of run the
notebooks make (plain, BN-only, masked, guided, SAM, packed) is trained by both with the same seed,
and the weights, the optimizer's effect and the history must be equal to the bit.
"""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from tests.reference.legacy_fit import fit as legacy_fit

COLS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


@pytest.fixture(scope="module")
def data():
    return wb.load("shapes", "train", subset=640), wb.load("shapes", "test", subset=200)


def _plain(seed=0):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=8), {}


def _bn_only(seed=0):
    model, _ = _plain(seed)
    return model, wb.bn_only.configure(model, "bn_only", seed=0).fit_kwargs()


def _masked(seed=0):  # random weights in every layer, as the random_anywhere control trains them
    model, _ = _plain(seed)
    return model, wb.bn_only.configure(model, "random_anywhere", seed=0).fit_kwargs()


def _guided(seed=0):
    torch.manual_seed(seed + 1)
    guide = wb.create_model("resnet8", width=8)
    torch.manual_seed(seed)
    target = wb.create_model("plain8", width=8)
    return target, {"extra_loss": wb.guidance.Guidance(guide, target, alpha=1.0, steps=3)}


def _sam(seed=0):
    model, _ = _plain(seed)
    return model, {"optimizer": wb.train.sam(rho=0.05)}


def _adamw_smoothing(seed=0):
    model, _ = _plain(seed)
    return model, {"optimizer": "adamw", "lr": 2e-3, "label_smoothing": 0.1, "schedule": "cosine"}


def _packed(seed=0):
    torch.manual_seed(seed)
    packed = wb.models.PackedCifarResNet(8, 2, width=8)
    _, kw = wb.bn_only.configure_packed(packed, ["bn_only", "full"], seed=0)
    return packed, kw


RUNS = {"plain": _plain, "bn_only": _bn_only, "masked": _masked, "guided": _guided, "sam": _sam,
        "adamw_label_smoothing": _adamw_smoothing, "packed": _packed}


@pytest.mark.parametrize("kind", list(RUNS))
def test_same_seed_same_weights_and_history_as_the_old_loop(kind, data):
    train, test = data
    kw = dict(epochs=2, batch_size=128, lr=0.1, weight_decay=1e-3, progress=False, seed=4, max_steps=8)
    model_a, extra_a = RUNS[kind]()
    model_b, extra_b = RUNS[kind]()
    old = legacy_fit(model_a, train, test, **{**kw, **extra_a})
    new = wb.fit(model_b, train, test, **{**kw, **extra_b})
    changed = False
    for (n, p), (_, q) in zip(old.model.state_dict().items(), new.model.state_dict().items()):
        assert torch.equal(p, q), f"{kind}: {n} differs from the old loop's"
    first, _ = RUNS[kind]()
    changed = any(not torch.equal(p, q) for p, q in zip(first.state_dict().values(), new.model.state_dict().values()))
    assert changed, "the run trained nothing: the comparison would be empty"
    cols = COLS + (["align", "cka"] if kind == "guided" else [])
    assert old.history[cols].equals(new.history[cols]), (old.history[cols], new.history[cols])
    assert sorted(old.masks) == sorted(new.masks)
