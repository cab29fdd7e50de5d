"""wb.fit's events and algorithms: where each event fires, order, composition, state across a resume,
recorded configuration, and the errors of bad tasks and algorithms."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from tests.reference.algorithms import GradientNoise, WeightAverage
from workbench.train import EVENTS, Algorithm, CheckpointError, Classification, Task


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=256), wb.load("shapes", "test", subset=100)


def small(seed=0):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4)


class Recorder(Algorithm):
    """Records every event it sees, with the step count at that moment."""

    def __init__(self, log, tag=""):
        super().__init__(tag=tag)
        self.log, self.tag = log, tag
        for e in EVENTS:
            setattr(self, f"on_{e}", lambda state, e=e: self.log.append((self.tag + e, state.step)))


def test_events_fire_where_the_docstring_says(shapes):
    train, test = shapes
    log = []
    wb.fit(small(), train, test, epochs=2, batch_size=128, progress=False, algorithms=[Recorder(log)])
    per_step = ["batch_loaded", "before_forward", "after_forward", "after_loss", "after_backward", "after_step"]
    want = [("init", 0), ("fit_start", 0)]
    step = 0
    for _ in range(2):  # 2 epochs of 2 batches
        want.append(("epoch_start", step))
        for _ in range(2):
            want += [(e, step) for e in per_step[:-1]] + [("after_step", step + 1)]
            step += 1
        want.append(("epoch_end", step))
    want.append(("fit_end", step))
    assert log == want


def test_algorithms_at_one_event_run_in_the_order_given(shapes):
    train, _ = shapes
    log = []
    wb.fit(small(), train, epochs=1, batch_size=256, progress=False,
           algorithms=[Recorder(log, "b:"), Recorder(log, "a:")])
    at_loss = [name for name, _ in log if name.endswith("after_loss")]
    assert at_loss == ["b:after_loss", "a:after_loss"]


def test_peek_batch_is_the_next_batch_of_the_epoch_and_changes_nothing(shapes):
    """peek_batch() at step t gives the very batch the loop loads at t + 1 (the same objects), None after the
    epoch's last batch; a run that peeks is the run that does not, to the bit."""
    train, test = shapes
    seen, peeked = [], []

    class Peek(wb.train.Callback):
        def on_batch_loaded(self, state):
            seen.append(state.batch)
            peeked.append(state.peek_batch())
            assert state.peek_batch() is peeked[-1]  # peeking twice draws nothing more

    kw = dict(epochs=2, batch_size=64, progress=False, seed=1)  # 4 batches an epoch
    a = wb.fit(small(), train, test, algorithms=[Peek()], **kw)
    b = wb.fit(small(), train, test, **kw)
    assert len(seen) == 8
    for t in range(8):
        if t % 4 == 3:
            assert peeked[t] is None
        else:
            assert peeked[t] is seen[t + 1]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history.drop(columns=["seconds", "data_seconds"]).equals(b.history.drop(columns=["seconds", "data_seconds"]))


def test_two_step_replacements_are_refused_naming_both(shapes):
    train, _ = shapes

    class OwnStep(Algorithm):
        replaces_step = True

        def optimizer_step(self, state, compute):
            state.optimizer.step()

    with pytest.raises(ValueError, match="OwnStep and ClosureStep .* both replace the optimizer step"):
        wb.fit(small(), train, epochs=1, progress=False, optimizer=wb.train.sam(), algorithms=[OwnStep()])
    with pytest.raises(ValueError, match="OwnStep and OwnStep both replace"):
        wb.fit(small(), train, epochs=1, progress=False, algorithms=[OwnStep(), OwnStep()])


def test_an_algorithm_that_replaces_the_step_takes_it(shapes):
    train, _ = shapes
    calls = []

    class CountedStep(Algorithm):
        replaces_step = True

        def optimizer_step(self, state, compute):
            calls.append(state.step)
            state.optimizer.step()

    a = wb.fit(small(), train, epochs=1, batch_size=128, progress=False, algorithms=[CountedStep()], seed=1)
    b = wb.fit(small(), train, epochs=1, batch_size=128, progress=False, seed=1)
    assert calls == [0, 1]
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_unknown_event_and_non_algorithms_are_refused(shapes):
    train, _ = shapes

    class Typo(Algorithm):
        def on_after_backwards(self, state):
            pass

    with pytest.raises(ValueError, match=r"Typo listens to on_after_backwards.*did you mean on_after_backward"):
        wb.fit(small(), train, progress=False, algorithms=[Typo()])
    with pytest.raises(TypeError, match="the class GradientNoise, not an instance"):
        wb.fit(small(), train, progress=False, algorithms=[GradientNoise])
    with pytest.raises(TypeError, match="acts at no event; a loss term goes in extra_loss"):
        wb.fit(small(), train, progress=False, algorithms=[lambda model, x, y, logits: 0])


def test_a_loss_that_is_not_a_scalar_names_the_task(shapes):
    train, _ = shapes

    class PerExample(Classification):
        def loss(self, outputs, batch, state=None):
            return torch.nn.functional.cross_entropy(outputs, batch[1], reduction="none")

    with pytest.raises(ValueError, match=r"task PerExample gave a tensor of shape \[128\] as the loss; it must be a "
                                         r"scalar tensor \(reduce it with .mean\(\)"):
        wb.fit(small(), train, epochs=1, batch_size=128, progress=False, task=PerExample())


def test_a_batch_the_task_does_not_expect_is_named(shapes):
    train, _ = shapes

    class SoftLabels(wb.data.Loader):  # one-hot float targets where class indices are expected
        def batch(self, idx, generator=None):
            x, y = super().batch(idx, generator)
            return x, torch.nn.functional.one_hot(y, 10).float()

    loader = SoftLabels(train, batch_size=64, device="cpu")
    with pytest.raises(ValueError, match=r"Classification expects integer labels \[64\] beside the images but got "
                                         r"shape \[64, 10\] torch.float32"):
        wb.fit(small(), loader, epochs=1, progress=False)


def test_stateful_algorithms_resume_bitwise(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=2, batch_size=64, progress=False, seed=2)
    full_algs = [GradientNoise(0.05, seed=3), WeightAverage(0.8)]
    full = wb.fit(small(), train, test, algorithms=full_algs, **kw)
    wb.fit(small(), train, test, algorithms=[GradientNoise(0.05, seed=3), WeightAverage(0.8)],
           checkpoint_dir=tmp_path, checkpoint_every=3, stop_after_steps=5, **kw)
    resumed_algs = [GradientNoise(0.05, seed=3), WeightAverage(0.8)]
    resumed = wb.fit(small(seed=9), train, test, algorithms=resumed_algs, checkpoint_dir=tmp_path,
                     checkpoint_every=3, **kw)
    for (n, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), n
    assert resumed_algs[1].updates == full_algs[1].updates == 8
    assert all(torch.equal(full_algs[1].avg[n], resumed_algs[1].avg[n]) for n in full_algs[1].avg)
    noiseless = wb.fit(small(), train, test, algorithms=[WeightAverage(0.8)], **kw)
    assert not torch.equal(noiseless.model.fc.weight, full.model.fc.weight), "the noise must change the run"


def test_a_checkpoint_with_state_for_a_stateless_algorithm_is_refused(shapes, tmp_path):
    train, _ = shapes
    wb.fit(small(), train, epochs=1, batch_size=64, progress=False, algorithms=[WeightAverage(0.8)],
           checkpoint_dir=tmp_path, stop_after_steps=2)

    class Forgetful(WeightAverage):  # same name and arguments, but it keeps no state
        name = "WeightAverage"

        def state_dict(self):
            return None

    with pytest.raises(CheckpointError, match="holds state for algorithm 0, which has no state to take it"):
        wb.fit(small(), train, epochs=1, batch_size=64, progress=False, algorithms=[Forgetful(0.8)],
               checkpoint_dir=tmp_path)


def test_the_configuration_records_task_and_algorithms(shapes, tmp_path):
    train, _ = shapes
    res = wb.fit(small(), train, epochs=1, batch_size=256, progress=False, algorithms=[GradientNoise(0.01, seed=5)],
                 checkpoint_dir=tmp_path)
    assert res.config["task"] == {"name": "Classification", "label_smoothing": 0.0}
    assert res.config["algorithms"] == [{"name": "GradientNoise", "std": 0.01, "seed": 5}]
    with pytest.raises(CheckpointError, match="algorithms: checkpoint .*'seed': 5.* vs now .*'seed': 6"):
        wb.fit(small(), train, epochs=1, batch_size=256, progress=False, algorithms=[GradientNoise(0.01, seed=6)],
               checkpoint_dir=tmp_path)


def test_runs_that_differ_only_in_an_algorithm_never_share_a_cache_entry(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    train, _ = shapes
    kw = dict(model_kwargs={"width": 4}, epochs=1, batch_size=128, progress=False)
    a = wb.train_model("resnet8", train, algorithms=[GradientNoise(0.05, seed=1)], **kw)
    b = wb.train_model("resnet8", train, algorithms=[GradientNoise(0.05, seed=2)], **kw)
    a2 = wb.train_model("resnet8", train, algorithms=[GradientNoise(0.05, seed=1)], **kw)
    assert not torch.equal(a.model.fc.weight, b.model.fc.weight)
    assert torch.equal(a.model.fc.weight, a2.model.fc.weight)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2


def test_a_task_written_outside_train_in_a_few_lines(shapes):
    train, test = shapes

    class Regression(Task):  # the module docstring's example: predict the class index as a number
        metric_names = ("loss",)

        def loss(self, outputs, batch, state=None):
            return torch.nn.functional.mse_loss(outputs[:, 0], batch[1].float())

        def metrics(self, outputs, batch, loss):
            return {"loss": loss.detach().double() * len(batch[1])}, len(batch[1])

    res = wb.fit(small(), train, test, epochs=3, batch_size=64, lr=0.05, progress=False, task=Regression())
    h = res.history
    assert list(h.columns[:4]) == ["epoch", "step", "lr", "train_loss"] and "test_loss" in h
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert res.config["task"] == {"name": "Regression"}
