"""MEAL V2's distillation as wb.fit extensions: ensemble soft targets, the KL term, cached teacher logits,
the discriminator (resumable), a student that starts from trained weights, and bad input."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.train import CheckpointError
from workbench.transfer import (Discriminator, Distillation, StartFrom, distillation_loss, ensemble_accuracy,
                                ensemble_soft_target, soft_target_loss)


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=192), wb.load("shapes", "test", subset=64)


def small(seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4, **kw)


@pytest.fixture(scope="module")
def teachers(shapes):
    train, _ = shapes
    return [wb.fit(small(10 + s), train, epochs=1, batch_size=64, progress=False, seed=s).model.eval()
            for s in range(3)]


# --- the losses: exact answers -------------------------------------------------------------------

def test_kl_at_temperature_one_with_a_one_hot_teacher_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(7, 5, generator=g), torch.tensor([0, 4, 2, 2, 1, 3, 0])
    ce = F.cross_entropy(s, y)
    one_hot = F.one_hot(y, 5).float()
    assert soft_target_loss(s, one_hot, 1.0).item() == pytest.approx(ce.item(), rel=1e-6)
    # as teacher logits: a margin of 1e4 makes softmax exactly one-hot in float32
    assert distillation_loss(s, 1e4 * one_hot, 1.0).item() == pytest.approx(ce.item(), rel=1e-6)
    # and at T = 2 the soft term is T^2 times the cross-entropy of the tempered student
    assert soft_target_loss(s, one_hot, 2.0).item() == pytest.approx(4 * F.cross_entropy(s / 2, y).item(), rel=1e-6)


def test_soft_target_loss_is_the_kl_and_matches_distillation_loss():
    # target (0.5, 0.5), student logits (log 3, 0): q = (3/4, 1/4), KL = 0.5 log(2/3) + 0.5 log 2
    s = torch.tensor([[math.log(3.0), 0.0]])
    got = soft_target_loss(s, torch.tensor([[0.5, 0.5]]), 1.0).item()
    assert got == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25), rel=1e-6)
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    for temp in (1.0, 3.0):
        assert soft_target_loss(s, F.softmax(t / temp, 1), temp).item() == pytest.approx(
            distillation_loss(s, t, temp).item(), rel=1e-5)
    assert soft_target_loss(t, F.softmax(t, 1)).item() == pytest.approx(0.0, abs=1e-6)


def test_the_ensemble_target_is_the_mean_of_the_members_probabilities():
    g = torch.Generator().manual_seed(2)
    members = [torch.randn(4, 6, generator=g) * 3 for _ in range(3)]
    for temp in (1.0, 4.0):
        want = sum(F.softmax(m / temp, 1) for m in members) / 3
        stacked = torch.stack(members, dim=2)  # [B, C, K]
        assert torch.allclose(ensemble_soft_target(stacked, temp), want, atol=1e-7)
        assert torch.allclose(ensemble_soft_target(members, temp), want, atol=1e-7)
        # not the softmax of the mean logits (the mistake the exercise's check names)
        assert not torch.allclose(want, F.softmax(stacked.mean(2) / temp, 1), atol=1e-3)
        s = torch.randn(4, 6, generator=g)
        assert distillation_loss(s, stacked, temp).item() == pytest.approx(
            soft_target_loss(s, want, temp).item(), rel=1e-6)
    # a hand-made pair: one member certain of class 0, one uniform over two classes
    two = torch.tensor([[[1e4, 0.0], [0.0, 0.0]]])  # [1, 2 classes, 2 members]
    assert ensemble_soft_target(two)[0].tolist() == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match=r"\[batch, classes\] or \[batch, classes, members\]"):
        ensemble_soft_target(torch.zeros(3))


def test_the_ensemble_task_uses_the_mean_target_and_one_teacher_lists_are_plain(teachers):
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4])
    task = Distillation(teachers, temperature=2.0, alpha=1.0)
    student_logits, teacher_logits = torch.randn(5, 10), task.teacher_logits(x)
    assert teacher_logits.shape == (5, 10, 3)
    by_hand = sum(F.softmax(t.eval()(x).detach() / 2, 1) for t in teachers) / 3
    assert task.loss((student_logits, teacher_logits), (x, y)).item() == pytest.approx(
        soft_target_loss(student_logits, by_hand, 2.0).item(), rel=1e-5)
    one = Distillation([teachers[0]], temperature=2.0)
    assert one.config() == Distillation(teachers[0], temperature=2.0).config()  # same cache key as before
    assert one.teacher_logits(x).shape == (5, 10)
    assert "teachers" in task.config() and len(task.config()["teachers"]) == 3


def test_ensemble_accuracy_by_hand(shapes, teachers):
    _, test = shapes
    got = ensemble_accuracy(teachers, test)
    x = test.normalize(test.images)
    p = sum(F.softmax(t(x), 1) for t in teachers) / 3
    assert got["acc"] == pytest.approx(float((p.argmax(1) == test.labels).double().mean()), abs=1e-12)
    assert got["members"] == pytest.approx([wb.evaluate(t, test)["acc"] for t in teachers], abs=1e-12)
    assert got["nll"] == pytest.approx(float(F.nll_loss(p.log(), test.labels)), rel=1e-4)


# --- caching the teachers' logits --------------------------------------------------------------------

@pytest.mark.parametrize("augment", [None, "flip"])
def test_cached_logits_give_the_live_teachers_loss(shapes, teachers, augment):
    train, test = shapes
    kw = dict(epochs=2, batch_size=64, progress=False, seed=4, augment=augment)
    live_task = Distillation(teachers, temperature=2.0, alpha=0.5)
    live = wb.fit(small(), train, test, task=live_task, **kw)
    cached_task = Distillation(teachers, temperature=2.0, alpha=0.5, cache_logits=True)
    cached = wb.fit(small(), train, test, task=cached_task, **kw)
    for col in ("train_loss", "train_kl", "train_agree", "test_kl", "test_acc"):
        assert cached.history[col].tolist() == pytest.approx(live.history[col].tolist(), rel=1e-5, abs=1e-6), col
    for p, q in zip(live.model.parameters(), cached.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    # the teachers ran once per image and its mirror image (train + test), not on every batch of every epoch
    assert cached_task.teacher_images == 2 * (len(train) + len(test))
    assert live_task.teacher_images == 2 * len(train) + 2 * len(test)  # 2 epochs, 2 evaluations
    # the cache is looked up by pixels: a shuffled batch finds its own rows, and mirror images theirs
    x = test.normalize(test.images[[5, 0, 17]])
    for view in (x, x.flip(3)):
        assert torch.allclose(cached_task.teacher_logits(view), torch.stack([t(view) for t in teachers], 2), atol=1e-5)


def test_cached_logits_refuse_cropped_images_or_fall_back(shapes, teachers):
    train, test = shapes
    kw = dict(epochs=1, batch_size=64, progress=False, seed=4, augment="crop_flip")
    with pytest.raises(ValueError, match=r"are not among the images they ran on: the images are augmented \(fit's "
                                         r"augment=\). Train with augment=None or 'flip'"):
        wb.fit(small(), train, test, task=Distillation(teachers, cache_logits=True), **kw)
    live = wb.fit(small(), train, test, task=Distillation(teachers), **kw)
    task = Distillation(teachers, cache_logits="fallback")
    mixed = wb.fit(small(), train, test, task=task, **kw)
    assert mixed.history["train_kl"].tolist() == pytest.approx(live.history["train_kl"].tolist(), rel=1e-5)
    hit = mixed.history["cache_hit"].iloc[0]
    assert 0 <= hit < 0.1  # a random crop is rarely the image itself (1 shift in 81)
    misses = (1 - hit) * len(train)
    assert task.teacher_images == pytest.approx(2 * (len(train) + len(test)) + misses, abs=1e-6)


# --- a student that starts from trained weights ------------------------------------------------------

def test_start_from_loads_the_weights_and_keys_the_cache(shapes, teachers):
    train, _ = shapes
    res = wb.fit(small(), train, epochs=1, batch_size=64, progress=False, lr=1e-12, momentum=0.0,
                 weight_decay=0.0, algorithms=[StartFrom(teachers[1])], augment=None)
    for (n, p), q in zip(res.model.state_dict().items(), teachers[1].state_dict().values()):
        if "running" not in n and "num_batches" not in n:  # BN statistics move with the batches
            assert torch.allclose(p, q, atol=1e-9), n
    assert StartFrom(teachers[1]).config() == {"name": "StartFrom", "weights": wb.train.model_fingerprint(teachers[1])}
    assert StartFrom(teachers[0]).config() != StartFrom(teachers[1]).config()
    with pytest.raises(CheckpointError, match="shape differs: fc.weight"):
        StartFrom(teachers[0]).on_init(SimpleNamespace(model=small(num_classes=5)))
    with pytest.raises(TypeError, match="StartFrom takes a trained model"):
        StartFrom(teachers[0].state_dict())


# --- the discriminator ----------------------------------------------------------------------------

def test_discriminator_learns_to_tell_teachers_from_the_student():
    disc = Discriminator(hidden=(16,), lr=1e-2, seed=0)
    disc.on_init(SimpleNamespace(model=SimpleNamespace(num_classes=4), device=torch.device("cpu")))
    g = torch.Generator().manual_seed(0)
    teacher = 6 * F.one_hot(torch.randint(0, 4, (32,), generator=g), 4).float()[:, :, None]  # confident teachers
    student = torch.randn(32, 4, generator=g) * 0.1                                          # a hesitant student
    losses = []
    for _ in range(200):
        state = SimpleNamespace(outputs=(student, teacher), loss=torch.zeros(()), logs={}, pass_index=0)
        disc.on_after_loss(state)
        disc.on_after_backward(state)  # one step of its own optimizer on (teacher: 1, student: 0)
        losses.append(float(state.logs["d_loss"]))
    assert losses[0] == pytest.approx(math.log(2), abs=0.05) and losses[-1] < 0.1
    assert float(state.logs["d_acc"]) == 1.0
    # the student's term is then large: it pays for looking like a student
    assert float(state.logs["adv"]) > 1.0


def test_only_the_student_gets_the_adversarial_gradient(shapes, teachers):
    train, test = shapes
    disc = Discriminator(weight=0.5, seed=1)
    res = wb.fit(small(), train, test, task=Distillation(teachers, temperature=1.0, alpha=1.0),
                 algorithms=[disc], epochs=1, batch_size=64, progress=False, seed=0)
    assert {"adv", "d_loss", "d_acc"} <= set(res.history.columns)
    # the student's term: weight * BCE(D(p_s), 1), with D's weights frozen inside it
    x = test.normalize(test.images[:8])
    logits = res.model.eval()(x)
    want = F.binary_cross_entropy_with_logits(disc.net(F.softmax(logits, 1)).squeeze(1), torch.ones(8))
    state = SimpleNamespace(outputs=(logits, torch.stack([t(x) for t in teachers], 2)), loss=torch.zeros(()),
                            logs={}, pass_index=1)  # the loop's state, as much as the discriminator reads
    disc.net.zero_grad()
    disc.on_after_loss(state)
    assert state.loss.item() == pytest.approx(0.5 * want.item(), rel=1e-6)
    state.loss.backward()
    assert all(p.grad is None for p in disc.net.parameters())
    assert res.model.fc.weight.grad is not None
    # a task whose outputs are not (student, teacher) logits is named
    state.outputs = logits
    with pytest.raises(TypeError, match=r"needs a task whose outputs are \(student logits, teacher logits\)"):
        disc.on_after_loss(state)


def test_discriminator_state_survives_a_resume_bitwise(shapes, teachers, tmp_path):
    train, test = shapes
    kw = dict(epochs=2, batch_size=64, progress=False, seed=2)

    def run(model, **extra):
        disc = Discriminator(seed=3)
        res = wb.fit(model, train, test, task=Distillation(teachers, temperature=1.0, alpha=1.0), algorithms=[disc],
                     **kw, **extra)
        return res, disc

    full, d_full = run(small())
    run(small(), checkpoint_dir=tmp_path, checkpoint_every=2, stop_after_steps=4)  # stopped mid-epoch 2
    resumed, d_resumed = run(small(seed=9), checkpoint_dir=tmp_path, checkpoint_every=2)
    for (n, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), n
    for (n, p), q in zip(d_full.net.state_dict().items(), d_resumed.net.state_dict().values()):
        assert torch.equal(p, q), n
    want, got = d_full.opt.state_dict()["state"], d_resumed.opt.state_dict()["state"]
    assert sorted(want) == sorted(got) and len(want) == 6  # Adam's moments of the 3 layers' weights and biases
    assert all(torch.equal(want[i][k], got[i][k]) for i in want for k in want[i])
    assert full.history["d_loss"].tolist() == resumed.history["d_loss"].tolist()
    plain = wb.fit(small(), train, test, task=Distillation(teachers, temperature=1.0, alpha=1.0), **kw)
    assert not torch.equal(plain.model.fc.weight, full.model.fc.weight), "the discriminator must change the run"


# --- bad input ------------------------------------------------------------------------------------

def test_teachers_and_student_with_different_class_counts(shapes, teachers):
    train, _ = shapes
    with pytest.raises(ValueError, match=r"the teachers predict different numbers of classes \(teacher 0: 10, "
                                         r"teacher 1: 5\)"):
        Distillation([teachers[0], small(num_classes=5)])
    with pytest.raises(ValueError, match="teacher 0: the model predicts 5 classes but shapes has 10; create the "
                                         "model with num_classes=10"):
        wb.fit(small(), train, task=Distillation(small(num_classes=5)), progress=False)
    task = Distillation(teachers)
    with pytest.raises(ValueError, match="the student predicts 5 classes but the teachers 10"):
        task.check_data(small(num_classes=5), SimpleNamespace())  # data that names no classes
    with pytest.raises(ValueError, match="the student and its teachers must predict the same classes"):
        task.loss((torch.randn(2, 5), torch.randn(2, 10, 3)), (None, torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="the student and its teachers must predict the same classes"):
        distillation_loss(torch.randn(2, 5), torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"cache_logits must be one of \(False, True, 'fallback'\), got 'yes'"):
        Distillation(teachers, cache_logits="yes")
    with pytest.raises(TypeError, match="teacher 1 must be an nn.Module"):
        Distillation([teachers[0], "resnet20"])
    with pytest.raises(ValueError, match="hidden must list at least one positive layer width"):
        Discriminator(hidden=())
