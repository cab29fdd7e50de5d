"""The two tasks written against the task interface outside train/: distillation and two-view contrastive."""
from __future__ import annotations

import math

import pytest
import torch

import workbench as wb
from workbench.ssl import Contrastive, nt_xent, two_views
from workbench.transfer import Distillation, distillation_loss


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=256), wb.load("shapes", "test", subset=100)


def small(seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4, **kw)


# --- distillation --------------------------------------------------------------------------------

def test_distillation_loss_exact_case():
    # teacher logits (2, 0), student (0, 0), T = 2: p_t = softmax(1, 0), p_s = (1/2, 1/2)
    t, s, temp = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]], requires_grad=True), 2.0
    p1 = math.e / (math.e + 1)
    kl = p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5)
    loss = distillation_loss(s, t, temp)
    assert loss.item() == pytest.approx(temp ** 2 * kl, rel=1e-6)
    loss.backward()  # d(T^2 KL)/ds = T (p_s - p_t)
    assert s.grad[0].tolist() == pytest.approx([temp * (0.5 - p1), temp * (0.5 - (1 - p1))], rel=1e-5)
    assert distillation_loss(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_task_combines_the_terms():
    teacher = small(1)
    task = Distillation(teacher, temperature=3.0, alpha=0.25)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5])
    student_logits, teacher_logits = torch.randn(6, 10), teacher.eval()(x).detach()
    hard = torch.nn.functional.cross_entropy(student_logits, y)
    soft = distillation_loss(student_logits, teacher_logits, 3.0)
    got = task.loss((student_logits, teacher_logits), (x, y))
    assert got.item() == pytest.approx(0.75 * hard.item() + 0.25 * soft.item(), rel=1e-6)


def test_distillation_with_alpha_zero_is_plain_training(shapes):
    train, test = shapes
    kw = dict(epochs=1, batch_size=64, progress=False, seed=3)
    plain = wb.fit(small(), train, test, **kw)
    distilled = wb.fit(small(), train, test, task=Distillation(small(7), alpha=0.0), **kw)
    for p, q in zip(plain.model.parameters(), distilled.model.parameters()):
        assert torch.equal(p, q)
    h = distilled.history
    assert {"train_kl", "train_agree", "test_kl", "test_agree"} <= set(h.columns)
    assert h["train_acc"].iloc[0] == plain.history["train_acc"].iloc[0]


def test_distillation_pulls_the_student_to_the_teacher(shapes):
    train, test = shapes
    teacher = wb.fit(small(1), train, epochs=3, batch_size=64, lr=0.1, progress=False, seed=0).model
    before = wb.fit(small(), train, test, epochs=1, batch_size=64, progress=False, max_steps=1,
                    task=Distillation(teacher, alpha=1.0), lr=1e-9).history
    after = wb.fit(small(), train, test, epochs=3, batch_size=64, lr=0.1, progress=False,
                   task=Distillation(teacher, temperature=4.0, alpha=1.0)).history
    assert after["test_kl"].iloc[-1] < 0.5 * before["test_kl"].iloc[-1]
    assert after["test_agree"].iloc[-1] > before["test_agree"].iloc[-1] + 0.2
    assert all(not p.requires_grad for p in teacher.parameters()), "the teacher stays frozen"


def test_distillation_bad_input(shapes):
    train, _ = shapes
    with pytest.raises(ValueError, match="temperature must be positive"):
        Distillation(small(), temperature=0)
    with pytest.raises(ValueError, match=r"alpha weighs the soft term and must be in \[0, 1\]"):
        Distillation(small(), alpha=1.5)
    with pytest.raises(ValueError, match="the model predicts 5 classes but shapes has 10; create the model with "
                                         "num_classes=10"):
        wb.fit(small(), train, task=Distillation(small(num_classes=5)), progress=False)


# --- contrastive ---------------------------------------------------------------------------------

def _nt_xent_by_hand(z1, z2, tau):
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        num = math.exp(float(z[i] @ z[partner]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


def test_nt_xent_closed_form_and_by_hand():
    # two images, orthogonal embeddings, both views identical: every anchor sees its partner at
    # similarity 1 and the two other views at 0, so l = -log(e^(1/tau) / (e^(1/tau) + 2))
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([e1, e2])
    for tau in (0.1, 0.5, 1.0):
        loss, hits = nt_xent(z, z.clone(), tau)
        want = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
        assert loss.item() == pytest.approx(want, rel=1e-6, abs=1e-7) and int(hits) == 4  # float32
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(z1, z2, 0.3)[0].item() == pytest.approx(_nt_xent_by_hand(z1, z2, 0.3), rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z1, z2[:4])


def test_two_views_are_a_pure_function_of_seed_and_step():
    x = torch.randn(8, 3, 32, 32)
    a1, a2 = two_views(x, 0, 5)
    b1, b2 = two_views(x, 0, 5)
    c1, _ = two_views(x, 0, 6)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2) and not torch.equal(a1, c1)


def test_contrastive_training_learns_to_match_views(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=3, batch_size=64, lr=0.05, augment=None, progress=False, seed=0, task=Contrastive(0.5))
    res = wb.fit(small(num_classes=32), train, test, **kw)
    h = res.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert h["test_acc"].iloc[-1] > 1.5 / 127  # chance: the partner among 2N - 1 = 127 others in a test batch of 64
    # resumable: the views are a function of the step
    wb.fit(small(num_classes=32), train, test, checkpoint_dir=tmp_path, stop_after_steps=5, **kw)
    resumed = wb.fit(small(num_classes=32), train, test, checkpoint_dir=tmp_path, **kw)
    assert all(torch.equal(p, q) for p, q in zip(res.model.parameters(), resumed.model.parameters()))


def test_contrastive_bad_input(shapes):
    train, _ = shapes
    with pytest.raises(ValueError, match="at least 2 images per batch"):
        wb.fit(small(), wb.load("shapes", "train", subset=1), task=Contrastive(), augment=None, progress=False,
               batch_size=1)
    with pytest.raises(ValueError, match="temperature must be positive"):
        Contrastive(temperature=-1)
