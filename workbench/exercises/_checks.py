"""Checks of the exercises: each returns None when the answer is right, else what is wrong."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _solutions as ref


class _Raised(Exception):
    """The learner's function raised: ``str(self)`` is the message to show."""


def _attempt(call, where: str, zero_division: str | None = None):
    """``call()``; if it raises (anything but NotImplementedError, which ``passed`` reports as not done), a
    :class:`_Raised` naming the input ``where`` and the exception (``zero_division``: the hint for a division by
    zero)."""
    try:
        return call()
    except NotImplementedError:
        raise
    except ZeroDivisionError as e:
        raise _Raised(f"{where}: {zero_division}" if zero_division else
                      f"{where}: the function raised ZeroDivisionError: {e}") from None
    except Exception as e:  # noqa: BLE001 (the learner's code may raise anything; show it)
        raise _Raised(f"{where}: the function raised {type(e).__name__}: {e}") from None


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


def erk_densities(fn) -> str | None:
    cases = [({"a": (16, 3, 3, 3), "b": (32, 16, 3, 3), "c": (10, 64)}, 0.8),   # no layer saturates
             ({"a": (16, 3, 3, 3), "b": (32, 16, 3, 3), "c": (10, 64)}, 0.5),   # "a" and "c" kept dense
             ({"stem": (8, 3, 3, 3), "x": (64, 64, 3, 3), "y": (64, 64, 3, 3), "fc": (10, 64)}, 0.9)]
    for shapes, sparsity in cases:
        got, want = fn(dict(shapes), sparsity), ref.erk_densities(shapes, sparsity)
        if not isinstance(got, dict) or set(got) != set(shapes):
            return f"return a dict with a density for each layer {sorted(shapes)}, got {got!r}"
        if all(math.isclose(got[n], want[n], rel_tol=1e-6, abs_tol=1e-9) for n in shapes):
            continue
        size = {n: math.prod(s) for n, s in shapes.items()}
        if any(d > 1 + 1e-9 for d in got.values()):
            return (f"erk_densities({shapes}, {sparsity}) gave a density above 1 "
                    f"({ {n: round(d, 3) for n, d in got.items()} }): keep such a layer dense (density 1) and "
                    "recompute eps for the others, until none is above 1")
        kept = sum(got[n] * size[n] for n in shapes)
        if not math.isclose(kept, (1 - sparsity) * sum(size.values()), rel_tol=1e-6):
            return (f"erk_densities({shapes}, {sparsity}) keeps {kept:.1f} weights, expected "
                    f"{(1 - sparsity) * sum(size.values()):.1f}: scale so that sum(density * size) = (1 - sparsity) * total")
        return (f"erk_densities({shapes}, {sparsity}) returned { {n: round(d, 4) for n, d in got.items()} }, expected "
                f"{ {n: round(d, 4) for n, d in want.items()} }: the density is eps * sum(shape) / prod(shape)")
    return None


def best_levels(fn) -> str | None:
    cases = [({"a": [(0, 0.0), (10, 1.0), (20, 5.0)], "b": [(0, 0.0), (30, 2.0), (60, 9.0)]}, 40),
             ({"a": [(0, 0.0), (5, 0.1), (9, 3.0)], "b": [(0, 0.0), (50, 4.0), (90, 4.5)], "c": [(0, 0.0), (20, 0.5)]}, 95),
             ({"x": [(0, 0.0), (4, 1.0)], "y": [(0, 0.0), (4, 1.5)], "z": [(0, 0.0), (6, 2.0)]}, 6)]
    for curves, need in cases:
        got = fn({k: list(v) for k, v in curves.items()}, need)
        want = ref.best_levels(curves, need)
        if not isinstance(got, (list, tuple)) or len(got) != len(curves) or not all(
                isinstance(k, int) and 0 <= k < len(opts) for k, opts in zip(got, curves.values())):
            return f"return one option index per layer ({len(curves)} in all), got {got!r}"
        pruned = sum(opts[k][0] for k, opts in zip(got, curves.values()))
        cost = sum(opts[k][1] for k, opts in zip(got, curves.values()))
        best = sum(opts[k][1] for k, opts in zip(want, curves.values()))
        if pruned < need:
            return (f"best_levels({curves}, {need}) returned {list(got)}, which prunes only {pruned} weights: the "
                    f"choice must prune at least need = {need}")
        if cost > best + 1e-12:
            return (f"best_levels({curves}, {need}) returned {list(got)} with summed distortion {cost:g}; {want} "
                    f"reaches {best:g}: try every combination and keep the cheapest that prunes enough")
    return None


def ap_drop(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, generator=g, dtype=torch.float64)
    cases = [  # 0.3 (positive) moved least of all; of the negative weights -0.8, the largest, moved least
        (torch.tensor([[0.9, -0.8, 0.1], [-0.5, 0.3, -0.7]], dtype=torch.float64),
         torch.tensor([[0.5, -0.75, 0.2], [-0.1, 0.3, -0.6]], dtype=torch.float64), 1),
        # a tie: -1, -1 and -3 all moved by 0.5; the first two in flattened order go
        (torch.tensor([-1.0, -1.0, 2.0, -3.0, -0.2], dtype=torch.float64),
         torch.tensor([-0.5, -0.5, 2.0, -2.5, -1.0], dtype=torch.float64), 2),
        (w.view(10, 20), (w + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)).view(10, 20), 17),
        (w.view(10, 20), w.view(10, 20) * 0.5, 0)]
    for weights, reference, k in cases:
        got, want = fn(weights.clone(), reference.clone(), k), ref.ap_drop(weights, reference, k)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(weights.shape):
            return (f"return a 0/1 tensor of the shape of weights {tuple(weights.shape)}, "
                    f"got {getattr(got, 'shape', got)}")
        got = got.to(torch.float64)
        if torch.equal(got, want):
            continue
        zeros = int((got == 0).sum())
        if zeros != k or not bool(((got == 0) | (got == 1)).all()):
            return f"ap_drop(..., k={k}) should return 0/1 values with exactly {k} zeros, got {zeros} zeros"
        if bool((weights[got == 0] >= 0).any()):
            return (f"ap_drop(..., k={k}) removed a weight that is not negative: AP removes only negative weights "
                    "(they pull a unit's input towards ReLU's zero); rank the negative ones alone")
        by_size = weights.flatten().masked_fill(weights.flatten() >= 0, float("-inf"))
        smallest = torch.ones(weights.numel(), dtype=torch.float64)
        smallest[torch.sort(by_size, descending=True, stable=True).indices[:k]] = 0
        if torch.equal(got.flatten(), smallest):
            return (f"ap_drop(..., k={k}) removed the negative weights of smallest magnitude: rank them by how far "
                    "training moved them, |weights - reference|, the least moved first")
        return (f"ap_drop(..., k={k}) put its zeros at flattened positions "
                f"{(got.flatten() == 0).nonzero().flatten().tolist()[:8]}, expected "
                f"{(want.flatten() == 0).nonzero().flatten().tolist()[:8]} (ties go by position, the first one first)")
    return None


def mass_targets(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([[4.0, 1.0, 3.0, 2.0]], dtype=torch.float64), 0.7),   # .4 + .3 reach .7 exactly
             (torch.tensor([[4.0, 1.0, 3.0, 2.0]], dtype=torch.float64), 0.71),  # ... and fall short of .71
             (torch.tensor([[2.0, 0.0, 2.0, 1.0], [0.0, 0.0, 5.0, 0.0]], dtype=torch.float64), 1.0),  # zeros never fire
             (torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=torch.float64), 0.5),   # ties: lower index first
             (torch.rand(6, 16, generator=g, dtype=torch.float64) ** 3, 0.8),
             (torch.rand(6, 16, generator=g, dtype=torch.float64), 0.3)]
    for heat, r in cases:
        got, want = fn(heat.clone(), r), ref.mass_targets(heat, r)
        if not isinstance(got, torch.Tensor) or got.shape != heat.shape:
            return f"return a tensor of the shape of heat {list(heat.shape)}, got {getattr(got, 'shape', got)}"
        if torch.equal(got.to(want.dtype), want):
            continue
        row = int((got.to(want.dtype) != want).any(1).nonzero()[0])
        h, gr, wr = heat[row].tolist(), got[row].tolist(), want[row].tolist()
        share = heat[row] / heat[row].sum()
        if any(g_ and x == 0 for g_, x in zip(gr, h)):
            return f"mass_targets({h}, {r}) marked a channel of zero heat: it carries no mass and never fires"
        if sum(gr) == sum(wr) - 1 and float((share * got[row].to(share.dtype)).sum()) < r - 1e-9:
            return (f"mass_targets({h}, {r}) returned {gr}, expected {wr}: the kept channels' shares add up to only "
                    f"{float((share * got[row].to(share.dtype)).sum()):.4g} < r; keep the channel that crosses r too "
                    "(a channel fires when the channels ranked above it hold less than r)")
        return (f"mass_targets({h}, {r}) returned {gr}, expected {wr}: rank the channels of each row by their share "
                "of the row's total, largest first (equal shares: lower index first), and keep the fewest whose "
                "shares reach r")
    return None


def reinforce_loss(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([-1.2, -0.4, -2.0, -0.7], dtype=torch.float64), [0.5, 0.8, 0.1, 0.6], 0.4),
             (torch.randn(8, generator=g, dtype=torch.float64) - 2.0,
              [round(v, 3) for v in torch.rand(8, generator=g, dtype=torch.float64).tolist()], 0.55),
             (torch.tensor([-0.3, -3.1, -1.0], dtype=torch.float64), [0.7, -1.0, 0.2], 0.0)]  # -1: an invalid student
    for logp, rewards, baseline in cases:
        mine = logp.clone().requires_grad_(True)
        want = ref.reinforce_loss(mine, rewards, baseline)
        want.backward()
        lp = logp.clone().requires_grad_(True)
        got = fn(lp, list(rewards), baseline)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            return f"return the loss as a scalar tensor (0-dimensional), got {getattr(got, 'shape', got)!r}"
        if not got.requires_grad:
            return ("the loss has no gradient: compute it from log_probs with torch operations (no .item(), no "
                    "float()), so that backward() reaches the policy")
        got.backward()
        if lp.grad is not None and torch.allclose(lp.grad, mine.grad) and math.isclose(
                float(got.detach()), float(want.detach()), rel_tol=1e-6, abs_tol=1e-9):
            continue
        m = len(rewards)
        r = torch.as_tensor(rewards, dtype=logp.dtype)
        grad = lp.grad if lp.grad is not None else torch.zeros_like(logp)
        case = f"reinforce_loss({[round(v, 3) for v in logp.tolist()]}, {list(rewards)}, {baseline})"
        if torch.allclose(grad, -mine.grad):
            return (f"{case}: the sign is flipped. The optimizer descends the loss, and REINFORCE ascends "
                    "(reward - baseline) * log_prob: put a minus in front")
        if baseline and torch.allclose(grad, -r / m):
            return (f"{case}: the baseline is missing. Weigh each log_prob by reward - baseline (the advantage), "
                    "not by the reward: the baseline lowers the variance of the gradient without biasing it")
        if torch.allclose(grad, -(r - r.mean()) / m) and not torch.allclose(grad, mine.grad):
            return f"{case}: the baseline is given ({baseline}); subtract it, not the mean of this update's rewards"
        if torch.allclose(grad, m * mine.grad):
            return f"{case}: take the mean over the {m} rollouts, not the sum"
        return (f"{case} returned {float(got.detach()):.6g} with gradient {[round(v, 4) for v in grad.tolist()]}; "
                f"expected {float(want.detach()):.6g} with gradient {[round(v, 4) for v in mine.grad.tolist()]}")
    return None


def inverted_residual_macs(fn) -> str | None:
    cases = [(24, 24, 8, 8, 6, 1), (16, 24, 32, 32, 6, 2), (32, 16, 16, 16, 1, 1), (24, 32, 7, 7, 6, 2)]
    for cin, cout, h, w, t, s in cases:
        got, want = fn(cin, cout, h, w, t, s), ref.inverted_residual_macs(cin, cout, h, w, t, s)
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if got == want:
            continue
        case = f"inverted_residual_macs(cin={cin}, cout={cout}, h={h}, w={w}, t={t}, stride={s})"
        mid, ho, wo = cin * t, -(-h // s), -(-w // s)
        expand = 0 if t == 1 else h * w * cin * mid
        if got == expand + ho * wo * mid * mid * 9 + ho * wo * mid * cout:
            return (f"{case} = {got}, expected {want}: the depthwise 3x3 filters each of the {mid} channels on its "
                    "own (9 weights per channel), not every channel from every channel")
        if got == h * w * cin * mid + ho * wo * mid * (9 + cout) and t == 1:
            return f"{case} = {got}, expected {want}: with t == 1 there is no expansion layer (count nothing for it)"
        if got == expand + h * w * mid * (9 + cout):
            return (f"{case} = {got}, expected {want}: the stride applies at the depthwise layer, so it and the "
                    "projection run on the smaller ceil(h / stride) x ceil(w / stride) map")
        if s > 1 and got == expand + (h // s) * (w // s) * mid * (9 + cout):
            return f"{case} = {got}, expected {want}: with padding 1 the output side is ceil(h / stride), not h // stride"
        return f"{case} = {got}, expected {want}"
    return None


def plain_params(fn) -> str | None:
    cases = [([8, "P", 16], 3, 10), ([4, (8, 1), "P", 6], 1, 5),
             ([64, 128, 128, 128, "P", 128, 128, 256, "P", 256, 256, "P", 512, (2048, 1), (256, 1), "P", 256], 3, 10)]
    for layout, cin, classes in cases:
        got, want = fn(list(layout), cin, classes), ref.plain_params(layout, cin, classes)
        if got == want:
            continue
        case = f"plain_params({layout if len(layout) < 6 else 'the SimpleNet layout'}, {cin}, {classes})"
        convs = [(i if isinstance(i, tuple) else (i, 3)) for i in layout if i != "P"]
        if got == want - 3 * sum(c for c, _ in convs):
            return f"{case} = {got}, expected {want}: count each convolution's bias and BatchNorm's scale and shift"
        if got == want - 2 * sum(c for c, _ in convs):
            return f"{case} = {got}, expected {want}: BatchNorm has two parameters per channel (scale and shift)"
        if got == want - sum(c for c, _ in convs):
            return f"{case} = {got}, expected {want}: the convolutions have a bias (one per output channel)"
        if got == want - sum(c * c_in * 8 for (c, k), c_in in zip(convs, [cin] + [c for c, _ in convs]) if k == 1):
            return f"{case} = {got}, expected {want}: a 1x1 convolution has 1 weight per input channel, not 9"
        return f"{case} = {got}, expected {want}"
    return None


def scaled_residual(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    x, b = torch.rand(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g) * 3
    for scale in (0.2, 1.0, 0.0):
        got, want = fn(x.clone(), b.clone(), scale), ref.scaled_residual(x, b, scale)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return f"return a tensor of the input's shape {tuple(x.shape)}, got {getattr(got, 'shape', got)!r}"
        if torch.allclose(got, want, atol=1e-6):
            continue
        case = f"scaled_residual(x, branch_out, scale={scale})"
        if torch.allclose(got, x + scale * b, atol=1e-6):
            return f"{case}: apply ReLU after the addition (the block's output is relu(x + scale * branch))"
        if torch.allclose(got, x + torch.relu(scale * b), atol=1e-6):
            return f"{case}: ReLU comes after the addition, not on the branch alone"
        if torch.allclose(got, torch.relu(scale * (x + b)), atol=1e-6):
            return f"{case}: scale only the branch; the input passes through unscaled"
        return f"{case} differs from relu(x + scale * branch_out)"
    return None


def hyperzzw_conv(fn) -> str | None:
    conv2d = torch.nn.functional.conv2d
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    cases = [  # one image, one channel, a context of ones: a plain convolution of an asymmetric kernel
        (torch.arange(16.0, **f64).view(1, 1, 4, 4), torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]], **f64),
         torch.ones(1, 1, 3, 3, **f64)),
        # two images with their own contexts, a rectangular map
        (torch.randn(2, 3, 5, 6, generator=g, **f64), torch.randn(3, 3, 3, generator=g, **f64),
         2 * torch.rand(2, 3, 3, 3, generator=g, **f64)),
        (torch.randn(3, 2, 7, 7, generator=g, **f64), torch.randn(2, 5, 5, generator=g, **f64),
         2 * torch.rand(3, 2, 5, 5, generator=g, **f64))]
    for z, kernel, context in cases:
        want = ref.hyperzzw_conv(z, kernel, context)
        got = fn(z.clone(), kernel.clone(), context.clone())
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"for z of shape {list(z.shape)} and a {kernel.shape[-1]}x{kernel.shape[-1]} kernel, return a tensor "
                    f"of shape {list(want.shape)} (zero padding k // 2 keeps H and W), got {getattr(got, 'shape', got)}")
        got = got.detach().to(torch.float64)

        def same(t):
            return torch.allclose(got, t, rtol=1e-5, atol=1e-6)
        if same(want):
            continue
        k, c = kernel.shape[-1], z.shape[1]
        plain = conv2d(z, kernel.unsqueeze(1), padding=k // 2, groups=c)
        if same(plain):
            return ("the context is ignored: image b's channel c is convolved with kernel[c] * context[b, c], "
                    "a different kernel for every image")
        if same(ref.hyperzzw_conv(z, kernel, context[:1].expand_as(context))):
            return "every image got the context of image 0: image b's kernel is kernel * context[b]"
        if same(ref.hyperzzw_conv(z, kernel.flip(-1, -2), context.flip(-1, -2))):
            return ("the kernel is flipped (a convolution in the textbook sense); compute what F.conv2d computes: "
                    "y[h, w] = sum_ij kernel[i, j] * z_padded[h + i, w + j]")
        if same(plain * context.mean((-2, -1), keepdim=True)) or same(plain * context.sum((-2, -1), keepdim=True)):
            return "the context scales the output; it multiplies the kernel tap by tap before the convolution"
        return (f"for z of shape {list(z.shape)} the values differ from the expected ones by up to "
                f"{float((got - want).abs().max()):.3g}: check the padding (k // 2 zeros on every side) and the groups "
                "(one kernel per channel)")
    return None


def mobius_add(fn) -> str | None:
    g = torch.Generator().manual_seed(0)

    def ball(shape, c, scale):  # random points of the ball of curvature -c (exp_0 of Gaussian vectors)
        v = torch.randn(shape, generator=g, dtype=torch.float64) * scale
        n = v.norm(dim=-1, keepdim=True)
        return torch.tanh(c ** 0.5 * n) * v / (c ** 0.5 * n)

    cases = [(ball((5, 4), c, 0.8), ball((5, 4), c, 0.8), c) for c in (1.0, 0.3, 2.0)]
    cases += [(ball((2, 3, 6), 0.5, 1.0), ball((2, 3, 6), 0.5, 1.0), 0.5)]
    cases += [(torch.tensor([0.3, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.4], dtype=torch.float64), 1.0)]
    for x, y, c in cases:
        got, want = fn(x.clone(), y.clone(), c), ref.mobius_add(x, y, c)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return (f"for points of shape {list(x.shape)} return a tensor of that shape (sum over the last dimension "
                    f"with keepdim=True), got {getattr(got, 'shape', got)}")
        if torch.allclose(got, want, rtol=1e-9, atol=1e-12):
            continue
        case = f"mobius_add(x, y, c={c}) for points of shape {list(x.shape)}"
        if torch.allclose(got, x + y):
            return (f"{case} returned x + y, Euclidean addition (the limit c -> 0); on the ball the sum bends: "
                    "weigh x and y by the coefficients of the formula and divide by its denominator")
        if torch.allclose(got, ref.mobius_add(y, x, c)):
            return (f"{case} returned y (+) x: Möbius addition is not commutative; x's coefficient is "
                    "1 + 2c<x,y> + c||y||^2 and y's is 1 - c||x||^2")
        if torch.allclose(got, ref.mobius_add(x, y, -c)):
            return (f"{case}: the signs of the c terms are flipped (that is the sphere's addition, curvature +c); on "
                    "the ball of curvature -c the inner product enters with +2c")
        xy = (x * y).sum(-1, keepdim=True)
        x2, y2 = x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
        if torch.allclose(got, ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * x2 * y2)):
            return f"{case}: the last term of the denominator is c^2 ||x||^2 ||y||^2 (c squared)"
        i = int((got - want).abs().flatten(0, -2).amax(-1).argmax()) if x.dim() > 1 else 0
        return (f"{case}: got {[round(v, 6) for v in got.reshape(-1, x.shape[-1])[i].tolist()]} for one pair, "
                f"expected {[round(v, 6) for v in want.reshape(-1, x.shape[-1])[i].tolist()]}")
    return None


def interpolate_pos_embed(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    cases = [(torch.randn(16, 3, generator=g, **f64), 4, 4),    # the same grid: the table itself
             (torch.randn(16, 5, generator=g, **f64), 6, 6),    # a larger square grid
             (torch.randn(36, 4, generator=g, **f64), 3, 5),    # smaller and not square
             (torch.randn(4, 2, generator=g, **f64), 2, 7)]
    for pos, h, w in cases:
        want = ref.interpolate_pos_embed(pos, h, w)
        got = fn(pos.clone(), h, w)
        case = f"interpolate_pos_embed(pos of shape {list(pos.shape)}, height={h}, width={w})"
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"{case}: return a tensor of shape {list(want.shape)} (one row per token of the new grid, "
                    f"row by row), got {getattr(got, 'shape', got)}")
        got = got.detach().to(torch.float64)

        def same(t):
            return got.shape == t.shape and torch.allclose(got, t, rtol=1e-5, atol=1e-7)
        if same(want):
            continue
        n, d = pos.shape
        k = math.isqrt(n)
        if same(F.interpolate(pos.reshape(1, d, k, k), size=(h, w), mode="bicubic", align_corners=False)
                .reshape(d, h * w).T):
            return (f"{case}: the values are scrambled: pos.reshape(1, dim, g, g) does not put token i * g + j at "
                    "row i, column j of each channel; transpose first (pos.T is [dim, tokens]), then reshape")
        grid = pos.T.reshape(1, d, k, k)
        if same(F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True).reshape(d, h * w).T):
            return f"{case}: use align_corners=False (pixel centres, as the models and the paper's code do)"
        for mode in ("bilinear", "nearest"):
            if same(F.interpolate(grid, size=(h, w), mode=mode).reshape(d, h * w).T):
                return f"{case}: that is {mode} interpolation; the exercise asks for mode='bicubic'"
        if same(F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).reshape(d, h * w)):
            return f"{case}: return [tokens, dim]: one row per token, so transpose the [dim, tokens] result back"
        if same(F.interpolate(grid, size=(w, h), mode="bicubic", align_corners=False).reshape(d, h * w).T):
            return f"{case}: height and width are swapped: size=(height, width)"
        return f"{case}: the values differ from the expected ones by up to {float((got - want).abs().max()):.3g}"
    return None


def equal_score_retention(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randn(2, 3, 4, generator=g, dtype=torch.float64), 0.5),
             (torch.randn(3, 5, 5, generator=g, dtype=torch.float64), 0.8),
             (torch.randn(1, 4, 7, generator=g, dtype=torch.float64), 0.95),
             (torch.randn(2, 3, 3, generator=g, dtype=torch.float64), 1.0)]
    for v, gamma in cases:
        c, h, w = v.shape
        want = ref.equal_score_retention(v, gamma)
        got = fn(v.clone(), gamma)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"for v of shape {list(v.shape)} return a tensor of the same shape [C, H, W], "
                    f"got {getattr(got, 'shape', got)}")
        got = got.detach().to(torch.float64)

        def same(t):
            return torch.allclose(got, t, rtol=1e-6, atol=1e-9)
        if same(want):
            continue
        case = f"v of shape {list(v.shape)}, gamma={gamma}"
        if same(want * h * w):
            return f"{case}: the output is N = H * W times too large: with equal scores the softmax is 1/N, not 1"
        ones = ref.equal_score_retention(torch.ones_like(v), gamma)
        if same(want / ones):
            return (f"{case}: every row of weights was renormalised to sum to 1 (RMT's released code); the paper's "
                    "form keeps softmax(S) * D = D / N, whose rows sum to less than 1")
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        p = torch.stack([ys.flatten(), xs.flatten()], -1).to(torch.float64)
        euclid = gamma ** torch.cdist(p, p) / (h * w)
        if same((euclid @ v.flatten(1).T).T.reshape(c, h, w)):
            return f"{case}: that decays with the Euclidean distance; RMT's decay uses |dy| + |dx| (Manhattan)"
        return (f"{case}: the values differ from the expected ones by up to {float((got - want).abs().max()):.3g}; "
                "check the tokens' order (row-major), the kernel's reach (every pair of positions) and the zero padding")
    return None


def manhattan_decay_matrix(fn) -> str | None:
    for h, w, gamma in ((2, 3, 0.5), (3, 2, 0.7), (4, 4, 0.9), (1, 5, 0.6)):
        want = ref.manhattan_decay_matrix(h, w, gamma)
        got = fn(h, w, gamma)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (h * w, h * w):
            return f"manhattan_decay_matrix({h}, {w}, {gamma}) should be a tensor [{h * w}, {h * w}], got {getattr(got, 'shape', got)}"
        got = got.detach().to(torch.float64)

        def same(t):
            return torch.allclose(got, t.to(torch.float64), rtol=1e-6, atol=1e-12)
        if same(want):
            continue
        case = f"manhattan_decay_matrix({h}, {w}, {gamma})"
        n = torch.arange(h * w)
        if same(gamma ** (n[:, None] - n[None, :]).abs()):
            return (f"{case}: that is RetNet's 1-D decay over the flattened sequence (gamma^|n - m|); RMT's is 2-D: "
                    "gamma^(|y_n - y_m| + |x_n - x_m|)")
        col = torch.stack([n % h, n // h], -1)             # column-major numbering: n = x * h + y
        if same(gamma ** (col[:, None] - col[None, :]).abs().sum(-1)):
            return f"{case}: the tokens are numbered column by column; number them row by row, n = y * w + x"
        ys, xs = n // w, n % w
        dy, dx = (ys[:, None] - ys[None, :]).abs(), (xs[:, None] - xs[None, :]).abs()
        if same(gamma ** (dy ** 2 + dx ** 2).double().sqrt()):
            return f"{case}: that decays with the Euclidean distance; use the Manhattan distance |dy| + |dx|"
        if same(gamma ** torch.maximum(dy, dx)):
            return f"{case}: that decays with the larger of |dy| and |dx|; use their sum, |dy| + |dx|"
        return f"{case}: the values differ from gamma^(|dy| + |dx|) by up to {float((got - want).abs().max()):.3g}"
    return None


def kendall_tau(fn) -> str | None:
    cases = [([1, 2, 3, 4], [1, 3, 2, 4]),                      # 5 concordant pairs, 1 discordant: 2/3
             ([0.1, 0.5, 0.3], [30.0, 20.0, 10.0]),             # unsorted scores, mostly reversed
             ([0.31, 0.28, 0.33, 0.25, 0.30], [0.52, 0.51, 0.50, 0.49, 0.53]),  # proxy scores against accuracies
             ([3, 1, 2], [3, 1, 2])]                            # the same order: 1
    for a, b in cases:
        got, want = fn(list(a), list(b)), ref.kendall_tau(a, b)
        if not isinstance(got, (int, float)):
            return f"return a number, got {got!r}"
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        n = len(a)
        concordant = sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i in range(n) for j in range(i + 1, n))
        if math.isclose(got, concordant / (n * (n - 1) / 2), abs_tol=1e-9):
            return (f"kendall_tau({a}, {b}) returned {got:g}, the share of concordant pairs: subtract the discordant "
                    f"pairs too, so that reversed rankings give -1 (expected {want:g})")
        return f"kendall_tau({a}, {b}) returned {got:g}, expected {want:g}"
    return None


def vit_block_macs(fn) -> str | None:
    cases = [(65, 48, 2.0), (17, 96, 4.0), (5, 128, 2.0), (10, 30, 2.5), (1, 8, 1.0)]
    for tokens, width, ratio in cases:
        got, want = fn(tokens, width, ratio), ref.vit_block_macs(tokens, width, ratio)
        if not isinstance(got, int) or isinstance(got, bool):
            return f"return a whole number (an int), got {got!r}"
        if got == want:
            continue
        if got == want - 2 * tokens * tokens * width:
            return (f"vit_block_macs({tokens}, {width}, {ratio}) returned {got}: the linear maps only; add the attention "
                    f"scores q k^T and the weighted sum of the values, tokens x tokens x width each (expected {want})")
        return f"vit_block_macs({tokens}, {width}, {ratio}) returned {got}, expected {want}"
    return None


def halo_window(fn) -> str | None:
    cases = [(5, 6, 8, 8, 4, 2), (0, 0, 8, 8, 4, 2), (7, 3, 8, 12, 4, 1), (3, 10, 6, 12, 3, 0),
             (9, 14, 16, 16, 8, 3), (2, 2, 6, 9, 3, 4), (4, 7, 32, 32, 2, 1)]
    for y, x, h, w, block, halo in cases:
        want = ref.halo_window(y, x, h, w, block, halo)
        case = f"halo_window(y={y}, x={x}, h={h}, w={w}, block={block}, halo={halo})"
        got = fn(y, x, h, w, block, halo)
        try:
            got = tuple(int(v) for v in got)
        except (TypeError, ValueError):
            return f"{case}: return four integers (y0, y1, x0, x1), got {got!r}"
        if len(got) != 4:
            return f"{case}: return four integers (y0, y1, x0, x1), got {got!r}"
        if got == want:
            continue
        centred = (max(0, y - block // 2 - halo), min(h, y - block // 2 + block + halo),
                   max(0, x - block // 2 - halo), min(w, x - block // 2 + block + halo))
        centred_k = (max(0, y - halo), min(h, y + halo + 1), max(0, x - halo), min(w, x + halo + 1))
        by, bx = y // block * block, x // block * block
        if got in (centred, centred_k):
            return (f"{case}: the window is centred on the query pixel (a convolution's, or SASA's, neighbourhood); in "
                    f"HaloNet every query of a block shares one window, the block grown by halo: expected {want}")
        if got == (by - halo, by + block + halo, bx - halo, bx + block + halo):
            return f"{case}: crop the window to the image (pixels beyond the edge are padding): expected {want}"
        if got == (want[0], want[1] - 1, want[2], want[3] - 1):
            return f"{case}: y1 and x1 are exclusive ends (rows y0 <= row < y1): expected {want}"
        return f"{case}: expected {want}, got {got}"
    return None


def nt_xent_loss(fn) -> str | None:
    g = torch.Generator().manual_seed(7)
    cases = [(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), 0.5),
             (torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), 0.1),
             (3 * torch.eye(3), 3 * torch.eye(3) + 0.1, 1.0)]          # unnormalized inputs, views nearly equal
    for z1, z2, tau in cases:
        case = f"nt_xent_loss(z1 {list(z1.shape)}, z2, temperature={tau})"
        got = fn(z1.clone(), z2.clone(), tau)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"{case}: return a number (a float or a one-element tensor), got {type(got).__name__}"
        want = ref.nt_xent_loss(z1, z2, tau)
        if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
            continue
        z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
        n = len(z1)
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        with_self = float(F.cross_entropy(z @ z.T / tau, partner))
        if math.isclose(got, with_self, rel_tol=1e-5):
            return (f"{case} returned {got:.5f}: each anchor's similarity with itself (the largest, 1 / temperature) is "
                    f"among the candidates; leave it out of the softmax (expected {want:.5f})")
        raw = torch.cat([z1, z2]).double()
        sim = (raw @ raw.T / tau).fill_diagonal_(float("-inf"))
        if math.isclose(got, float(F.cross_entropy(sim, partner)), rel_tol=1e-5):
            return f"{case} returned {got:.5f}: normalize the embeddings to unit length first (expected {want:.5f})"
        return f"{case} returned {got:.5f}, expected {want:.5f}"
    return None


def sparse_batch_norm(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    cases = []
    for b, c, h, w, ratio in ((2, 3, 4, 4, 0.5), (4, 2, 8, 8, 0.6), (3, 5, 2, 6, 0.3)):
        x = torch.randn(b, c, h, w, generator=g, **f64) * 2 + 1
        visible = torch.rand(b, 1, h, w, generator=g) > ratio
        visible[0, 0, 0, 0] = True
        cases.append((x, visible))
    x = torch.tensor([[[[1.0, 3.0], [100.0, -50.0]]]], **f64)      # hand-made: visible 1 and 3 -> mean 2, var 1
    cases.insert(0, (x, torch.tensor([[[[True, True], [False, False]]]])))
    for x, visible in cases:
        want = ref.sparse_batch_norm(x, visible)
        got = fn(x.clone(), visible.clone())
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(x.shape):
            return f"for x of shape {list(x.shape)} return a tensor of that shape, got {getattr(got, 'shape', got)}"
        got = got.detach().to(torch.float64)
        if torch.allclose(got, want, rtol=1e-6, atol=1e-8):
            continue
        hidden = ~visible.expand_as(x)
        if got[hidden].abs().max() > 0:
            return "hidden positions must be exactly 0 in the output: multiply by the mask at the end"
        mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
        if torch.allclose(got, (x - mean) / (var + 1e-5).sqrt() * visible, rtol=1e-6, atol=1e-8):
            return ("the statistics include the hidden positions (a dense BatchNorm): take the mean and variance "
                    "over the visible positions only")
        m = visible.to(x.dtype)
        mu = (x * m).sum((0, 2, 3), keepdim=True) / m.sum()
        unbiased = ((x - mu).pow(2) * m).sum((0, 2, 3), keepdim=True) / (m.sum() - 1)
        if torch.allclose(got, (x - mu) / (unbiased + 1e-5).sqrt() * m, rtol=1e-6, atol=1e-8):
            return "use the biased variance (divide by the number of visible positions, not that number minus 1)"
        return (f"for x of shape {list(x.shape)} the values differ from the expected ones by up to "
                f"{float((got - want).abs().max()):.3g}: one mean and variance per channel, over the visible "
                "positions of all images")
    return None


def adaptive_search(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)

    def scaled(n, d):  # rows of very different lengths: a dot product is not a cosine here
        return torch.randn(n, d, generator=g, **f64) * torch.exp(2 * torch.randn(n, 1, generator=g, **f64))

    cases = [(scaled(40, 16), scaled(6, 16), 4, 16, 5),     # a shortlist of 5 out of 40
             (scaled(60, 32), scaled(8, 32), 8, 32, 60),    # the whole database shortlisted: the full search
             (scaled(50, 12), scaled(7, 12), 3, 8, 10)]     # rerank with a prefix too, not the whole vector
    for z_db, z_q, ds, dr, k in cases:
        want = ref.adaptive_search(z_db, z_q, ds, dr, k)
        case = f"adaptive_search(z_db {list(z_db.shape)}, z_query {list(z_q.shape)}, {ds}, {dr}, {k})"
        got = fn(z_db.clone(), z_q.clone(), ds, dr, k)
        try:
            got = torch.as_tensor(got)
        except (TypeError, ValueError, RuntimeError):
            return f"{case}: return a tensor of {len(z_q)} database indices, got {got!r}"
        if tuple(got.shape) != (len(z_q),) or got.is_floating_point():
            return (f"{case}: return one integer database index per query, shape [{len(z_q)}], got "
                    f"{got.dtype} of shape {list(got.shape)}")
        got = got.long()
        if torch.equal(got, want):
            continue

        def cos(a, b, d):
            return F.normalize(a[:, :d], dim=1) @ F.normalize(b[:, :d], dim=1).T

        def pick(s_short, s_rerank):  # adaptive search on given similarity matrices [Q, N]
            c = s_short.topk(k, dim=1).indices
            return c.gather(1, s_rerank.gather(1, c).argmax(1, keepdim=True)).squeeze(1)
        cand = cos(z_q, z_db, ds).topk(k, dim=1).indices
        pos = cos(z_q, z_db, dr).gather(1, cand).argmax(1)
        dot = pick(z_q[:, :ds] @ z_db[:, :ds].T, z_q[:, :dr] @ z_db[:, :dr].T)
        wq, wdb = F.normalize(z_q, dim=1), F.normalize(z_db, dim=1)
        whole = pick(wq[:, :ds] @ wdb[:, :ds].T, wq[:, :dr] @ wdb[:, :dr].T)
        if torch.equal(got, cos(z_q, z_db, dr).argmax(1)) and k < len(z_db):
            return (f"{case}: this is the full search with {dr} dimensions over all {len(z_db)} items; rerank only the "
                    f"shortlist, the {k} items nearest on the first {ds} coordinates (that is what saves the cost)")
        if torch.equal(got, cand[:, 0]):
            return (f"{case}: this is the shortlist's best item; rerank the {k} shortlisted items with the first "
                    f"{dr} coordinates and return the best of them")
        if torch.equal(got, pos):
            return f"{case}: return database indices, not positions in the shortlist"
        if torch.equal(got, dot):
            return (f"{case}: rank by cosine similarity, not by dot products: normalize each prefix to unit length "
                    "first (the rows here have very different lengths)")
        if torch.equal(got, whole):
            return (f"{case}: normalize each prefix on its own (z[:, :d] / ||z[:, :d]||), not the whole vector before "
                    "cutting it: a prefix of a unit vector is not a unit vector")
        return f"{case}: returned {got.tolist()}, expected {want.tolist()}"
    return None


def selfie_loss(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randn(b, m, d, generator=g, dtype=torch.float64), torch.randn(b, m, d, generator=g, dtype=torch.float64))
             for b, m, d in ((1, 2, 3), (2, 4, 8), (3, 5, 4), (4, 3, 16))]
    eye = torch.eye(4, dtype=torch.float64)[None].expand(2, -1, -1)
    cases.append((3 * eye, 3 * eye))                         # the right patch scores 9, each distractor 0
    for q, h in cases:
        got, want = fn(q.clone(), h.clone()), ref.selfie_loss(q, h)
        try:
            got = float(got)
        except (TypeError, ValueError, RuntimeError):
            return f"return one number (a float or a 0-d tensor), got {got!r}"
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        b, m, _ = q.shape
        case = f"selfie_loss for {b} image(s) with {m} masked patches each"
        flat = q.reshape(b * m, -1) @ h.reshape(b * m, -1).T   # every masked patch of the batch as a candidate
        if b > 1 and math.isclose(got, float(F.cross_entropy(flat, torch.arange(b * m))), rel_tol=1e-6):
            return (f"{case}: the candidates were the masked patches of the whole batch; Selfie's distractors come "
                    f"from the same image only, so score each query against its own image's {m} patches "
                    f"(expected {want:.6g})")
        scores = q @ h.transpose(1, 2)
        if math.isclose(got, float(F.cross_entropy(scores.transpose(1, 2).reshape(b * m, m), torch.arange(m).repeat(b))),
                        rel_tol=1e-6):
            return (f"{case}: the softmax ran over the queries; each query i chooses among the patches j, so normalize "
                    f"the scores v_i . h_j over j (expected {want:.6g})")
        if math.isclose(got, want * b * m, rel_tol=1e-6):
            return f"{case} returned the sum over the {b * m} queries; take their mean (expected {want:.6g})"
        return f"{case} returned {got:.6g}, expected {want:.6g}"
    return None


def grassmann_logits(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    e = torch.eye(3, **f64)

    def bases(c, d, k):
        return torch.linalg.qr(torch.randn(c, d, k, generator=g, **f64)).Q

    cases = [  # planes spanned by two axes each: logits 10 * (5/5, 3/5, 4/5) and 10 * (0, 1, 1)
        (torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], **f64), torch.stack([e[:, [0, 1]], e[:, [0, 2]], e[:, [1, 2]]]), 10.0),
        (3 * torch.randn(5, 6, generator=g, **f64), bases(4, 6, 2), 16.0),
        (torch.randn(7, 8, generator=g, **f64), bases(3, 8, 1), 1.0)]  # k = 1: |cosine|
    for x, s, scale in cases:
        want = ref.grassmann_logits(x, s, scale)
        got = fn(x.clone(), s.clone(), scale)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"for x of shape {list(x.shape)} and bases of shape {list(s.shape)} return [B, C] = {list(want.shape)}, "
                    f"one logit per feature and class, got {getattr(got, 'shape', got)}")
        got = got.detach().to(torch.float64)

        def same(t):
            return torch.allclose(got, t, rtol=1e-6, atol=1e-8)
        if same(want):
            continue
        length = x.norm(dim=1, keepdim=True)
        coords = torch.einsum("bd,cdk->bck", x, s)
        if same(want * length):
            return "the feature is not normalized: divide the projection's length by ||x|| (the logit lies in [0, scale])"
        if same(want / scale):
            return "multiply by scale: the feature is scaled to length scale before it is projected"
        if same(want ** 2 / scale):
            return "that is the squared length of the projection; the logit is its length (take the square root)"
        if same(scale * coords.sum(2) / length) or same(scale * coords.sum(2).abs() / length):
            return ("the coordinates in the subspace were summed; the logit is the Euclidean norm of the coordinate "
                    "vector S_c^T x, which does not depend on the basis chosen in the subspace")
        return (f"for x of shape {list(x.shape)} the logits differ from the expected ones by up to "
                f"{float((got - want).abs().max()):.3g}: project with S_c^T x (bases[c] is D x k), take the norm over k")
    return None


def roc_auc(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])),        # the textbook case: 0.75
             (torch.tensor([0.2, 0.2, 0.7, 0.7, 0.9]), torch.tensor([0, 1, 0, 1, 1])),  # ties across the classes
             (torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0, 0, 1])),                 # a detector upside down: 0
             (torch.randint(0, 4, (40,), generator=g).double() / 4, torch.randint(0, 2, (40,), generator=g))]
    for scores, labels in cases:
        got, want = fn(scores.clone(), labels.clone()), ref.roc_auc(scores, labels)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"return a number (a float), got {got!r}"
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        case = f"roc_auc({[round(v, 3) for v in scores.tolist()]}, {labels.tolist()})"
        pos, neg = scores[labels == 1], scores[labels == 0]
        strict = float((pos[:, None] > neg[None, :]).double().mean())
        loose = float((pos[:, None] >= neg[None, :]).double().mean())
        if math.isclose(got, 1 - want, abs_tol=1e-6):
            return (f"{case} returned {got:g} = 1 - {want:g}: the classes are swapped; the AUC is the chance that a "
                    "synthetic image (label 1) scores above a real one (label 0)")
        if math.isclose(got, strict, abs_tol=1e-6) or math.isclose(got, loose, abs_tol=1e-6):
            return (f"{case} returned {got:g}: a tie between a synthetic and a real score counts one half, neither 0 "
                    f"nor 1 (expected {want:g})")
        return f"{case} returned {got:g}, expected {want:g}"
    return None


def backward_transfer(fn) -> str | None:
    cases = [[[0.9, None], [0.7, 0.95]],                                                  # one earlier task: -0.2
             [[0.9, None, None], [0.8, 0.95, None], [0.7, 0.9, 0.85]],                    # forgetting: -0.125
             [[0.6, None, None, None], [0.65, 0.8, None, None], [0.7, 0.8, 0.9, None],
              [0.75, 0.82, 0.88, 0.99]],                                                   # positive transfer
             [[0.5, None, None], [0.5, 0.5, None], [0.5, 0.5, 0.5]]]                      # nothing changes: 0
    for r in cases:
        got, want = fn([list(row) for row in r]), ref.backward_transfer(r)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"return a number (a float), got {got!r}"
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        t = len(r)
        diffs = [r[t - 1][j] - r[j][j] for j in range(t - 1)]
        if math.isclose(got, sum(diffs) / t, abs_tol=1e-6):
            return (f"for {t} tasks you divided by {t}: the last task has no later task to forget it, so the mean runs "
                    f"over the T - 1 = {t - 1} earlier tasks (expected {want:g})")
        if math.isclose(got, -want, abs_tol=1e-6):
            return (f"the sign is flipped: backward transfer is final accuracy minus the accuracy right after the task, "
                    f"R[T-1][j] - R[j][j], negative when the task was forgotten (expected {want:g}, got {got:g})")
        if t > 2 and math.isclose(got, sum(r[j + 1][j] - r[j][j] for j in range(t - 1)) / (t - 1), abs_tol=1e-6):
            return ("that compares each task with the row just after it; backward transfer compares with the last "
                    f"row R[T-1][j], the accuracy after the whole sequence (expected {want:g})")
        return f"backward_transfer({r}) returned {got:g}, expected {want:g}"
    return None


def least_squares_stitch(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)

    def conv1x1(x, w, b):
        return torch.einsum("oc,nchw->nohw", w, x) + b.view(1, -1, 1, 1)

    w0, b0 = torch.randn(3, 5, generator=g, **f64), torch.randn(3, generator=g, **f64)
    x0 = torch.randn(4, 5, 3, 3, generator=g, **f64)
    x1 = torch.randn(6, 4, 5, 2, generator=g, **f64)
    cases = [(x0, conv1x1(x0, w0, b0)),  # an exact 1x1 map with an offset: recovered exactly
             (x1, torch.randn(6, 7, 5, 2, generator=g, **f64)),  # no exact map: the best one
             (x1.abs() + 1.0, torch.randn(6, 2, 5, 2, generator=g, **f64) + 3.0)]  # positive inputs, offset targets
    for x, y in cases:
        cin, cout = x.shape[1], y.shape[1]
        want_w, want_b = ref.least_squares_stitch(x, y)
        got = fn(x.clone(), y.clone())
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            return f"return a pair (weight, bias), got {type(got).__name__}"
        w, b = (torch.as_tensor(t, dtype=torch.float64) for t in got)
        if tuple(w.shape) == (cin, cout) and cin != cout:
            return (f"for x with {cin} channels and y with {cout}, weight has shape [{cin}, {cout}]: a 1x1 convolution's "
                    f"weight is [C_out, C_in] (transpose the least-squares solution)")
        if tuple(w.shape) != (cout, cin) or tuple(b.shape) != (cout,):
            return (f"for x {list(x.shape)} and y {list(y.shape)} expected weight [{cout}, {cin}] and bias [{cout}], got "
                    f"{list(w.shape)} and {list(b.shape)}")
        if torch.allclose(w, want_w, atol=1e-6) and torch.allclose(b, want_b, atol=1e-6):
            continue
        if torch.allclose(b, torch.zeros_like(b), atol=1e-9):
            return ("the bias is zero: the best 1x1 layer has an offset too; add a column of ones to the rows of x "
                    "and read the bias from the last row of the solution")
        xr, yr = x.reshape(-1, cin), y.reshape(-1, cout)  # rows that mix channels and pixels
        mixed = torch.linalg.lstsq(torch.cat([xr, torch.ones(len(xr), 1, **f64)], 1), yr).solution
        if torch.allclose(w, mixed[:cin].T, atol=1e-6):
            return ("x.reshape(-1, C_in) mixes channels and pixels: a row must hold the C_in channels of one pixel; "
                    "move the channels last first (x.permute(0, 2, 3, 1)), then reshape")
        return (f"for x {list(x.shape)} and y {list(y.shape)} the weight differs from the least-squares one by up to "
                f"{float((w - want_w).abs().max()):.3g}: every pixel of every image is one row of the regression")
    return None


def match_units(fn) -> str | None:
    g = torch.Generator().manual_seed(0)

    def corr_of(a, b):
        za, zb = (a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)
        return za.T @ zb / (len(a) - 1)

    a0 = torch.randn(200, 6, generator=g, dtype=torch.float64)
    hidden = torch.randperm(6, generator=g)
    scale = torch.tensor([1.0, 100.0, 0.01, 3.0, 10.0, 0.1], dtype=torch.float64)
    b0 = (a0[:, hidden.argsort()] + 0.3 * torch.randn(200, 6, generator=g, dtype=torch.float64)) * scale + 5.0
    # a correlation matrix where the best unit of each row collides: greedy per-row choices are not a permutation
    base = torch.randn(300, 3, generator=g, dtype=torch.float64)
    a1 = torch.stack([base[:, 0], base[:, 0] + 0.5 * base[:, 1], base[:, 2]], 1)
    b1 = torch.stack([base[:, 0] + 0.2 * base[:, 2], base[:, 1], base[:, 2] + 0.1 * base[:, 1]], 1) * 7.0
    a2, b2 = torch.randn(50, 9, generator=g, dtype=torch.float64), torch.randn(50, 9, generator=g, dtype=torch.float64)
    for a, b in ((a0, b0), (a1, b1), (a2, b2)):
        d = a.shape[1]
        got = fn(a.clone().float(), b.clone().float())
        try:
            perm = [int(j) for j in (got.tolist() if hasattr(got, "tolist") else got)]
        except (TypeError, ValueError):
            return f"return a list of {d} ints, got {type(got).__name__}"
        corr = corr_of(a, b)
        best = float(corr[torch.arange(d), torch.tensor(ref.match_units(a, b))].sum())
        if len(perm) != d:
            return f"for d = {d} units return {d} indices, got {len(perm)}"
        if sorted(perm) != list(range(d)):
            if perm == corr.argmax(1).tolist():
                return ("two units of a were matched to the same unit of b: the best unit of each row is not a "
                        "permutation; solve the linear assignment (scipy.optimize.linear_sum_assignment, maximize=True)")
            return f"perm must use every unit of b exactly once, got {perm}"
        total = float(corr[torch.arange(d), torch.tensor(perm)].sum())
        if abs(total - best) < 1e-6:
            continue
        inverse = torch.tensor(perm).argsort()
        if abs(float(corr[torch.arange(d), inverse].sum()) - best) < 1e-6:
            return "perm is inverted: perm[i] is the unit of b matched to unit i of a, not the other way round"
        cov = ((a - a.mean(0)).T @ (b - b.mean(0))).numpy()
        from scipy.optimize import linear_sum_assignment
        if perm == [int(j) for j in linear_sum_assignment(cov, maximize=True)[1]]:
            return ("that maximizes the covariance: units of very different scales dominate it; standardize each unit "
                    "(subtract its mean, divide by its standard deviation) to get Pearson correlations")
        return f"summed correlation {total:.4f}, the best permutation reaches {best:.4f}"
    return None


def sparse_topk_target(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    by_hand = (torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], dtype=torch.float64), 2,
               torch.tensor([[0.0, 2 / 3, 1 / 3], [5 / 8, 0.0, 3 / 8]], dtype=torch.float64))
    probs = torch.softmax(torch.randn(5, 10, generator=g, dtype=torch.float64) * 2, 1)
    cases = [by_hand] + [(probs, k, ref.sparse_topk_target(probs, k)) for k in (3, 1, 10)]
    for p, k, want in cases:
        got = fn(p.clone(), k)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(p.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"return a dense tensor of the input's shape {tuple(p.shape)}, got {shape}"
        got = got.double()
        if torch.allclose(got, want, atol=1e-6):
            continue
        kept = (got > 0).sum(1)
        if not (kept == min(k, p.shape[1])).all():
            return f"with k = {k} each row should keep exactly {k} classes, got {kept.tolist()} nonzero"
        if torch.allclose(got, torch.zeros_like(p).scatter(1, p.topk(k, 1).indices, p.topk(k, 1).values), atol=1e-6):
            return "the kept probabilities do not sum to 1: renormalise them (divide by their sum per row)"
        if torch.allclose(got, torch.zeros_like(p).scatter(1, p.topk(k, 1).indices, p.topk(k, 1).values.softmax(1)),
                          atol=1e-6):
            return "that is a softmax of the kept probabilities: they are probabilities already; divide by their sum"
        return f"with k = {k} expected {want[0].tolist()} in the first row, got {got[0].tolist()}"
    return None


def stroke_width(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    corner = torch.zeros(1, 1, 6, 6)
    corner[0, 0, :3, :3] = 1.0  # a 3x3 block of ink in the image's corner
    soft = torch.rand(2, 1, 9, 7, generator=g)  # soft masks, a rectangular image
    cases = [(dot, 1), (dot, 0), (F.max_pool2d(dot, 3, 1, 1), -1), (corner, -1), (corner, 2),
             (soft, 2), (soft, -2), (soft, 3), (torch.ones(1, 1, 4, 4), -1)]
    for mask, steps in cases:
        want = ref.stroke_width(mask, steps)
        got = fn(mask.clone(), steps)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(mask.shape):
            return (f"for masks of shape {list(mask.shape)} return a tensor of the same shape (a 3x3 neighbourhood "
                    f"with padding 1 keeps H and W), got {getattr(got, 'shape', got)}")
        got = got.detach().to(want.dtype)
        if torch.allclose(got, want, atol=1e-6):
            continue
        where = f"for steps = {steps} on a {list(mask.shape[-2:])} mask"
        if steps != 0 and torch.allclose(got, ref.stroke_width(mask, -steps), atol=1e-6):
            return f"{where} the strokes moved the wrong way: steps > 0 thickens (the maximum), steps < 0 thins (the minimum)"
        if abs(steps) > 1 and torch.allclose(got, ref.stroke_width(mask, 1 if steps > 0 else -1), atol=1e-6):
            return f"{where} only one step was applied: apply the 3x3 maximum or minimum |steps| times"
        if steps < 0:
            zero_padded = mask
            for _ in range(-steps):
                zero_padded = -F.max_pool2d(F.pad(-zero_padded, (1, 1, 1, 1), value=0.0), 3, 1)
            if torch.allclose(got, zero_padded, atol=1e-6):
                return (f"{where} the border was thinned from outside: pixels outside the image do not count, so "
                        "the minimum is over the neighbours inside the image (max-pooling's padding does this)")
        if steps == 0:
            return "steps = 0 must return the masks unchanged"
        return (f"{where} the values differ from the expected ones by up to {float((got - want).abs().max()):.3g}: "
                "each step takes the maximum (thicken) or minimum (thin) over the full 3x3 neighbourhood, "
                "centre included")
    return None


def ensemble_soft_target(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    # one image, two classes, two teachers: teacher 0 says (1/2, 1/2), teacher 1 (3/4, 1/4); the target is (5/8, 3/8)
    by_hand = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]], dtype=torch.float64)
    if not torch.allclose(ref.ensemble_soft_target(by_hand, 1.0), torch.tensor([[5 / 8, 3 / 8]], dtype=torch.float64)):
        raise AssertionError("the reference solution disagrees with the worked example")
    cases = [(by_hand, 1.0), (torch.randn(4, 10, 3, generator=g, dtype=torch.float64) * 3, 1.0),
             (torch.randn(4, 10, 3, generator=g, dtype=torch.float64) * 3, 4.0),
             (torch.randn(2, 5, 1, generator=g, dtype=torch.float64), 2.0)]
    for t, temp in cases:
        want = ref.ensemble_soft_target(t, temp)
        got = fn(t.clone(), temp)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"for logits {list(t.shape)} (batch, classes, teachers) return [batch, classes] {list(want.shape)}, got {shape}"
        got = got.double()
        if torch.allclose(got, want, atol=1e-6):
            continue
        where = f"for {t.shape[2]} teachers at temperature {temp}"
        if torch.allclose(got, F.softmax(t.mean(2) / temp, 1), atol=1e-6):
            return (f"{where} that is the softmax of the averaged logits: MEAL V2 averages the teachers' "
                    "probabilities (softmax each teacher first, then average)")
        if torch.allclose(got, F.softmax(t / temp, 2).mean(2), atol=1e-6) or torch.allclose(
                got, F.softmax(t / temp, 0).mean(2), atol=1e-6):
            return f"{where} the softmax ran over the wrong dimension: it runs over the classes (dim 1)"
        if temp != 1 and torch.allclose(got, F.softmax(t, 1).mean(2), atol=1e-6):
            return f"{where} the temperature was left out: divide the logits by it before the softmax"
        if not torch.allclose(got.sum(1), torch.ones(len(t), dtype=got.dtype), atol=1e-6):
            return f"{where} the rows do not sum to 1 (they sum to {got.sum(1).tolist()}): average, do not add"
        return f"{where} expected {want[0].tolist()} in the first row, got {got[0].tolist()}"
    return None


def confident_entropy(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    sure = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # one sure row, one uniform
    cases = [(sure, 0.4), (sure, 1.01), (torch.zeros(3, 4, dtype=torch.float64), 0.4),
             (torch.randn(64, 10, generator=g, dtype=torch.float64) * 3, 0.4),
             (torch.randn(64, 10, generator=g, dtype=torch.float64) * 3, 0.7)]
    for logits, margin in cases:
        want = ref.confident_entropy(logits, margin)
        got = fn(logits.clone(), margin)
        try:
            got = float(got)
        except (TypeError, ValueError, RuntimeError):
            return f"return one number (a float or a 0-d tensor), got {type(got).__name__} {getattr(got, 'shape', '')}"
        if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-7):
            continue
        logp = logits.log_softmax(1)
        h = -(logp.exp() * logp).sum(1)
        where = f"for {len(logits)} rows of {logits.shape[1]} classes with margin {margin}"
        if math.isnan(got):
            return f"{where} you returned nan: when no row qualifies return 0.0 (a mean over no rows is nan)"
        if math.isclose(got, float(h.mean()), rel_tol=1e-5):
            return f"{where} that is the mean entropy of every row: average over only the rows with H < margin * ln(classes)"
        keep = h < margin * math.log(logits.shape[1])
        if keep.any() and math.isclose(got, float((h * keep).sum() / len(h)), rel_tol=1e-5):
            return f"{where} the sum over the confident rows was divided by all {len(h)} rows: divide by their count"
        if math.isclose(got, float(h[h < margin].mean()) if (h < margin).any() else 0.0, rel_tol=1e-5):
            return f"{where} the threshold is margin * ln(classes) = {margin * math.log(logits.shape[1]):.4f}, not the margin alone"
        return f"{where} expected {want:.6g}, got {got:.6g}"
    return None


def ibn_normalize(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, 3, generator=g, dtype=torch.float64) * 3 + torch.arange(6.0).view(1, 6, 1, 1)
    for n_in in (3, 0, 6, 1):
        want = ref.ibn_normalize(x, n_in)
        got = fn(x.clone(), n_in)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(x.shape):
            return f"return a tensor of the input's shape {list(x.shape)}, got {getattr(got, 'shape', type(got).__name__)}"
        got = got.double()
        if torch.allclose(got, want, atol=1e-5):
            continue
        where = f"with n_in = {n_in} of {x.shape[1]} channels"
        if n_in < x.shape[1] and torch.allclose(got[:, n_in:], ref.ibn_normalize(x, x.shape[1])[:, n_in:], atol=1e-5):
            return f"{where} the last channels were instance-normalized: only the first n_in are; the rest use batch statistics"
        if n_in > 0 and torch.allclose(got[:, :n_in], ref.ibn_normalize(x, 0)[:, :n_in], atol=1e-5):
            return f"{where} the first n_in channels were batch-normalized: they take each image's own mean and variance"
        unbiased = torch.cat([(p - p.mean(d, keepdim=True)) / (p.var(d, keepdim=True) + 1e-5).sqrt()
                              for p, d in zip(x.split([n_in, x.shape[1] - n_in], 1), ((2, 3), (0, 2, 3)))
                              if p.shape[1]], 1)
        if torch.allclose(got, unbiased, atol=1e-5):
            return f"{where} the variances are unbiased (divided by count - 1): normalization divides by the count"
        bad = (got - want).abs().amax((0, 2, 3))
        return f"{where} channels {[int(c) for c in (bad > 1e-5).nonzero().flatten()]} differ from the expected values"
    return None


def cuda_blur(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 6, 7), generator=g, dtype=torch.uint8)
    labels = torch.tensor([0, 2, 1, 2, 0])
    filters = torch.rand(3, 3, 3, 3, generator=g, dtype=torch.float64)
    filters[1, :, 0, 0] += 2.0  # an asymmetric filter: convolution and cross-correlation differ
    for imgs, labs, filt in ((images, labels, filters), (images[:2, :1], labels[:2], filters[:, :1]),
                             (images[:3], labels[:3], torch.rand(3, 3, 5, 5, generator=g, dtype=torch.float64))):
        want = ref.cuda_blur(imgs, labs, filt)
        got = fn(imgs.clone(), labs.clone(), filt.clone())
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(imgs.shape):
            return (f"for images {list(imgs.shape)} return float images of the same shape (padding k // 2 keeps H and W), "
                    f"got {getattr(got, 'shape', type(got).__name__)}")
        got = got.double()
        if torch.allclose(got, want, atol=1e-4, rtol=1e-6):
            continue
        where = f"for {len(imgs)} images of {list(imgs.shape[1:])} and {filt.shape[-1]}x{filt.shape[-1]} filters"
        k = filt.shape[-1]
        plain = torch.cat([F.conv2d(imgs[i:i + 1].double(), filt[labs[i]].unsqueeze(1), padding=k // 2,
                                    groups=imgs.shape[1]) for i in range(len(imgs))])
        if torch.allclose(got, plain, atol=1e-4):
            return f"{where} the filtered images were not rescaled: multiply each by 255 / its own largest value"
        if torch.allclose(got, plain * (255 / plain.amax((2, 3), keepdim=True)), atol=1e-4):
            return f"{where} each channel was rescaled by its own maximum: m is the largest value over all channels of the image"
        if torch.allclose(got, plain * (255 / plain.max()), atol=1e-4):
            return f"{where} all images were rescaled by one maximum: m is each image's own largest value"
        flipped = ref.cuda_blur(imgs, labs, filt.flip(-1, -2))
        if torch.allclose(got, flipped, atol=1e-4):
            return f"{where} the filters were flipped (a true convolution): conv2d computes a cross-correlation"
        fixed = ref.cuda_blur(imgs, torch.zeros_like(labs), filt)
        if torch.allclose(got, fixed, atol=1e-4):
            return f"{where} every image used filter 0: image i takes filters[labels[i]]"
        return f"{where} the values differ from the expected ones by up to {float((got - want).abs().max()):.3g}"
    return None


def sensitivity_at_specificity(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    hand = (torch.tensor([0.1, 0.4, 0.35, 0.8], dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    ties = (torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9.5, 8.5, 7.5, 2.5, 2.5], dtype=torch.float64),
            torch.tensor([0] * 10 + [1] * 5))
    rand_s = torch.rand(200, generator=g, dtype=torch.float64)
    rand_y = (torch.rand(200, generator=g) < 0.25 + 0.5 * rand_s.float()).long()
    coarse = (rand_s * 10).floor()                                        # many ties between the classes
    cases = [(*hand, 0.9), (*hand, 0.5), (*ties, 0.9), (*ties, 0.3), (*ties, 0.75),
             (torch.tensor([0.9, 0.2, 0.8, 0.1], dtype=torch.float64), torch.tensor([0, 0, 1, 1]), 1.0),
             (rand_s, rand_y, 0.9), (rand_s, rand_y, 0.95), (coarse, rand_y, 0.8), (coarse, rand_y, 0.5)]

    def strict(s, y, spec):  # the mistake "specificity above spec" instead of "at least spec"
        return max([0.0] + [float((s[y == 1] >= t).double().mean()) for t in torch.unique(s)
                            if float((s[y == 0] < t).double().mean()) > spec + 1e-12])

    mistakes = [(lambda s, y, sp: ref.sensitivity_at_specificity(s, 1 - y, sp),
                 "the classes look swapped: label 1 (referable) is the positive class, and a high score means "
                 "referable"),
                (lambda s, y, sp: ref.sensitivity_at_specificity(s, y, 1 - sp),
                 "that is the sensitivity at specificity 1 - spec: the specificity is the share of label-0 cases NOT "
                 "called referable (score < t)"),
                (strict, "keep the thresholds whose specificity is at least spec (>=), not only those above it")]
    got_all = []
    for scores, labels, spec in cases:
        want = ref.sensitivity_at_specificity(scores, labels, spec)
        shown = (f"scores {[round(v, 3) for v in scores.tolist()]}, labels {labels.tolist()}" if len(scores) <= 15
                 else f"{len(scores)} random scores{' with ties' if len(scores.unique()) < len(scores) else ''}")
        try:
            got = _attempt(lambda: fn(scores.clone(), labels.clone(), spec), f"for {shown} at spec = {spec}")
        except _Raised as e:
            return f"{e}" + (": when no score keeps the specificity, the threshold above every score (sensitivity 0) "
                             "still does" if spec == 1.0 else "")
        if isinstance(got, torch.Tensor) and got.numel() != 1:
            return f"return one number, a float (the sensitivity), got a tensor of shape {list(got.shape)}"
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"return a float (the sensitivity), got {type(got).__name__}"
        got_all.append(got)
        if abs(got - want) < 1e-9:
            continue
        where = f"for {shown} at spec = {spec}: expected {want:.4f}, got {got:.4f}"
        try:  # the whole answer, to recognize a systematic mistake
            done = got_all + [float(fn(s.clone(), y.clone(), sp)) for s, y, sp in cases[len(got_all):]]
        except Exception:  # noqa: BLE001
            done = None
        for other, hint in mistakes:
            if done is not None and all(abs(d - other(s, y, sp)) < 1e-9 for d, (s, y, sp) in zip(done, cases)):
                return f"{where}: {hint}"
        return (f"{where}. Use every distinct score t as a threshold (score >= t is referable), keep the thresholds "
                "whose specificity is at least spec, and return the highest sensitivity among them (no interpolation)")
    return None


def step_macs(fn) -> str | None:
    cases = [([1.0, 2.0, 3.0], [False, True, False], "one trainable block in the middle"),
             ([4.0, 1.0, 2.0, 8.0], [True, True, True, True], "every block trainable"),
             ([4.0, 1.0, 2.0, 8.0], [False, False, False, True], "only the last block trainable"),
             ([5.0, 3.0, 7.0], [False, False, False], "nothing trainable"),
             ([2.0, 5.0, 1.0, 3.0, 6.0], [False, True, False, True, False], "two trainable blocks with a frozen one between"),
             ([442368, 14155776, 13107200, 13107200, 640], [True, True, False, False, False],
              "a ResNet-20's stem, stages and fc, first stage tuned")]
    for m, t, what in cases:
        want = ref.step_macs(m, t)
        try:
            got = _attempt(lambda: fn(list(m), list(t)), f"{what} (block_macs={m}, trainable={t})")
        except _Raised as e:
            return str(e)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"return one number (multiply-adds per image), got {type(got).__name__}"
        if abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            continue
        where = f"{what} (block_macs={m}, trainable={t}): expected {want:g}, got {got:g}"
        f = sum(m)
        lo = t.index(True) if any(t) else None
        weights = sum(v for v, x in zip(m, t) if x)
        if lo is not None and abs(got - (want - f)) < 1e-6:
            return f"{where}: the forward pass is missing; a training step runs it first"
        if lo is not None and abs(got - (want + m[lo])) < 1e-6:
            return (f"{where}: the lowest trainable block needs no gradient for its input (nothing below it learns); "
                    "count input gradients only for the blocks above it")
        if lo is not None and abs(got - (f + (f - m[0]) + weights)) < 1e-6:
            return (f"{where}: input gradients were counted for frozen blocks below the lowest trainable one; the "
                    "backward pass stops there")
        if lo is not None and abs(got - (f + weights)) < 1e-6:
            return (f"{where}: the gradient must pass back through every block above the lowest trainable one, "
                    "frozen or not: add their forward cost once more")
        if lo is not None and abs(got - 3 * f) < 1e-6:
            return f"{where}: that is 3x the forward pass, full training's rough figure; frozen blocks save their weight gradients"
        if lo is None:
            return f"{where}: with nothing trainable there is no backward pass: the forward pass alone"
        return where
    return None


def kernel_recursion_relu(fn) -> str | None:
    cases = [(1.0, 2.0, 0.0, 5, "criticality, C_W = 2, C_b = 0"),
             (0.7, 1.5, 0.1, 6, "below criticality with a bias"),
             (2.0, 3.0, 0.0, 4, "above criticality"),
             (1.0, 2.0, 0.5, 3, "a hand-made case: [1, 1.5, 2]"),
             (3.0, 2.0, 0.0, 1, "depth 1: the first layer alone")]
    for k1, c_w, c_b, depth, what in cases:
        want = ref.kernel_recursion_relu(k1, c_w, c_b, depth)
        try:
            got = _attempt(lambda: fn(k1, c_w, c_b, depth), f"{what} (k1={k1}, c_w={c_w}, c_b={c_b}, depth={depth})")
        except _Raised as e:
            return str(e)
        try:
            got = [float(v) for v in got]
        except (TypeError, ValueError):
            return f"return a list of numbers [K^1, ..., K^depth], got {type(got).__name__}"
        where = f"{what} (k1={k1}, c_w={c_w}, c_b={c_b}, depth={depth}): expected {want}, got {got}"
        if len(got) != len(want):
            if len(got) == depth + 1 or len(got) == depth - 1:
                return f"{where}: return exactly depth values, K^1 (= k1 itself) to K^depth"
            return f"{where}: return depth values"
        if all(abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, w in zip(got, want)):
            continue
        if abs(got[0] - k1) > 1e-9 * max(1.0, k1):
            return f"{where}: the list starts with K^1 = k1 itself, the first layer's kernel"
        ks = [k1]
        for _ in range(depth - 1):
            ks.append(c_b + c_w * ks[-1])
        if all(abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, w in zip(got, ks)):
            return (f"{where}: ReLU zeroes the negative half of a centred Gaussian, so <relu(z)^2> over "
                    "z ~ N(0, K) is K / 2, not K")
        ks = [k1]
        for _ in range(depth - 1):
            ks.append(c_w * ks[-1] / 2)
        if c_b and all(abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, w in zip(got, ks)):
            return f"{where}: every layer adds its bias's variance c_b"
        ks = [k1]
        for _ in range(depth - 1):
            ks.append((c_b + c_w * ks[-1]) / 2)
        if c_b and all(abs(g - w) <= 1e-9 * max(1.0, abs(w)) for g, w in zip(got, ks)):
            return f"{where}: only the activation's mean square is halved; the bias variance c_b is added whole"
        return where
    return None


def critical_cw(fn) -> str | None:
    cases = [(("relu",), "plain ReLU MLP"), (("tanh",), "plain tanh MLP"), (("linear",), "plain linear MLP"),
             (("relu", 0.6), "ReLU with a skip xi = 0.6"), (("tanh", 0.6, 0.5), "tanh, xi = 0.6, gamma = 0.5"),
             (("relu", 0.3, 2.0), "ReLU, xi = 0.3, gamma = 2"), (("linear", 0.8, 1.0), "linear, xi = 0.8"),
             (("relu", 0.8, 1.0), "a hand-made case: 2 (1 - 0.64) = 0.72")]
    for args, what in cases:
        want = ref.critical_cw(*args)
        try:
            got = _attempt(lambda: fn(*args), f"{what} {args}")
        except _Raised as e:
            return str(e)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"return one number (C_W), got {type(got).__name__}"
        if abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            continue
        where = f"{what} {args}: expected C_W = {want:g}, got {got:g}"
        act, xi, gamma = (list(args) + [0.0, 1.0][len(args) - 1:])[:3]
        slope = 0.5 if act == "relu" else 1.0
        if act == "relu" and abs(got - want / 2) < 1e-9:
            return (f"{where}: ReLU zeroes half of its input, <relu(z)^2>_K = K / 2, so C_W must be twice the "
                    "linear network's")
        if xi and abs(got - 1 / (gamma ** 2 * slope)) < 1e-9:
            return (f"{where}: the skip carries xi^2 K^l to the next layer: the block only has to make up "
                    "the rest, 1 - xi^2")
        if xi and abs(got - (1 - xi) / (gamma ** 2 * slope)) < 1e-9:
            return f"{where}: the skip multiplies z by xi, so it multiplies the variance by xi^2, not xi"
        if gamma != 1 and abs(got - (1 - xi ** 2) / slope) < 1e-9:
            return f"{where}: the block is scaled by gamma, its variance by gamma^2: divide by it"
        if gamma != 1 and abs(got - (1 - xi ** 2) / (gamma * slope)) < 1e-9:
            return f"{where}: gamma scales the block's output, so its variance is scaled by gamma^2, not gamma"
        return where
    return None


def annealed_std(fn) -> str | None:
    cases = [(0, 1.0, 0.55, "step 0, eta = 1"), (99, 0.3, 0.55, "step 99, eta = 0.3"),
             (2_000, 0.01, 0.55, "step 2000, eta = 0.01"), (3, 0.16, 1.0, "step 3, eta = 0.16, gamma = 1 (0.2 by hand)"),
             (7, 2.0, 0.0, "gamma = 0: constant noise"), (10, 1.0, 0.55, "step 10, eta = 1")]
    for step, eta, gamma, what in cases:
        want = ref.annealed_std(step, eta, gamma)
        try:
            got = _attempt(lambda: fn(step, eta, gamma), what, zero_division=(
                "the function divided by zero; the schedule divides by (1 + step) ** gamma, which is 1 at step 0, "
                "not by step ** gamma"))
        except _Raised as e:
            return str(e)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"for an int step return one number, got {type(got).__name__}"
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            continue
        where = f"{what}: expected {want:.6g}, got {got:.6g}"
        if math.isclose(got, want ** 2, rel_tol=1e-9) and want != 1.0:
            return f"{where}: that is the variance eta / (1 + step) ** gamma; return its square root, the std"
        if step > 0 and math.isclose(got, math.sqrt(eta / step ** gamma), rel_tol=1e-9):
            return f"{where}: anneal with (1 + step), not step (steps count from 0)"
        if math.isclose(got, math.sqrt(eta) / (1 + step) ** gamma, rel_tol=1e-9):
            return (f"{where}: gamma anneals the variance, so the std falls as (1 + step) ** (-gamma / 2); "
                    "you divided the std by (1 + step) ** gamma")
        if math.isclose(got, ref.annealed_std(step, eta, 0.55), rel_tol=1e-9):
            return f"{where}: use the gamma argument, not a fixed 0.55"
        return where
    steps = torch.arange(6)
    try:
        got = _attempt(lambda: fn(steps, 0.3, 0.55), f"for a tensor of steps {steps.tolist()}")
    except _Raised as e:
        return str(e)
    want = ref.annealed_std(steps, 0.3, 0.55)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(steps.shape):
        return (f"for a 1-D tensor of {len(steps)} steps return a tensor of the same shape, "
                f"got {getattr(got, 'shape', type(got).__name__)}")
    if not torch.allclose(got.double(), want, rtol=1e-6, atol=1e-9):
        return f"for the steps {steps.tolist()} (eta = 0.3) expected {want.tolist()}, got {got.tolist()}"
    return None


def linear_drop_rates(fn) -> str | None:
    from ..models import create_model
    net = create_model("resnet_cifar", depth=20, drop_path=0.1)
    model_rates = [m.drop_path for name, m in net.named_modules() if name and hasattr(m, "drop_path")]
    cases = [(3, 0.3, "three blocks up to 0.3", [0.1, 0.2, 0.3]),
             (1, 0.5, "a single block", [0.5]),
             (4, 0.0, "max_rate 0 (stochastic depth off)", [0.0] * 4),
             (6, 0.2, "six blocks up to 0.2", None),
             (9, 0.1, "the nine blocks of resnet_cifar(depth=20, drop_path=0.1)", model_rates)]
    for n, p, what, want in cases:
        want = ref.linear_drop_rates(n, p) if want is None else want
        try:
            got = _attempt(lambda: fn(n, p), f"{what} (n_blocks={n}, max_rate={p})")
        except _Raised as e:
            return str(e)
        try:
            got = [float(v) for v in got]
        except (TypeError, ValueError):
            return f"return a list of n_blocks numbers, got {type(got).__name__}"
        if len(got) != n:
            return f"{what}: return one rate per block, {n} of them, got {len(got)}"
        if all(abs(g - w) <= 1e-9 for g, w in zip(got, want)):
            continue
        where = (f"{what} (n_blocks={n}, max_rate={p}): expected {[round(w, 6) for w in want]}, "
                 f"got {[round(g, 6) for g in got]}")
        if n > 1 and all(abs(g - w) <= 1e-9 for g, w in zip(got, want[::-1])):
            return f"{where}: the rates are reversed; the first block (next to the input) is dropped least"
        if n > 1 and all(abs(g - p) <= 1e-9 for g in got):
            return f"{where}: a constant rate; the rate rises linearly with the block's depth"
        if n > 1 and all(abs(g - p * i / (n - 1)) <= 1e-9 for i, g in enumerate(got)):
            return (f"{where}: the first block starts at 0; block i (from 1) gets max_rate * i / n_blocks, so even "
                    "the first is dropped sometimes")
        if all(abs(g - p * i / n) <= 1e-9 for i, g in enumerate(got)):
            return f"{where}: off by one block; block i counts from 1, so the last block gets max_rate itself"
        return where
    return None


def linear_scaled_lr(fn) -> str | None:
    cases = [((0.1, 128, 4096, 0, 10), "no warm-up"), ((0.1, 128, 4096, 5, 0), "the first warm-up step"),
             ((0.1, 128, 4096, 5, 4), "the last warm-up step"), ((0.1, 128, 4096, 5, 100), "after the warm-up"),
             ((0.2, 256, 64, 10, 3), "a batch smaller than the base"), ((0.1, 128, 128, 0, 0), "the base batch"),
             ((0.1, 256, 1024, 4, 1), "a hand-made case: peak 0.4, step 2 of 4 -> 0.2")]
    for args, what in cases:
        base_lr, base_batch, batch, warmup, step = args
        want = ref.linear_scaled_lr(*args)
        try:
            got = _attempt(lambda: fn(*args), f"{what} {args}", zero_division=(
                "division by zero; warmup_steps = 0 means no warm-up: the peak from the first step"))
        except _Raised as e:
            return str(e)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"return one number (the learning rate), got {type(got).__name__}"
        if abs(got - want) <= 1e-12 * max(1.0, abs(want)):
            continue
        where = f"{what} {args}: expected {want:g}, got {got:g}"
        close = lambda v: abs(got - v) <= 1e-12 * max(1.0, abs(v))  # noqa: E731
        warm = (step + 1) / warmup if warmup and step < warmup else 1.0
        peak = base_lr * batch / base_batch
        if close(base_lr * warm):
            return f"{where}: scale the base rate with the batch: peak = base_lr * batch / base_batch"
        if close(base_lr * (batch / base_batch) ** 0.5 * warm):
            return f"{where}: the rule is linear in the batch (batch / base_batch), not its square root"
        if close(base_lr * base_batch / batch * warm):
            return f"{where}: a larger batch gets a larger rate: base_lr * batch / base_batch, not its inverse"
        if warmup and step < warmup and close(peak * step / warmup):
            return (f"{where}: steps are 0-based, so the first step already takes peak / warmup_steps "
                    "(peak * (step + 1) / warmup_steps), and step warmup_steps - 1 reaches the peak")
        if warmup and step >= warmup and close(peak * (step + 1) / warmup):
            return f"{where}: the warm-up ends at warmup_steps: hold the rate at the peak after it"
        if warmup and step < warmup and close(base_lr + (peak - base_lr) * (step + 1) / warmup):
            return f"{where}: here the warm-up starts from 0 (peak * (step + 1) / warmup_steps), not from base_lr"
        return where
    return None


def gradient_ratio(fn) -> str | None:
    cases = [(0.5, 0, "k = 0: the last step itself"), (0.5, 1, "one step back"), (0.9, 10, "a = 0.9, 10 steps"),
             (-0.8, 3, "a negative a (a size, so its absolute value)"), (1.1, 20, "a > 1: exploding"),
             (0.5, 3, "a hand-made case: 0.5^3 = 0.125")]
    for a, k, what in cases:
        want = ref.gradient_ratio(a, k)
        try:
            got = float(_attempt(lambda: fn(a, k), f"{what} (a={a}, k={k})"))
        except _Raised as e:
            return str(e)
        if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
            continue
        where = f"{what} (a={a}, k={k}): expected {want:.6g}, got {got:.6g}"
        if math.isclose(got, a * k, rel_tol=1e-9) or math.isclose(got, abs(a) * k, rel_tol=1e-9):
            return f"{where}: the factors multiply, one per step: a ** k, not a * k"
        if k and math.isclose(got, abs(a) ** (k + 1), rel_tol=1e-9):
            return f"{where}: k steps back is k one-step factors, a ** k (not k + 1)"
        if a < 0 and math.isclose(got, a ** k, rel_tol=1e-9):
            return f"{where}: the ratio of sizes is positive: use |a| ** k"
        return where
    return None


def magnitude_mask(fn) -> str | None:
    g = torch.Generator().manual_seed(52)
    hand = torch.tensor([[0.1, -3.0], [2.0, -0.5]])
    cases = [(hand, 0.5, "a hand-made 2x2 matrix: keep -3.0 and 2.0"),
             (torch.tensor([4.0, -5.0, 1.0, -0.2, 3.0]), 0.4, "large negative weights count by their size"),
             (torch.randn(16, 4, generator=g), 0.25, "a 16 x 4 matrix (an LSTM's 4 gate blocks of 4 units)"),
             (torch.randn(8, 8, generator=g), 1.0, "density 1 keeps everything"),
             (torch.randn(10, 10, generator=g), 0.05, "density 0.05 of 100 entries: 5 kept")]
    for w, density, what in cases:
        want = ref.magnitude_mask(w, density)
        try:
            got = _attempt(lambda: fn(w.clone(), density), f"{what} (density={density})")
        except _Raised as e:
            return str(e)
        where = f"{what} (density={density})"
        if not isinstance(got, torch.Tensor):
            return f"{where}: return a tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(w.shape):
            return f"{where}: the mask has the weight's shape {tuple(w.shape)}, got {tuple(got.shape)}"
        got = got.detach().float().cpu()
        if not bool(((got == 0) | (got == 1)).all()):
            return f"{where}: a mask holds only 0.0 and 1.0"
        keep = int(want.sum())
        if int(got.sum()) != keep:
            return f"{where}: keep round(density * numel) = {keep} entries, got {int(got.sum())}"
        if torch.equal(got, want):
            continue
        a = w.abs()
        if keep < w.numel() and float(a[got.bool()].min()) >= float(a[~got.bool()].max()):
            continue  # a tie broken another way
        by_value = torch.zeros(w.numel())
        by_value[w.flatten().topk(keep).indices] = 1.0
        if torch.equal(got.flatten(), by_value):
            return f"{where}: rank by magnitude |w|, not by value: a weight of -3 matters more than one of 2"
        smallest = torch.zeros(w.numel())
        smallest[a.flatten().topk(keep, largest=False).indices] = 1.0
        if torch.equal(got.flatten(), smallest):
            return f"{where}: you kept the smallest weights; magnitude pruning keeps the largest |w|"
        return f"{where}: expected {want.tolist()}, got {got.tolist()}"
    return None


def segment_means(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    # by hand: 5 frames holding 0, 1, 2, 3, 4 in 2 segments: frames (0, 1, 2) and (3, 4), means 1 and 3.5
    by_hand = torch.arange(5.0).view(1, 5, 1)
    if not torch.equal(ref.segment_means(by_hand, 2), torch.tensor([[[1.0], [3.5]]])):
        raise AssertionError("the reference solution disagrees with the worked example")
    cases = [(by_hand, 2, "the hand-made case 0, 1, 2, 3, 4 in 2 segments (means 1 and 3.5)"),
             (torch.randn(3, 8, 4, generator=g), 3, "8 frames in 3 segments (3, 3, 2)"),
             (torch.randn(2, 7, 5, generator=g), 3, "7 frames in 3 segments (3, 2, 2)"),
             (torch.randn(2, 6, 3, generator=g), 4, "6 frames in 4 segments (2, 2, 1, 1)"),
             (torch.randn(2, 6, 3, generator=g), 1, "one segment: the mean over all frames"),
             (torch.randn(1, 4, 2, generator=g), 4, "as many segments as frames: the frames themselves")]
    for f, s, what in cases:
        want = ref.segment_means(f, s)
        try:
            got = _attempt(lambda: fn(f.clone(), s), f"{what}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            hint = (": torch.chunk gives fewer chunks than asked when they do not divide evenly; torch.tensor_split "
                    "gives exactly `segments`" if isinstance(got, torch.Tensor) and got.ndim == 3 and got.shape[1] < s
                    else "")
            return f"{what}: return [B, segments, F] = {list(want.shape)}, got {shape}{hint}"
        got = got.detach().to(want.dtype)
        if torch.allclose(got, want, atol=1e-5):
            continue
        T = f.shape[1]

        def means(sizes):
            return torch.stack([c.mean(1) for c in torch.split(f, sizes, dim=1)], 1)

        chunks = [c.shape[1] for c in torch.chunk(f, s, dim=1)]
        if len(chunks) == s and torch.allclose(got, means(chunks), atol=1e-5):
            return (f"{what}: your segments have {chunks} frames (torch.chunk's sizes); the lengths must differ by at "
                    "most one, the longer first, as torch.tensor_split cuts them")
        if T % s and torch.allclose(got, means([T // s] * (s - 1) + [T - T // s * (s - 1)]), atol=1e-5):
            return f"{what}: the leftover frames all went to the last segment; spread them, one each, over the first ones"
        if T % s and torch.allclose(got, means([T // s] * s + [T % s])[:, :s], atol=1e-5):
            return f"{what}: the last {T % s} frame(s) were dropped; every frame belongs to a segment"
        sizes_desc = [c.shape[1] for c in torch.tensor_split(f, s, dim=1)]
        if torch.allclose(got, means(list(reversed(sizes_desc))), atol=1e-5):
            return f"{what}: the shorter segments come last, not first"
        sizes = torch.tensor(sizes_desc, dtype=want.dtype)
        if torch.allclose(got, want * sizes[None, :, None], atol=1e-5):
            return f"{what}: these are the segments' sums; divide each by its number of frames"
        return f"{what}: the values differ from the segment means by up to {float((got - want).abs().max()):.3g}"
    return None


def caption_loss(fn) -> str | None:
    V = 7
    g = torch.Generator().manual_seed(0)
    tok_a = torch.tensor([[1, 4, 5, 2, 0, 0], [1, 3, 2, 0, 0, 0]])      # two captions of different lengths
    tok_b = torch.tensor([[1, 6, 6, 6, 5, 2]])                           # no padding at all
    bias = torch.linspace(-1, 2, V)
    hand_logits = bias.expand(1, 1, V).clone()                           # one step, constant scores
    hand_tok = torch.tensor([[1, 2]])                                    # <bos> -> <eos>
    hand = torch.logsumexp(bias, 0) - bias[2]                            # -log softmax(bias)[<eos>]
    cases = [(torch.randn(2, 5, V, generator=g), tok_a, "two captions with padding", None),
             (torch.randn(1, 5, V, generator=g), tok_b, "one caption without padding", None),
             (hand_logits, hand_tok, "a hand-made case: one step, scores linspace(-1, 2, 7), target <eos> (id 2)",
              hand)]
    for logits, tokens, what, want in cases:
        want = ref.caption_loss(logits, tokens) if want is None else want
        try:
            got = _attempt(lambda: fn(logits.clone(), tokens.clone()), f"{what} (logits {list(logits.shape)}, "
                           f"tokens {tokens.tolist()})")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return f"{what}: return a scalar tensor, got {type(got).__name__}" + (
                f" of shape {list(got.shape)}" if isinstance(got, torch.Tensor) else "")
        if torch.allclose(got.float(), torch.as_tensor(want).float(), atol=1e-5):
            continue
        where = f"{what}: expected {float(want):.5f}, got {float(got):.5f}"
        target = tokens[:, 1:]
        flat = logits.reshape(-1, V)
        if math.isclose(float(got), float(F.cross_entropy(flat, target.reshape(-1))), rel_tol=1e-5):
            return f"{where}: padding targets (id 0) are counted; leave them out (ignore_index=0)"
        if math.isclose(float(got), float(F.cross_entropy(flat, tokens[:, :-1].reshape(-1), ignore_index=0)),
                        rel_tol=1e-5):
            return f"{where}: the targets are the NEXT words, tokens[:, 1:], not tokens[:, :-1] (the inputs)"
        per = F.cross_entropy(flat, target.reshape(-1), ignore_index=0, reduction="none").view_as(target)
        real = (target != 0).float()
        by_caption = ((per * real).sum(1) / real.sum(1)).mean()
        if len(tokens) > 1 and math.isclose(float(got), float(by_caption), rel_tol=1e-5):
            return f"{where}: that is the mean over captions of each caption's mean; average over all real words"
        if math.isclose(float(got), float((per * real).sum()), rel_tol=1e-5):
            return f"{where}: that is the sum; return the mean over the real target words"
        return where
    return None


def clip_loss(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)  # noqa: E731
    eye = torch.eye(3, dtype=torch.float64)
    same = unit(1, 4).expand(6, 4).clone()
    cases = [("3 one-hot pairs, logit_scale 0", eye, eye.clone(), 0.0, math.log(math.e + 2) - 1),   # closed form
             ("6 identical pairs, logit_scale 2", same, same.clone(), 2.0, math.log(6)),           # every pair alike
             ("5 random pairs, logit_scale log(1/0.07)", unit(5, 8), unit(5, 8), math.log(1 / 0.07), None),
             ("4 pairs, logit_scale 1.5", unit(4, 3), unit(4, 3), 1.5, None)]
    for where, img, txt, scale, exact in cases:
        want = float(ref.clip_loss(img, txt, scale)) if exact is None else exact
        try:
            got = _attempt(lambda: fn(img.clone(), txt.clone(), scale), f"for {where}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return (f"for {where} return one number as a tensor (the mean loss), got "
                    f"{getattr(got, 'shape', type(got).__name__)}")
        got = float(got)
        if abs(got - want) <= 1e-5 * max(1.0, abs(want)):
            continue
        s = math.exp(scale) * img @ txt.T
        t = torch.arange(len(img))
        rows, cols = float(F.cross_entropy(s, t)), float(F.cross_entropy(s.T, t))
        if abs(rows - cols) > 1e-6 and (abs(got - rows) < 1e-5 or abs(got - cols) < 1e-5):
            return (f"for {where} you gave one direction only: average the cross-entropy over rows (image to text) "
                    "and over columns (text to image)")
        if abs(got - len(img) * want) < 1e-5 * len(img):
            return f"for {where} the loss was summed over the pairs: take the mean over the batch"
        plain = scale * img @ txt.T
        if abs(got - (float(F.cross_entropy(plain, t)) + float(F.cross_entropy(plain.T, t))) / 2) < 1e-5:
            return f"for {where} the similarities were multiplied by logit_scale itself: the scale is exp(logit_scale)"
        bare = img @ txt.T
        if abs(got - (float(F.cross_entropy(bare, t)) + float(F.cross_entropy(bare.T, t))) / 2) < 1e-5:
            return f"for {where} the similarities were not scaled: multiply them by exp(logit_scale) first"
        return f"for {where} expected {want:.6f}, got {got:.6f}"
    return None


def skff_fuse(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    two = torch.stack([torch.full((1, 2, 2, 2), 1.0), torch.full((1, 2, 2, 2), 3.0)])  # streams of 1s and 3s
    cases = [(two, torch.zeros(2, 1, 2), "a hand-made case: equal scores average the streams (2.0 everywhere)"),
             (two, torch.tensor([[[0.0, 100.0]], [[100.0, 0.0]]]),
              "a hand-made case: channel 0 takes stream 1 (3.0), channel 1 stream 0 (1.0)"),
             (torch.randn(3, 2, 4, 5, 5, generator=g), torch.randn(3, 2, 4, generator=g), "three streams, random"),
             (torch.randn(2, 3, 1, 3, 3, generator=g), torch.randn(2, 3, 1, generator=g), "one channel"),
             (torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 2, 3, generator=g), "a single stream: itself")]
    for streams, scores, what in cases:
        want = ref.skff_fuse(streams, scores)
        try:
            got = _attempt(lambda: fn(streams.clone(), scores.clone()), f"{what} (streams {tuple(streams.shape)})")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor):
            return f"{what}: return a tensor [B, C, H, W], got {type(got).__name__}"
        if got.shape != want.shape:
            return f"{what}: expected shape {tuple(want.shape)} ([B, C, H, W]), got {tuple(got.shape)}"
        if torch.allclose(got.float(), want, atol=1e-5):
            continue
        close = lambda v: v.shape == got.shape and torch.allclose(got.float(), v, atol=1e-5)  # noqa: E731
        where = f"{what}: wrong values"
        if scores.shape[2] > 1 and close((torch.softmax(scores, 2)[..., None, None] * streams).sum(0)):
            return f"{where}: the softmax runs across the streams (dim 0 of scores), not across the channels"
        if close(streams.sum(0)) or close(streams.mean(0)):
            return f"{where}: weight the streams by the softmax of their scores, not all alike"
        if close((torch.sigmoid(scores)[..., None, None] * streams).sum(0)):
            return f"{where}: a softmax across the streams (weights summing to 1), not a sigmoid per stream"
        if close((scores[..., None, None] * streams).sum(0)):
            return f"{where}: turn the scores into weights with a softmax across the streams first"
        return (f"{where}: expected {want.flatten()[:4].tolist()}..., got {got.flatten()[:4].tolist()}... (the weights "
                "[n, B, C] multiply the streams [n, B, C, H, W] once given two trailing dimensions: w[..., None, None])")
    return None


def _share_variant(image, cutoff, dc=False, strict=False, corners=False) -> float:
    """Known mistakes of high_frequency_share, to name them: frequency zero in the denominator, radius > cutoff,
    the corners beyond min(H, W) // 2 kept."""
    x = torch.as_tensor(image, dtype=torch.float64)
    h, w = x.shape
    power = torch.fft.fft2(x).abs() ** 2
    fy, fx = torch.fft.fftfreq(h, 1 / h).double(), torch.fft.fftfreq(w, 1 / w).double()
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round()
    keep = torch.ones_like(radius, dtype=torch.bool) if corners else radius <= min(h, w) // 2
    high = keep & ((radius > cutoff) if strict else (radius >= cutoff))
    den = power[keep & (radius >= (0 if dc else 1))].sum()
    return float(power[high].sum() / den) if den > 0 else 0.0


def high_frequency_share(fn) -> str | None:
    def cos(h, w, a, b):
        y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                              indexing="ij")
        return torch.cos(2 * math.pi * (a * y / h + b * x / w))

    g = torch.Generator().manual_seed(0)
    rand = torch.rand(16, 12, generator=g, dtype=torch.float64)
    cases = [(cos(32, 32, 2, 0) + cos(32, 32, 0, 7) + 0.5, 4,
              "a hand-made image: equal cosines at radii 2 and 7 plus a mean of 0.5, cutoff 4 (0.5 by hand)"),
             (cos(32, 32, 3, 4), 5, "one cosine at radius 5 (fy = 3, fx = 4), cutoff 5 (1.0 by hand)"),
             (cos(32, 32, 3, 4), 6, "one cosine at radius 5, cutoff 6 (0.0 by hand)"),
             (rand, 1, "a random 16 x 12 image, cutoff 1"), (rand, 3, "a random 16 x 12 image, cutoff 3"),
             (rand, 6, "a random 16 x 12 image, cutoff 6 (its largest ring)"),
             (torch.full((8, 8), 0.3, dtype=torch.float64), 2, "a constant image (no power away from zero)")]
    for image, cutoff, what in cases:
        want = ref.high_frequency_share(image, cutoff)
        try:
            got = _attempt(lambda: fn(image.clone(), cutoff), what, zero_division=(
                "the function divided by zero: an image with no power away from frequency zero has share 0.0"))
        except _Raised as e:
            return str(e)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return f"{what}: return one number (a float), got {type(got).__name__}"
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        where = f"{what}: expected {want:.6g}, got {got:.6g}"
        if got != got:
            return f"{where}: an image with no power away from frequency zero has share 0.0, not 0 / 0"
        if math.isclose(got, _share_variant(image, cutoff, dc=True), rel_tol=1e-6, abs_tol=1e-9):
            return f"{where}: leave frequency zero (the image's mean) out of the denominator: radius >= 1 only"
        if math.isclose(got, _share_variant(image, cutoff, strict=True), rel_tol=1e-6, abs_tol=1e-9):
            return f"{where}: count the ring at the cutoff itself: radius >= cutoff, not > cutoff"
        if math.isclose(got, _share_variant(image, cutoff, corners=True), rel_tol=1e-6, abs_tol=1e-9):
            return f"{where}: keep only the radii up to min(H, W) // 2; the corners of the spectrum beyond are left out"
        return (f"{where}: radii are in cycles per image (torch.fft.fftfreq(H, 1 / H)), rounded to whole numbers, "
                "with frequency zero at index [0, 0] (no fftshift)")
    return None


def predict_by_description(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    cases = [("a hand-made case: class 0 has one descriptor at 0.6, class 1 three at 0.3 (sum 0.9, mean 0.3)",
              [torch.tensor([[0.6]]), torch.tensor([[0.3, 0.3, 0.3]])]),
             ("a hand-made case: class 1's best descriptor is 0.9 but its mean 0.3, class 0's mean 0.5",
              [torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.0, 0.0]])]),
             ("5 images, 3 classes of 1, 4 and 2 descriptors, random",
              [torch.rand(5, d, generator=g) for d in (1, 4, 2)]),
             ("7 images, 4 classes of 3 descriptors each, random", [torch.randn(7, 3, generator=g) for _ in range(4)]),
             ("2 images, one class", [torch.rand(2, 3, generator=g)])]
    answers = []
    for what, sims in cases:
        want = ref.predict_by_description(sims)
        try:
            got = _attempt(lambda: fn([s.clone() for s in sims]), f"for {what}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return (f"for {what}: return one class index per image, a tensor of shape {tuple(want.shape)}, got "
                    f"{getattr(got, 'shape', type(got).__name__)}")
        if got.dtype.is_floating_point:
            return f"for {what}: return class indices (int64, argmax), not scores"
        answers.append(got.long())
    wrong = [i for i, ((_, sims), got) in enumerate(zip(cases, answers))
             if not torch.equal(got, ref.predict_by_description(sims))]
    if not wrong:
        return None
    what = cases[wrong[0]][0]
    mistakes = [(lambda s: s.sum(1), "you summed each class's similarities; take their mean, or a class with more "
                                     "descriptors wins just by having more"),
                (lambda s: s.amax(1), "you took each class's best descriptor; the score is the mean over all of them"),
                (lambda s: -s.mean(1), "you picked the class with the lowest mean similarity; the highest wins")]
    for score, message in mistakes:
        if all(torch.equal(got, torch.stack([score(s) for s in sims], 1).argmax(1))
               for (_, sims), got in zip(cases, answers)):
            return f"for {what}: {message}"
    return (f"for {what}: expected {ref.predict_by_description(cases[wrong[0]][1]).tolist()}, "
            f"got {answers[wrong[0]].tolist()}")


def edge_mask(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0                                             # a vertical step: gradients 0.5 in columns 3, 4
    one = torch.zeros(1, 3, 8, 8)
    one[:, 0, :, 4:] = 1.0
    faint = torch.rand(3, 3, 12, 12, generator=g)
    faint[1] *= 0.01
    cases = [(step, 0.75, "a hand-made case: a vertical step edge (the mask: columns 3 and 4)"),
             (step, 0.8, "a hand-made case: the step image at quantile 0.8 (the quantile is the edge's own "
                         "magnitude: no pixel strictly above it)"),
             (one, 0.5, "an edge in one channel of three (the grey image is the channel mean)"),
             (faint, 0.75, "three random images, the second one faint"),
             (torch.rand(2, 1, 9, 7, generator=g), 0.5, "one channel, 9x7 pixels")]
    for images, q, what in cases:
        want = ref.edge_mask(images, q)
        try:
            got = _attempt(lambda: fn(images.clone(), q), f"{what} (images {tuple(images.shape)}, quantile {q})")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor):
            return f"{what}: return a bool tensor [N, H, W], got {type(got).__name__}"
        if got.shape != want.shape:
            return (f"{what}: expected shape {tuple(want.shape)} ([N, H, W]: one mask per image, the channels "
                    f"averaged first), got {tuple(got.shape)}")
        got = got.bool()
        if torch.equal(got, want):
            continue
        where = f"{what}: {int((got != want).sum())} of {want.numel()} pixels wrong"
        gy, gx = torch.gradient(images.float().mean(1), dim=(1, 2))
        mag = torch.sqrt(gx ** 2 + gy ** 2)
        level = torch.quantile(mag.flatten(1), q, dim=1)[:, None, None]
        l1 = gx.abs() + gy.abs()
        if torch.equal(got, mag >= level):
            return f"{where}: keep the pixels strictly above the quantile (>), not at or above it (>=)"
        if torch.equal(got, mag > torch.quantile(mag.flatten(), q)):
            return f"{where}: take each image's own quantile of its H * W magnitudes, not one over the whole batch"
        if torch.equal(got, l1 > torch.quantile(l1.flatten(1), q, dim=1)[:, None, None]):
            return f"{where}: the gradient magnitude is sqrt(gx² + gy²), not |gx| + |gy|"
        if torch.equal(got, mag < level) or torch.equal(got, mag <= level):
            return f"{where}: mark the strong gradients (above the quantile), not the weak ones"
        return (f"{where}: the grey image is the mean over the channels; torch.gradient(grey, dim=(1, 2)) gives the "
                "gradients along the rows and the columns; threshold sqrt(gx² + gy²) at each image's torch.quantile")
    return None


def receptive_field(fn) -> str | None:
    cases = [([], 1, "no layers: one pixel sees itself"),
             ([(3, 1)], 3, "a hand-made case: one 3x3 convolution sees 3 pixels"),
             ([(3, 1), (3, 1)], 5, "a hand-made case: two 3x3 convolutions of stride 1 see 5 pixels"),
             ([(3, 2), (3, 1)], 7, "a hand-made case: a 3x3 of stride 2, then a 3x3: the second widens by 2 x 2"),
             ([(7, 2), (3, 2), (3, 1), (3, 1)], 27, "a ResNet-like stem: 7x7/2, 3x3 pool/2, two 3x3"),
             ([(3, 1), (3, 2), (3, 1), (3, 2), (3, 1), (1, 1)], 1 + 2 + 2 + 4 + 4 + 8 + 0,
              "a CIFAR-ResNet-like stack with a 1x1 at the end (a 1x1 adds nothing)"),
             ([(5, 1)] * 4, 17, "four 5x5 convolutions")]
    for layers, want, what in cases:
        try:
            got = _attempt(lambda: fn(list(layers)), f"{what} (layers {layers})")
        except _Raised as e:
            return str(e)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != int(got):
            return f"{what}: return a whole number of pixels (an int), got {got!r}"
        got = int(got)
        if got == want:
            continue
        jump_after, size_after = 1, 1
        for kernel, stride in layers:       # the usual slip: multiplying by the strides including this layer's
            jump_after *= stride
            size_after += (kernel - 1) * jump_after
        if layers and got == size_after and size_after != want:
            return (f"{what}: expected {want}, got {got}: a layer widens the view by (kernel - 1) times the product "
                    "of the strides of the layers BEFORE it, not including its own stride")
        if layers and got == 1 + sum(k - 1 for k, _ in layers):
            return (f"{what}: expected {want}, got {got}: the strides matter: after a stride-2 layer each further "
                    "step of kernel covers 2 input pixels (multiply kernel - 1 by the product of earlier strides)")
        if not layers and got == 0:
            return f"{what}: expected 1, got 0: start from 1 (with no layers an output pixel is an input pixel)"
        if layers and got == sum(k for k, _ in layers):
            return f"{what}: expected {want}, got {got}: the kernels overlap: each adds kernel - 1, and start from 1"
        return f"{what}: expected {want} pixels, got {got}"
    return None


def residual_codes(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    books = torch.tensor([[[-8.0], [0.0], [8.0]], [[-1.0], [0.0], [1.0]]], dtype=torch.float64)  # by hand
    hand = torch.tensor([[7.0], [-9.2], [0.7]], dtype=torch.float64)      # 8 - 1, -8 - 1, 0 + 1 (codes below)
    rand_books = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) / torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1)
    cases = [("3 one-dimensional vectors, codebooks {-8, 0, 8} then {-1, 0, 1}", hand, books,
              torch.tensor([[2, 0], [0, 0], [1, 2]])),
             ("6 random 4-d vectors, 3 levels of 5 codes", torch.randn(6, 4, generator=g, dtype=torch.float64),
              rand_books, None),
             ("20 random 4-d vectors, one level (plain vector quantization)",
              torch.randn(20, 4, generator=g, dtype=torch.float64), rand_books[:1], None)]
    for where, x, cb, exact in cases:
        want = ref.residual_codes(x, cb) if exact is None else exact
        try:
            got = _attempt(lambda: fn(x.clone(), cb.clone()), f"for {where}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"for {where}: return a tensor of codes [N, D] = {list(want.shape)}, got "
                    f"{list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        if got.is_floating_point():
            return f"for {where}: the codes are indices: return an integer (int64) tensor, got {got.dtype}"
        if torch.equal(got.long(), want.long()):
            continue
        independent = torch.stack([torch.cdist(x, b).argmin(1) for b in cb], 1)
        if torch.equal(got.long(), independent):
            return (f"for {where}: every level quantized x itself: level d must quantize the residual, x minus the "
                    "codes chosen at the levels before it")
        if torch.equal(got[:, :1].long(), torch.cdist(x, cb[0]).argmax(1)[:, None]):
            return f"for {where}: take the nearest code (argmin of the distance), not the farthest"
        return f"for {where}: expected codes {want.tolist()}, got {got.tolist()}"
    return None


def match_best(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
                         [[-1.0, 0.0], [0.0, -1.0], [0.8, 0.6]]], dtype=torch.float64)
    img = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    cases = [("a hand-made case (2 classes, 3 candidates, 2-d; the answer [1, 2, 2] by hand)", img, text,
              torch.tensor([0, 1, 1]), torch.tensor([1, 2, 2])),
             ("6 random images, 3 classes of 5 candidates, 4-d", torch.randn(6, 4, generator=g, dtype=torch.float64),
              torch.randn(3, 5, 4, generator=g, dtype=torch.float64), torch.tensor([2, 0, 1, 1, 2, 0]), None),
             ("10 random images, 4 classes of 48 candidates, 8-d", torch.randn(10, 8, generator=g, dtype=torch.float64),
              torch.randn(4, 48, 8, generator=g, dtype=torch.float64), torch.randint(4, (10,), generator=g), None)]
    for what, i, t, lab, exact in cases:
        want = ref.match_best(i, t, lab) if exact is None else exact
        try:
            got = _attempt(lambda: fn(i.clone(), t.clone(), lab.clone()), f"for {what}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return (f"for {what} return a tensor [N] of candidate indices, one per image, got "
                    f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        if torch.equal(got.long(), want):
            continue
        sims = torch.einsum("nd,cmd->ncm", i, t)                                   # [N, C, M]
        where = f"for {what} expected {want.tolist()}, got {got.long().tolist()}"
        best_any = sims.flatten(1).argmax(1)
        if torch.equal(got.long(), best_any) or torch.equal(got.long(), best_any % t.shape[1]):
            return (f"{where}: the best candidate of the image's own class (text_embeddings[labels]), not the best "
                    "over every class's candidates: the label keeps the description on the right class")
        if torch.equal(got.long(), sims[torch.arange(len(i)), lab].argmin(1)):
            return f"{where}: take the candidate with the largest similarity, not the smallest"
        if torch.equal(got.long(), sims[:, 0].argmax(1)):
            return f"{where}: every image was matched against the first class's candidates: index by its label"
        return where
    return None


def blind_answers(fn) -> str | None:
    import random

    from ..data.maps import ANSWERS
    order = list(ANSWERS)
    tq = ["is there water"] * 3 + ["is there a road"] * 2 + ["how many roads are there"] * 3 + [
        "what is the area of water"]
    ta = ["no", "yes", "no", "yes", "no", "1", "2", "2", "small"]
    cases = [  # (where, train questions, train answers, test questions, expected or None for the reference)
        ("a hand-made case", tq, ta, ["is there water", "how many roads are there", "is there a road"],
         ["no", "2", "yes"]),                                            # a tie: "yes" comes before "no" in order
        ("a question never asked in training", tq, ta, ["how many buildings are there"], ["no"]),  # overall: no 3x
        ("repeated test questions", tq, ta, ["is there water"] * 3 + ["what is the area of water"],
         ["no", "no", "no", "small"]),
    ]
    g = random.Random(0)
    words = ["is there water", "is there a road", "how many fields are there", "what is the area of roads"]
    qs = [g.choice(words) for _ in range(60)]
    ans = [g.choice(order[:6]) for _ in range(60)]
    cases.append(("60 random training questions", qs, ans, words + ["are there more roads than fields"], None))
    for where, trq, tra, teq, want in cases:
        want = want if want is not None else ref.blind_answers(trq, tra, teq, order)
        try:
            got = _attempt(lambda: fn(list(trq), list(tra), list(teq), list(order)), f"for {where}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, (list, tuple)) or len(got) != len(teq):
            return f"for {where} return a list with one answer per test question ({len(teq)}), got {got!r}"
        got = list(got)
        if got == want:
            continue
        for q, g_, w in zip(teq, got, want):
            if g_ == w:
                continue
            seen = [a for qq, a in zip(trq, tra) if qq == q]
            if not seen:
                return (f"for {where}, the test question {q!r} was never asked in training: answer it with the most "
                        f"frequent training answer overall ({w!r}), got {g_!r}")
            counts = {a: seen.count(a) for a in seen}
            top = max(counts.values())
            tied = [a for a in counts if counts[a] == top]
            if len(tied) > 1 and g_ in tied:
                return (f"for {where}, the answers {tied} tie for {q!r} ({top} time{'s' * (top > 1)} each): take the "
                        f"one that comes first in order ({w!r}), got {g_!r}")
            overall = {a: tra.count(a) for a in tra}
            if g_ == max(overall, key=lambda a: (overall[a], -order.index(a))):
                return (f"for {where}, {q!r} got the most frequent answer overall ({g_!r}): count the answers of the "
                        f"same question only (there it is {w!r})")
            return f"for {where}, the answer to {q!r} should be {w!r} (its most frequent training answer), got {g_!r}"
    return None


def td_layer_norm(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    zeros = torch.zeros(2, 3)
    hand = torch.tensor([[[1.0, 2.0, 3.0]]])                                       # normalized: [-1.2247, 0, 1.2247]
    cases = [(hand, torch.tensor([5]), 10, torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]), zeros, 0.0, 0.0,
              "a hand-made case: w = sigmoid(0) = 0.5, scale 1, no shift: the plain normalized token"),
             (hand, torch.tensor([0]), 10, torch.tensor([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]),
              torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), 0.0, 100.0,
              "a hand-made case: b = 100 makes w = 1, the first scale and shift"),
             (torch.randn(4, 5, 6, generator=g), torch.tensor([1, 250, 500, 1000]), 1000,
              torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g), 3.0, -1.5, "random tokens, T = 1000"),
             (torch.randn(2, 3, 4, generator=g) * 10 + 5, torch.tensor([7, 3]), 8, torch.randn(2, 4, generator=g),
              torch.randn(2, 4, generator=g), -2.0, 0.5, "tokens far from zero mean and unit variance")]
    for x, t, T, gamma, beta, a, b, what in cases:
        want = ref.td_layer_norm(x, t, T, gamma, beta, a, b)
        try:
            got = _attempt(lambda: fn(x.clone(), t.clone(), T, gamma.clone(), beta.clone(), a, b),
                           f"{what} (x {tuple(x.shape)})")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor):
            return f"{what}: return a tensor [B, N, D], got {type(got).__name__}"
        if got.shape != want.shape:
            return f"{what}: expected shape {tuple(want.shape)} ([B, N, D]), got {tuple(got.shape)}"
        if torch.allclose(got.float(), want, atol=1e-4):
            continue
        close = lambda v: v.shape == got.shape and torch.allclose(got.float(), v, atol=1e-4)  # noqa: E731
        where = f"{what}: wrong values"
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=True, keepdim=True)
        w = torch.sigmoid(a * t.float() / T + b)[:, None, None]
        if close((x - mean) / torch.sqrt(var + 1e-5) * (w * gamma[0] + (1 - w) * gamma[1])
                 + (w * beta[0] + (1 - w) * beta[1])):
            return f"{where}: layer norm divides by the biased variance (unbiased=False), not the unbiased one"
        if close(ref.td_layer_norm(x, t, T, gamma.flip(0), beta.flip(0), a, b)):
            return f"{where}: w weighs the FIRST vectors (w * gamma[0] + (1 - w) * gamma[1]); you swapped them"
        if close(ref.td_layer_norm(x, t * T, T, gamma, beta, a, b)):
            return f"{where}: the timestep enters as t / T (a fraction of the schedule), not t itself"
        scale, shift = w * gamma[0] + (1 - w) * gamma[1], w * beta[0] + (1 - w) * beta[1]
        over_tokens = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
        if x.shape[1] > 1 and close(over_tokens * scale + shift):
            return f"{where}: normalize each token over its D features (the last dimension), not over the tokens"
        if close(x * scale + shift):
            return f"{where}: normalize each token first (zero mean, unit variance over D), then scale and shift"
        return (f"{where}: expected {want.flatten()[:4].tolist()}..., got {got.flatten()[:4].tolist()}... "
                "(w = sigmoid(a * t / T + b) is one number per image: shape it [B, 1, 1])")
    return None


def hardest_negative_loss(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)  # noqa: E731
    sim = torch.tensor([[1.0, 0.9, 0.85], [0.0, 1.0, 0.6], [0.95, 0.0, 1.0]], dtype=torch.float64)
    cases = [("3 pairs by hand (img = I, so s = txt.T), margin 0.2", torch.eye(3, dtype=torch.float64), sim.T.clone(),
              0.2, 0.55 / 3),
             ("4 orthogonal pairs, margin 0.2 (no violation)", torch.eye(4, dtype=torch.float64),
              torch.eye(4, dtype=torch.float64), 0.2, 0.0),
             ("5 identical pairs, margin 0.3 (every hinge is the margin)", unit(1, 4).expand(5, 4).clone(), None, 0.3,
              0.6),
             ("6 random pairs, margin 0.2", unit(6, 8), unit(6, 8), 0.2, None),
             ("8 random pairs, margin 0.5", unit(8, 3), unit(8, 3), 0.5, None)]
    for where, img, txt, margin, exact in cases:
        txt = img.clone() if txt is None else txt
        want = float(ref.hardest_negative_loss(img, txt, margin)) if exact is None else exact
        try:
            got = _attempt(lambda: fn(img.clone(), txt.clone(), margin), f"for {where}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return (f"for {where} return one number as a tensor (the mean loss), got "
                    f"{getattr(got, 'shape', type(got).__name__)}")
        got = float(got)
        if abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        s = img @ txt.T
        pos, off = s.diag(), ~torch.eye(len(s), dtype=torch.bool)
        i2t = (margin - pos[:, None] + s).clamp(min=0) * off
        t2i = (margin - pos[None, :] + s).clamp(min=0) * off
        near = lambda v: abs(got - float(v)) < 1e-6 * max(1.0, abs(float(v)))  # noqa: E731
        if near((i2t.sum(1) + t2i.sum(0)).mean()):
            return (f"for {where} you summed the hinge over every negative (the sum of violations): VSE++ keeps "
                    "only the hardest negative of each query, the largest hinge")
        if near(i2t.amax(1).mean()) or near(t2i.amax(0).mean()):
            return (f"for {where} you gave one direction only: add each image's hardest caption and each "
                    "caption's hardest image")
        if near(len(s) * want):
            return f"for {where} the loss was summed over the pairs: take the mean over the batch"
        with_pos_i = (margin - pos[:, None] + s).clamp(min=0).amax(1)
        with_pos_t = (margin - pos[None, :] + s).clamp(min=0).amax(0)
        if near((with_pos_i + with_pos_t).mean()):
            return (f"for {where} the true pair was counted as a negative (its hinge is always the margin): leave "
                    "the diagonal out")
        raw = ((margin - pos[:, None] + s).masked_fill(~off, -math.inf).amax(1)
               + (margin - pos[None, :] + s).masked_fill(~off, -math.inf).amax(0)).mean()
        if near(raw):
            return (f"for {where} the hinge was not clipped at zero: a negative already beaten by the margin "
                    "costs max(0, margin - s_pos + s_neg) = 0, not a negative number")
        return f"for {where} expected {want:.6f}, got {got:.6f}"
    return None


def vild_region_probs(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)  # noqa: E731
    eye = torch.eye(3, dtype=torch.float64)
    cases = [  # hand-made: regions = the 3 axes, classes = axes 1 and 2, background = 2 * axis 0, T = 1
        ("3 axis regions, 2 classes, background 2 * e0, temperature 1", eye, eye[1:], 2 * eye[0], 1.0,
         torch.tensor([[math.e ** 2, 1, 1], [1, math.e, 1], [1, 1, math.e]], dtype=torch.float64)),
        ("5 random regions, 4 classes, temperature 0.05", unit(5, 8), unit(4, 8),
         0.3 * torch.randn(8, generator=g, dtype=torch.float64), 0.05, None),
        ("1 region, 1 class, temperature 0.5", unit(1, 4), unit(1, 4), torch.zeros(4, dtype=torch.float64), 0.5, None)]
    for where, reg, txt, bg, t, exact in cases:
        want = (exact / exact.sum(1, keepdim=True)) if exact is not None else ref.vild_region_probs(reg, txt, bg, t)
        try:
            got = _attempt(lambda: fn(reg.clone(), txt.clone(), bg.clone(), t), f"for {where}")
        except _Raised as e:
            return str(e)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            return (f"for {where} return a tensor [P, 1 + C] = {list(want.shape)} (background first), got "
                    f"{getattr(got, 'shape', type(got).__name__)}")
        got = got.double()
        if torch.allclose(got, want, atol=1e-6):
            continue
        if not torch.allclose(got.sum(1), torch.ones(len(got), dtype=torch.float64), atol=1e-6):
            return (f"for {where}: each row (one region) must sum to 1: the softmax runs over the background and the "
                    "classes, not over the regions")
        if torch.allclose(got, torch.cat([want[:, 1:], want[:, :1]], 1), atol=1e-6) or \
                torch.allclose(got[:, -1], want[:, 0], atol=1e-6):
            return f"for {where}: the background goes in column 0, before the classes"
        logits = torch.cat([bg[None], txt]) @ reg.T
        if torch.allclose(got, logits.T.softmax(1), atol=1e-6):
            return f"for {where}: divide the similarities by the temperature ({t}) before the softmax"
        if torch.allclose(got, (logits.T * t).softmax(1), atol=1e-6):
            return f"for {where}: divide by the temperature ({t}), do not multiply by it"
        nb = torch.cat([F.normalize(bg, dim=0)[None], txt]) @ reg.T
        if bg.norm() > 0 and torch.allclose(got, (nb.T / t).softmax(1), atol=1e-6):
            return (f"for {where}: use the background vector as it is (it is learned, its length matters): do not "
                    "normalize it")
        return f"for {where}: expected {want.numpy().round(4).tolist()}, got {got.numpy().round(4).tolist()}"
    return None
