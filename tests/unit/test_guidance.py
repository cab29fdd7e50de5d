import pytest
import torch

import workbench as wb
from workbench.guidance import Guidance, default_layers, uniform_pairs
from workbench.similarity import linear_cka


def test_uniform_pairs_follow_the_papers_formula():
    # guide layer i -> target layer round(i (T-1)/(G-1)): first with first, last with last
    assert uniform_pairs(list("abcdefgh"), list("1234")) == [("a", "1"), ("c", "2"), ("f", "3"), ("h", "4")]
    assert uniform_pairs(list("abcdefghi"), list("1234")) == [("a", "1"), ("d", "2"), ("f", "3"), ("i", "4")]
    assert uniform_pairs(list("abc"), list("123")) == [("a", "1"), ("b", "2"), ("c", "3")]
    # more guide than target layers: every guide layer keeps its pair
    assert uniform_pairs(list("ab"), list("123456")) == [("a", "1"), ("a", "2"), ("a", "3"),
                                                        ("b", "4"), ("b", "5"), ("b", "6")]
    # 1.5 rounds half to even, as Python's round does in the authors' code
    assert uniform_pairs(list("abcd"), list("123")) == [("a", "1"), ("c", "2"), ("d", "3")]
    assert uniform_pairs(list("abc"), list("1")) == [("a", "1")]


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


def test_mixed_precision_term_and_gradient_agree_with_float32():
    torch.manual_seed(0)
    guide, target = wb.create_model("resnet8", width=8), wb.create_model("plain8", width=8)
    x = wb.load("shapes", "train", subset=64).normalize(wb.load("shapes", "train", subset=64).images)
    out = {}
    for precision in ("fp32", "bf16"):
        g = Guidance(guide, target, precision=precision)
        g.attach(target)
        target.zero_grad()
        term, _ = g(target, x, None, target(x))
        term.backward()
        g.detach()
        out[precision] = float(term.detach()), torch.cat([p.grad.flatten().double() for p in target.parameters()
                                                          if p.grad is not None])
    assert abs(out["fp32"][0] - out["bf16"][0]) < 1e-3 * len(g.pairs)
    assert float(torch.nn.functional.cosine_similarity(out["fp32"][1], out["bf16"][1], dim=0)) > 0.999
    # the fp32 fast path is the plain definition, 1 - linear CKA summed over the pairs
    g = Guidance(guide, target, precision="fp32")
    g.attach(target)
    logits = target(x)
    _, gacts = wb.run_with_cache(guide.eval(), x, [p[1] for p in g.pairs])
    ref = sum(1 - float(linear_cka(g._acts[t], gacts[gl])) for t, gl in g.pairs)
    assert float(g(target, x, None, logits)[0].detach()) == pytest.approx(ref, abs=1e-5)
    g.detach()
    with pytest.raises(ValueError, match="precision must be 'bf16' or 'fp32'"):
        Guidance(guide, target, precision="fp16")
