"""Property-based tests (hypothesis) of the metrics: what the theory says must hold for any input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from workbench import multilabel as ml
from workbench import similarity as sim

finite = st.floats(-10, 10, allow_nan=False, width=64)


def _matrix(n_min=4, n_max=24, d_max=12):
    return st.tuples(st.integers(n_min, n_max), st.integers(1, d_max), st.integers(1, d_max)).flatmap(
        lambda s: st.tuples(hnp.arrays(np.float64, (s[0], s[1]), elements=finite),
                            hnp.arrays(np.float64, (s[0], s[2]), elements=finite)))


def _varied(x):
    return np.linalg.norm(x - x.mean(0)) > 1e-3


@settings(max_examples=60, deadline=None)
@given(_matrix(), st.integers(0, 2 ** 31 - 1), st.floats(0.1, 10))
def test_linear_cka_symmetric_bounded_and_invariant(xy, seed, scale):
    x, y = xy
    if not (_varied(x) and _varied(y)):
        return
    a, b = torch.tensor(x), torch.tensor(y)
    v = float(sim.linear_cka(a, b))
    assert -1e-9 <= v <= 1 + 1e-9
    assert v == pytest.approx(float(sim.linear_cka(b, a)), abs=1e-9)
    # an orthogonal map and an isotropic scale of one side leave CKA unchanged
    q, _ = torch.linalg.qr(torch.randn(a.shape[1], a.shape[1], generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    assert float(sim.linear_cka(scale * a @ q, b)) == pytest.approx(v, abs=1e-7)
    # so does a translation (CKA centers the features)
    assert float(sim.linear_cka(a + 3.0, b)) == pytest.approx(v, abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(_matrix())
def test_cka_of_a_representation_with_itself_is_one(xy):
    x, _ = xy
    if not _varied(x):
        return
    assert float(sim.linear_cka(torch.tensor(x), torch.tensor(x))) == pytest.approx(1.0, abs=1e-9)


label_lists = st.lists(st.lists(st.integers(0, 999), max_size=4, unique=True), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None)
@given(label_lists, st.data())
def test_real_accuracy_permutation_invariant_and_in_unit_interval(lists, data):
    n = len(lists)
    idx = data.draw(st.lists(st.integers(0, ml.N_VAL - 1), min_size=n, max_size=n, unique=True))
    names = np.array([ml.val_filename(i) for i in idx])
    sets = ml.LabelSets.from_lists(lists, names, source="drawn")
    pred = np.array(data.draw(st.lists(st.integers(0, 999), min_size=n, max_size=n)))
    perm = np.array(data.draw(st.permutations(range(n))))
    a = ml.real_accuracy(pred, names, labels=sets)
    b = ml.real_accuracy(pred[perm], names[perm], labels=sets)
    if any(lists):
        assert 0.0 <= a <= 1.0 and a == b
        # predicting a member of every non-empty set scores exactly 1
        perfect = np.array([s[0] if s else 0 for s in lists])
        assert ml.real_accuracy(perfect, names, labels=sets) == 1.0
    else:
        assert np.isnan(a) and np.isnan(b)
