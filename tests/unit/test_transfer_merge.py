"""wb.transfer.merge (PLeaS, arXiv 2407.02447): permutations that keep the function, matching that recovers
a known permutation, merges with exact answers (a permuted copy, the ensemble at width 2, numpy's lstsq),
REPAIR's statistics, and bad input."""
import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.transfer import merge as mg

NETS = [("resnet8", {"width": 4}), ("resnet14", {"width": 4}), ("plain8", {"width": 4}),
        ("mlp", {"depth": 3, "width": 12, "norm": "bn", "img_size": 8, "in_chans": 1}),
        ("mlp", {"depth": 2, "width": 10, "img_size": 8, "in_chans": 1})]


def make(name, kwargs, seed=0):
    """A random network in eval mode whose BatchNorms hold the statistics of random images and random affine
    parameters with positive shifts (a unit dead on every image has no activations to be matched by)."""
    torch.manual_seed(seed)
    m = wb.create_model(name, **kwargs)
    if any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in m.modules()):
        mg.reset_bn_stats(m, images(m, 64, seed=9))
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(0.2, 0.6)
    return m.eval()


def images(model, n=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = getattr(model, "img_size", None) or 32
    return torch.randn(n, model.in_chans, size, size, generator=g)


def random_perms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randperm(d, generator=g) for k, d in mg.channel_groups(model).items()}


def test_channel_groups_of_a_resnet_share_one_permutation_per_stream():
    groups = mg.channel_groups(wb.create_model("resnet8", width=4))
    assert groups == {"stream1": 4, "layer1.0.conv1": 4, "stream2": 8, "layer2.0.conv1": 8,
                      "stream3": 16, "layer3.0.conv1": 16}
    spec = mg.merge_spec(wb.create_model("resnet8", width=4))
    assert spec["layer2.0.shortcut.0.weight"] == ("stream2", "stream1", None, None)
    assert spec["layer1.0.bn2.running_var"] == ("stream1",) and spec["fc.weight"] == ("output", "stream3")
    plain = mg.channel_groups(wb.create_model("plain8", width=4))
    assert "stem" in plain and "layer1.0.conv2" in plain and "stream1" not in plain  # no skip: no shared stream


@pytest.mark.parametrize("name,kwargs", NETS)
def test_permute_keeps_the_function(name, kwargs):
    m = make(name, kwargs)
    p = mg.permute(m, random_perms(m))
    x = images(m)
    assert torch.allclose(p(x), m(x), atol=1e-5, rtol=1e-5)
    moved = [k for k, v in m.state_dict().items() if v.ndim and not torch.equal(v, p.state_dict()[k])]
    assert "fc.weight" in moved and len(moved) >= 5  # the weights did move


@pytest.mark.parametrize("name,kwargs", NETS)
def test_weight_matching_recovers_the_exact_permutation(name, kwargs):
    a = make(name, kwargs)
    perms = random_perms(a, seed=3)
    b = mg.permute(a, perms)
    found = mg.weight_matching(a, b)
    for g, p in perms.items():
        assert torch.equal(found[g], torch.argsort(p)), g  # b's channel found[i] is a's channel i
    back = mg.permute(b, found).state_dict()
    assert all(torch.equal(v, back[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("name,kwargs", NETS)
def test_activation_matching_recovers_the_exact_permutation(name, kwargs):
    a = make(name, kwargs)
    perms = random_perms(a, seed=4)
    b = mg.permute(a, perms)
    found, scores = mg.activation_matching(a, b, images(a, 64), batch_size=20, return_scores=True)
    for g, p in perms.items():
        assert torch.equal(found[g], torch.argsort(p)), g
        assert torch.allclose(scores[g], torch.ones_like(scores[g]), atol=1e-4)  # each pair correlates perfectly


@pytest.mark.parametrize("name,kwargs", NETS)
def test_merging_with_a_permuted_copy_gives_the_same_function(name, kwargs):
    a = make(name, kwargs)
    b = mg.permute(a, random_perms(a, seed=5))
    x = images(a, 64)
    perms, scores = mg.activation_matching(a, b, x, return_scores=True)
    plan = mg.merge_plan(a, b, perms)
    want = a(x)
    assert torch.allclose(mg.merge_weights(a, b, plan)(x), want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(mg.pleas_merge(a, b, x, plan, ridge=0)(x), want, atol=1e-4, rtol=1e-4)
    naive = mg.merge_weights(a, b, mg.merge_plan(a, b))  # without the permutation the function is lost
    assert not torch.allclose(naive(x), want, atol=1e-2)


@pytest.mark.parametrize("name,kwargs", NETS[:1] + NETS[3:4])
def test_width_two_keeps_both_networks_side_by_side_the_ensemble(name, kwargs):
    a, b = make(name, kwargs, seed=0), make(name, kwargs, seed=1)
    x = images(a, 64)
    perms, scores = mg.activation_matching(a, b, x, return_scores=True)
    plan = mg.merge_plan(a, b, perms, width=2, scores=scores)
    assert all(v == 0 for v in plan.merged_pairs.values())
    ensemble = (a(x) + b(x)) / 2
    both = mg.merge_weights(a, b, plan)
    assert both.width == 2 * a.width and torch.allclose(both(x), ensemble, atol=1e-5)
    # the least squares can reproduce it exactly: a block-diagonal network exists and is found
    assert torch.allclose(mg.pleas_merge(a, b, x, plan, ridge=0)(x), ensemble, atol=1e-3, rtol=1e-3)


def test_naive_plan_is_the_plain_average_and_interpolate_ends_are_the_networks():
    a, b = make("resnet8", {"width": 4}, 0), make("resnet8", {"width": 4}, 1)
    avg, half = mg.merge_weights(a, b, mg.merge_plan(a, b)), mg.interpolate(a, b, 0.5)
    assert all(torch.allclose(v, half.state_dict()[k]) for k, v in avg.state_dict().items() if v.is_floating_point())
    x = images(a)
    assert torch.equal(mg.interpolate(a, b, 0.0)(x), a(x)) and torch.allclose(mg.interpolate(a, b, 1.0)(x), b(x))


def test_partial_plans_merge_the_best_matched_pairs():
    a, b = make("resnet8", {"width": 4}, 0), make("resnet8", {"width": 4}, 1)
    perms = {g: torch.arange(d) for g, d in mg.channel_groups(a).items()}
    scores = {g: torch.linspace(0, 1, d) for g, d in mg.channel_groups(a).items()}  # the last channels match best
    small = mg.merge_plan(a, b, perms, width=0.5, scores=scores)
    m = small.merge["stream1"]  # 2 of 4 channels kept: the pairs 2 and 3, averaged
    assert torch.equal(m, torch.tensor([[0, 0, .5, 0, 0, 0, .5, 0], [0, 0, 0, .5, 0, 0, 0, .5]]))
    wide = mg.merge_plan(a, b, perms, width=1.5, scores=scores)  # 6 channels: pairs 2, 3 merged, 0, 1 apart
    assert wide.widths["stream1"] == 6 and wide.merged_pairs["stream1"] == 2
    assert wide.merge["stream1"][2:].nonzero()[:, 1].tolist() == [0, 1, 4, 5]
    merged = mg.merge_weights(a, b, small)
    assert merged.width == 2 and merged(images(a)).shape == (48, 10)
    assert mg.pleas_merge(a, b, images(a), small).width == 2


def test_least_squares_matches_numpy_lstsq_and_the_ridge_closed_form():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(50, 3, generator=g, dtype=torch.float64)
    w, b = mg.least_squares(x, t)
    ref = np.linalg.lstsq(np.hstack([x.numpy(), np.ones((50, 1))]), t.numpy(), rcond=None)[0]
    assert np.allclose(w.numpy(), ref[:6], atol=1e-10) and np.allclose(b.numpy(), ref[6], atol=1e-10)
    w0, b0 = mg.least_squares(x, t, bias=False)
    assert np.allclose(w0.numpy(), np.linalg.lstsq(x.numpy(), t.numpy(), rcond=None)[0], atol=1e-10)
    assert torch.equal(b0, torch.zeros(3, dtype=torch.float64))
    wr, _ = mg.least_squares(x, t, ridge=0.5)
    xc, tc = x - x.mean(0), t - t.mean(0)
    cov = xc.T @ xc / 50
    lam = 0.5 * torch.diagonal(cov).mean()
    assert torch.allclose(wr, torch.linalg.solve(cov + lam * torch.eye(6, dtype=torch.float64), xc.T @ tc / 50))


def test_pleas_on_a_linear_network_is_numpys_lstsq_layer_by_layer():
    kwargs = {"depth": 1, "width": 6, "img_size": 2, "in_chans": 2}  # 8 inputs, 6 hidden units, no BatchNorm
    a, b = make("mlp", kwargs, 0), make("mlp", kwargs, 1)
    x = images(a, 40)
    perms, scores = mg.activation_matching(a, b, x, return_scores=True)
    plan = mg.merge_plan(a, b, perms)
    m = mg.pleas_merge(a, b, x, plan, ridge=0)
    with torch.no_grad():
        flat = x.flatten(1).double()
        ones = np.ones((40, 1))
        both = torch.cat([a.layers[0][0](x.flatten(1)), b.layers[0][0](x.flatten(1))], 1).double()
        pre = both @ plan.merge["layers.0"].double().T  # the merged channels' targets
        ref = np.linalg.lstsq(np.hstack([flat.numpy(), ones]), pre.numpy(), rcond=None)[0]
        assert np.allclose(m.layers[0][0].weight.double().numpy().T, ref[:-1], atol=1e-4)
        assert np.allclose(m.layers[0][0].bias.double().numpy(), ref[-1], atol=1e-4)
        hidden = m.layers(x.flatten(1)).double()
        logits = (a(x) + b(x)).double() / 2
        ref = np.linalg.lstsq(np.hstack([hidden.numpy(), ones]), logits.numpy(), rcond=None)[0]
        assert np.allclose(m.fc.weight.double().numpy().T, ref[:-1], atol=1e-4)


def test_reset_bn_stats_recomputes_the_statistics_of_the_data():
    m = make("resnet8", {"width": 4})
    x = images(m, 40)
    mg.reset_bn_stats(m, x, batch_size=40)  # one batch: BatchNorm's own mean and unbiased variance of it
    with torch.no_grad():
        pre = m.stem[0](x)
    assert torch.allclose(m.stem[1].running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(m.stem[1].running_var, pre.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert not m.training


def test_interpolation_path_and_barrier():
    a, b = make("resnet8", {"width": 4}, 0), make("resnet8", {"width": 4}, 1)
    data = wb.data.ImageDataset(torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (30,)),
                                [str(i) for i in range(10)], name="noise")
    path = mg.interpolation_path(a, b, data, ts=[0, 0.5, 1])
    assert list(path.columns) == ["t", "loss", "acc"] and len(path) == 3
    assert np.isclose(path.loss[0], wb.evaluate(a, data)["loss"])
    assert np.isclose(path.loss[2], wb.evaluate(b, data)["loss"])
    line = (path.loss[0] + path.loss[2]) / 2
    assert np.isclose(mg.loss_barrier(path), max(0.0, path.loss[1] - line))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        mg.interpolation_path(a, b, data, ts=[0, 1.5])


def test_bad_input_names_the_difference():
    r8, r14 = wb.create_model("resnet8"), wb.create_model("resnet14")
    with pytest.raises(ValueError, match="CifarResNet with a MLP"):
        mg.weight_matching(r8, wb.create_model("mlp"))
    with pytest.raises(ValueError, match="differ in depth: 8 against 14"):
        mg.merge_plan(r8, r14)
    with pytest.raises(ValueError, match="differ in width: 16 against 8"):
        mg.interpolate(r8, wb.create_model("resnet8", width=8))
    with pytest.raises(ValueError, match="differ in num_classes"):
        mg.check_mergeable(r8, wb.create_model("resnet8", num_classes=100))
    with pytest.raises(ValueError, match="shortcut.*in a only"):
        mg.check_mergeable(r8, wb.create_model("plain8"))
    with pytest.raises(ValueError, match="merging knows the channel groups of"):
        mg.channel_groups(wb.create_model("vit_tiny"))
    with pytest.raises(ValueError, match="unknown channel group.*stream1"):
        mg.permute(r8, {"layer9": torch.arange(3)})
    with pytest.raises(ValueError, match="permutation of 0..15"):
        mg.permute(r8, {"stream1": torch.zeros(16, dtype=torch.long)})
    with pytest.raises(ValueError, match="whole number"):
        mg.merge_plan(r8, r8, width=0.7)
    with pytest.raises(ValueError, match="scores="):
        mg.merge_plan(r8, r8, width=0.5)
    with pytest.raises(TypeError, match="ImageDataset"):
        mg.activation_matching(r8, r8, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no BatchNorm"):
        mg.reset_bn_stats(wb.create_model("mlp"), torch.zeros(2, 3, 32, 32))


def test_compare_merges_reports_every_method_on_one_footing():
    a, b = make("resnet8", {"width": 4}, 0), make("resnet8", {"width": 4}, 1)
    g = torch.Generator().manual_seed(2)
    data = wb.data.ImageDataset(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g),
                                torch.randint(0, 10, (40,), generator=g), [str(i) for i in range(10)], name="noise")
    one = mg.compare_merges(a, b, data, data)
    assert one.method.tolist() == ["naive", "naive + REPAIR", "aligned", "aligned + REPAIR", "PLeaS"]
    assert np.isclose(one.acc[0], wb.evaluate(mg.interpolate(a, b, 0.5), data)["acc"])
    assert (one.params == wb.models.count_parameters(a)).all()
    half = mg.compare_merges(a, b, data, data, width=0.5)
    assert half.method.tolist() == ["aligned + REPAIR", "PLeaS"] and (half.params < one.params[0]).all()
