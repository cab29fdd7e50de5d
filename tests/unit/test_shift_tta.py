"""Test-time adaptation (wb.shift: BNAdapt, Tent, EcoTTA), its memory measure and the stream evaluation."""
import copy
import math

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.data import ImageDataset
from workbench.shift import BNAdapt, EcoTTA, NoAdapt, Tent, entropy, evaluate_stream, peak_memory


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _model(width=4, seed=0):
    """A resnet8 whose BatchNorm layers hold non-trivial source statistics and affine parameters."""
    torch.manual_seed(seed)
    m = wb.create_model("resnet8", width=width)
    g = torch.Generator().manual_seed(seed + 1)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data = torch.rand(bn.num_features, generator=g) + 0.5
            bn.bias.data = 0.1 * torch.randn(bn.num_features, generator=g)
            bn.running_mean = 0.1 * torch.randn(bn.num_features, generator=g)
            bn.running_var = torch.rand(bn.num_features, generator=g) + 0.5
    return m.eval()


def _data(n=48, seed=0, shift=0):
    g = torch.Generator().manual_seed(seed)
    images = (torch.randint(0, 200, (n, 3, 8, 8), generator=g) + shift).clamp(0, 255).to(torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageDataset(images, labels, [str(i) for i in range(10)], name=f"toy{shift}", split="test")


def _state(m: nn.Module) -> dict:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_entropy_closed_form():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(entropy(logits), torch.tensor([math.log(4), 0.0]), atol=1e-6)


def test_bnadapt_keeping_the_source_statistics_is_the_eval_model():
    m = _model()
    a = BNAdapt(m, blend=0.0, momentum=0.0)
    for s in range(3):
        x = _x(8, 3, 8, 8, seed=s) * 2 + 1
        assert torch.equal(a(x), m(x))


def test_tent_with_lr_zero_is_bn_reestimation_alone():
    m = _model()
    tent, bn = Tent(m, lr=0.0), BNAdapt(m, blend=1.0)
    for s in range(3):
        x = _x(8, 3, 8, 8, seed=s) * 2 + 1
        assert torch.equal(tent(x), bn(x))
    assert _same(_state(tent.model), _state(m))  # nothing moved, the stored statistics included


def test_bnadapt_blend_and_momentum_closed_form():
    bn = nn.BatchNorm2d(3).eval()
    bn.running_mean, bn.running_var = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 4.0, 0.25])
    bn.weight.data, bn.bias.data = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, -1.0])
    model = nn.Sequential(bn)
    x = _x(6, 3, 4, 4) * 3 + 1
    mu_b, var_b = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    b = 0.3
    mu, var = (1 - b) * bn.running_mean + b * mu_b, (1 - b) * bn.running_var + b * var_b
    hand = (x - mu.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps) * bn.weight.view(1, -1, 1, 1) \
        + bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(BNAdapt(model, blend=b)(x), hand, atol=1e-5)
    # momentum: the stored statistics move toward the batch's (unbiased variance, as BatchNorm's own update)
    a = BNAdapt(model, blend=0.0, momentum=0.25)
    a(x)
    got = a.model[0]
    assert torch.allclose(got.running_mean, 0.75 * bn.running_mean + 0.25 * mu_b, atol=1e-6)
    assert torch.allclose(got.running_var, 0.75 * bn.running_var + 0.25 * x.var((0, 2, 3)), atol=1e-6)
    assert torch.equal(bn.running_mean, torch.tensor([0.5, -1.0, 2.0]))  # the caller's model is untouched


def test_tent_step_is_one_sgd_step_on_the_bn_affine_parameters():
    m = _model()
    x = _x(8, 3, 8, 8) * 2 + 1
    lr = 0.05
    tent = Tent(m, lr=lr, optimizer="sgd", momentum=0.0)
    # the reference: a train-mode BN copy, entropy of the batch, plain gradient step
    ref = copy.deepcopy(m)
    for bn in ref.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.train()
            bn.track_running_stats = False
    names = [f"{n}.{w}" for n, mod in ref.named_modules() if isinstance(mod, nn.BatchNorm2d)
             for w in ("weight", "bias")]
    params = [p for n, p in ref.named_parameters() if n in names]
    logits = ref(x)
    grads = torch.autograd.grad(entropy(logits).mean(), params)
    out = tent(x)
    assert torch.equal(out, logits.detach())  # the prediction comes from the forward before the step
    new = dict(tent.model.named_parameters())
    for n, p, g in zip(names, params, grads):
        assert torch.allclose(new[n], p - lr * g, atol=1e-6), n
    moved = {n for n, p in tent.model.named_parameters() if not torch.equal(p, dict(m.named_parameters())[n])}
    assert moved and moved <= set(names)  # only BatchNorm affine parameters change


def test_reset_restores_bitwise_and_the_callers_model_is_untouched():
    m = _model()
    before = _state(m)
    for a in (Tent(m, lr=1e-2), BNAdapt(m, blend=0.5, momentum=0.2), EcoTTA(m, lr=1e-2, entropy_margin=1.0)):
        x = _x(8, 3, 8, 8)
        first = a(x)
        init = a.state_dict()
        for s in range(3):
            a(_x(8, 3, 8, 8, seed=s + 1) * 2)
        assert not all(_same(s0, s1) for s0, s1 in zip(init["modules"], a.state_dict()["modules"]))
        a.reset()
        assert a.steps == 0
        assert torch.equal(a(x), first)  # optimizer state reset too: the same first step again
        assert _same(before, _state(m))
    tent = Tent(m)
    tent(_x(8, 3, 8, 8))
    tent.reset()
    assert _same(_state(tent.model), before)


def test_uint8_input_uses_the_given_normalization():
    data = _data(16)
    m = _model()
    a = NoAdapt(m, mean=data.mean, std=data.std)
    assert torch.equal(a(data.images), m(data.normalize(data.images)))
    with pytest.raises(ValueError, match="mean=data.mean"):
        NoAdapt(m)(data.images)


def test_ecotta_identity_meta_networks_leave_the_model_unchanged():
    m = _model()
    eco = EcoTTA(m)
    x = _x(8, 3, 8, 8)
    eco._ready(x)
    assert len(eco.meta) == 3  # one per stage
    assert [tuple(mt.conv.weight.shape) for mt in eco.meta] == [(4, 4, 3, 3), (8, 4, 3, 3), (16, 8, 3, 3)]
    assert [mt.conv.stride for mt in eco.meta] == [(1, 1), (2, 2), (2, 2)]
    for mt in eco.meta:  # BN(x) = x: running mean 0, variance 1, scale sqrt(1 + eps); the block's output 0
        mt.bn.weight.data.fill_(math.sqrt(1 + mt.bn.eps))
        mt.block_bn.weight.data.zero_()
    eco.net.eval()
    with torch.no_grad():
        assert torch.allclose(eco.net(x), m(x), atol=1e-5)
        eco.meta[1].bn.bias.data.fill_(0.5)  # and the hooks really feed the meta output onward
        assert not torch.allclose(eco.net(x), m(x), atol=1e-3)


def test_ecotta_low_memory_path_is_the_same_computation():
    m = _model()
    x = _x(16, 3, 8, 8)
    a, b = EcoTTA(m, entropy_margin=10.0, lr=1e-2), EcoTTA(m, entropy_margin=10.0, lr=1e-2, low_memory=False)
    torch.manual_seed(0)
    a._ready(x)
    torch.manual_seed(0)
    b._ready(x)
    for s in range(2):
        xs = _x(16, 3, 8, 8, seed=s)
        la, lb = a(xs), b(xs)
        assert torch.equal(la, lb) if s == 0 else torch.allclose(la, lb, atol=1e-5)  # the same forward kernels
        for p, q in zip(a.meta.parameters(), b.meta.parameters()):  # the same gradients, up to rounding
            assert torch.allclose(p, q, atol=1e-6)
    init = a._initial["modules"][0]
    assert not all(torch.equal(p, init[f"meta.{n}"]) for n, p in a.meta.named_parameters())  # it did learn


def test_ecotta_trains_only_meta_networks_and_gates_on_confidence():
    m = _model()
    x = _x(16, 3, 8, 8)
    quiet = EcoTTA(m, entropy_margin=0.0, lam=0.0, lr=0.1)  # no sample is confident, no regularization
    quiet(x)
    init = quiet._initial["modules"][0]
    assert all(torch.equal(p, init[n]) for n, p in quiet.net.named_parameters())  # (the meta BN statistics move)
    eco = EcoTTA(m, entropy_margin=10.0, lam=0.5, lr=0.1)
    eco(x)
    eco(_x(16, 3, 8, 8, seed=1))
    now = _state(eco.net)
    init = eco._initial["modules"][0]
    changed = {k for k in now if not torch.equal(now[k], init[k])}
    assert changed and all(k.startswith("meta.") for k in changed)


def test_self_distillation_pulls_meta_outputs_toward_the_frozen_ones():
    m = _model()
    eco = EcoTTA(m, entropy_margin=0.0, lam=1.0, lr=0.05, optimizer="adam")  # the regularization alone
    x = _x(32, 3, 8, 8)

    def distance():
        eco.net.train()
        with torch.no_grad():
            eco.net(x)
            return sum(float((mt(u, xk) - xk).abs().mean()) for mt, (u, xk) in zip(eco.meta, eco.net.cache))

    eco._ready(x)
    d0 = distance()
    for _ in range(15):
        eco(x)
    assert distance() < 0.5 * d0


def test_memory_hand_count_on_a_tiny_model():
    """Tent on BN -> flatten -> frozen linear: autograd keeps the BN input, BN's batch mean and inverse std,
    and the log-probabilities and probabilities of the entropy, nothing else (float32)."""
    B, C, H, W, K = 5, 2, 3, 3, 4
    torch.manual_seed(0)
    m = nn.Sequential(nn.BatchNorm2d(C), nn.Flatten(), nn.Linear(C * H * W, K))
    got = peak_memory(Tent(m), _x(B, C, H, W))
    assert got["saved_bytes"] == 4 * (B * C * H * W + 2 * C + 2 * B * K)
    assert got["cuda_peak_bytes"] is None
    assert peak_memory(BNAdapt(m), _x(B, C, H, W))["saved_bytes"] == 0  # no backward, nothing kept


def test_ecotta_keeps_far_fewer_activations_than_tent_on_resnet20():
    torch.manual_seed(0)
    m = wb.create_model("resnet20").eval()
    x = _x(16, 3, 32, 32)
    tent = peak_memory(Tent(m), x)["saved_bytes"]
    eco = peak_memory(EcoTTA(m), x)["saved_bytes"]
    plain = peak_memory(EcoTTA(m, low_memory=False), x)["saved_bytes"]
    assert eco < 0.5 * tent  # measured about 0.40 (the paper: a large cut against TENT and CoTTA)
    assert eco < plain < tent  # without the frozen-layer saving PyTorch keeps the frozen inputs too


def test_measurement_leaves_the_adapter_as_it_was():
    m = _model()
    a = Tent(m, lr=0.1)
    x = _x(8, 3, 8, 8)
    before = a.state_dict()
    peak_memory(a, x)
    after = a.state_dict()
    assert all(_same(s0, s1) for s0, s1 in zip(before["modules"], after["modules"])) and a.steps == 0


def test_evaluate_stream_matches_evaluate_and_resets_when_asked():
    m = _model()
    doms = {"clean": _data(48, seed=1), "bright": _data(48, seed=2, shift=60)}
    df = evaluate_stream(NoAdapt(m), doms, batch_size=16)
    assert list(df.columns) == ["method", "domain", "position", "acc", "loss", "n", "steps"]
    assert list(df.domain) == ["clean", "bright"] and list(df.steps) == [3, 6]
    for name, data in doms.items():
        ref = wb.evaluate(m, data, batch_size=16)
        row = df[df.domain == name].iloc[0]
        assert row.acc == ref["acc"] and abs(row.loss - ref["loss"]) < 1e-5
    # reset_each: the second domain sees a fresh Tent, the same as a stream of that domain alone
    both = evaluate_stream(Tent(m, lr=0.01), doms, batch_size=16, reset_each=True)
    alone = evaluate_stream(Tent(m, lr=0.01), {"bright": doms["bright"]}, batch_size=16)
    assert both.iloc[1].acc == alone.iloc[0].acc and both.iloc[1].loss == alone.iloc[0].loss
    cont = evaluate_stream(Tent(m, lr=0.01), doms, batch_size=16)
    assert cont.iloc[0].loss == both.iloc[0].loss and cont.iloc[1].loss != both.iloc[1].loss


def test_ecotta_warmup_through_fit():
    m = _model()
    eco = EcoTTA(m)
    res = eco.warmup(_data(32), epochs=1, batch_size=16, lr=0.05, augment=None)
    assert len(res.history) == 1
    assert _same(_state(eco.model), _state(m))  # the original stays frozen, in eval mode
    warmed = _state(eco.net)
    fresh = EcoTTA(m)
    fresh._ready(_x(2, 3, 8, 8))
    assert not torch.equal(warmed["meta.0.block_bn.weight"], fresh.meta[0].block_bn.weight)
    eco(_x(8, 3, 8, 8))
    eco.reset()  # back to the warmed-up state, not the fresh one
    assert _same(_state(eco.net), warmed)


def test_bad_input_names_the_problem_and_the_fix():
    mlp = wb.create_model("mlp", img_size=8)
    for cls in (BNAdapt, Tent):
        with pytest.raises(ValueError, match="has none.*BatchNorm"):
            cls(mlp)
    with pytest.raises(ValueError, match="layer1, layer2"):
        EcoTTA(mlp)
    with pytest.raises(ValueError, match="not a module"):
        EcoTTA(_model(), parts=["layer1", "layer9"])
    with pytest.raises(ValueError, match=r"blend is a fraction in \[0, 1\]"):
        BNAdapt(_model(), blend=1.5)
    with pytest.raises(ValueError, match="'adam' or 'sgd'"):
        Tent(_model(), optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr must be"):
        EcoTTA(_model(), lr=-1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        Tent("resnet20")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\].*unsqueeze"):
        Tent(_model())(_x(3, 8, 8))
    with pytest.raises(TypeError, match="wb.shift adapter"):
        peak_memory(_model(), _x(2, 3, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        evaluate_stream(NoAdapt(_model()), [])
    with pytest.raises(TypeError, match="ImageDatasets"):
        evaluate_stream(NoAdapt(_model()), [_x(2, 3, 8, 8)])
    with pytest.raises(ValueError, match="classes"):
        evaluate_stream(NoAdapt(wb.create_model("resnet8", width=4, num_classes=3)), [_data(8)])
