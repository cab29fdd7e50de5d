"""Matryoshka representations (wb.ssl.matryoshka): the nested loss against plain cross-entropy and a
hand-computed weighted sum, the prefix heads, adaptive retrieval against full retrieval, its cost, and
bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.ssl import (Matryoshka, Truncated, adaptive_retrieval, matryoshka_loss, matryoshka_run,
                           retrieval_cost, retrieval_metrics, retrieve)


def _net(**kw):
    torch.manual_seed(0)
    return wb.create_model("matryoshka_net", backbone_kwargs={"width": 4}, **kw)


def test_one_prefix_is_plain_cross_entropy_exactly():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 10, 1, generator=g), torch.randint(0, 10, (16,), generator=g)
    task = Matryoshka([8])
    assert torch.equal(task.loss(logits, (None, y)), F.cross_entropy(logits[:, :, 0], y))
    assert torch.equal(matryoshka_loss(logits, y, label_smoothing=0.1),
                       F.cross_entropy(logits[:, :, 0], y, label_smoothing=0.1))


def test_one_prefix_on_the_pooled_features_trains_exactly_as_the_plain_resnet():
    """matryoshka_net(sizes=[F], projection=False) with the Matryoshka task is resnet20 with cross-entropy."""
    train = wb.load("shapes", "train", subset=96, seed=0)
    torch.manual_seed(0)
    plain = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    net = wb.create_model("matryoshka_net", backbone="resnet8", backbone_kwargs={"width": 4}, sizes=[16],
                          projection=False, num_classes=train.num_classes)
    net.backbone.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith("fc.")})
    net.heads[0].load_state_dict(plain.fc.state_dict())
    x = train.normalize(train.images[:8])
    assert torch.equal(net.eval()(x)[:, :, 0], plain.eval()(x))
    kw = dict(epochs=1, batch_size=32, lr=0.05, progress=False, seed=0, device="cpu")
    a = wb.fit(plain, train, **kw)
    b = wb.fit(net, train, task=Matryoshka([16]), **kw)
    assert a.history.train_loss.iloc[0] == b.history.train_loss.iloc[0]
    assert torch.equal(plain.fc.weight, net.heads[0].weight) and torch.equal(plain.stem[0].weight,
                                                                            net.backbone.stem[0].weight)


def test_weighted_sum_on_a_hand_made_case():
    # two images, three classes, two prefixes; cross-entropy by hand: logsumexp(row) - row[y]
    logits = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]],
                           [[0.5, 1.0], [0.0, 1.0], [1.5, -1.0]]])  # [batch 2, classes 3, sizes 2]
    y = torch.tensor([0, 2])

    def ce(rows, labels):
        return sum(math.log(sum(math.exp(v) for v in r)) - r[t] for r, t in zip(rows, labels)) / len(rows)
    first = ce([[1.0, 2.0, 0.0], [0.5, 0.0, 1.5]], [0, 2])
    second = ce([[0.0, 0.0, 3.0], [1.0, 1.0, -1.0]], [0, 2])
    want = 0.25 * first + 2.0 * second
    got = Matryoshka([8, 16], weights=[0.25, 2.0]).loss(logits, (None, y))
    assert math.isclose(float(got), want, rel_tol=1e-6)
    assert math.isclose(float(matryoshka_loss(logits, y)), first + second, rel_tol=1e-6)  # the paper's c_m = 1
    sums, n = Matryoshka([8, 16]).metrics(logits, (None, y), got)
    # prefix 8: argmax [1, 2] -> one of two right; prefix 16: argmax [2, 0] -> none right
    assert n == 2 and float(sums["acc_8"]) == 1 and float(sums["acc_16"]) == 0 and float(sums["acc"]) == 0


def test_heads_read_nested_prefixes_and_the_efficient_variant_slices_one_weight():
    net = _net(sizes=[2, 5, 16]).eval()
    x = torch.randn(3, 3, 32, 32)
    z = net.embed(x)
    assert z.shape == (3, 16) and net.embed_dim == 16
    assert torch.equal(net.embed(x, 5), z[:, :5]) and torch.equal(Truncated(net, 5).features(x), z[:, :5])
    out = net(x)
    assert out.shape == (3, 10, 3)
    for k, m in enumerate([2, 5, 16]):
        assert torch.allclose(out[:, :, k], z[:, :m] @ net.heads[k].weight.T + net.heads[k].bias)
    eff = _net(sizes=[2, 5, 16], efficient=True).eval()
    ze, w, b = eff.embed(x), eff.head.weight, eff.head.bias
    assert torch.allclose(eff(x)[:, :, 1], ze[:, :5] @ w[:, :5].T + b)
    heads = lambda m: sum(p.numel() for n, p in m.named_parameters() if n.startswith("head"))  # noqa: E731
    assert heads(net) == 10 * (2 + 5 + 16) + 3 * 10 and heads(eff) == 10 * 16 + 10
    fixed = _net(sizes=[8])
    assert fixed.embed_dim == 8 and fixed(x).shape == (3, 10, 1)


def test_fit_logs_the_accuracy_of_every_prefix():
    train = wb.load("shapes", "train", subset=64, seed=0)
    net = _net(sizes=[4, 8], num_classes=train.num_classes)
    res = wb.fit(net, train, train, task=Matryoshka([4, 8]), epochs=1, batch_size=32, progress=False, device="cpu")
    cols = set(res.history.columns)
    assert {"train_acc_4", "train_acc_8", "test_acc_4", "test_acc_8", "test_acc"} <= cols
    assert res.history.test_acc.iloc[0] == res.history.test_acc_8.iloc[0]


def test_retrieve_on_a_hand_made_case():
    db = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    q = torch.tensor([[1.0, 0.1], [0.0, -2.0]])
    assert retrieve(db, q, k=4).tolist() == [[0, 2, 1, 3], [0, 3, 2, 1]]  # query 2: items 0 and 3 tie at 0
    assert retrieve(db, q, k=2, candidates=torch.tensor([[3, 1], [2, 1]])).tolist() == [[1, 3], [2, 1]]
    assert retrieve(db, q, dims=1, k=3).tolist() == [[0, 2, 1], [0, 1, 2]]  # 1 dim: only the sign counts


def test_retrieve_breaks_ties_as_a_stable_sort_does():
    g = torch.Generator().manual_seed(3)
    z_db = torch.randint(-1, 2, (60, 3), generator=g).float()  # 27 distinct directions at most: many exact ties
    z_q = torch.randint(-1, 2, (9, 3), generator=g).float()
    sim = F.normalize(z_q, dim=1) @ F.normalize(z_db, dim=1).T
    for k in (1, 7, 60):
        assert torch.equal(retrieve(z_db, z_q, k=k), sim.sort(dim=1, descending=True, stable=True).indices[:, :k])


def test_retrieval_metrics_on_a_hand_made_case():
    neighbours = torch.tensor([[0, 1, 2], [2, 1, 0]])
    got = retrieval_metrics(neighbours, torch.tensor([0, 1, 0]), torch.tensor([0, 1]))
    # query 0: relevant at ranks 1, 3 -> AP = (1/1 + 2/3) / 3; query 1: rank 2 -> AP = (1/2) / 3
    assert got["top1"] == 0.5 and math.isclose(got["precision"], 0.5)
    assert math.isclose(got["map"], (5 / 9 + 1 / 6) / 2)


def test_adaptive_retrieval_with_the_whole_database_as_shortlist_is_full_retrieval():
    g = torch.Generator().manual_seed(0)
    z_db = torch.randn(300, 32, generator=g)
    z_db[150:160] = z_db[:10]  # exact ties in both stages
    y_db = torch.randint(0, 5, (300,), generator=g)
    z_q, y_q = torch.randn(40, 32, generator=g), torch.randint(0, 5, (40,), generator=g)
    z_q[:5] = z_db[:5]
    all_idx = torch.arange(300).expand(40, -1).flip(1)  # in any order
    assert torch.equal(retrieve(z_db, z_q, 32, 10, candidates=all_idx), retrieve(z_db, z_q, 32, 10))
    res = adaptive_retrieval(z_db, y_db, z_q, y_q, shortlist_dims=4, rerank_dims=32, shortlist=300)
    assert (res["top1"], res["precision"], res["map"]) == (res["full_top1"], res["full_precision"], res["full_map"])
    small = adaptive_retrieval(z_db, y_db, z_q, y_q, shortlist_dims=4, rerank_dims=32, shortlist=20)
    assert small["full_map"] == res["full_map"] and small["macs"] < res["macs"]
    neighbours = retrieve(z_db, z_q, 32, 10, candidates=retrieve(z_db, z_q, 4, 20))
    assert small["map"] == retrieval_metrics(neighbours, y_db, y_q)["map"]


def test_cost_formula_on_a_hand_made_case():
    assert retrieval_cost(1000, 8, 64, 50) == {"macs": 1000 * 8 + 50 * 64, "full_macs": 64_000, "fraction": 0.175}
    # the paper's ImageNet-1K point (1,281,167 database images, shortlist 200 at 16 dims, rerank at 2048)
    assert retrieval_cost(1_281_167, 16, 2048, 200)["macs"] == 20_908_272
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(100, 16, generator=g), torch.randint(0, 3, (100,), generator=g)
    res = adaptive_retrieval(z, y, z[:7], y[:7], shortlist_dims=2, rerank_dims=16, shortlist=25)
    assert (res["macs"], res["full_macs"]) == (100 * 2 + 25 * 16, 100 * 16)


def test_run_record_measures_every_prefix_of_the_trained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    kw = dict(dims=[2, 4, 8], backbone="resnet8", backbone_kwargs={"width": 2}, dataset="shapes", train_subset=60,
              test_subset=30, knn_k=5, shortlist_dims=2, rerank_dims=8, shortlists=[10, 60], k=5, epochs=1,
              batch_size=30, device="cpu")
    rec = matryoshka_run([2, 4, 8], 0, **kw)
    assert [r["dims"] for r in rec["per_size"]] == [2, 4, 8] and rec["embed_dim"] == 8
    assert rec["per_size"][-1]["head_acc"] == rec["test_acc"]
    whole = rec["adaptive"][1]  # the shortlist holds the whole database: the full search
    assert whole["shortlist"] == 60 and whole["map"] == whole["full_map"] == rec["per_size"][-1]["map"]
    train = wb.load("shapes", "train", subset=60, seed=0)
    test = wb.load("shapes", "test", subset=30, seed=0)
    net = wb.train_model("matryoshka_net", train, test, seed=0, progress=False, task=Matryoshka([2, 4, 8]),
                         model_kwargs={"backbone": "resnet8", "backbone_kwargs": {"width": 2}, "sizes": [2, 4, 8],
                                       "embed_dim": None, "projection": True, "efficient": False},
                         epochs=1, batch_size=30, device="cpu").model  # from the cache the run filled
    (za, ya), (zb, yb) = wb.ssl.encode(net, train), wb.ssl.encode(net, test)
    assert rec["per_size"][0]["knn"] == wb.ssl.knn_features(za[:, :2], ya, zb[:, :2], yb, k=5, num_classes=10)
    fixed = matryoshka_run([4], 0, **kw)  # measured cut short at 2 dims too; no 8 dims to rerank with
    assert [r["dims"] for r in fixed["per_size"]] == [2, 4] and fixed["per_size"][0]["head_acc"] is None
    assert fixed["adaptive"] == []


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="strictly increasing.*\\[8, 16\\]"):
        _net(sizes=[16, 8])
    with pytest.raises(ValueError, match="strictly increasing"):
        Matryoshka([8, 8, 16])
    with pytest.raises(ValueError, match="at most the embedding size 64.*embed_dim >= 128"):
        _net(sizes=[8, 128], embed_dim=64)
    with pytest.raises(ValueError, match="at most the embedding size 16"):
        _net(sizes=[8, 32], projection=False)  # width 4: 16 pooled features
    with pytest.raises(ValueError, match="non-empty"):
        Matryoshka([])
    with pytest.raises(ValueError, match="one entry per nested size \\(2\\)"):
        Matryoshka([8, 16], weights=[1.0])
    train = wb.load("shapes", "train", subset=32, seed=0)
    with pytest.raises(ValueError, match="differ from the model's \\[4, 8\\]"):
        wb.fit(_net(sizes=[4, 8], num_classes=train.num_classes), train, task=Matryoshka([4, 16]), progress=False)
    with pytest.raises(ValueError, match="between 1 and the embedding size 8"):
        Truncated(_net(sizes=[4, 8]), 9)
    z, y = torch.randn(50, 16), torch.zeros(50, dtype=torch.long)
    with pytest.raises(ValueError, match="shortlist_dims \\(16\\) must be at most rerank_dims \\(8\\)"):
        adaptive_retrieval(z, y, z, y, shortlist_dims=16, rerank_dims=8)
    with pytest.raises(ValueError, match="shortlist must be an integer from k \\(10\\) to the database size \\(50\\)"):
        adaptive_retrieval(z, y, z, y, shortlist_dims=4, shortlist=5)
    with pytest.raises(ValueError, match="rerank_dims must be an integer between 1 and the embedding size 16"):
        adaptive_retrieval(z, y, z, y, rerank_dims=32)
    with pytest.raises(ValueError, match="cannot exceed the database size"):
        retrieval_cost(10, 2, 4, 20)
