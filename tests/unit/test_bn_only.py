import pytest
import torch

import workbench as wb
from workbench import bn_only


def bn_count(model):
    return sum(p.numel() for m in bn_only.batchnorm_modules(model).values() for p in m.parameters())


@pytest.mark.parametrize("n,w", [(1, 16), (2, 16), (3, 8), (9, 16)])
def test_bn_only_count_closed_form(n, w):
    model = wb.create_model("resnet_cifar", depth=6 * n + 2, width=w)
    s = bn_only.configure(model, "bn_only")
    assert s.trainable == 2 * w * (14 * n + 7)  # Frankle et al. / open_lth, projection shortcuts
    assert s.trainable == bn_count(model)


@pytest.mark.parametrize("depth", [14, 32])
def test_policies_train_equal_counts(depth):
    model = wb.create_model(f"resnet{depth}")
    counts = {p: bn_only.configure(model, p, seed=1).trainable for p in bn_only.POLICIES}
    assert counts["bn_only"] == counts["random_per_channel"] == counts["random_anywhere"]
    assert counts["full"] == wb.models.count_parameters(model)
    out = bn_only.configure(model, "bn_only", train_output=True).trainable
    assert out == counts["bn_only"] + 64 * 10 + 10


def test_random_per_channel_picks_k_distinct_per_output_channel():
    model = wb.create_model("resnet8")
    s = bn_only.configure(model, "random_per_channel", k=3, seed=0)
    for name, m in s.masks.items():
        per_channel = m.view(m.shape[0], -1).sum(1)
        assert torch.equal(per_channel, torch.full_like(per_channel, 3)), name
    assert not any("bn" in n or "fc" in n for n in s.params)
    other = bn_only.configure(wb.create_model("resnet8"), "random_per_channel", k=3, seed=1)
    assert any(not torch.equal(s.masks[n], other.masks[n]) for n in s.masks)


def test_random_anywhere_spreads_over_layers():
    model = wb.create_model("resnet20")
    s = bn_only.configure(model, "random_anywhere", seed=0)
    per_layer = {n: int(m.sum()) for n, m in s.masks.items()}
    # the big stage-3 convolutions hold most weights, so most picks land there
    assert sum(v for n, v in per_layer.items() if n.startswith("layer3")) > 0.5 * s.trainable
    assert any(v == 0 or v % 2 for v in per_layer.values()) or len(set(per_layer.values())) > 1


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="no BatchNorm layer.*another policy"):
        bn_only.configure(wb.create_model("mlp", depth=2, width=8), "bn_only")
    with pytest.raises(ValueError, match="unknown policy 'bn'.*bn_only, full, random_per_channel, random_anywhere"):
        bn_only.configure(wb.create_model("resnet8"), "bn")
    with pytest.raises(ValueError, match=r"k=28 weights per output channel.*fan-in of stem.0.weight \(27 inputs"):
        bn_only.configure(wb.create_model("resnet8"), "random_per_channel", k=28)
    with pytest.raises(ValueError, match="'pytorch' or 'open_lth'"):
        bn_only.init_batchnorm(wb.create_model("resnet8"), "xavier")


def test_mlp_with_batchnorm_works():
    model = wb.create_model("mlp", depth=3, width=32, norm="bn")
    assert bn_only.configure(model, "bn_only").trainable == 3 * 2 * 32


@pytest.mark.parametrize("policy", bn_only.POLICIES)
@pytest.mark.parametrize("train_output", [False, True])
def test_frozen_entries_stay_bit_identical(policy, train_output):
    train = wb.load("shapes", "train", subset=512)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8)
    s = bn_only.configure(model, policy, train_output=train_output, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wb.fit(model, train, epochs=1, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-3, progress=False,
           **s.fit_kwargs())
    changed = 0
    for n, p in model.named_parameters():
        p = p.detach()
        if n in s.masks:
            frozen = s.masks[n] == 0
            assert torch.equal(p[frozen], before[n][frozen]), f"{policy}: frozen entries of {n} moved"
            changed += int((p != before[n]).sum())
        elif n not in s.params:
            assert torch.equal(p, before[n]), f"{policy}: {n} should be frozen"
        else:
            changed += int((p != before[n]).sum())
    assert 0 < changed <= s.trainable


def test_open_lth_init():
    model = bn_only.init_batchnorm(wb.create_model("resnet20"), "open_lth", seed=0)
    g = torch.cat(list(bn_only.gammas(model).values()))
    assert g.min() >= 0 and g.max() <= 1 and 0.4 < g.mean() < 0.6
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in bn_only.batchnorm_modules(model).values())


def test_gamma_fractions_exact():
    model = wb.create_model("resnet8", width=4)
    bns = list(bn_only.batchnorm_modules(model).values())
    with torch.no_grad():
        for m in bns:
            m.weight.fill_(1.0)
        bns[0].weight[:2] = torch.tensor([0.005, -0.03])
    df = bn_only.gamma_fractions(model, thresholds=(0.01, 0.05))
    total = sum(m.weight.numel() for m in bns)
    allrow = df[df.layer == "all"].set_index("threshold")["fraction"]
    assert allrow[0.01] == pytest.approx(1 / total) and allrow[0.05] == pytest.approx(2 / total)


def test_disabled_features_counts_dead_channels():
    model = wb.create_model("resnet8", width=4).eval()
    with torch.no_grad():
        model.stem[1].weight[:2] = 0.0      # gamma = 0 and beta = -1: relu(-1) = 0 always
        model.stem[1].bias[:2] = -1.0
        model.stem[1].bias[2:] = 5.0        # always positive: never disabled
    data = wb.load("shapes", "test", subset=64)
    df = bn_only.disabled_features(model, data, batch_size=32).set_index("layer")
    assert df.loc["stem", "disabled"] == 2 and df.loc["stem", "channels"] == 4
    assert model.training is False


def test_parameter_table_matches_models():
    t = bn_only.parameter_table(depths=(14, 866)).set_index("depth")
    assert t.loc[14, "total"] == wb.models.count_parameters(wb.create_model("resnet14"))
    assert t.loc[866, "bn_only"] == 2 * 16 * (14 * 144 + 7)


def test_packed_members_follow_their_own_policies():
    from workbench.models.resnet_cifar import CifarResNet

    torch.manual_seed(0)
    lone = CifarResNet(8, width=8)
    packed = wb.models.PackedCifarResNet(8, 4, width=8).load_members([lone] * 4)
    policies = ["bn_only", "full", "random_per_channel", "random_anywhere"]
    summaries, kw = bn_only.configure_packed(packed, policies, seed=3)
    assert [s.trainable for s in summaries] == [bn_only.configure(CifarResNet(8, width=8), p, seed=3).trainable
                                               for p in policies]
    before = [packed.member_state(g) for g in range(4)]
    wb.fit(packed, wb.load("shapes", "train", subset=256), epochs=1, batch_size=128, weight_decay=1e-3,
           progress=False, **kw)
    for g, s in enumerate(summaries):
        after = packed.member_state(g)
        for n, t in after.items():
            if n not in dict(packed.named_parameters()):
                continue
            if n in s.masks:
                frozen = s.masks[n] == 0
                assert torch.equal(t[frozen], before[g][n][frozen]), (policies[g], n)
            elif n not in s.params:
                assert torch.equal(t, before[g][n]), (policies[g], n)


def test_packed_member_equals_lone_model():
    from workbench.models.resnet_cifar import CifarResNet

    torch.manual_seed(1)
    models = [CifarResNet(14, width=8) for _ in range(3)]
    packed = wb.models.PackedCifarResNet(14, 3, width=8).load_members(models).eval()
    x = torch.randn(4, 3, 32, 32)
    out = packed(x)
    for g, m in enumerate(models):
        assert torch.allclose(out[:, :, g], m.eval()(x), atol=1e-5)
        assert all(torch.equal(a, b) for a, b in zip(packed.member(g).state_dict().values(), m.state_dict().values()))
