"""Sparse recurrent networks (notebook 52): unit patterns, graph properties, epochs to regain accuracy,
magnitude pruning with retraining against random-graph structures at one budget.

The masks themselves (graph_mask, graph_recurrent_masks, magnitude_recurrent_masks, mask_density) are tested in
test_sequence.py."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.data import ImageDataset
from workbench.sequence import (STRUCTURES, epochs_to_regain, graph_properties, sparse_rnn_run, train_sparse_rnn,
                                unit_pattern)


# ------------------------------------------------------------------------------------------ patterns and graphs
def test_unit_pattern_joins_the_gate_blocks():
    m = torch.zeros(8, 4)               # two gate blocks of a 4-unit layer
    m[0, 1] = 1.0                       # block 0: unit 0 reads unit 1
    m[4 + 2, 3] = 1.0                   # block 1: unit 2 reads unit 3
    p = unit_pattern(m)
    want = torch.zeros(4, 4)
    want[0, 1] = want[2, 3] = 1.0
    assert torch.equal(p, want)
    with pytest.raises(ValueError, match="hidden-to-hidden"):
        unit_pattern(torch.zeros(5, 4))


def test_graph_properties_hand_made_graphs():
    full = graph_properties(torch.ones(5, 5))                              # complete graph K5
    assert full == {"density": 1.0, "edges": 10, "mean_degree": 4.0, "degree_cv": 0.0, "clustering": 1.0,
                    "path_length": 1.0, "components": 1}
    ring = torch.eye(6).roll(1, 1) + torch.eye(6).roll(-1, 1) + torch.eye(6)   # a ring, self-connections kept
    r = graph_properties(ring)
    assert r["edges"] == 6 and r["clustering"] == 0.0 and r["degree_cv"] == 0.0 and r["components"] == 1
    assert r["path_length"] == pytest.approx(1.8)                          # 1, 1, 2, 2, 3 from every unit
    assert r["density"] == pytest.approx(18 / 36)
    star = torch.zeros(5, 5)
    star[0, 1:] = 1.0                                                      # the hub reads four units (one way)
    s = graph_properties(star)
    assert s["edges"] == 4 and s["mean_degree"] == pytest.approx(1.6) and s["clustering"] == 0.0
    assert s["degree_cv"] == pytest.approx(1.2 / 1.6)                      # degrees 4, 1, 1, 1, 1
    assert s["path_length"] == pytest.approx((4 * 1 + 6 * 2) / 10)
    one = torch.zeros(3, 3)
    one[0, 1] = 1.0
    o = graph_properties(one)                                              # unit 2 is isolated
    assert o["components"] == 2 and o["path_length"] == 1.0 and o["edges"] == 1
    stacked = torch.cat([star, torch.zeros(5, 5)])                         # a gate-stacked mask reduces first
    assert graph_properties(stacked) == s
    with pytest.raises(ValueError, match="square"):
        graph_properties(torch.ones(2, 3, 3))


def test_graph_properties_separate_the_random_graphs():
    ws = graph_properties(wb.sequence.graph_mask(64, 0.1, "watts_strogatz", seed=0))
    ba = graph_properties(wb.sequence.graph_mask(64, 0.1, "barabasi_albert", seed=0))
    er = graph_properties(wb.sequence.graph_mask(64, 0.1, "erdos_renyi", seed=0))
    assert ws["clustering"] > er["clustering"] and ws["clustering"] > ba["clustering"]   # small world: clustered
    assert ba["degree_cv"] > 2 * ws["degree_cv"]                                         # scale free: hubs


def test_epochs_to_regain():
    assert epochs_to_regain([0.5, 0.7, 0.9], 0.8) == 3
    assert epochs_to_regain([0.85, 0.7], 0.8) == 1
    assert epochs_to_regain([0.5, 0.79], 0.8) is None
    assert epochs_to_regain([], 0.8) is None


# ------------------------------------------------------------------------------------------ training at one budget
def _small():
    data = wb.load("fashion_mnist", "train", subset=96)
    img = torch.nn.functional.interpolate(data.images.float(), size=8).to(torch.uint8)
    return (ImageDataset(img[:64], data.labels[:64], data.classes, "fm8"),
            ImageDataset(img[64:], data.labels[64:], data.classes, "fm8"))


FIT = dict(lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="cosine", augment=None, batch_size=32)
KW = dict(model_kwargs=dict(cell="lstm", hidden=16, img_size=8), **FIT)


def test_magnitude_pruning_retrains_with_the_mask_fixed():
    train, test = _small()
    res = train_sparse_rnn(train, test, "magnitude", 0.25, seed=0, epochs=3, pretrain=1, **KW)
    assert len(res.curve) == 3 and len(res.history) == 2                   # 1 dense + 2 retraining epochs
    mask = res.masks["rnn.weight_hh_l0"]
    assert wb.sequence.mask_density(res.masks) == pytest.approx(round(0.25 * 64 * 16) / (64 * 16))
    w = res.model.rnn.weight_hh_l0.detach().cpu()
    assert float(w[mask == 0].abs().max()) == 0.0                           # pruned weights stayed zero
    dense = wb.train_model("seq_rnn", train, test, seed=0, epochs=1, progress=False, **KW)
    assert res.before == pytest.approx(dense.test_acc) and res.curve[0] == pytest.approx(dense.test_acc)
    kept = dense.model.rnn.weight_hh_l0.detach().abs().cpu()               # the mask keeps the largest weights
    assert kept[mask.bool()].min() >= kept[~mask.bool()].max()
    assert 0.0 <= res.after <= 1.0


def test_graph_structures_train_sparse_from_the_start_and_dense_is_shared():
    train, test = _small()
    res = train_sparse_rnn(train, test, "watts_strogatz", 0.5, seed=1, epochs=2, **KW)
    assert len(res.curve) == 2 and not hasattr(res, "before")
    want = wb.sequence.graph_recurrent_masks(res.model, 0.5, "watts_strogatz", 1)
    assert torch.equal(res.masks["rnn.weight_hh_l0"].cpu(), want["rnn.weight_hh_l0"].cpu())
    w = res.model.rnn.weight_hh_l0.detach().cpu()
    assert float(w[res.masks["rnn.weight_hh_l0"].cpu() == 0].abs().max()) == 0.0
    a = train_sparse_rnn(train, test, "erdos_renyi", 1.0, seed=1, epochs=2, **KW)
    b = train_sparse_rnn(train, test, "magnitude", 1.0, seed=1, epochs=2, **KW)
    assert a.masks == {} and a.curve == b.curve                             # density 1: one dense network


def test_sparse_rnn_run_record():
    rec = sparse_rnn_run("barabasi_albert", 0.25, 0, train_subset=64, test_subset=64, epochs=1,
                         model_kwargs=dict(cell="gru", hidden=8), **FIT)
    assert rec["masked_stay_zero"] is True and len(rec["curve"]) == 1 and rec["before"] is None
    assert rec["achieved_density"] == pytest.approx(rec["graph_density"])  # one pattern for every gate
    assert rec["graph_components"] >= 1 and 0 <= rec["test_acc"] <= 1


def test_bad_input():
    train, test = _small()
    assert STRUCTURES == ("magnitude", "erdos_renyi", "watts_strogatz", "barabasi_albert")
    with pytest.raises(ValueError, match="structure"):
        train_sparse_rnn(train, test, "random", 0.5, **KW)
    with pytest.raises(ValueError, match="density"):
        train_sparse_rnn(train, test, "erdos_renyi", 0.0, **KW)
    with pytest.raises(ValueError, match="density"):
        train_sparse_rnn(train, test, "magnitude", 1.5, **KW)
    with pytest.raises(ValueError, match="pretrain"):
        train_sparse_rnn(train, test, "magnitude", 0.5, epochs=3, pretrain=3, **KW)
    with pytest.raises(ValueError, match="pretrain"):
        train_sparse_rnn(train, test, "magnitude", 0.5, epochs=3, pretrain=0, **KW)
    with pytest.raises(ValueError, match="epochs"):
        train_sparse_rnn(train, test, "erdos_renyi", 0.5, epochs=0, **KW)
    with pytest.raises(ValueError, match="test="):
        train_sparse_rnn(train, None, "erdos_renyi", 0.5, **KW)
