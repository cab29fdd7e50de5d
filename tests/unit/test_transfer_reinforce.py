"""Dataset reinforcement (arXiv 2303.08983): exact replay, stored targets, the loss, the file, resuming, costs."""
import math

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.data import random_crop_flip
from workbench.transfer import distillation_loss
from workbench.transfer.reinforce import (ReinforcedDistillation, ReinforcedLoader, ReinforcedSet, augmentation_params,
                                          cost_ledger, payback, reinforce_dataset, replay_augmentation, sparse_kl_loss,
                                          sparse_topk, student_run, train_reinforced)


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=60), wb.load("shapes", "test", subset=40)


class Teacher(nn.Module):
    """A fixed small network that records what it saw, counts its calls and can fail at one (a kill)."""

    def __init__(self, seed=1, scale=8.0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = wb.create_model("resnet8", width=4)
        with torch.no_grad():
            self.net.fc.weight.mul_(scale)  # peaked probabilities, so that top-k matters
        self.num_classes, self.seen, self.calls, self.fail_at = 10, [], 0, None

    def forward(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("killed")
        self.seen.append(x.clone())
        return self.net(x)


def small(seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4, **kw)


def build(data, tmp_path, teacher=None, **kw):
    kw = {"augmentations": 3, "top_k": 4, "batch_size": 64, "chunk_size": 64, "device": "cpu",
          "cache_dir": tmp_path, **kw}
    return reinforce_dataset(teacher or Teacher(), data, **kw)


# --- the augmentations ------------------------------------------------------------------------------

def test_replay_is_wb_data_crop_flip_with_its_own_draws(shapes):
    images = shapes[0].images[:16]
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    want = random_crop_flip(images, g, padding=4)
    g.set_state(state)  # the same draws, in random_crop_flip's order: shifts [2, n], then flips
    shift = torch.randint(0, 9, (2, 16), generator=g)
    flip = (torch.rand(16, generator=g) < 0.5).long()
    assert torch.equal(replay_augmentation(images, torch.stack([shift[0], shift[1], flip], 1), padding=4), want)


def test_params_are_a_pure_function_of_seed_image_and_k():
    kw = dict(n_images=100, size=(32, 32), policy="crop_flip_cutmix")
    both = augmentation_params(3, torch.tensor([7, 2]), torch.tensor([1, 4]), **kw)
    assert torch.equal(both[0], augmentation_params(3, torch.tensor([7]), torch.tensor([1]), **kw)[0])
    assert torch.equal(both[1], augmentation_params(3, torch.tensor([2]), torch.tensor([4]), **kw)[0])
    many = augmentation_params(3, torch.full((50,), 7), torch.arange(50), **kw)
    assert len({tuple(r) for r in many.tolist()}) == 50, "each k is another augmentation"
    assert not torch.equal(many, augmentation_params(4, torch.full((50,), 7), torch.arange(50), **kw))
    assert ((many[:, :2] >= 0) & (many[:, :2] <= 8)).all() and (many[:, 7] <= many[:, 8]).all()


@pytest.mark.parametrize("policy", ["crop_flip", "crop_flip_cutmix"])
def test_student_sees_bitwise_what_the_teacher_saw(shapes, tmp_path, policy):
    train, _ = shapes
    teacher = Teacher()
    rset = build(train, tmp_path, teacher, policy=policy)
    assert teacher.calls == rset.augmentations  # one chunk, one batch per augmentation
    loader = rset.loader(train, batch_size=8, seed=1)
    idx = torch.tensor([5, 0, 59, 5, 31])
    g = torch.Generator().manual_seed(11)
    k = torch.randint(0, 3, (5,), generator=torch.Generator().manual_seed(11))
    x, y, classes, probs = loader.batch(idx, g)
    for b in range(5):
        assert torch.equal(x[b], teacher.seen[int(k[b])][int(idx[b])])
    want_c, want_p = rset.targets(idx, k)
    assert torch.equal(classes, want_c) and torch.equal(probs, want_p) and torch.equal(y, train.labels[idx])
    assert torch.allclose(probs.sum(1), torch.ones(5))
    if policy == "crop_flip_cutmix":  # some images carry a pasted box: they differ from their crop alone
        crop = replay_augmentation(train.images[idx], rset.params(idx, k)[:, :3])
        crop = wb.data.to_float(crop, train.mean, train.std)
        assert not torch.equal(crop, x)
    batches = list(loader)
    assert sum(len(b[0]) for b in batches) == len(train) and all(len(b) == 4 for b in batches)


# --- the stored targets and the loss ------------------------------------------------------------------

def test_sparse_topk_and_the_loss_on_a_hand_case():
    probs = torch.tensor([[0.2, 0.5, 0.3]])
    classes, values = sparse_topk(probs, 2)
    assert classes.dtype == torch.uint8 and values.dtype == torch.float16
    assert classes.tolist() == [[1, 2]] and torch.equal(values, torch.tensor([[0.5, 0.3]]).half())
    assert sparse_topk(torch.rand(2, 300), 3)[0].dtype == torch.int16
    # renormalised: q = (0.625, 0.375) on classes 1, 2; a uniform student has log p = -log 3 everywhere
    q = torch.tensor([0.5, 0.3]).half().float()
    q = q / q.sum()
    want = float((q * q.log()).sum() + math.log(3))
    assert sparse_kl_loss(torch.zeros(1, 3), classes, values).item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match=r"top_k must be between 1 and the number of classes \(3\), got 4"):
        sparse_topk(probs, 4)


def test_all_classes_store_the_teacher_softmax_and_the_loss_is_live_distillation(shapes, tmp_path):
    train, _ = shapes
    teacher = Teacher()
    rset = build(train, tmp_path, teacher, top_k=10)
    teacher.eval()  # the build ran it in eval mode and gave it back in its own (training) mode
    assert rset.mass() == pytest.approx(1.0, abs=5e-3)
    for k in range(rset.augmentations):
        with torch.no_grad():
            soft = torch.softmax(teacher.net(teacher.seen[k]), 1)  # the same batch again: the same numbers
        dense = torch.zeros(len(train), 10, dtype=torch.float16).scatter(1, rset.classes[:, k].long(),
                                                                         rset.values[:, k])
        assert torch.equal(dense, soft.half())
    x, y, classes, probs = rset.loader(train, batch_size=16, seed=0).batch(torch.arange(16), torch.Generator())
    with torch.no_grad():
        teacher_logits = teacher.net(x)
    student = torch.randn(16, 10)
    live = distillation_loss(student, teacher_logits, temperature=1.0)
    got = sparse_kl_loss(student, classes, probs)
    assert got.item() == pytest.approx(live.item(), abs=2e-3)  # the targets are float16
    q = torch.zeros(16, 10).scatter(1, classes, probs)
    assert got.item() == pytest.approx(distillation_loss(student, q.log(), 1.0).item(), rel=1e-5)
    task = ReinforcedDistillation(rset, alpha=0.25)
    mixed = 0.75 * nn.functional.cross_entropy(student, y) + 0.25 * got
    assert task.loss(student, (x, y, classes, probs)).item() == pytest.approx(mixed.item(), rel=1e-6)
    assert ReinforcedDistillation(rset).loss(student, (x, y, classes, probs)).item() == pytest.approx(got.item())


# --- the file and the build ---------------------------------------------------------------------------

def test_the_file_round_trips_and_is_small(shapes, tmp_path):
    train, _ = shapes
    rset = build(train, tmp_path)
    assert rset.path is not None and rset.path.exists() and rset.nbytes == rset.path.stat().st_size
    copy = ReinforcedSet.load(rset.save(tmp_path / "copy.safetensors"))
    assert copy.classes.dtype == torch.uint8 and copy.values.dtype == torch.float16
    assert torch.equal(copy.classes, rset.classes) and torch.equal(copy.values, rset.values)
    assert (copy.key, copy.data, copy.policy, copy.seed, copy.num_classes) == \
           (rset.key, rset.data, rset.policy, rset.seed, rset.num_classes)
    payload = 60 * 3 * 4 * (1 + 2)  # uint8 classes and float16 values
    assert payload < copy.nbytes < payload + 8_000  # plus the header
    data = copy.path.read_bytes()
    (tmp_path / "broken.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a complete workbench result file"):
        ReinforcedSet.load(tmp_path / "broken.safetensors")
    with pytest.raises(FileNotFoundError, match="wb.transfer.reinforce"):
        ReinforcedSet.load(tmp_path / "missing.safetensors")


def test_a_killed_build_resumes_and_ends_as_an_uninterrupted_one(shapes, tmp_path):
    train, _ = shapes
    kw = dict(augmentations=2, chunk_size=20, batch_size=20)  # 3 chunks of 2 forward passes each
    whole = build(train, tmp_path / "whole", **kw)
    killed = Teacher()
    killed.fail_at = 5  # dies in the third chunk
    with pytest.raises(RuntimeError, match="killed"):
        build(train, tmp_path / "run", killed, **kw)
    chunks = list((tmp_path / "run" / "results" / "reinforce_chunk").glob("*.safetensors"))
    assert len(chunks) == 2 and not (tmp_path / "run" / "results" / "reinforced_set").exists()
    again = Teacher()
    resumed = build(train, tmp_path / "run", again, **kw)
    assert again.calls == 2 and resumed.stats["forwards_this_call"] == 40
    assert resumed.stats["teacher_forwards"] == 120 and resumed.stats["chunks"] == 3
    assert torch.equal(resumed.classes, whole.classes) and torch.equal(resumed.values, whole.values)
    assert resumed.key == whole.key
    assert not list((tmp_path / "run" / "results" / "reinforce_chunk").glob("*.safetensors")), "chunks cleaned up"
    cached = Teacher()
    assert build(train, tmp_path / "run", cached, **kw).stats["forwards_this_call"] == 0 and cached.calls == 0


def test_a_damaged_chunk_is_recomputed(shapes, tmp_path):
    train, _ = shapes
    kw = dict(augmentations=2, chunk_size=30, batch_size=30)
    killed = Teacher()
    killed.fail_at = 3  # after the first chunk
    with pytest.raises(RuntimeError):
        build(train, tmp_path, killed, **kw)
    (chunk,) = (tmp_path / "results" / "reinforce_chunk").glob("*.safetensors")
    chunk.write_bytes(chunk.read_bytes()[:100])  # half-written
    with pytest.warns(UserWarning, match="discarding damaged cache entry"):
        rset = build(train, tmp_path, Teacher(), **kw)
    assert rset.stats["forwards_this_call"] == 120
    assert torch.equal(rset.classes, build(train, tmp_path / "clean", **kw).classes)


# --- training from it ------------------------------------------------------------------------------------

def test_students_train_from_the_set_without_the_teacher_and_resume_exactly(shapes, tmp_path):
    train, test = shapes
    teacher = Teacher()
    rset = build(train, tmp_path, teacher)
    teacher.fail_at = 0  # any call from now on fails
    kw = dict(epochs=2, lr=0.05, progress=False, seed=3)

    def run(**extra):
        loader = ReinforcedLoader(train, rset, batch_size=16, seed=3)
        return wb.fit(small(), loader, test, task=ReinforcedDistillation(rset), **kw, **extra)

    full = run()
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(full.history.columns)
    assert full.history["train_loss"].iloc[-1] < full.history["train_loss"].iloc[0]
    run(checkpoint_dir=tmp_path / "ck", stop_after_steps=5)
    resumed = run(checkpoint_dir=tmp_path / "ck")
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_train_reinforced_is_cached_and_student_run_counts_the_teacher(shapes, tmp_path):
    train, test = shapes
    teacher = Teacher()
    rset = build(train, tmp_path, teacher)
    recipe = dict(epochs=2, lr=0.05, batch_size=16, label_smoothing=0.1, augment="crop_flip")
    first = train_reinforced("resnet8", rset, train, test, seed=0, model_kwargs={"width": 4}, **recipe)
    teacher.fail_at = 0
    again = train_reinforced("resnet8", rset, train, test, seed=0, model_kwargs={"width": 4}, **recipe)
    for p, q in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)
    teacher.fail_at = None
    runs = {v: student_run("resnet8", v, 0, train=train, test=test, reinforced=rset, teacher=teacher.net,
                           model_kwargs={"width": 4}, **recipe) for v in ("normal", "live", "reinforced")}
    # the live teacher runs on every training image each epoch, and on the test set at the one evaluation
    assert [runs[v]["teacher_forwards"] for v in ("normal", "live", "reinforced")] == [0, 2 * len(train) + len(test), 0]
    assert [len(runs[v]["curve_test_acc"]) for v in ("normal", "live", "reinforced")] == [2, 1, 2]
    assert runs["reinforced"]["test_acc"] == first.test_acc
    assert all(r["train_seconds"] > 0 and r["params"] > 0 for r in runs.values())


def test_bad_input(shapes, tmp_path):
    train, test = shapes
    rset = build(train, tmp_path)
    with pytest.raises(ValueError, match="the student predicts 5 classes but the reinforced set stores probabilities "
                                         "over 10; create the student with num_classes=10"):
        wb.fit(small(num_classes=5), rset.loader(train), task=ReinforcedDistillation(rset), progress=False)
    headless = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))  # no num_classes attribute
    with pytest.raises(ValueError, match="the student's logits have 7 classes"):
        wb.fit(headless, rset.loader(train), task=ReinforcedDistillation(rset), progress=False)
    other = wb.load("shapes", "test", subset=60)
    with pytest.raises(ValueError, match=r"this reinforced set was built for shapes/train \(60 images"):
        rset.loader(other)
    with pytest.raises(ValueError, match="trains on batches .* of a ReinforcedLoader"):
        wb.fit(small(), train, task=ReinforcedDistillation(rset), progress=False)
    with pytest.raises(ValueError, match="the teacher predicts 10 classes but shapes has 4"):
        reinforce_dataset(Teacher(), wb.data.ImageDataset(train.images, train.labels % 4, list("abcd"), "shapes"),
                  cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown policy 'mixup'; choose one of crop_flip, crop_flip_cutmix"):
        build(train, tmp_path, policy="mixup")
    with pytest.raises(ValueError, match=r"top_k must be between 1 and the number of classes \(10\), got 11"):
        build(train, tmp_path, top_k=11)
    with pytest.raises(ValueError, match=r"augmentation k must be in 0..2"):
        rset.images(train, torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="variant 'reinforced' trains from a reinforced set"):
        student_run("resnet8", "reinforced", 0, train=train, test=test)
    with pytest.raises(ValueError, match="unknown variant 'kd'; choose one of normal, live, reinforced"):
        student_run("resnet8", "kd", 0, train=train, test=test)


# --- the cost ledger ---------------------------------------------------------------------------------

def test_payback_and_the_ledger_on_hand_cases():
    assert payback(200, 30) == 7          # 6 students save 180 < 200, 7 save 210
    assert payback(60, 30) == 2           # exactly paid back by the second
    assert payback(0, 5) == 1
    assert payback(100, 30, 10) == 5      # each student from the set still costs 10
    assert payback(60, 30, 30) is None    # nothing saved per student: never
    table = cost_ledger(60, 30, 5, students=3)
    assert table["live teacher"].tolist() == [0, 30, 60, 90]
    assert table["reinforced set"].tolist() == [60, 65, 70, 75]
    assert table["saved"].tolist() == [-60, -35, -10, 15]
    with pytest.raises(ValueError, match="build is a cost and must be a finite number >= 0"):
        payback(-1, 3)
    with pytest.raises(ValueError, match="students must be a positive integer"):
        cost_ledger(1, 2, students=0)
