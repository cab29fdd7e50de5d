import json

import pytest
import torch

import workbench as wb
from workbench.train import CheckpointError, NonFiniteLossError, lr_at, recipe
from workbench.train.checkpoint import latest_checkpoint, load_model, save_model


@pytest.fixture(scope="module")
def shapes():
    return wb.load("shapes", "train", subset=1024), wb.load("shapes", "test", subset=500)


def small_model(seed=0, name="resnet8", **kw):
    torch.manual_seed(seed)
    return wb.create_model(name, width=kw.pop("width", 8), **kw)


def test_tiny_run_learns(shapes):
    train, test = shapes
    before = wb.evaluate(small_model(), test)["acc"]
    res = wb.fit(small_model(), train, test, epochs=4, batch_size=64, lr=0.2, progress=False, seed=0)
    h = res.history
    assert list(h["epoch"]) == [1, 2, 3, 4]
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert res.test_acc > 0.35 > before + 0.15, (before, res.test_acc)  # chance is 0.10
    assert {"lr", "train_acc", "test_loss", "seconds", "data_seconds"} <= set(h.columns)


def test_same_seed_same_weights_on_cpu(shapes):
    train, _ = shapes
    a = wb.fit(small_model(), train, epochs=1, batch_size=128, progress=False, seed=3).model
    b = wb.fit(small_model(), train, epochs=1, batch_size=128, progress=False, seed=3).model
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_resume_mid_epoch_matches_uninterrupted_run(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=2, batch_size=128, lr=0.1, progress=False, seed=1)
    full = wb.fit(small_model(), train, test, **kw)
    ckpt = tmp_path / "run"
    part = wb.fit(small_model(), train, test, checkpoint_dir=ckpt, checkpoint_every=3, stop_after_steps=5, **kw)
    assert len(part.history) == 0 and latest_checkpoint(ckpt) is not None
    fresh = small_model(seed=99)  # different init: everything must come from the checkpoint
    resumed = wb.fit(fresh, train, test, checkpoint_dir=ckpt, checkpoint_every=3, **kw)
    for (n, p), (_, q) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(p, q), f"{n} differs after resume"
    cols = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert full.history[cols].equals(resumed.history[cols])


def test_stop_at_an_epochs_end_takes_exactly_that_many_steps(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=3, batch_size=128, lr=0.1, progress=False, seed=1)
    spe = -(-len(train) // 128)
    steps = []

    class Count(wb.train.events.Callback):
        def on_after_step(self, state):
            steps.append(state.step)

    part = wb.fit(small_model(), train, test, checkpoint_dir=tmp_path, stop_after_steps=spe, algorithms=[Count()], **kw)
    assert steps == list(range(1, spe + 1)) and part.history["step"].tolist() == [spe]  # not a step of the next epoch
    resumed = wb.fit(small_model(seed=99), train, test, checkpoint_dir=tmp_path, **kw)
    full = wb.fit(small_model(), train, test, **kw)
    assert torch.equal(full.model.fc.weight, resumed.model.fc.weight)


def test_finished_run_resumes_to_the_same_result(shapes, tmp_path):
    train, _ = shapes
    kw = dict(epochs=1, batch_size=256, progress=False, checkpoint_dir=tmp_path)
    a = wb.fit(small_model(), train, **kw)
    b = wb.fit(small_model(seed=5), train, **kw)
    assert torch.equal(a.model.fc.weight, b.model.fc.weight)
    assert len(list(tmp_path.glob("ckpt-*.json"))) <= 2


def test_checkpoint_from_other_run_is_refused(shapes, tmp_path):
    train, _ = shapes
    wb.fit(small_model(), train, epochs=1, batch_size=256, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.1 vs now 0.05"):
        wb.fit(small_model(), train, epochs=1, batch_size=256, lr=0.05, progress=False, checkpoint_dir=tmp_path)
    wb.fit(small_model(), train, epochs=1, batch_size=256, lr=0.05, progress=False, checkpoint_dir=tmp_path,
           resume=False)


def test_nan_loss_stops_with_the_step(shapes, tmp_path):
    train, _ = shapes

    calls = []

    def poison(model, x, y, logits):  # NaN on the third step
        calls.append(1)
        return torch.tensor(float("nan") if len(calls) == 3 else 0.0)
    model = small_model()
    with pytest.raises(NonFiniteLossError, match=r"at global step 3 \(epoch 1, batch 3\), learning rate"):
        wb.fit(model, train, epochs=1, batch_size=128, progress=False, extra_loss=poison, checkpoint_dir=tmp_path,
               checkpoint_every=1)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    meta = json.loads(latest_checkpoint(tmp_path).read_text())
    assert meta["global_step"] == 2  # the broken step was never checkpointed


def test_params_and_masks_freeze_exactly(shapes):
    train, _ = shapes
    model = small_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    w = "layer1.0.conv1.weight"
    mask = (torch.rand_like(model.get_parameter(w)) < 0.1).float()
    trainable = [w, "fc.weight", "fc.bias"]
    wb.fit(model, train, epochs=1, batch_size=128, params=trainable, grad_masks={w: mask}, weight_decay=5e-4,
           progress=False, optimizer="sgd", momentum=0.9)
    after = dict(model.named_parameters())
    for n, p in before.items():
        if n not in trainable:
            assert torch.equal(p, after[n]), f"{n} should be frozen"
    assert torch.equal(before[w][mask == 0], after[w].detach()[mask == 0])
    assert not torch.equal(before[w][mask == 1], after[w].detach()[mask == 1])
    assert all(p.requires_grad for p in model.parameters()), "requires_grad flags are restored"


def test_adamw_with_masks_keeps_frozen_entries(shapes):
    train, _ = shapes
    model = small_model()
    w = "fc.weight"
    before = model.get_parameter(w).detach().clone()
    mask = torch.zeros_like(before)
    mask[0] = 1
    wb.fit(model, train, epochs=1, batch_size=256, optimizer="adamw", lr=1e-3, weight_decay=0.1, params=[w],
           grad_masks={w: mask}, progress=False)
    assert torch.equal(before[1:], model.get_parameter(w).detach()[1:])


def test_class_count_and_channel_mismatch(shapes):
    train, _ = shapes
    with pytest.raises(ValueError, match="num_classes=10"):
        wb.fit(wb.create_model("resnet8", num_classes=5), train, progress=False)
    with pytest.raises(ValueError, match="in_chans=3"):
        wb.fit(wb.create_model("resnet8", in_chans=1), train, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        wb.fit(small_model(), train, optimizer="lion", progress=False)
    with pytest.raises(ValueError, match="not parameters of the model"):
        wb.fit(small_model(), train, params=["conv.weight"], progress=False)


def test_schedules():
    assert lr_at(0, 100, 1.0, "constant") == 1.0
    assert lr_at(0, 100, 1.0, "onecycle", warmup=0.1) == pytest.approx(0.1 + 0.9 / 10)
    assert lr_at(9, 100, 1.0, "onecycle", warmup=0.1) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, "onecycle", warmup=0.1) == pytest.approx(1 - 89 / 90)
    assert lr_at(55, 100, 1.0, "cosine", warmup=0.1) == pytest.approx(0.5)
    assert lr_at(79 * 10, 160 * 10, 0.1, "multistep", milestones=(80, 120), steps_per_epoch=10) == pytest.approx(0.1)
    assert lr_at(80 * 10, 160 * 10, 0.1, "multistep", milestones=(80, 120), steps_per_epoch=10) == pytest.approx(0.01)
    assert lr_at(130 * 10, 160 * 10, 0.1, "multistep", milestones=(80, 120), steps_per_epoch=10) == pytest.approx(0.001)
    assert recipe("open_lth")["epochs"] == 160
    with pytest.raises(ValueError, match="laptop"):
        recipe("fast")


def test_save_and_load_model_round_trip(tmp_path):
    model = wb.create_model("resnet8", num_classes=4)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is type(model) and back.num_classes == 4
    for (n, p), (_, q) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(p, q)
    with pytest.raises(CheckpointError, match="shape differs: fc.weight"):
        load_model(tmp_path / "m", model=wb.create_model("resnet8", num_classes=10))
    with pytest.raises(CheckpointError, match="missing in checkpoint"):
        load_model(tmp_path / "m", model=wb.create_model("resnet14", num_classes=4))
