"""wb.nas: search spaces as data, the weight-sharing property of both supernets (a sub-network equals its
standalone network), supernet training through fit, the search strategies and their caching, bad input."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from workbench import nas

TINY = nas.SearchSpace({"a": (1, 2, 3), "b": ("x", "y"), "c": (True,), "d": (0.5, 1.0)})
OPS3 = ("identity", "sep_conv_3x3", "max_pool_3x3")


def _x(n=3, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# -- the space --------------------------------------------------------------------------------------------

def test_space_sizes_are_the_hand_counts():
    assert TINY.size() == 3 * 2 * 1 * 2 == 12 == len(list(TINY.grid()))
    assert len({TINY.key(a) for a in TINY.grid()}) == 12
    # a cell of 2 blocks over 2 ops: block 0 picks 2 of 2 inputs and 2 ops, block 1 2 of 3 inputs and 2 ops
    per_cell = (2 * 2 * 2 * 2) * (3 * 3 * 2 * 2)
    assert nas.cell_space(2, ("identity", "sep_conv_3x3")).size() == per_cell ** 2 == 331776
    assert nas.cell_space(4).size() == ((2 * 3 * 4 * 5) ** 2 * 6 ** 8) ** 2
    assert nas.vit_stage_space().size() == (2 * 2 * 2 * 2) * (3 * 2 * 2 * 2) * (2 * 2 * 2 * 2)
    assert (TINY | {"e": ("p", "q", "r")}).size() == 36


def test_sampling_covers_every_choice_and_is_reproducible_by_seed():
    draws = [TINY.sample(g) for g in [torch.Generator().manual_seed(0)] for _ in range(200)]
    again = [TINY.sample(g) for g in [torch.Generator().manual_seed(0)] for _ in range(200)]
    other = [TINY.sample(g) for g in [torch.Generator().manual_seed(1)] for _ in range(200)]
    assert draws == again and draws != other
    assert TINY.sample(5) == TINY.sample(5)
    for name, values in TINY.choices.items():
        assert {d[name] for d in draws} == set(values)
    assert len({TINY.key(d) for d in draws}) == 12  # 200 draws of 12 architectures meet them all


def test_mutation_changes_exactly_one_choice_and_p_changes_more():
    space = nas.cell_space(3, OPS3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        a = space.sample(gen)
        b = space.mutate(a, gen)
        assert sum(a[k] != b[k] for k in a) == 1 and space.validate(b) == b
    a = TINY.sample(0)
    for _ in range(20):
        b = TINY.mutate(a, gen, p=1.0)  # every choice with a second value changes; "c" has none
        assert b["c"] is True and all(a[k] != b[k] for k in ("a", "b", "d"))
        c = TINY.mutate(a, gen, p=1e-9)
        assert sum(a[k] != c[k] for k in a) == 1  # at least one change


def test_keys_are_stable_and_values_canonical():
    arch = {"d": 1, "c": True, "b": "y", "a": 2}  # any order; 1 means the choice 1.0
    assert TINY.key(arch) == '{"a":2,"b":"y","c":true,"d":1.0}' == TINY.key(dict(reversed(list(arch.items()))))
    assert TINY.from_key(TINY.key(arch)) == {"a": 2, "b": "y", "c": True, "d": 1.0}
    assert TINY.encode(arch) == [1, 1, 0, 1] and TINY.decode([1, 1, 0, 1]) == TINY.validate(arch)
    assert list(TINY.validate(arch)) == ["a", "b", "c", "d"]


def test_space_bad_input():
    with pytest.raises(ValueError, match=r"choice 'width' is empty: give it at least one value"):
        nas.SearchSpace({"depth": (1, 2), "width": ()})
    with pytest.raises(ValueError, match="non-empty dict"):
        nas.SearchSpace({})
    with pytest.raises(ValueError, match="repeats a value"):
        nas.SearchSpace({"a": (1, 1)})
    with pytest.raises(ValueError, match="values are finite numbers, strings"):
        nas.SearchSpace({"a": ((1, 2),)})
    with pytest.raises(ValueError, match=r"names \['depht'\].*did you mean 'depth'"):
        nas.SearchSpace({"depth": (1, 2)}).validate({"depht": 1})
    with pytest.raises(ValueError, match=r"value 4 for 'a' is not in the space; choose one of \[1, 2, 3\]"):
        TINY.validate({"a": 4, "b": "x", "c": True, "d": 0.5})
    with pytest.raises(ValueError, match=r"value 1 for 'c' is not in the space"):  # 1 is not True
        TINY.validate({"a": 1, "b": "x", "c": 1, "d": 0.5})
    with pytest.raises(ValueError, match=r"no value for \['d'\]"):
        TINY.validate({"a": 1, "b": "x", "c": True})
    with pytest.raises(ValueError, match="both spaces name"):
        TINY | {"a": (9,)}
    with pytest.raises(ValueError, match="nothing to mutate"):
        nas.SearchSpace({"c": (True,)}).mutate({"c": True}, 0)
    with pytest.raises(ValueError, match="more than limit"):
        list(nas.cell_space(4).grid())
    with pytest.raises(ValueError, match="ops are names among"):
        nas.cell_space(2, ("identity", "conv_7x7"))


# -- NASNet cells ---------------------------------------------------------------------------------------

def _cells(**kw):
    torch.manual_seed(0)
    net = nas.CellSupernet(**{**dict(blocks=2, ops=OPS3, cells=1, stages=2, width=8), **kw})
    for m in net.modules():  # trained-looking BatchNorm statistics, so eval mode is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.1)
    return net


def test_cell_supernet_under_an_arch_equals_its_standalone_network_exactly():
    net, x = _cells(), _x()
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        arch = net.space.sample(gen)
        sub = net.set_arch(arch).subnet(arch)
        assert set(sub.state_dict()) < set(net.state_dict())
        assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in net.parameters())
        with torch.no_grad():
            net.eval(), sub.eval()
            assert torch.equal(net(x), sub(x))
            net.train(), sub.train()  # batch statistics: the same too
            assert torch.equal(net(x), sub(x))
    net.eval()


def test_only_the_active_operations_run_and_get_gradients():
    net, x = _cells(), _x()
    arch = {**net.space.sample(0), "normal.1.in_a": 2, "normal.1.op_a": "sep_conv_3x3"}
    net.set_arch(arch)
    ran = set()
    for name, m in net.named_modules():
        if ".edges." in name and name.count(".") == 3:
            m.register_forward_hook(lambda mod, a, o, name=name: ran.add(name))
    net.train()
    net(x).sum().backward()
    want = set()
    for i, kind in enumerate(net.kinds):
        for b, (ia, oa, ib, ob) in enumerate(nas.genotype(arch, kind)):
            want |= {f"cells.{i}.edges.b{b}a_in{ia}_{oa}", f"cells.{i}.edges.b{b}b_in{ib}_{ob}"}
    assert ran == want
    grads = {".".join(n.split(".")[:4]) for n, p in net.named_parameters() if ".edges." in n and p.grad is not None}
    assert grads and grads <= want and "cells.0.edges.b1a_in2_sep_conv_3x3" in grads
    assert net.cells[0].edges["b1a_in0_sep_conv_3x3"][1].weight.grad is None


def test_cell_network_multiply_adds_are_the_hand_count():
    one = dict(blocks=1, ops=("identity", "sep_conv_3x3"), cells=1, stages=1, width=4)
    net = nas.CellSupernet(**one)
    ident = {"normal.0.in_a": 0, "normal.0.op_a": "identity", "normal.0.in_b": 1, "normal.0.op_b": "identity",
             "reduce.0.in_a": 0, "reduce.0.op_a": "identity", "reduce.0.in_b": 0, "reduce.0.op_b": "identity"}
    # stem 3x3 conv 3 -> 4 on 32x32, two 1x1 preprocessing convs 4 -> 4, the classifier 4 -> 10
    base = 1024 * 4 * 3 * 9 + 2 * 1024 * 4 * 4 + 4 * 10
    assert net.macs(ident) == base == wb.models.summary(net.subnet(ident)).macs
    sep = {**ident, "normal.0.op_b": "sep_conv_3x3"}  # + depthwise 3x3 and pointwise 1x1 on 4 channels
    assert net.macs(sep) == base + 1024 * 4 * 9 + 1024 * 4 * 4
    deep = nas.cell_network(sep, cells=2, width=6, stages=3)
    assert deep.kinds == ["normal", "normal", "reduce", "normal", "normal", "reduce", "normal", "normal"]
    assert deep(_x(2)).shape == (2, 10) and "cells.7.hook_out" in wb.models.hook_points(deep)
    with pytest.raises(ValueError, match="not in the space"):
        net.set_arch({**ident, "normal.0.in_a": 2})  # block 0 reads only the two cell inputs
    with pytest.raises(RuntimeError, match="call set_arch"):
        nas.CellSupernet(**one)(_x(1))
    with pytest.raises(ValueError, match="expected an architecture of wb.nas.cell_space"):
        nas.cell_network({"stage1.depth": 1})


# -- multi-stage ViTs -----------------------------------------------------------------------------------

SMALL_VIT = dict(depths=((1, 2), (1, 2)), widths=((16, 32), (32, 48)), heads=((1, 2), (2, 4)),
                 mlp_ratios=((2.0, 4.0), (1.0, 2.0)))


def _vit():
    torch.manual_seed(0)
    net = nas.ViTStagesSupernet(nas.vit_stage_space(**SMALL_VIT)).eval()
    for p in net.parameters():  # no zero biases or unit norms: a wrong slice shows
        p.data.normal_(0, 0.2)
    return net


def test_vit_supernet_under_an_arch_equals_its_standalone_network_exactly():
    net, x = _vit(), _x()
    gen = torch.Generator().manual_seed(0)
    archs = [net.space.sample(gen) for _ in range(6)] + [{k: min(v) for k, v in net.space.choices.items()}]
    for arch in archs:
        sub = net.set_arch(arch).subnet(arch)
        assert sub.stages[1][0].attn.heads == arch["stage2.heads"] and len(sub.stages[0]) == arch["stage1.depth"]
        with torch.no_grad():
            assert torch.equal(net(x), sub(x))
        net.train(), sub.train()
        assert torch.equal(net(x), sub(x))  # with gradients recorded too
        net.eval()
    # the weights are the leading slices: q, k and v each keep their first `width` rows
    arch = {**archs[-1], "stage1.width": 16}
    sub, big = net.subnet(arch), net.stages[0][0].attn.qkv.weight
    assert torch.equal(sub.stages[0][0].attn.qkv.weight, torch.cat([big[i * 32:i * 32 + 16, :16] for i in range(3)]))


def test_vit_at_full_width_and_depth_is_the_full_network():
    net, x = _vit(), _x()
    full = net.set_arch(None).subnet(net.max_arch)
    assert net.arch == net.max_arch == {**net.max_arch, "stage1.depth": 2, "stage2.width": 48}
    mine = dict(net.named_parameters())
    assert all(torch.equal(p, mine[n]) for n, p in full.named_parameters())  # no slicing at all
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        assert torch.equal(net(x), full(x))
    # elastic depth: the second block of a stage does not run at depth 1
    ran = []
    net.stages[0][1].register_forward_hook(lambda *a: ran.append(1))
    net.set_arch({**net.max_arch, "stage1.depth": 1})(x)
    assert ran == []


def test_one_stage_equals_vit_tiny_in_shape_cost_and_output():
    torch.manual_seed(0)
    tiny = wb.create_model("vit_tiny").eval()
    ours = nas.vit_stages_network(nas.vit_tiny_arch()).eval()
    ours.load_state_dict({k.replace("blocks.", "stages.0."): v for k, v in tiny.state_dict().items()})
    x = _x(2)
    with torch.no_grad():
        assert torch.equal(ours(x), tiny(x))
    s, t = wb.models.summary(ours), wb.models.summary(tiny)
    # the linear maps and convolutions (115,607,424) plus attention's two products, 2 T^2 w in each of 6 blocks
    assert (s.params, s.macs) == (t.params, t.macs) == (t.params, 115607424 + 6 * 2 * 65 ** 2 * 192)


def test_vit_multiply_adds_grow_with_the_architecture_and_match_summary():
    net = _vit()
    small, big = {k: min(v) for k, v in net.space.choices.items()}, net.max_arch
    assert net.macs(small) < net.macs({**small, "stage2.width": 48}) < net.macs(big)
    assert net.macs(big) == wb.models.summary(net.subnet(big)).macs
    assert net.macs(small) == net.macs({**small, "stage1.heads": 2})  # heads split the same matmuls


def test_vit_bad_input():
    with pytest.raises(ValueError, match="width 48 does not split into 5 heads"):
        nas.vit_stage_space(depths=((1,),), widths=((48,),), heads=((4, 5),), mlp_ratios=((2,),))
    with pytest.raises(ValueError, match="one choice tuple per stage"):
        nas.vit_stage_space(depths=((1,), (1,)), widths=((16,),), heads=((1,),), mlp_ratios=((2,),))
    with pytest.raises(ValueError, match="missing"):
        nas.vit_stages_network({"stage1.depth": 1, "stage1.width": 16})
    with pytest.raises(ValueError, match="width a multiple of heads"):
        nas.vit_stages_network({**nas.vit_tiny_arch(), "stage1.heads": 5})
    with pytest.raises(ValueError, match="not in the space"):
        _vit().set_arch({**_vit().max_arch, "stage1.width": 24})
    with pytest.raises(ValueError, match="5 stages need a token grid .* whole multiple of 16"):
        nas.vit_stages_network({**nas.vit_tiny_arch(), **{f"stage{s}.{f}": v for s in (2, 3, 4, 5)
                                                          for f, v in (("depth", 1), ("width", 16), ("heads", 1),
                                                                       ("mlp_ratio", 1.0))}})


# -- training a supernet through fit --------------------------------------------------------------------

def test_sample_arch_trains_a_supernet_in_fit_and_resumes(tmp_path):
    train = wb.data.load("shapes", "train", subset=48)
    kw = dict(epochs=1, lr=0.05, batch_size=16, progress=False, seed=0, augment=None)

    class Spy(wb.train.Callback):
        def __init__(self):
            self.archs = []

        def on_before_forward(self, state):
            self.archs.append(dict(state.model.arch))

    def run(spy, **more):
        net = _cells()
        before = copy.deepcopy(net.state_dict())
        fixed = net.space.sample(9)
        res = wb.fit(net, train, algorithms=[nas.SampleArch(seed=1, eval_arch=fixed), spy], **kw, **more)
        return net, before, fixed, res

    spy = Spy()
    net, before, fixed, res = run(spy)
    gen = torch.Generator().manual_seed(1)
    assert spy.archs == [net.space.sample(gen) for _ in range(3)]  # the seeded draws, one per batch
    assert net.arch == fixed and res.history.train_loss.notna().all()
    used = {f"cells.{i}.edges.b{b}{s}_in{j}_{o}" for a in spy.archs for i, kind in enumerate(net.kinds)
            for b, (ia, oa, ib, ob) in enumerate(nas.genotype(a, kind)) for s, j, o in (("a", ia, oa), ("b", ib, ob))}
    for name, p in net.named_parameters():  # an operation no draw used kept its initial weights
        if ".edges." in name and ".".join(name.split(".")[:4]) not in used:
            assert torch.equal(p, before[name]), name
    assert any(not torch.equal(p, before[n]) for n, p in net.named_parameters() if ".edges." in n)
    run(Spy(), checkpoint_dir=tmp_path, checkpoint_every=1, stop_after_steps=1)
    tail = Spy()
    resumed, *_ = run(tail, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert tail.archs == spy.archs[1:]
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="needs a supernet with set_arch"):
        wb.fit(wb.create_model("resnet8"), train, algorithms=[nas.SampleArch(TINY)], **kw)


def test_a_vit_supernet_trains_a_couple_of_steps():
    train = wb.data.load("shapes", "train", subset=32)
    net = nas.ViTStagesSupernet(nas.vit_stage_space(**SMALL_VIT))
    res = wb.fit(net, train, algorithms=[nas.SampleArch(seed=0, eval_arch=net.max_arch)], epochs=1, batch_size=16,
                 optimizer="adamw", lr=1e-3, progress=False, seed=0)
    assert len(res.history) == 1 and torch.isfinite(torch.tensor(res.history.train_loss.tolist())).all()
    assert net.arch == net.max_arch


def test_evaluate_is_the_subnet_accuracy_restores_the_supernet_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    data = wb.data.load("shapes", "test", subset=40)
    net = _cells().eval()
    arch, other = net.space.sample(1), net.space.sample(2)
    net.set_arch(other)
    state = copy.deepcopy(net.state_dict())
    got = nas.evaluate(net, arch, data)
    ref = wb.evaluate(net.subnet(arch), data)
    assert (got["acc"], got["loss"], got["score"]) == (ref["acc"], ref["loss"], ref["acc"])
    assert got["macs"] == got["cost"] == wb.models.summary(net.subnet(arch)).macs
    assert net.arch == other and all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    bn = data.normalize(data.images[:24])
    got_bn = nas.evaluate(net, arch, data, bn_recalibration=bn)
    sub = nas.recalibrate_bn(net.subnet(arch), bn)
    ref_bn = wb.evaluate(sub, data)
    assert got_bn["acc"] == ref_bn["acc"] and got_bn["loss"] == pytest.approx(ref_bn["loss"])
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # the statistics came back
    monkeypatch.setattr(wb.train.trainer, "evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    assert nas.evaluate(net, arch, data) == got  # from the cache
    with pytest.raises(ValueError, match="no BatchNorm"):
        nas.recalibrate_bn(_vit(), bn)


def test_evaluate_prices_an_architecture_at_the_data_s_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    data = wb.data.load("shapes", "test", subset=16)
    small = wb.nas.experiments.downsample(data, 16)
    net = _cells().eval()
    arch = net.space.sample(3)
    got = nas.evaluate(net, arch, small)
    assert got["macs"] == wb.models.summary(net.subnet(arch), (data.shape[0], 16, 16)).macs
    assert got["macs"] < nas.evaluate(net, arch, data)["macs"]


# -- search strategies ----------------------------------------------------------------------------------

BIG = nas.SearchSpace({f"k{i}": (0, 1, 2, 3) for i in range(12)})
TARGET = {f"k{i}": (i * 7) % 4 for i in range(12)}


def matches(arch):
    return {"score": float(sum(arch[k] == v for k, v in TARGET.items())), "cost": float(sum(arch.values()))}


def bowl(arch):  # a known optimum: a = 2, b = "y", d = 0.5
    return {"score": -(arch["a"] - 2) ** 2 - (arch["b"] != "y") - abs(arch["d"] - 0.5), "cost": float(arch["a"])}


def test_random_search_finds_the_known_optimum_and_is_deterministic():
    df = nas.random_search(TINY, bowl, n=60, seed=0)
    assert list(df.columns[:5]) == ["order", "key", "arch", "score", "cost"] and df.order.tolist() == list(range(60))
    best = df.loc[df.score.idxmax()]
    assert best.score == 0 and best.arch == {"a": 2, "b": "y", "c": True, "d": 0.5}
    assert df.equals(nas.random_search(TINY, bowl, n=60, seed=0))
    assert not df.arch.equals(nas.random_search(TINY, bowl, n=60, seed=1).arch)
    assert all(r.key == TINY.key(r.arch) and r.score == bowl(r.arch)["score"] for r in df.itertuples())


def test_evolution_beats_random_search_at_an_equal_budget_over_seeds():
    evo = [nas.evolution(BIG, matches, population=20, cycles=130, sample_size=5, seed=s).score.max() for s in range(5)]
    rnd = [nas.random_search(BIG, matches, n=150, seed=s).score.max() for s in range(5)]
    assert sum(e > r for e, r in zip(evo, rnd)) >= 4 and sum(evo) / 5 > sum(rnd) / 5 + 1


def test_evolution_ages_its_population_and_mutates_one_choice():
    df = nas.evolution(BIG, matches, population=10, cycles=40, sample_size=3, seed=0)
    assert len(df) == 50 and (df.parent[:10] == -1).all()
    kids = df[10:]
    # the parent was alive: among the `population` newest before the child
    assert ((kids.parent < kids.order) & (kids.parent >= kids.order - 10)).all()
    for r in kids.itertuples():
        assert sum(df.arch[r.parent][k] != r.arch[k] for k in r.arch) == 1
    assert df.equals(nas.evolution(BIG, matches, population=10, cycles=40, sample_size=3, seed=0))


def test_evolution_under_a_cost_limit_finds_the_best_within_it():
    space = nas.SearchSpace({f"k{i}": (0, 1, 2, 3) for i in range(6)})
    both = lambda a: {"score": float(sum(a.values())), "cost": float(sum(a.values()))}  # noqa: E731
    for seed in range(3):
        df = nas.evolution(space, both, population=10, cycles=100, sample_size=4, seed=seed, max_cost=7)
        free = nas.evolution(space, both, population=10, cycles=100, sample_size=4, seed=seed)
        assert df[df.cost <= 7].score.max() == 7  # the best any architecture within the limit reaches
        # the limit holds the late children near it; without it they climb towards the maximum, 18
        assert df.cost[-30:].mean() <= 9 and free.cost[-30:].mean() >= 12


def test_optuna_tpe_and_nsga2_are_deterministic_and_tpe_finds_the_optimum():
    df = nas.optuna_search(TINY, bowl, n_trials=30, seed=0)
    assert df.score.max() == 0 and df.equals(nas.optuna_search(TINY, bowl, n_trials=30, seed=0))
    assert all(type(a["a"]) is int for a in df.arch)  # an integer range stays integers
    two = nas.optuna_search(BIG, matches, n_trials=12, seed=0, directions=("maximize", "minimize"),
                            population_size=4)
    assert len(two) == 12 and two.equals(nas.optuna_search(BIG, matches, n_trials=12, seed=0,
                                                           directions=("maximize", "minimize"), population_size=4))


def test_a_candidate_is_scored_once_and_a_rerun_reads_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    calls = []

    def counted(arch):
        calls.append(TINY.key(arch))
        return bowl(arch)

    df = nas.evolution(TINY, counted, population=6, cycles=30, sample_size=3, seed=0)
    assert len(df) == 36 and len(calls) == len(set(calls)) == df.key.nunique() < 36  # revisits from memory
    ev = nas.cached_evaluator(bowl, key={"objective": "bowl"}, space=TINY)
    first = nas.evolution(TINY, ev, population=6, cycles=30, sample_size=3, seed=0)
    n = ev.calls
    assert n == first.key.nunique()
    again = nas.evolution(TINY, ev, population=6, cycles=30, sample_size=3, seed=0)
    assert ev.calls == n and again.equals(first)
    assert first[["key", "score", "cost"]].equals(df[["key", "score", "cost"]])


def test_rank_correlation_hand_cases():
    r = nas.rank_correlation([1, 2, 3, 4], [1, 3, 2, 4])  # 5 concordant pairs, 1 discordant; d^2 sums to 2
    assert r["kendall"] == pytest.approx(2 / 3) and r["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert nas.rank_correlation([1, 2, 3], [30, 20, 10]) == pytest.approx({"kendall": -1.0, "spearman": -1.0})
    with pytest.raises(ValueError, match="equally long"):
        nas.rank_correlation([1, 2], [1])


def test_strategies_bad_input():
    with pytest.raises(ValueError, match="must return a dict with 'score'"):
        nas.random_search(TINY, lambda a: 1.0, n=2)
    with pytest.raises(ValueError, match="n is a whole number"):
        nas.random_search(TINY, bowl, n=0)
    with pytest.raises(ValueError, match=r"sample_size \(5\) cannot exceed population \(3\)"):
        nas.evolution(TINY, bowl, population=3, cycles=2, sample_size=5)
    with pytest.raises(ValueError, match="directions are 'maximize' or 'minimize'"):
        nas.optuna_search(TINY, bowl, n_trials=2, directions=("up",))
    with pytest.raises(ValueError, match="choice 'b' is empty"):
        nas.random_search({"a": (1,), "b": []}, bowl, n=2)
    with pytest.raises(ValueError, match="a probability in"):
        TINY.mutate(TINY.sample(0), 0, p=1.5)
