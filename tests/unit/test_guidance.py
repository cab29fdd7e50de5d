import pytest
import torch

import workbench as wb
from workbench.guidance import Guidance, default_layers, uniform_pairs
from workbench.similarity import linear_cka


def test_uniform_pairs_spread_and_end_together():
    assert uniform_pairs(list("abcdefgh"), list("1234")) == [("b", "1"), ("d", "2"), ("f", "3"), ("h", "4")]
    assert uniform_pairs(list("ab"), list("123456")) == [("a", "3"), ("b", "6")]
    assert uniform_pairs(list("abc"), list("123")) == [("a", "1"), ("b", "2"), ("c", "3")]


def test_default_layers():
    assert default_layers(wb.create_model("resnet8")) == ["layer1.0", "layer2.0", "layer3.0"]
    assert default_layers(wb.create_model("mlp", depth=3, width=8)) == ["layers.0", "layers.1", "layers.2"]


def test_bad_layer_names_list_the_available_ones():
    guide, target = wb.create_model("resnet8"), wb.create_model("mlp", depth=2, width=8)
    with pytest.raises(ValueError, match="guide layer: .*available hook points: stem"):
        Guidance(guide, target, pairs=[("layers.0", "layer9")])
    with pytest.raises(ValueError, match="target layer: .*available hook points"):
        Guidance(guide, target, pairs=[("conv1", "layer1")])


def _cka_to_guide(target, guide, data, pairs):
    x = data.normalize(data.images[:400])
    _, ta = wb.run_with_cache(target.eval(), x, [p[0] for p in pairs])
    _, ga = wb.run_with_cache(guide.eval(), x, [p[1] for p in pairs])
    return sum(float(linear_cka(ta[t], ga[g])) for t, g in pairs) / len(pairs)


def test_guided_training_aligns_and_never_touches_the_guide():
    train = wb.load("shapes", "train", subset=1024)
    torch.manual_seed(0)
    guide = wb.create_model("resnet8", width=8)
    guide.train()  # left in train mode on purpose: guidance must not update its BatchNorm statistics
    before = {k: v.clone() for k, v in guide.state_dict().items()}
    flags = {n: p.requires_grad for n, p in guide.named_parameters()}
    kw = dict(epochs=2, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0, augment=None, progress=False,
              seed=0)

    torch.manual_seed(1)
    plain = wb.create_model("mlp", depth=3, width=64)
    wb.fit(plain, train, **kw)
    torch.manual_seed(1)
    target = wb.create_model("mlp", depth=3, width=64)
    g = Guidance(guide, target, alpha=2.0)
    res = wb.fit(target, train, extra_loss=g, **kw)

    for k, v in guide.state_dict().items():
        assert torch.equal(v, before[k]), f"guide {k} changed"
    assert guide.training and {n: p.requires_grad for n, p in guide.named_parameters()} == flags
    assert {"align", "cka"} <= set(res.history.columns)
    assert res.history["cka"].iloc[-1] > res.history["cka"].iloc[0]
    assert sum(len(m._forward_hooks) for m in target.modules()) == 0, "hooks are removed after fit"
    test = wb.load("shapes", "test", subset=400)
    assert _cka_to_guide(target, guide, test, g.pairs) > _cka_to_guide(plain, guide, test, g.pairs) + 0.05


def test_guidance_only_for_the_first_steps():
    train = wb.load("shapes", "train", subset=512)
    guide, target = wb.create_model("resnet8", width=8), wb.create_model("mlp", depth=2, width=32)
    g = Guidance(guide, target, steps=3)
    res = wb.fit(target, train, epochs=1, batch_size=128, progress=False, extra_loss=g)
    assert g.calls == 4 and res.history["align"].iloc[-1] > 0
    term, logs = g(target, None, None, torch.zeros(2, 10))
    assert float(term) == 0.0 and float(logs["align"]) == 0.0
