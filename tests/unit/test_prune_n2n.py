"""wb.prune.n2n (Ashok et al. 2018): students cut from a teacher ResNet, N2N's reward, the removal and
shrinkage controllers, REINFORCE on toy rewards with exact expectations, and a resumable search."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.prune import apply_masks
from workbench.prune.n2n import (RATIOS, Controller, RandomPolicy, block_names, make_student, n2n_search,
                                 random_actions, random_policy, removable_blocks, reward, student_params)
from workbench.prune.structured import block_masks, channel_masks
from workbench.train import CheckpointError

from ._models import with_statistics

# resnet14, width 4, 3 input channels, 10 classes: parameters by hand
STEM = 3 * 4 * 9 + 2 * 4                    # 116
L1 = 2 * (4 * 4 * 9) + 2 * 2 * 4            # 304 per block (layer1.0, layer1.1)
L20 = 4 * 8 * 9 + 8 * 8 * 9 + 2 * 2 * 8 + 4 * 8 + 2 * 8  # 944: conv1, conv2, bn1+bn2, projection conv + bn
L21 = 2 * (8 * 8 * 9) + 2 * 2 * 8          # 1184
L30 = 8 * 16 * 9 + 16 * 16 * 9 + 2 * 2 * 16 + 8 * 16 + 2 * 16  # 3680
L31 = 2 * (16 * 16 * 9) + 2 * 2 * 16       # 4672
FC = 16 * 10 + 10                           # 170
RESNET14 = STEM + 2 * L1 + L20 + L21 + L30 + L31 + FC  # 11374
RESNET8 = STEM + L1 + L20 + L30 + FC                    # 5214


def _trained_like(name: str = "resnet14", seed: int = 0) -> nn.Module:
    """A small ResNet (width 4) whose BatchNorms hold non-trivial statistics and affine parameters, in eval mode."""
    return with_statistics(name, seed, spread=0.5, width=4).eval()


def _x(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_reward_on_hand_values():
    assert reward(0.9, 0.9, 0.5) == pytest.approx(0.75)             # C (2 - C) = 0.5 * 1.5, accuracy ratio 1
    assert reward(0.45, 0.9, 0.8) == pytest.approx(0.8 * 1.2 * 0.5)  # 0.48
    assert reward(0.9, 0.9, 0.0) == 0.0 and reward(0.0, 0.5, 0.7) == 0.0
    assert reward(1.0, 0.5, 1.0) == pytest.approx(2.0)               # a student may beat its teacher
    assert reward(0.9, 0.9, 0.5, valid=False) == -1.0 and reward(0.9, 0.9, 0.5, valid=False, penalty=-3) == -3.0
    with pytest.raises(ValueError, match="acc must be .* a fraction"):
        reward(91, 0.9, 0.5)
    with pytest.raises(ValueError, match="teacher_acc must be a number in \\(0, 1\\]"):
        reward(0.5, 0.0, 0.5)
    with pytest.raises(ValueError, match="compression must be"):
        reward(0.5, 0.9, 1.5)


def test_action_space_of_resnet14():
    teacher = wb.create_model("resnet14", width=4)
    assert block_names(teacher) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    assert removable_blocks(teacher) == [True, True, False, True, False, True]  # the projection blocks stay


def test_all_keep_student_is_the_teacher():
    teacher = _trained_like()
    before = wb.train.model_fingerprint(teacher)
    for removal, shrink in [(None, None), ([1] * 6, [1.0] * 6)]:
        student, n = make_student(teacher, removal, shrink)
        assert n == sum(p.numel() for p in teacher.parameters()) == RESNET14
        with torch.no_grad():
            assert torch.equal(student.eval()(_x()), teacher(_x()))
    assert wb.train.model_fingerprint(teacher) == before  # the teacher is untouched


def test_removing_a_block_whose_branch_is_zero_keeps_the_function():
    model = _trained_like()
    apply_masks(model, block_masks(model, ["layer1.1", "layer3.1"]))  # those branches now output exactly 0
    student, n = make_student(model, [1, 0, 1, 1, 1, 0])
    assert isinstance(student.layer1[1], nn.Identity) and isinstance(student.layer3[1], nn.Identity)
    assert n == RESNET14 - L1 - L31 == sum(p.numel() for p in student.parameters())
    with torch.no_grad():
        torch.testing.assert_close(student(_x()), model(_x()), rtol=0, atol=1e-6)
    # the teacher's (nonzero) branch makes a different function: the test could fail
    with torch.no_grad():
        other = _trained_like()
        assert not torch.allclose(make_student(other, [1, 0, 1, 1, 1, 0])[0](_x()), other(_x()), atol=1e-3)


def test_shrinking_filters_that_are_zero_keeps_the_function():
    model = _trained_like()
    apply_masks(model, channel_masks(model, 0.5))  # half the conv1 filters (smallest L1) are exactly zero after bn1
    student, n = make_student(model, None, [0.5] * 6)
    assert [student.get_submodule(f"{b}.conv1").out_channels for b in block_names(student)] == [2, 2, 4, 4, 8, 8]
    assert n == student_params(model, None, [0.5] * 6) == sum(p.numel() for p in student.parameters())
    with torch.no_grad():
        torch.testing.assert_close(student(_x()), model(_x()), rtol=1e-5, atol=1e-5)


def test_parameter_counts_by_hand():
    t8 = wb.create_model("resnet8", width=4)
    assert sum(p.numel() for p in t8.parameters()) == RESNET8 == student_params(t8)
    # remove layer1.0; layer2.0 keeps 4 of 8 filters, layer3.0 4 of 16 (one filter: conv1 c_in*9, bn1 2, conv2 c_out*9)
    want = RESNET8 - L1 - 4 * (4 * 9 + 2 + 8 * 9) - 12 * (8 * 9 + 2 + 16 * 9)
    assert want == 1854
    assert make_student(t8, [0, 1, 1], [1.0, 0.5, 0.25])[1] == student_params(t8, [0, 1, 1], [1.0, 0.5, 0.25]) == want

    t14 = wb.create_model("resnet14", width=4)
    assert RESNET14 == 11374 == student_params(t14)
    removal, shrink = [1, 0, 1, 0, 1, 1], [0.75, 0.5, 0.5, 1.0, 0.75, 0.25]  # layer1.1's 0.5 is ignored (removed)
    want = (RESNET14 - L1 - L21 - 1 * (4 * 9 + 2 + 4 * 9)   # layer1.0: round(0.25 * 4) = 1 filter goes
            - 4 * (4 * 9 + 2 + 8 * 9)                       # layer2.0: 4 of 8
            - 4 * (8 * 9 + 2 + 16 * 9)                      # layer3.0: round(0.25 * 16) = 4 of 16
            - 12 * (16 * 9 + 2 + 16 * 9))                   # layer3.1: 12 of 16
    assert want == 5020
    student, n = make_student(t14, removal, shrink)
    assert n == student_params(t14, removal, shrink) == want == sum(p.numel() for p in student.parameters())
    assert student(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_controller_starts_as_the_random_policy_and_samples_by_its_seed():
    teacher = wb.create_model("resnet14", width=4)
    for stage, fixed in [("removal", None), ("shrink", [1, 0, 1, 1, 1, 0])]:
        ctrl = Controller(teacher, stage, removal_actions=fixed, seed=3)
        rand = random_policy(teacher, stage, removal_actions=fixed)
        a, lp = ctrl.sample(200, torch.Generator().manual_seed(0))
        b, _ = ctrl.sample(200, torch.Generator().manual_seed(0))
        assert torch.equal(a, b)
        torch.testing.assert_close(lp, rand.log_prob(a))
        torch.testing.assert_close(ctrl.log_prob(a).detach(), lp)
        if stage == "removal":
            assert lp[0].item() == pytest.approx(4 * torch.tensor(0.5).log().item())  # 4 free blocks, p = 1/2
            assert (a[:, [2, 4]] == 1).all() and set(a[:, [0, 1, 3, 5]].unique().tolist()) == {0, 1}
        else:
            assert lp[0].item() == pytest.approx(4 * torch.tensor(0.25).log().item())  # 4 kept blocks, 4 ratios
            assert (a[:, [1, 5]] == -1).all() and set(a[:, [0, 2, 3, 4]].unique().tolist()) == {0, 1, 2, 3}
            keep, shrink = ctrl.to_student_actions(a[0])
            assert keep == fixed and shrink[1] == shrink[5] == 1.0 and shrink[0] == RATIOS[int(a[0, 0])]
    # the same seed builds the same controller without touching the global RNG
    torch.manual_seed(0)
    state = torch.get_rng_state()
    one, two = Controller(teacher, seed=5), Controller(teacher, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(one.state_dict().values(), two.state_dict().values()))


def _expected_reward(policy, teacher, acc_of) -> float:
    """E_pi[R] exactly, by enumerating every action row of the free blocks."""
    free = policy.free.nonzero()[:, 0].tolist()
    rows = []
    for combo in itertools.product(range(policy.choices), repeat=len(free)):
        row = policy.forced.clone()
        row[free] = torch.tensor(combo)
        rows.append(row)
    actions = torch.stack(rows)
    with torch.no_grad():
        p = policy.log_prob(actions).exp()
    total = sum(p.numel() for p in teacher.parameters())
    out = 0.0
    for prob, row in zip(p.tolist(), actions):
        keep, shrink = policy.to_student_actions(row)
        out += prob * reward(acc_of(keep), 1.0, 1 - student_params(teacher, keep, shrink) / total)
    assert abs(float(p.sum()) - 1) < 1e-5
    return out


def test_reinforce_learns_which_block_to_keep():
    """Toy task: removing any block is free except layer2.1, whose loss drops the accuracy to 0.3; the best
    student removes layer1.0, layer1.1 and layer3.1 and keeps layer2.1."""
    teacher = wb.create_model("resnet14", width=4)

    def scorer(student):  # accuracy 1 unless layer2.1 was removed
        return 0.3 if isinstance(student.layer2[1], nn.Identity) else 1.0

    acc_of = lambda keep: 0.3 if keep[3] == 0 else 1.0  # noqa: E731
    before = _expected_reward(Controller(teacher, seed=0), teacher, acc_of)
    res = n2n_search(teacher, stage="removal", rollouts_per_update=8, updates=30, distill_steps=0, seed=0,
                     scorer=scorer, controller_lr=0.01)
    after = _expected_reward(res.policy, teacher, acc_of)
    assert res.teacher_acc == 1.0 and len(res.history) == 8 * 30
    assert after > before + 0.3, (before, after)  # about 0.26 -> 0.6 (the optimum is 0.71)
    keep = torch.sigmoid(res.policy.keep_logits()).detach()
    assert keep[3] > 0.8 and keep[5] < 0.2  # layer2.1 stays, layer3.1 (the most parameters) goes
    assert res.best_removal == [0, 0, 1, 1, 1, 0] and res.best_reward == pytest.approx(
        reward(1.0, 1.0, (2 * L1 + L31) / RESNET14))
    # the same budget with the random policy learns nothing: its expectation stays where it started
    rnd = n2n_search(teacher, stage="removal", rollouts_per_update=8, updates=3, distill_steps=0, seed=0,
                     scorer=scorer, policy="random")
    assert isinstance(rnd.policy, RandomPolicy) and len(rnd.history) == 24
    assert _expected_reward(rnd.policy, teacher, acc_of) == pytest.approx(before, abs=1e-6)


def test_reinforce_learns_to_shrink_when_accuracy_is_free():
    teacher = wb.create_model("resnet8", width=4)
    before = _expected_reward(Controller(teacher, "shrink", seed=0), teacher, lambda keep: 1.0)
    res = n2n_search(teacher, stage="shrink", rollouts_per_update=6, updates=12, distill_steps=0, seed=0,
                     scorer=lambda s: 1.0, controller_lr=0.03)
    after = _expected_reward(res.policy, teacher, lambda keep: 1.0)
    assert after > before + 0.05, (before, after)
    assert res.policy.greedy().tolist() == [3, 3, 3]  # the smallest ratio everywhere
    curve = res.by_update()["reward"]
    assert curve.iloc[-3:].mean() > curve.iloc[:3].mean()


def test_random_actions_reach_a_target_compression():
    teacher = wb.create_model("resnet14", width=4)
    for stage, target in [("removal", 0.3), ("shrink", 0.5)]:
        keep, shrink = random_actions(teacher, target, stage=stage, seed=2)
        comp = 1 - student_params(teacher, keep, shrink) / RESNET14
        assert comp >= target
        if stage == "removal":
            assert shrink == [1.0] * 6 and keep[2] == keep[4] == 1
            # one block fewer would miss the target: the first student to reach it
            assert any(1 - student_params(teacher, [*keep[:i], 1, *keep[i + 1:]]) / RESNET14 < target
                       for i in range(6) if keep[i] == 0)
        else:
            assert keep == [1] * 6 and all(r in RATIOS for r in shrink)
        assert random_actions(teacher, target, stage=stage, seed=2) == (keep, shrink)
    assert random_actions(teacher, 0.3, seed=1) != random_actions(teacher, 0.3, seed=5)
    with pytest.raises(ValueError, match="out of reach"):
        random_actions(teacher, 0.9, stage="removal")


def test_search_resumes_bit_identically(tmp_path):
    train = wb.data.load("shapes", "train", subset=64)
    test = wb.data.load("shapes", "test", subset=64)
    teacher = _trained_like()
    kw = dict(stage="shrink", removal_actions=[1, 0, 1, 1, 1, 1], rollouts_per_update=2, updates=3,
              distill_steps=2, batch_size=32, seed=4, teacher_acc=0.5, device="cpu", controller_lr=0.05)
    whole = n2n_search(teacher, train, test, **kw)
    first = n2n_search(teacher, train, test, checkpoint_dir=tmp_path, stop_after_updates=1, **kw)
    assert len(first.history) == 2 and len(list(tmp_path.glob("n2n-*.json"))) == 1
    rest = n2n_search(teacher, train, test, checkpoint_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(rest.history, whole.history)
    assert rest.baseline == whole.baseline and rest.best_shrink == whole.best_shrink
    for (k, p), q in zip(whole.policy.state_dict().items(), rest.policy.state_dict().values()):
        assert torch.equal(p, q), k
    assert len(list(tmp_path.glob("n2n-*.json"))) == 2  # the last two updates' checkpoints are kept
    h = whole.history
    assert h["acc"].between(0, 1).all() and h["valid"].all() and (h["update"] == [0, 0, 1, 1, 2, 2]).all()
    assert all(s[1] == 1.0 for s in h["shrink"]) and all(r == [1, 0, 1, 1, 1, 1] for r in h["removal"])
    assert (h["params"] == [student_params(teacher, r, s) for r, s in zip(h["removal"], h["shrink"])]).all()
    assert h["reward"].tolist() == [reward(a, 0.5, c) for a, c in zip(h["acc"], h["compression"])]
    # a second run of a finished search only reads it; another configuration is refused
    again = n2n_search(teacher, train, test, checkpoint_dir=tmp_path, **kw)
    pd.testing.assert_frame_equal(again.history, whole.history)
    with pytest.raises(CheckpointError, match="different search"):
        n2n_search(teacher, train, test, checkpoint_dir=tmp_path, **{**kw, "seed": 5})


def test_budget_and_bad_input():
    teacher = wb.create_model("resnet14", width=4)
    res = n2n_search(teacher, rollouts_per_update=4, updates=1, distill_steps=0, scorer=lambda s: 1.0,
                     max_params=RESNET14 - 1)  # only a student that removes something fits
    h = res.history
    assert (h.loc[~h["valid"], "reward"] == -1.0).all() and (h.loc[~h["valid"], "params"] > RESNET14 - 1).all()
    with pytest.raises(ValueError, match="removal_actions has 2 entries but CifarResNet has 6 residual blocks"):
        make_student(teacher, [1, 0])
    with pytest.raises(ValueError, match="block 'layer2.0' cannot be removed: it has a projection shortcut"):
        make_student(teacher, [1, 1, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="1 \\(keep\\) or 0 \\(remove\\)"):
        make_student(teacher, [1, 2, 1, 1, 1, 1])
    for bad in (0.0, 1.5, -0.5, float("nan"), True):
        with pytest.raises(ValueError, match="shrink ratio .* in \\(0, 1\\]"):
            make_student(teacher, None, [1.0, bad, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="shrink_actions has 3 entries"):
        student_params(teacher, None, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="stage is 'removal'"):
        Controller(teacher, "prune")
    with pytest.raises(ValueError, match="ratios are the shrink choices"):
        Controller(teacher, "shrink", ratios=(0.5,))
    with pytest.raises(ValueError, match="differ from the forced ones"):
        Controller(teacher).log_prob(torch.tensor([[1, 1, 0, 1, 1, 1]]))
    with pytest.raises(ValueError, match="actions are \\[rollouts, 6\\]"):
        Controller(teacher).log_prob(torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="removal stage has nothing to choose"):
        Controller(wb.create_model("plain8", width=4))
    with pytest.raises(ValueError, match="no residual blocks"):
        make_student(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="give train= .* or a scorer="):
        n2n_search(teacher)
    with pytest.raises(ValueError, match="rollouts_per_update must be an integer >= 1"):
        n2n_search(teacher, scorer=lambda s: 1.0, rollouts_per_update=0)
    with pytest.raises(ValueError, match="policy is 'controller'"):
        n2n_search(teacher, scorer=lambda s: 1.0, policy="greedy")


def test_a_frozen_teacher_still_gives_a_trainable_student():
    teacher = _trained_like()
    for p in teacher.parameters():
        p.requires_grad_(False)  # what the Distillation task does to its teacher
    student, n = make_student(teacher, [1, 0, 1, 1, 1, 1], [1.0, 1.0, 0.5, 1.0, 0.25, 1.0])
    assert n == student_params(teacher, [1, 0, 1, 1, 1, 1], [1.0, 1.0, 0.5, 1.0, 0.25, 1.0])
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher's flags are left as they were


def test_random_like_matches_a_students_compression_stage_by_stage():
    teacher = wb.create_model("resnet14", width=4)
    removal, shrink = [1, 0, 1, 1, 1, 0], [1.0, 1.0, 0.5, 1.0, 0.25, 1.0]
    after_removal = 1 - student_params(teacher, removal) / RESNET14   # (L1 + L31) / RESNET14 = 0.437
    target = 1 - student_params(teacher, removal, shrink) / RESNET14
    draws = []
    for seed in range(5):
        keep, ratios = wb.prune.n2n.random_like(teacher, removal, shrink, seed=seed)
        assert 1 - student_params(teacher, keep) / RESNET14 >= after_removal
        assert target <= 1 - student_params(teacher, keep, ratios) / RESNET14 <= target + 0.02
        assert keep[2] == keep[4] == 1 and all(r in RATIOS for r in ratios)
        assert wb.prune.n2n.random_like(teacher, removal, shrink, seed=seed) == (keep, ratios)
        draws.append((keep, ratios))
    assert len({str(d) for d in draws}) > 1
    # the teacher itself: nothing to remove or shrink, so the random student is the teacher
    assert wb.prune.n2n.random_like(teacher, None, None) == ([1] * 6, [1.0] * 6)
    with pytest.raises(ValueError, match="tolerance is the largest excess"):
        wb.prune.n2n.random_like(teacher, removal, shrink, tolerance=1.0)
    with pytest.raises(ValueError, match="removal_actions has 2 entries"):
        wb.prune.n2n.random_like(teacher, [1, 0], None)


def test_distill_student_is_one_rollout_outside_the_search():
    train = wb.data.load("shapes", "train", subset=64)
    test = wb.data.load("shapes", "test", subset=64)
    teacher = _trained_like()
    before = wb.train.model_fingerprint(teacher)
    removal, shrink = [1, 0, 1, 1, 1, 1], [1.0, 1.0, 0.5, 1.0, 1.0, 0.25]
    cut = wb.prune.n2n.distill_student(teacher, train, test, removal, shrink, steps=0)
    student, n = make_student(teacher, removal, shrink)
    assert cut == {"params": n, "compression": 1 - n / RESNET14, "acc": wb.evaluate(student, test)["acc"]}
    one = wb.prune.n2n.distill_student(teacher, train, test, removal, shrink, steps=3, batch_size=32, seed=1,
                                       device="cpu")
    again = wb.prune.n2n.distill_student(teacher, train, test, removal, shrink, steps=3, batch_size=32, seed=1,
                                         device="cpu")
    assert one == again and 0 <= one["acc"] <= 1 and one["params"] == n
    assert wb.train.model_fingerprint(teacher) == before
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        wb.prune.n2n.distill_student(teacher, train, test, steps=-1)
