"""wb.dynamics.largebatch: stale-weight adversarial examples (ConAdv), the linear scaling rule, LARS/LAMB."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.dynamics import StaleAdversarial, fgsm, large_batch, layerwise_optimizer

FIT = dict(epochs=1, batch_size=64, lr=0.05, progress=False, seed=2, max_steps=4)


@pytest.fixture(scope="module")
def data():
    return wb.load("shapes", "train", subset=256), wb.load("shapes", "test", subset=64)


def _model(seed=0):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=8)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fgsm_with_stale_weights_equal_to_the_current_ones_is_fgsm(data):
    train, _ = data
    x, y = train.normalize(train.images[:16]), train.labels[:16]
    model = _model()
    twin = copy.deepcopy(model)
    a = fgsm(model, x, y, train.mean, train.std, 4.0)
    assert torch.equal(a, fgsm(twin, x, y, train.mean, train.std, 4.0))
    steps = (train.to_uint8(a).int() - train.images[:16].int()).abs()
    assert steps.max() <= 4 and (steps > 0).float().mean() > 0.5  # a signed step of 4 levels, clipped at 0/255
    with torch.enable_grad():  # the attack raises the loss
        assert F.cross_entropy(model.eval()(a), y) > F.cross_entropy(model(x), y)


def test_fresh_stale_adversarial_is_ordinary_fgsm_training(data):
    train, test = data
    ours = wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 4.0, staleness=0,
                                                                      mix="adversarial")], **FIT).model
    theirs = wb.fit(_model(), train, test, algorithms=[wb.shift.AdversarialTraining(
        train.mean, train.std, epsilon=4.0, steps=1, step_size=4.0, random_start=False)], **FIT).model
    assert _same(ours, theirs)


def test_staleness_uses_the_weights_of_tau_steps_ago(data):
    """Record the weights before each step and the attacker's weights at each step: the attacker at step t
    holds the weights of step max(t - tau, 0)."""
    train, test = data
    for tau in (1, 2):
        adv = StaleAdversarial(train.mean, train.std, 2.0, staleness=tau)
        before, used = [], []

        class Spy(wb.train.Callback):
            def on_batch_loaded(self, state):  # fires after adv's own batch_loaded: the attacker is loaded
                used.append({k: v.clone() for k, v in adv.attacker.state_dict().items()})

        class Before(wb.train.Callback):
            def on_batch_loaded(self, state):  # given before adv: the weights the step starts from
                before.append({k: v.clone() for k, v in state.model.state_dict().items()})

        wb.fit(_model(), train, test, algorithms=[Before(), adv, Spy()], **FIT)
        for t in range(len(used)):
            ref = before[max(t - tau, 0)]
            assert all(torch.equal(used[t][k], ref[k]) for k in ref), (tau, t)
        assert adv.critical_path_gradients == 1
    assert StaleAdversarial(train.mean, train.std, staleness=0).critical_path_gradients == 2


def test_stale_adversarial_resumes_exactly(data, tmp_path):
    train, test = data
    kw = dict(FIT, max_steps=None, epochs=2)
    full = wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 2.0)], **kw).model
    wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 2.0)], checkpoint_dir=tmp_path,
           stop_after_steps=3, **kw)
    resumed = wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 2.0)],
                     checkpoint_dir=tmp_path, **kw).model
    assert _same(full, resumed)


def test_concurrent_stale_adversarial_is_the_same_run(data, tmp_path):
    """The attack on the next batch made on a worker thread while the step trains gives the examples, the
    weights and the history of the attack made in turn, over epoch boundaries, for tau 1 and 2 and both mixes,
    and across a resume; its configuration (so its cache key) is the same."""
    train, test = data
    kw = dict(FIT, max_steps=None, epochs=2)

    def run(concurrent, more=None, **fit):
        return wb.fit(_model(), train, test, algorithms=[StaleAdversarial(
            train.mean, train.std, 2.0, concurrent=concurrent, **(more or {}))], **kw, **fit)

    def same_history(a, b):
        cols = ["seconds", "data_seconds"]
        return a.history.drop(columns=cols).equals(b.history.drop(columns=cols))

    for more in (dict(staleness=1), dict(staleness=2, mix="adversarial")):
        a, b = run(False, more), run(True, more)
        assert _same(a.model, b.model) and same_history(a, b), more
        assert a.config == b.config
    full = run(False)
    run(True, checkpoint_dir=tmp_path, stop_after_steps=3)
    resumed = run(True, checkpoint_dir=tmp_path)
    assert _same(full.model, resumed.model)


def test_concurrent_attack_refuses_a_batch_edited_before_it(data):
    train, test = data

    class Flip(wb.train.Algorithm):  # edits the batch at batch_loaded, before StaleAdversarial
        def on_batch_loaded(self, state):
            state.batch = (state.batch[0].flip(-1), *state.batch[1:])

    adv = StaleAdversarial(train.mean, train.std, 2.0, concurrent=True)
    with pytest.raises(RuntimeError, match="before it in algorithms= changed the batch.*put StaleAdversarial before"):
        wb.fit(_model(), train, test, algorithms=[Flip(), adv], **FIT)
    assert adv.worker is None  # the thread is shut down after the error too
    wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 2.0, concurrent=True), Flip()],
           **FIT)
    with pytest.raises(ValueError, match="needs stale weights.*staleness >= 1"):
        StaleAdversarial(train.mean, train.std, staleness=0, concurrent=True)


def test_mix_both_doubles_the_batch_and_logs_the_gap(data):
    train, test = data
    res = wb.fit(_model(), train, test, algorithms=[StaleAdversarial(train.mean, train.std, 8.0)], **FIT)
    assert res.history["adv_gap"].iloc[-1] > 0


def test_large_batch_rule_and_errors():
    kw = large_batch(1024, 8192, base_lr=0.1, base_batch=128, warmup_epochs=2, epochs=10)
    assert kw["lr"] == pytest.approx(0.8) and kw["warmup"] == pytest.approx(0.2) and kw["schedule"] == "cosine"
    with pytest.raises(ValueError, match="does not divide.*1000"):
        large_batch(1024, 5000, exact=True)
    with pytest.raises(ValueError, match="larger than"):
        large_batch(10_000, 5000)
    with pytest.raises(ValueError, match="staleness"):
        StaleAdversarial((0.5,), (0.5,), staleness=-1)


def test_lamb_takes_the_papers_trust_ratio_step():
    """One LAMB step from zero moments: m = (1 - b1) g, v = (1 - b2) g^2, debiased to g and g^2, so the Adam
    direction is g / (|g| + eps) (+ decay * w); the step is lr * ||w|| / ||direction|| * direction."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(20))
    g = torch.randn(20)
    w0 = w.detach().clone()
    opt = layerwise_optimizer("lamb", eps=1e-6)([{"params": [w], "weight_decay": 0.01, "lr": 0.1}])
    w.grad = g.clone()
    opt.step()
    r = g / (g.abs() + 1e-6) + 0.01 * w0
    expect = w0 - 0.1 * (w0.norm() / r.norm()) * r
    assert torch.allclose(w.detach(), expect, atol=1e-5)


def test_lamb_without_debias_is_torch_optimizers_lamb():
    import torch_optimizer
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(5, 7))
    b = torch.nn.Parameter(a.detach().clone())
    ours = wb.dynamics.Lamb([a], lr=0.05, weight_decay=0.01, debias=False)
    theirs = torch_optimizer.Lamb([b], lr=0.05, weight_decay=0.01, debias=False)
    for _ in range(5):
        g = torch.randn(5, 7)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step(), theirs.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_lars_takes_the_papers_local_rate():
    """One LARS step without momentum: w -= lr * eta ||w|| / (||g|| + beta ||w||) * (g + beta w)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(30))
    g = torch.randn(30)
    w0 = w.detach().clone()
    opt = layerwise_optimizer("lars", momentum=0.0, trust_coefficient=0.01)(
        [{"params": [w], "weight_decay": 1e-3, "lr": 0.5}])
    w.grad = g.clone()
    opt.step()
    local = 0.01 * w0.norm() / (g.norm() + 1e-3 * w0.norm())
    assert torch.allclose(w.detach(), w0 - 0.5 * local * (g + 1e-3 * w0), atol=1e-6)


def test_layerwise_optimizers_train_through_fit(data):
    train, test = data
    for name in ("lars", "lamb"):
        opt = layerwise_optimizer(name)
        res = wb.fit(_model(), train, test, optimizer=opt, **dict(FIT, lr=0.01 if name == "lamb" else 1.0))
        assert res.config["optimizer"].startswith("layerwise_optimizer")
        assert torch.isfinite(torch.tensor(res.history["train_loss"].iloc[-1]))
    with pytest.raises(ValueError, match="lars, lamb"):
        layerwise_optimizer("adam")


def test_staleness_probe_observes_only_and_reads_one_when_nothing_moves(data):
    from workbench.dynamics import StalenessProbe
    train, test = data
    kw = dict(FIT, epochs=2, max_steps=None)                   # 8 steps: a probe every 2
    probe = StalenessProbe(train.mean, train.std, 4.0, taus=(1, 3), probes=4, images=32)
    with_probe = wb.fit(_model(), train, test, algorithms=[probe], **kw).model
    without = wb.fit(_model(), train, test, **kw).model
    assert _same(with_probe, without)                          # it only observes
    assert [r["step"] for r in probe.rows] == [2, 4, 6] and probe.rows[0]["stale3"] is None
    assert all(r["fresh"] > 0 and r["stale1"] is not None for r in probe.rows)
    # weights that do not move (no BatchNorm statistics either): stale examples are the fresh ones
    torch.manual_seed(0)
    mlp = wb.create_model("mlp", depth=2, width=32)
    still = StalenessProbe(train.mean, train.std, 4.0, taus=(1,), probes=4, images=32)
    wb.fit(mlp, train, algorithms=[still], **dict(kw, lr=1e-30, momentum=0.0, weight_decay=0.0))
    assert all(r["stale1"] == r["fresh"] and r["move"] == 0.0 for r in still.rows)
    with pytest.raises(ValueError, match="taus"):
        StalenessProbe(train.mean, train.std, taus=(0,))
