"""wb.prune's dead units and Activate-while-Pruning: the dead neuron rate of hand-made activations, AP's
selection on a hand-made layer, exact zeros under training, the iterative procedure and its cache, bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import config
from workbench.probe import run_with_cache
from workbench.prune.activation import TrackDeadNeurons, ap_masks, dead_neuron_rate, iterative_ap, relu_points
from workbench.prune.masks import Masked, magnitude_masks, prunable
from workbench.prune.schedules import iterative_magnitude


@pytest.fixture(scope="module")
def shapes():
    return wb.data.load("shapes", "train", subset=256), wb.data.load("shapes", "test", subset=100)


def small(num_classes=10, seed=0):
    torch.manual_seed(seed)
    return wb.create_model("resnet8", width=4, num_classes=num_classes)


def linear(weight) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(len(weight[0]), len(weight), bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(weight))
    return model


def keep_largest(weights, k):
    """0/1 masks keeping the ``k`` largest magnitudes over all ``weights`` together (ties by position)."""
    flat = torch.cat([w.flatten().abs().double() for w in weights])
    keep = torch.zeros(flat.numel())
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = 1.0
    out, at = [], 0
    for w in weights:
        out.append(keep[at:at + w.numel()].view(w.shape))
        at += w.numel()
    return out


def test_relu_points_of_a_cifar_resnet_and_of_a_sequential():
    names = relu_points(small())
    assert names == ["stem.2"] + [f"layer{s}.0.{h}" for s in (1, 2, 3) for h in ("hook_relu1", "hook_out")]
    assert relu_points(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.ReLU())) == ["1", "3"]


def test_dead_neuron_rate_of_hand_made_activations():
    # the first ReLU sees x itself: 4 of 8 entries are <= 0; unit 1 is zero on both inputs
    x = torch.tensor([[1.0, -1.0, 0.0, 2.0], [-3.0, -1.0, 4.0, 5.0]])
    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, -1.0], [0.0, 0.0, 1.0, 0.0]]))
    # second layer: relu(x) = [[1,0,0,2],[0,0,4,5]] -> pre-activations [[-1, 0], [-5, 4]] -> 3 of 4 dead
    df = dead_neuron_rate(model, x)
    assert df.layer.tolist() == ["0", "2"] and df.units.tolist() == [4, 2]
    assert df.dnr.tolist() == [0.5, 0.75]
    assert df.dead_always.tolist() == [0.25, 0.5]  # unit 1 of the first layer, unit 0 of the second
    assert df.attrs["dnr"] == (4 + 3) / (8 + 4) and df.attrs["mean_layer_dnr"] == 0.625 and df.attrs["n"] == 2
    # batching and a subset of layers change nothing; max_examples takes the first inputs
    assert dead_neuron_rate(model, x, batch_size=1).dnr.tolist() == [0.5, 0.75]
    assert dead_neuron_rate(model, x, names="2").dnr.tolist() == [0.75]
    assert dead_neuron_rate(model, x, max_examples=1).dnr.tolist() == [0.5, 1.0]  # [-1, 0]: both dead


def test_dead_neuron_rate_on_images_matches_the_activations_read_directly(shapes):
    train, test = shapes
    model = small(train.num_classes)
    wb.fit(model, train, epochs=1, batch_size=64, seed=0, progress=False)
    model.eval()
    names = relu_points(model)
    x = test.normalize(test.images)
    _, cache = run_with_cache(model, x, names)
    df = dead_neuron_rate(model, test, batch_size=33)
    for name, row in zip(names, df.itertuples()):
        assert row.layer == name and row.units == cache[name][0].numel()
        assert row.dnr == pytest.approx(float((cache[name] == 0).double().mean()), abs=1e-12)
        assert row.dead_always == pytest.approx(float((cache[name] == 0).all(0).double().mean()), abs=1e-12)
    zeros = sum(int((cache[n] == 0).sum()) for n in names)
    assert df.attrs["dnr"] == pytest.approx(zeros / sum(cache[n].numel() for n in names), abs=1e-12)
    assert df.attrs["n"] == len(test)
    model.train()
    dead_neuron_rate(model, test)
    assert model.training  # measured in eval mode, the mode restored
    # masks are applied to a copy: the model is untouched, and zeroed weights change the count
    masks = magnitude_masks(model, 0.8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masked = dead_neuron_rate(model, test, masks=masks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruned = wb.prune.apply_masks(model, masks)
    assert masked.dnr.tolist() == dead_neuron_rate(pruned, test).dnr.tolist()


def test_track_dead_neurons_logs_the_pooled_rate_of_the_training_batches():
    # no BatchNorm, no augmentation and a step too small to change a float32 weight (lr=1e-30): every batch
    # sees the same network, so the epoch's mean of the per-batch rates (weighted by batch size) is the
    # pooled rate of the whole training set
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (96, 1, 4, 4), dtype=torch.uint8, generator=g)
    data = wb.data.ImageDataset(images, torch.randint(0, 3, (96,), generator=g), ["a", "b", "c"])
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    track = TrackDeadNeurons(per_layer=True)
    start = [p.detach().clone() for p in model.parameters()]
    res = wb.fit(model, data, epochs=2, batch_size=40, lr=1e-30, schedule="constant", weight_decay=0.0, seed=0,
                 augment=None, algorithms=[track], progress=False)
    want = dead_neuron_rate(model, data)
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))  # the network never changed
    assert res.history["dnr"].tolist() == pytest.approx([want.attrs["dnr"]] * 2, abs=1e-9)
    assert res.history["dnr:2"].tolist() == pytest.approx([want.dnr[0]] * 2, abs=1e-9)
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone after the run
    assert track.config() == {"name": "TrackDeadNeurons", "names": None, "per_layer": True}


def test_track_dead_neurons_resumes_to_the_same_history(shapes, tmp_path):
    train, test = shapes
    kw = dict(epochs=2, batch_size=64, lr=0.1, seed=1, progress=False)
    full = wb.fit(small(train.num_classes), train, test, algorithms=[TrackDeadNeurons()], **kw)
    wb.fit(small(train.num_classes), train, test, algorithms=[TrackDeadNeurons()], checkpoint_dir=tmp_path,
           checkpoint_every=1, stop_after_steps=3, **kw)  # stopped mid-epoch
    resumed = wb.fit(small(train.num_classes, seed=5), train, test, algorithms=[TrackDeadNeurons()],
                     checkpoint_dir=tmp_path, checkpoint_every=1, **kw)
    assert full.history["dnr"].tolist() == pytest.approx(resumed.history["dnr"].tolist(), abs=1e-12)
    assert 0 < full.history["dnr"].iloc[-1] < 1


def test_ap_masks_drop_the_negative_weights_that_moved_least():
    # 6 weights, half pruned: magnitude keeps the top 3 + 1 (AP's one) = 0.9, -0.8, -0.7, -0.5; of the
    # negative ones, -0.8 moved least (0.05 against 0.1 and 0.4), so AP drops it, a large weight
    model = linear([[0.9, -0.8, 0.1], [-0.5, 0.3, -0.7]])
    reference = {"0.weight": torch.tensor([[0.5, -0.75, 0.2], [-0.1, 0.3, -0.6]])}
    masks = ap_masks(model, reference, 0.5, ap_rate=1 / 6)
    assert masks["0.weight"].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    assert magnitude_masks(model, 0.5)["0.weight"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert ap_masks(model, reference, 0.5, ap_rate=0)["0.weight"].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    # a model as the reference works as its state dict; kept masks are respected (-0.8 already gone):
    # 4 kept, target 2, AP's share round(0.25 * 4) = 1: magnitude keeps 0.9, -0.7, -0.5, AP drops -0.7
    ref_model = linear(reference["0.weight"].tolist())
    kept = {"0.weight": torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])}
    masks = ap_masks(model, ref_model, 4 / 6, ap_rate=0.25, kept=kept)
    assert masks["0.weight"].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


def test_ap_masks_per_layer_and_without_ap_equal_magnitude_masks():
    model = small()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "training": every weight moves by a different amount
        for p in prunable(model).values():
            p.add_(torch.randn_like(p) * 0.05)
    n = sum(p.numel() for p in prunable(model).values())
    for scope in ("global", "layer"):
        plain = magnitude_masks(model, 0.7, scope)
        assert all(torch.equal(plain[k], m) for k, m in ap_masks(model, start, 0.7, 0.0, scope=scope).items())
        with_ap = ap_masks(model, start, 0.7, 0.05, scope=scope)
        groups = [list(plain)] if scope == "global" else [[k] for k in plain]
        for group in groups:  # the same count kept as magnitude pruning, in the whole network or per layer
            assert sum(int(with_ap[k].sum()) for k in group) == sum(int(plain[k].sum()) for k in group)
        # AP's cut lies inside magnitude's wider cut (the kept count plus AP's share), and what it removes
        # from that cut is negative only
        w = {k: p.detach() for k, p in prunable(model).items()}
        dropped = 0
        for group in groups:
            total = sum(w[k].numel() for k in group)
            wider = keep_largest([w[k] for k in group], total - round(0.7 * total) + round(0.05 * total))
            for k, wide in zip(group, wider):
                assert bool((with_ap[k] <= wide).all())
                lost = (wide == 1) & (with_ap[k] == 0)
                assert bool((w[k][lost] < 0).all())
                dropped += int(lost.sum())
        assert dropped > 0


def test_masked_weights_stay_exactly_zero_with_ap_masks(shapes):
    train, test = shapes
    model = small(train.num_classes)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    wb.fit(model, train, epochs=1, batch_size=64, seed=0, progress=False)
    masks = ap_masks(model, start, 0.8, ap_rate=0.1)
    wb.fit(model, train, test, epochs=2, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4, seed=0,
           algorithms=[Masked(masks), TrackDeadNeurons()], progress=False)
    for name, p in prunable(model).items():
        m = masks[name]
        assert torch.equal(p.detach()[m == 0], torch.zeros(int((m == 0).sum()))), name


def test_iterative_ap_matches_iterative_magnitude_without_ap_and_prunes_negative_weights_with_it(shapes, tmp_path):
    config.set_cache_dir(tmp_path)
    train, test = shapes
    kw = dict(sparsity=0.75, rounds=2, model_kwargs={"width": 4}, epochs=1, batch_size=64, lr=0.1, progress=False)
    plain = iterative_magnitude("resnet8", train, test, **kw)
    same = iterative_ap("resnet8", train, test, ap_rate=0.0, **kw)
    for k in (1, 2):
        assert all(torch.equal(plain.round_masks[k][n], m) for n, m in same.round_masks[k].items())
    assert same.rounds.equals(plain.rounds)  # the same cached runs
    ap = iterative_ap("resnet8", train, test, ap_rate=0.1, **kw)
    assert ap.rounds.sparsity.tolist() == plain.rounds.sparsity.tolist()
    assert ap.rounds.test_acc[0] == plain.rounds.test_acc[0]  # the dense run is shared through the cache
    assert all(torch.equal(ap.rewind_state[k], v) for k, v in plain.rewind_state.items())
    # round 1: both rank the same dense weights; what AP's masks miss of magnitude's is negative in the dense run
    dense = {k: p.detach() for k, p in prunable(plain.runs[0].model).items()}
    differ = 0
    for name, m in ap.round_masks[1].items():
        lost = (plain.round_masks[1][name] == 1) & (m == 0)
        assert bool((dense[name][lost] < 0).all())
        differ += int(lost.sum())
    assert differ > 0
    for k in (2,):
        assert all(bool((ap.round_masks[k][n] <= ap.round_masks[k - 1][n]).all()) for n in ap.round_masks[k])
    for name, w in prunable(ap.model).items():
        assert torch.equal(w.detach()[ap.masks[name] == 0], torch.zeros(int((ap.masks[name] == 0).sum())))


def test_bad_inputs_are_refused_with_the_fix(shapes):
    train, test = shapes
    model = linear([[0.9, -0.8, 0.1], [-0.5, 0.3, -0.7]])
    ref = {"0.weight": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match=r"ap_rate is the share .* in \[0, 1\)"):
        ap_masks(model, ref, 0.5, ap_rate=1.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        ap_masks(model, ref, 1.0)
    with pytest.raises(ValueError, match="this round removes only 1"):
        ap_masks(model, ref, 1 / 6, ap_rate=0.4)
    with pytest.raises(ValueError, match="pruning never revives a weight"):
        ap_masks(model, ref, 0.0, kept={"0.weight": torch.tensor([[1.0, 0, 0], [1, 1, 1]])})
    with pytest.raises(ValueError, match="negative weights survive"):
        ap_masks(linear([[0.9, 0.8, 0.1], [0.5, 0.3, -0.7]]), ref, 0.5, ap_rate=0.4)
    with pytest.raises(ValueError, match="reference has no weights"):
        ap_masks(model, {"1.weight": torch.zeros(2, 3)}, 0.5)
    with pytest.raises(ValueError, match=r"reference\['0.weight'\] has shape \(3, 2\)"):
        ap_masks(model, {"0.weight": torch.zeros(3, 2)}, 0.5)
    with pytest.raises(TypeError, match="reference is the weights"):
        ap_masks(model, [1, 2], 0.5)
    with pytest.raises(ValueError, match="scope is 'global'"):
        ap_masks(model, ref, 0.5, scope="channel")
    with pytest.raises(ValueError, match="no module named"):
        dead_neuron_rate(model, torch.zeros(2, 3), names=["relu9"])
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        dead_neuron_rate(model, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="ImageDataset"):
        dead_neuron_rate(small(), [1, 2, 3])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        dead_neuron_rate(small(), test, batch_size=0)
    with pytest.raises(ValueError, match=r"the mask names 'x.weight'"):
        dead_neuron_rate(small(), test, masks={"x.weight": torch.ones(1)})
    kw = dict(model_kwargs={"width": 4}, epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="choose ap_rate < 0.5000"):
        iterative_ap("resnet8", train, test, sparsity=0.75, rounds=2, ap_rate=0.5, **kw)
    with pytest.raises(ValueError, match="sets setup= itself"):
        iterative_ap("resnet8", train, test, sparsity=0.75, rounds=2, setup=lambda m: {}, **kw)
