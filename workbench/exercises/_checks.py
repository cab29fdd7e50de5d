"""Checks of the exercises: each returns None when the answer is right, else what is wrong."""
from __future__ import annotations

import math

import torch

from . import _solutions as ref


def blocks_per_stage(fn) -> str | None:
    for depth in (8, 20, 32, 56, 110, 1202):
        got, want = fn(depth), ref.blocks_per_stage(depth)
        if got != want:
            hint = (" (that counts conv layers in the blocks; each block has two and there are three stages)"
                    if got == depth - 2 or got == (depth - 2) // 2 else "")
            return f"blocks_per_stage({depth}) returned {got!r}, expected {want}{hint}"
    for bad in (7, 21, 2):
        try:
            got = fn(bad)
        except ValueError:
            continue
        return f"blocks_per_stage({bad}) returned {got!r}: {bad} is not 6n + 2 with n >= 1, raise ValueError"
    return None


def bn_only_parameters(fn) -> str | None:
    from .. import create_model

    for name, kwargs in (("resnet8", {}), ("resnet14", {"width": 8}), ("plain8", {})):
        model = create_model(name, **kwargs)
        got, want = set(fn(model)), ref.bn_only_parameters(model)
        extra, missing = sorted(got - want), sorted(want - got)
        if extra and any(n.startswith("fc.") for n in extra):
            return (f"on {name} you train the output layer ({', '.join(n for n in extra if n.startswith('fc.'))}); "
                    "in the paper's headline setting only γ and β train")
        if extra:
            return f"on {name} these are not BatchNorm parameters: {', '.join(extra[:4])}"
        if missing:
            short = [n for n in missing if "shortcut" in n]
            hint = " (the shortcut's BatchNorm counts too)" if short else ""
            return f"on {name} you miss BatchNorm parameters: {', '.join(missing[:4])}{hint}"
    return None


def linear_cka(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 7, generator=g, dtype=torch.float64)
    y = x @ torch.randn(7, 5, generator=g, dtype=torch.float64) + 0.5 * torch.randn(60, 5, generator=g,
                                                                                    dtype=torch.float64)
    want = ref.linear_cka(x, y)
    got = float(fn(x, y))
    if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
        uncentered = float(((y.T @ x).pow(2).sum()) / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))
        if math.isclose(got, uncentered, rel_tol=1e-6):
            return f"linear_cka gave {got:.6f}, expected {want:.6f}: center each feature (subtract column means) first"
        return f"linear_cka gave {got:.6f} on a test pair, expected {want:.6f}"
    shifted = float(fn(x + 5.0, y))
    if not math.isclose(shifted, want, rel_tol=1e-6):
        return f"adding a constant to X changed your CKA ({want:.6f} -> {shifted:.6f}): CKA must center the features"
    if not math.isclose(float(fn(y, x)), want, rel_tol=1e-6):
        return "linear_cka(X, Y) != linear_cka(Y, X): CKA is symmetric"
    if not math.isclose(float(fn(x, x)), 1.0, rel_tol=1e-6):
        return f"linear_cka(X, X) = {float(fn(x, x)):.6f}, it should be 1"
    return None


def guide_layer_mapping(fn) -> str | None:
    for t, g in ((8, 4), (9, 4), (2, 6), (4, 3), (5, 1), (20, 20)):
        got, want = list(fn(t, g)), ref.guide_layer_mapping(t, g)
        if got != want:
            return f"guide_layer_mapping({t}, {g}) returned {got}, expected {want}" + (
                " (the first guide layer pairs with the first target layer, the last with the last)"
                if got and want and got[0] != want[0] else "")
    return None


def real_accuracy(fn) -> str | None:
    preds = [1, 3, 9, 0, 7, 0]
    sets = [[1], [2, 3], [], [4], [5, 6, 7], [0]]
    want = ref.real_accuracy(preds, sets)
    got = float(fn(preds, sets))
    if math.isclose(got, 4 / 6):
        return f"real_accuracy gave {got:.4f}, expected {want:.4f}: images with an empty set are left out, not wrong"
    if math.isclose(got, 3 / 5):
        return f"real_accuracy gave {got:.4f}, expected {want:.4f}: any label in the set counts, not only the first"
    if not math.isclose(got, want):
        return f"real_accuracy gave {got:.4f} on the test case, expected {want:.4f}"
    return None


def composition_accuracy(fn) -> str | None:
    acc = {1: 0.8, 2: 0.5, 3: 0.4}
    share = {1: 0.5, 2: 0.3, 3: 0.1, 4: 0.1}
    want = ref.composition_accuracy(acc, share)
    got = float(fn(acc, share))
    if math.isclose(got, ref.composition_accuracy(acc, {k: v for k, v in share.items() if k in acc})):
        return (f"composition_accuracy gave {got:.4f}, expected {want:.4f}: sizes beyond those in acc_by_size take "
                "the accuracy of the largest size present")
    if not math.isclose(got, want):
        return f"composition_accuracy gave {got:.4f}, expected {want:.4f}: weight each size's accuracy by its share"
    return None


def filter_normalize(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    for shape in ((4, 3, 3, 3), (5, 7)):
        w = torch.randn(shape, generator=g, dtype=torch.float64) * torch.arange(1, shape[0] + 1).view(-1, *[1] * (len(shape) - 1))
        d = torch.randn(shape, generator=g, dtype=torch.float64)
        got, want = fn(d.clone(), w.clone()), ref.filter_normalize(d, w)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return f"for a weight of shape {shape} return a tensor of the same shape, got {getattr(got, 'shape', got)}"
        if not torch.allclose(got, want, rtol=1e-6, atol=1e-9):
            layer = d * (w.norm() / d.norm())
            if torch.allclose(got, layer, rtol=1e-6):
                return ("you scaled the whole tensor to the weight's norm (layer normalization); scale each filter "
                        "(each slice along the first dimension) to the norm of the same filter of the weight")
            return f"for a weight of shape {shape} the result differs from the filter-normalized direction"
    b = torch.randn(6, generator=g, dtype=torch.float64)
    got = fn(torch.randn(6, generator=g, dtype=torch.float64), b)
    if not torch.equal(got, torch.zeros_like(b)):
        return "a one-dimensional parameter (a bias or BatchNorm gain) gets a zero direction, as in Li et al."
    return None


def hutchinson_trace(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    h = a + a.T
    probes = [(torch.randint(0, 2, (12,), generator=g) * 2 - 1).double() for _ in range(7)]
    got, want = float(fn(lambda v: h @ v, probes)), ref.hutchinson_trace(lambda v: h @ v, probes)
    if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
        if math.isclose(got, want * len(probes), rel_tol=1e-9):
            return f"you summed over the probes ({got:.4f}); the estimate is the mean ({want:.4f})"
        if math.isclose(got, float(torch.trace(h)), rel_tol=1e-9):
            return "you computed the exact trace; use only the products with the given probes"
        return f"got {got:.4f}, expected the mean of z·Hz over the probes, {want:.4f}"
    return None


def symmetric_quantize(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    for bits in (8, 4, 2):
        x = torch.randn(200, generator=g, dtype=torch.float64)
        got, want = fn(x.clone(), bits), ref.symmetric_quantize(x, bits)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            return f"return a tensor of the shape of x, got {getattr(got, 'shape', got)}"
        if torch.allclose(got, want, atol=1e-12):
            continue
        qmax = 2 ** (bits - 1)
        wrong_grid = torch.clamp(torch.round(x / (x.abs().max() / qmax)), -qmax, qmax - 1) * (x.abs().max() / qmax)
        if torch.allclose(got, wrong_grid, atol=1e-12):
            return (f"at {bits} bits the largest level is 2^(bits-1) - 1 = {qmax - 1} (a symmetric grid drops -2^(bits-1)); "
                    "scale = max|x| / that")
        if torch.allclose(got, torch.floor(x / (x.abs().max() / (qmax - 1))) * (x.abs().max() / (qmax - 1)), atol=1e-12):
            return "round to the nearest level (torch.round), not down (floor)"
        return f"at {bits} bits the values differ from scale * clamp(round(x / scale), -qmax, qmax) with scale = max|x| / qmax"
    return None


def ternary_quantize(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    for rule in ("absmean", "median"):
        w = torch.randn(300, generator=g, dtype=torch.float64) * 0.05
        got, want = fn(w.clone(), rule), ref.ternary_quantize(w, rule)
        if not isinstance(got, torch.Tensor) or got.shape != w.shape:
            return f"return a tensor of the shape of w, got {getattr(got, 'shape', got)}"
        if torch.allclose(got, want, atol=1e-12):
            continue
        gamma = w.abs().mean() if rule == "absmean" else w.abs().median()
        if torch.allclose(got, torch.round(w / (gamma + 1e-5)) * gamma, atol=1e-12):
            return "clamp the rounded values to -1 .. 1: a ternary weight is -gamma, 0 or +gamma"
        if torch.allclose(got, torch.clamp(torch.round(w / (gamma + 1e-5)), -1, 1), atol=1e-12):
            return "multiply back by gamma: the fake-quantized weight lives on the scale of w"
        if rule == "median" and torch.allclose(got, ref.ternary_quantize(w, "absmean"), atol=1e-12):
            return "rule 'median' takes gamma = median of |w|, not the mean"
        return f"rule {rule!r}: the values differ from gamma * clamp(round(w / (gamma + 1e-5)), -1, 1)"
    return None


def pareto_mask(fn) -> str | None:
    cases = [([1, 2, 2, 3, 4], [0.5, 0.7, 0.6, 0.7, 0.9]),     # a tie in cost, a tie in accuracy
             ([3.0, 1.0, 2.0], [0.9, 0.5, 0.5]),               # unsorted; the same accuracy at a higher cost
             ([1.0, 1.0], [0.5, 0.5])]                         # two equal models: neither beats the other
    for cost, acc in cases:
        got, want = fn(list(cost), list(acc)), ref.pareto_mask(cost, acc)
        if not isinstance(got, (list, tuple)) or len(got) != len(cost):
            return f"return one boolean per model ({len(cost)} here), got {got!r}"
        got = [bool(g) for g in got]
        if got == want:
            continue
        strict = [not any(c2 <= c and a2 >= a for j, (c2, a2) in enumerate(zip(cost, acc)) if j != i)
                  for i, (c, a) in enumerate(zip(cost, acc))]
        if got == strict:
            return ("a model whose twin has the same cost and accuracy is not beaten by it: the other model must be "
                    "strictly better in cost or in accuracy")
        return f"pareto_mask({cost}, {acc}) returned {got}, expected {want}"
    return None


def _allocation_cases():
    """Small loss / size tables: more bits cost more and lose less; the last case's best choice fills
    the budget exactly."""
    import random

    rng = random.Random(0)
    cases = []
    for n_layers in (2, 3, 4, 4):
        params = [rng.choice([10, 20, 40, 80]) for _ in range(n_layers)]
        size = [[p * b for b in (2, 4, 8)] for p in params]
        loss = [sorted((round(rng.uniform(0, 1) * w, 4) for _ in range(3)), reverse=True)
                for w in (rng.uniform(0.5, 3) for _ in range(n_layers))]
        lo, hi = sum(r[0] for r in size), sum(r[-1] for r in size)
        cases.append((loss, size, lo + rng.uniform(0.2, 0.6) * (hi - lo)))
    cases.append(([[3.0, 1.0, 0.0], [2.0, 1.5, 0.0]], [[2, 4, 8], [2, 4, 8]], 8))  # 4 + 4 = 8 fits exactly
    return cases


def best_allocation(fn) -> str | None:
    import itertools

    for loss, size, budget in _allocation_cases():
        got = fn([list(r) for r in loss], [list(r) for r in size], budget)
        want = ref.best_allocation(loss, size, budget)
        if not isinstance(got, (list, tuple)) or len(got) != len(loss) or \
                not all(isinstance(j, int) and 0 <= j < len(loss[i]) for i, j in enumerate(got)):
            return f"return one option index per layer ({len(loss)} here, each 0..{len(loss[0]) - 1}), got {got!r}"
        got = list(got)
        cost = sum(size[i][j] for i, j in enumerate(got))
        total, best = (sum(loss[i][j] for i, j in enumerate(c)) for c in (got, want))
        if cost > budget:
            alone = [min(range(len(r)), key=r.__getitem__) for r in loss]
            hint = (": that is each layer's best option on its own; the budget ties the layers together" if got == alone
                    else "")
            return f"your choice {got} has size {cost}, over the budget {budget:g}{hint}"
        if total <= best + 1e-12:
            continue
        strict = [c for c in itertools.product(*(range(len(r)) for r in loss))
                  if sum(size[i][j] for i, j in enumerate(c)) < budget]
        if strict and math.isclose(total, min(sum(loss[i][j] for i, j in enumerate(c)) for c in strict)):
            return (f"a choice whose size equals the budget ({budget:g}) is allowed: keep those with size <= budget, "
                    f"not < (the best here is {want})")
        if cost == sum(min(r) for r in size):
            return "minimize the summed loss; the size only has to fit the budget (you chose the smallest model)"
        return (f"your choice {got} fits (size {cost}) but its summed loss is {total:.4f}; {want} reaches {best:.4f}: "
                "try every combination (itertools.product) and keep the best that fits")
    return None


def e2m1_round(fn) -> str | None:
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    cases = [torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64),
             ties, -ties, torch.tensor([6.5, 7.0, 100.0, -9.0], dtype=torch.float64),
             torch.randn(500, generator=g, dtype=torch.float64) * 3]
    for x in cases:
        got, want = fn(x.clone()), ref.e2m1_round(x)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            return f"return a tensor of the shape of x, got {getattr(got, 'shape', got)}"
        if torch.equal(got.to(want.dtype), want):
            continue
        bad = int((got.to(want.dtype) != want).nonzero()[0])
        v, g_, w = float(x[bad]), float(got[bad]), float(want[bad])
        if abs(v) > 6:
            return f"e2m1_round({v:g}) returned {g_:g}: values beyond the largest one saturate to ±6"
        if v in ties.tolist() or -v in ties.tolist():
            return (f"e2m1_round({v:g}) returned {g_:g}, expected {w:g}: {v:g} lies half way between two values; "
                    "the tie goes to the value whose code ends in a 0 bit (round half to even): 0, 1, 2 and 4 do, "
                    "0.5, 1.5, 3 and 6 end in a 1")
        return f"e2m1_round({v:g}) returned {g_:g}, expected {w:g} (the nearest of ±0, 0.5, 1, 1.5, 2, 3, 4, 6)"
    return None


def hypervolume(fn) -> str | None:
    cases = [([(1.0, 0.5)], 3.0),                                   # one rectangle: 2 x 0.5
             ([(2.0, 0.7), (1.0, 0.5), (3.0, 0.6)], 4.0),           # unsorted; (3, 0.6) is dominated
             ([(1.0, 0.5), (1.0, 0.5), (2.0, 0.8), (5.0, 0.9)], 4.0),  # a twin; a model beyond ref_size
             ([(0.5, 0.2), (1.5, 0.6), (2.5, 0.65), (3.5, 0.9)], 4.0)]
    for points, ref_size in cases:
        got, want = fn(list(points), ref_size), ref.hypervolume(points, ref_size)
        if not isinstance(got, (int, float)):
            return f"return a number, got {got!r}"
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        boxes = sum((ref_size - c) * a for c, a in points if c < ref_size)
        if math.isclose(got, boxes, abs_tol=1e-9):
            return (f"hypervolume({points}, {ref_size}) returned {got:g}, the sum of the rectangles: where they overlap "
                    f"count the area once (the union is {want:g}); sweep the points by size, keeping the best accuracy "
                    "so far")
        if any(c >= ref_size for c, _ in points):
            return (f"hypervolume({points}, {ref_size}) returned {got:g}, expected {want:g}: models of size >= ref_size "
                    "add nothing")
        return f"hypervolume({points}, {ref_size}) returned {got:g}, expected {want:g}"
    return None
