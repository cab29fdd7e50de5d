"""wb.prune's layer-adaptive allocation (Xu et al. 2023): the exact knapsack against brute force,
the distortion curves against a direct measurement, and the bad inputs."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.prune import adaptive as A


def _curves(sizes, levels, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for n, size in sizes.items():
        d = np.sort(rng.exponential(1.0, len(levels) - 1)).cumsum()  # increasing with sparsity
        for s, dist in zip(levels, [0.0, *d]):
            rows.append({"layer": n, "sparsity": s, "params": size, "pruned": round(s * size), "distortion": dist})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(6))
def test_allocation_is_the_brute_force_optimum(seed):
    sizes = {"a": 40, "b": 120, "c": 200, "d": 80}
    levels = (0.0, 0.25, 0.5, 0.75, 0.9)
    curves = _curves(sizes, levels, seed)
    total = sum(sizes.values())
    for sparsity in (0.3, 0.55, 0.8):
        need = round(sparsity * total)
        best = min((sum(curves[(curves.layer == n) & (curves.sparsity == s)].distortion.item() for n, s in zip(sizes, combo)), combo)
                   for combo in itertools.product(levels, repeat=len(sizes))
                   if sum(round(s * sizes[n]) for n, s in zip(sizes, combo)) >= need)
        got = A.allocate(curves, sparsity)
        got_d = sum(curves[(curves.layer == n) & (curves.sparsity == s)].distortion.item() for n, s in got.items())
        assert got_d == pytest.approx(best[0])
        assert sum(round(s * sizes[n]) for n, s in got.items()) >= need


def test_distortion_curves_measure_one_layer_at_a_time_and_restore_the_weights():
    data = wb.data.load("shapes", "train", subset=64)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4, num_classes=data.num_classes).eval()
    x = data.normalize(data.images)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    curves = A.layer_distortion(model, x, levels=(0.5, 0.9), progress=False, cache=False)
    assert curves.equals(A.layer_distortion(model, x, levels=(0.5, 0.9), progress=False))  # through the cache
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # weights restored
    assert set(curves.sparsity) == {0.0, 0.5, 0.9} and (curves[curves.sparsity == 0].distortion == 0).all()
    row = curves[(curves.layer == "layer2.0.conv1.weight") & (curves.sparsity == 0.9)].iloc[0]
    with torch.no_grad():
        ref = model(x)
    masks = A.layer_masks(model, {"layer2.0.conv1.weight": 0.9})
    pruned = wb.prune.apply_masks(copy.deepcopy(model), masks)
    with torch.no_grad():
        direct = float(((pruned(x) - ref) ** 2).sum(1).mean())
    assert row.distortion == pytest.approx(direct, rel=1e-5)
    assert row.pruned == round(0.9 * row.params) == int((masks["layer2.0.conv1.weight"] == 0).sum())
    # one layer alone: the joint distortion of that allocation is the single-layer one
    assert A.joint_distortion(model, x, {"layer2.0.conv1.weight": 0.9}) == pytest.approx(row.distortion, rel=1e-5)
    alloc = A.allocate(curves, 0.6)
    masks = A.adaptive_masks(model, curves, 0.6)
    kept = sum(int(m.sum()) for m in masks.values())
    assert 1 - kept / sum(m.numel() for m in masks.values()) >= 0.6 - 1e-9
    assert set(alloc) == set(wb.prune.prunable(model))


def test_allocation_bad_input():
    curves = _curves({"a": 100, "b": 100}, (0.0, 0.5, 0.9), 0)
    with pytest.raises(ValueError, match="levels allow at most"):
        A.allocate(curves, 0.95)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        A.allocate(curves, 1.2)
    with pytest.raises(ValueError, match="missing"):
        A.allocate(curves.drop(columns="distortion"), 0.5)
    assert A.allocate(curves, 0.0) == {"a": 0.0, "b": 0.0}


def test_shared_allocator_with_missing_options_is_the_brute_force_optimum():
    from workbench._allocate import choose, choose_brute_force
    rng = np.random.default_rng(3)
    for trial in range(15):
        loss, size = rng.random((5, 4)), rng.integers(1, 50, (5, 4)).astype(float)
        loss[rng.random((5, 4)) < 0.25] = np.nan  # options some layers lack
        loss[:, 0], size[:, 0] = rng.random(5), 1.0  # ... but never the cheapest
        budget = float(rng.integers(5, 120))
        got, want = choose(loss, size, budget), choose_brute_force(loss, size, budget)
        rows = np.arange(5)
        assert not np.isnan(loss[rows, got]).any() and size[rows, got].sum() <= budget
        assert loss[rows, got].sum() == pytest.approx(loss[rows, want].sum(), abs=1e-12), trial
    with pytest.raises(ValueError, match="no option"):
        choose(np.full((2, 2), np.nan), np.ones((2, 2)), 5.0)
