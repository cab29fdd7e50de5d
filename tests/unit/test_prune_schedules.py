"""wb.prune's schedules: the cubic schedule by hand, gradual magnitude pruning in wb.fit (exact final
sparsity, monotone, exact zeros, bitwise resume), iterative pruning with rewinding and one-shot pruning."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import config
from workbench.prune.masks import magnitude_masks, prunable
from workbench.prune.schedules import GradualMagnitude, cubic_sparsity, iterative_magnitude, one_shot
from workbench.train import Callback


@pytest.fixture(scope="module")
def shapes():
    return wb.data.load("shapes", "train", subset=256), wb.data.load("shapes", "test", subset=100)


def small(train, seed=0):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4, num_classes=train.num_classes)


def zeros(masks) -> int:
    return sum(int((m == 0).sum()) for m in masks.values())


class MaskLog(Callback):
    """After each step: the step and the number of pruned weights of a GradualMagnitude."""

    def __init__(self, alg):
        super().__init__()
        self.alg, self.log = alg, []

    def on_after_step(self, state):
        self.log.append((state.step, zeros(self.alg.masks)))


def test_cubic_sparsity_by_hand():
    kw = dict(final=0.8, start_step=10, end_step=30)
    assert cubic_sparsity(5, **kw) == 0.0 and cubic_sparsity(10, **kw) == 0.0  # before and at t0: initial
    assert cubic_sparsity(20, **kw) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)      # midpoint: 0.7
    assert cubic_sparsity(30, **kw) == 0.8 and cubic_sparsity(1000, **kw) == 0.8  # t1 and beyond: final
    # held between pruning steps: every 4 steps from 10, so step 21 uses t = 18 and step 22 uses t = 22
    assert cubic_sparsity(21, **kw, every=4) == pytest.approx(0.8 * (1 - 0.6 ** 3))  # 0.6272
    assert cubic_sparsity(22, **kw, every=4) == pytest.approx(0.8 * (1 - 0.4 ** 3))  # 0.7488
    assert cubic_sparsity(20, **kw, initial=0.2) == pytest.approx(0.8 - 0.6 * 0.125)  # 0.725
    assert cubic_sparsity(3, **kw, initial=0.2) == 0.2


def test_gradual_magnitude_follows_the_schedule_to_exactly_the_final_sparsity(shapes):
    train, _ = shapes
    model = small(train)
    n = sum(p.numel() for p in prunable(model).values())
    alg = GradualMagnitude(0.8, start=0.1, end=0.6, every=2)
    log = MaskLog(alg)
    res = wb.fit(model, train, epochs=5, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4, seed=0,
                 algorithms=[alg, log], progress=False)
    # 20 steps: t0 = 2, t1 = 12, pruning every 2 steps; step k's pruning happens before its update
    assert alg.steps(20) == (2, 12, 2)
    assert [z for _, z in log.log] == [round(cubic_sparsity(s - 1, 0.8, 2, 12, every=2) * n) for s, _ in log.log]
    counts = [z for _, z in log.log]
    assert counts == sorted(counts) and len(set(counts)) == 6  # 0, then 5 pruning steps up to t1
    assert counts[-1] == round(0.8 * n) and alg.sparsity == 0.8
    for name, p in prunable(model).items():  # bit for bit, under momentum and weight decay
        m = alg.masks[name]
        assert torch.equal(p.detach()[m == 0], torch.zeros(int((m == 0).sum())))
    assert res.history["sparsity"].iloc[-1] == 0.8
    # Adam's moments of the newly pruned weights are zeroed too, else they would move them again
    alg = GradualMagnitude(0.5, start=0.0, end=0.5, every=1)
    model = small(train)
    wb.fit(model, train, epochs=2, batch_size=64, lr=1e-2, optimizer="adam", weight_decay=1e-4, seed=0,
           algorithms=[alg], progress=False)
    assert sum(int((p == 0).sum()) for p in prunable(model).values()) == zeros(alg.masks) == round(0.5 * n)


def test_gradual_magnitude_resumes_bitwise(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=3, batch_size=64, lr=0.1, seed=1, progress=False)
    full_alg = GradualMagnitude(0.7, start=0.0, end=0.75, every=3, scope="layer")
    full = wb.fit(small(train), train, test, algorithms=[full_alg], **kw)
    part_alg = GradualMagnitude(0.7, 0.0, 0.75, 3, "layer")
    wb.fit(small(train), train, test, algorithms=[part_alg], checkpoint_dir=tmp_path, checkpoint_every=2,
           stop_after_steps=5, **kw)  # stopped between the pruning steps 3 and 6
    alg = GradualMagnitude(0.7, 0.0, 0.75, 3, "layer")
    seen = []

    class AtStart(Callback):  # the masks the resumed run starts from: the checkpoint's, not all ones
        def on_fit_start(self, state):
            seen.append((state.step, alg.sparsity, zeros(alg.masks)))

    resumed = wb.fit(small(train, seed=9), train, test, algorithms=[alg, AtStart()], checkpoint_dir=tmp_path,
                     checkpoint_every=2, **kw)
    assert seen == [(5, part_alg.sparsity, zeros(part_alg.masks))] and 0 < part_alg.sparsity < 0.7
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert all(torch.equal(full_alg.masks[n], alg.masks[n]) for n in full_alg.masks) and alg.sparsity == 0.7
    cols = [c for c in full.history if not c.endswith("seconds")]  # everything but the timings
    assert "sparsity" in cols and full.history[cols].equals(resumed.history[cols])
    assert full_alg.config() == {"name": "GradualMagnitude", "final_sparsity": 0.7, "start": 0.0, "end": 0.75,
                                 "every": 3, "scope": "layer", "layers": None}


class StartLog(Callback):
    """Per training run: the state at its start and after step 4 (the rewind point "1ep")."""

    def __init__(self):
        super().__init__()
        self.starts, self.at4 = [], []

    def on_fit_start(self, state):
        self.starts.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    def on_after_step(self, state):
        if state.step == 4:
            self.at4.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})


def test_iterative_magnitude_rewinds_and_follows_the_per_round_sparsity(shapes, tmp_path):
    config.set_cache_dir(tmp_path)  # a fresh cache: every run trains once here
    train, test = shapes
    log = StartLog()
    kw = dict(sparsity=0.875, rounds=3, rewind="1ep", model_kwargs={"width": 4}, epochs=2, batch_size=64,
              lr=0.1, progress=False)
    out = iterative_magnitude("resnet8", train, test, algorithms=[log], **kw)
    # runs: dense, the rewind run (stopped at the epoch's end), rounds 1-3
    assert len(log.starts) == 5 and out.rewind_step == 4
    n = sum(p.numel() for p in prunable(out.model).values())
    p = 1 - (1 - 0.875) ** (1 / 3)  # 0.5 per round
    for k in (1, 2, 3):
        assert zeros(out.round_masks[k]) == round((1 - (1 - p) ** k) * n)
        assert out.rounds.sparsity[k] == pytest.approx(1 - (1 - p) ** k, abs=1 / n)
    assert out.rounds.sparsity[3] == pytest.approx(0.875, abs=1 / n) and out.rounds["round"].tolist() == [0, 1, 2, 3]
    # nested: a pruned weight is never revived
    for k in (2, 3):
        assert all(bool((out.round_masks[k][m] <= out.round_masks[k - 1][m]).all()) for m in out.round_masks[k])
    # the rewind weights are the dense run's after exactly 4 steps (not 5: the loop's stop at an epoch end
    # takes a step of the next epoch, which the rewind run undoes)
    assert all(torch.equal(out.rewind_state[k], v) for k, v in log.at4[0].items())
    # each round starts from the rewind weights, the pruned ones zero
    for k in (1, 2, 3):
        start, masks = log.starts[1 + k], out.round_masks[k]
        for name, v in out.rewind_state.items():
            want = v * masks[name].to(v) if name in masks else v
            assert torch.equal(start[name], want), (k, name)
    for name, w in prunable(out.model).items():  # the final model keeps the final masks
        assert torch.equal(w.detach()[out.masks[name] == 0], torch.zeros(int((out.masks[name] == 0).sum())))
    # every run is cached: a second call trains nothing and ends with the same masks
    again = iterative_magnitude("resnet8", train, test, algorithms=[log], **kw)
    assert len(log.starts) == 5
    assert all(torch.equal(again.masks[m], out.masks[m]) for m in out.masks)
    assert again.rounds.test_acc.tolist() == out.rounds.test_acc.tolist()


def test_one_shot_prunes_the_smallest_and_fine_tunes_with_the_masks(shapes):
    train, test = shapes
    model = small(train)
    wb.fit(model, train, epochs=1, batch_size=64, progress=False, seed=0)
    want = magnitude_masks(model, 0.6)
    res, masks = one_shot(model, train, test, 0.6, epochs=1, batch_size=64, seed=0, progress=False)
    assert all(torch.equal(masks[n], want[n]) for n in want)
    n = sum(p.numel() for p in prunable(model).values())
    assert sum(int((p == 0).sum()) for p in prunable(res.model).values()) == zeros(masks) == round(0.6 * n)
    assert res.config["algorithms"][-1]["name"] == "Masked"


def test_bad_inputs_are_refused_with_the_fix(shapes):
    train, test = shapes
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        cubic_sparsity(3, 1.0, 0, 10)
    with pytest.raises(ValueError, match="end_step must come after start_step"):
        cubic_sparsity(3, 0.5, 10, 10)
    with pytest.raises(ValueError, match=r"initial is the sparsity the schedule starts from, in \[0, final=0.5\]"):
        cubic_sparsity(3, 0.5, 0, 10, initial=0.6)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        GradualMagnitude(1.2)
    with pytest.raises(ValueError, match="end must come after start"):
        GradualMagnitude(0.5, start=0.5, end=0.5)
    with pytest.raises(ValueError, match="every is a step count"):
        GradualMagnitude(0.5, every=0)
    with pytest.raises(ValueError, match="scope is 'global'"):
        GradualMagnitude(0.5, scope="channel")
    with pytest.raises(ValueError, match="the run has 2 steps"):
        wb.fit(small(train), train, epochs=1, batch_size=64, max_steps=2, progress=False,
               algorithms=[GradualMagnitude(0.5, start=0.0, end=0.2)])
    kw = dict(model_kwargs={"width": 4}, epochs=2, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="rounds is the number of prune-and-retrain rounds"):
        iterative_magnitude("resnet8", train, test, sparsity=0.5, rounds=0, **kw)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        iterative_magnitude("resnet8", train, test, sparsity=1.0, rounds=2, **kw)
    with pytest.raises(ValueError, match="rewind='3ep' is step 12, beyond the dense training's 8 steps"):
        iterative_magnitude("resnet8", train, test, sparsity=0.5, rounds=2, rewind="3ep", **kw)
    with pytest.raises(ValueError, match="rewind=9 is step 9, beyond the dense training's 8 steps"):
        iterative_magnitude("resnet8", train, test, sparsity=0.5, rounds=2, rewind=9, **kw)
    with pytest.raises(ValueError, match="rewind is a step count"):
        iterative_magnitude("resnet8", train, test, sparsity=0.5, rounds=2, rewind=-1, **kw)
    with pytest.raises(ValueError, match="sets stop_after_steps= itself"):
        iterative_magnitude("resnet8", train, test, sparsity=0.5, rounds=2, stop_after_steps=3, **kw)
