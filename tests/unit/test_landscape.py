"""Loss landscapes: slices against the state-dict loop, directions, sharpness, plots."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench import landscape as L


def small_resnet():
    torch.manual_seed(0)
    m = wb.create_model("resnet8", width=4)
    # non-trivial running statistics, as after training
    with torch.no_grad():
        m.train()
        for _ in range(3):
            m(torch.randn(32, 3, 32, 32))
    return m.eval()


def batches(n=40, split=(24, 16)):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return [(x[:split[0]], y[:split[0]]), (x[split[0]:], y[split[0]:])]


def naive(model, coords, dirs, data, bn="eval"):
    """The loop a user would write: load perturbed weights into a copy, evaluate."""
    m = copy.deepcopy(model)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = []
    n_total = sum(len(x) for x, _ in data)
    for c in coords:
        sd = m.state_dict()
        for n, t in base.items():
            v = t
            for cj, d in zip(c, dirs):
                v = v + float(cj) * d[n]
            sd[n] = v
        m.load_state_dict(sd)
        m.eval() if bn == "eval" else m.train()
        with torch.no_grad():
            out.append(sum(float(F.cross_entropy(m(x), y)) * len(x) for x, y in data) / n_total)
    return np.array(out)


def state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            {n: p.requires_grad for n, p in model.named_parameters()})


def same_state(model, s):
    sd, training, flags = s
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    assert model.training == training and {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_a_2d_slice_equals_the_state_dict_loop_and_passes_through_the_model():
    model = small_resnet()
    data = batches()
    dx, dy = L.random_direction(model, 0), L.random_direction(model, 1)
    before = state(model)
    alphas = L.grid(0.5, 5)
    land = L.slice_2d(model, dx, dy, data, alphas, progress=False)
    same_state(model, before)
    B, A = np.meshgrid(alphas, alphas, indexing="ij")
    want = naive(model, np.stack([A.ravel(), B.ravel()], 1), [dx, dy], data).reshape(5, 5)
    np.testing.assert_allclose(land.loss, want, rtol=1e-6, atol=0)
    with torch.no_grad():
        own = sum(float(F.cross_entropy(model(x), y)) * len(x) for x, y in data) / 40
    assert land.loss[2, 2] == land.center_loss and land.center_loss == pytest.approx(own, rel=1e-12)
    assert land.bn == "eval" and land.loss.shape == land.acc.shape == (5, 5)
    assert not np.allclose(land.loss, land.loss[2, 2])       # the directions do move the loss


def test_bn_train_mode_uses_batch_statistics_and_leaves_the_running_ones():
    model = small_resnet()
    data = batches()
    d = L.random_direction(model, 0)
    before = state(model)
    land = L.slice_1d(model, d, data, L.grid(0.3, 3), bn="train", progress=False)
    same_state(model, before)
    m = copy.deepcopy(model).train()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.track_running_stats = False
    np.testing.assert_allclose(land.loss, naive(m, L.grid(0.3, 3)[:, None], [d], data, bn="train"), rtol=1e-6)
    assert land.bn == "train"


def test_vectorized_points_match_one_at_a_time():
    model = small_resnet()
    data = batches()
    dx, dy = L.random_direction(model, 0), L.random_direction(model, 1)
    coords = np.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.4], [0.1, 0.1], [1.0, 1.0]])
    a = L.evaluate_points(model, data, coords, [dx, dy], chunk=1)
    b = L.evaluate_points(model, data, coords, [dx, dy], chunk=3)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
    np.testing.assert_allclose(a[1], b[1])


def test_filter_normalization():
    model = small_resnet()
    d = L.random_direction(model, 7)
    for n, p in model.named_parameters():
        if p.dim() <= 1:
            assert torch.count_nonzero(d[n]) == 0, n
        else:
            torch.testing.assert_close(d[n].reshape(len(p), -1).norm(dim=1), p.reshape(len(p), -1).norm(dim=1))
    raw = L.random_direction(model, 7, normalize=None)
    flat = torch.cat([t.reshape(-1) for t in raw.values()])
    assert abs(float(flat.mean())) < 0.05 and 0.9 < float(flat.std()) < 1.1   # zero-mean Gaussian
    assert all(torch.equal(d[k], L.random_direction(model, 7)[k]) for k in d)  # deterministic


def test_interpolation_reaches_the_other_model():
    a, data = small_resnet(), batches()
    torch.manual_seed(5)
    b = wb.create_model("resnet8", width=4).eval()
    for name, buf in a.named_buffers():   # the slice keeps a's BatchNorm statistics
        dict(b.named_buffers())[name].copy_(buf)
    land = L.slice_1d(a, L.interpolation(a, b), data, [0.0, 0.5, 1.0], progress=False)
    with torch.no_grad():
        own_b = sum(float(F.cross_entropy(b(x), y)) * len(x) for x, y in data) / 40
    assert land.loss[2] == pytest.approx(own_b, rel=1e-5)
    assert land.loss[0] == land.center_loss


def test_pca_of_a_straight_trajectory_finds_its_line():
    model = small_resnet()
    d = L.random_direction(model, 0, normalize=None)
    traj = [{n: p.detach() + t * d[n] for n, p in model.named_parameters()} for t in (3.0, 2.0, 1.0, 0.5)]
    dirs, explained, coords = L.pca_directions(model, traj, k=2)
    assert explained[0] > 1 - 1e-9
    unit = L.norm(d)
    cos = sum(float((dirs[0][n] * d[n]).sum()) for n in d) / unit
    assert abs(cos) == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.array([3.0, 2.0, 1.0, 0.5]) * unit, rtol=1e-5)


def test_the_curvature_along_the_top_eigenvector_is_the_top_eigenvalue():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,), generator=g)
    dirs, values = L.hessian_directions(model, F.cross_entropy, [(x, y)], k=1, tol=1e-10, max_steps=60)
    h = 1e-3
    land = L.slice_1d(model, dirs[0], [(x, y)], [-h, 0.0, h], progress=False)
    curvature = (land.loss[0] - 2 * land.loss[1] + land.loss[2]) / h ** 2
    assert curvature == pytest.approx(values[0], rel=1e-4)


def test_worst_case_increase_one_step_is_sams_point_and_more_steps_find_more():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,), generator=g)
    before = state(model)
    one = L.worst_case_increase(model, F.cross_entropy, [(x[:10], y[:10]), (x[10:], y[10:])], rho=0.5)
    same_state(model, before)
    # SAM's point by hand: e = rho g / ||g||
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    gn = torch.sqrt(sum((t ** 2).sum() for t in grads))
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        for p, t in zip(m2.parameters(), grads):
            p.add_(0.5 * t / gn)
    assert one.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    assert one.perturbed_loss == pytest.approx(float(F.cross_entropy(m2(x), y).detach()), rel=1e-10)
    many = L.worst_case_increase(model, F.cross_entropy, [(x, y)], rho=0.5, steps=10)
    assert many.increase >= one.increase - 1e-12 and one.increase > 0
    asam = L.worst_case_increase(model, F.cross_entropy, [(x, y)], rho=0.5, adaptive=True)
    assert asam.adaptive and asam.increase > 0


@pytest.mark.parametrize("make, match", [
    (lambda m: {k: v[..., :1] for k, v in L.random_direction(m).items()}, "shape"),
    (lambda m: dict(list(L.random_direction(m).items())[1:]), "lacks"),
    (lambda m: {**L.random_direction(m), "extra.weight": torch.zeros(1)}, "does not have"),
    (lambda m: [1, 2], "dict"),
])
def test_a_direction_that_does_not_fit_the_model_is_refused(make, match):
    model = small_resnet()
    with pytest.raises(ValueError, match=match):
        L.slice_1d(model, make(model), batches(), L.grid(1, 3), progress=False)


def test_bad_grid_and_empty_batches_are_refused():
    model = small_resnet()
    with pytest.raises(ValueError, match="odd"):
        L.grid(1.0, 20)
    with pytest.raises(ValueError, match="empty"):
        L.slice_1d(model, L.random_direction(model), [], progress=False)


def test_plots_build():
    model = small_resnet()
    d0, d1 = L.random_direction(model, 0), L.random_direction(model, 1)
    land = L.slice_2d(model, d0, d1, batches()[:1], L.grid(1, 3), progress=False, label="r8")
    assert land.to_dict()["bn"] == "eval" and L.Landscape.from_dict(land.to_dict()).loss.shape == (3, 3)
    assert len(L.surface(land).data) == 1 and len(L.contour(land, log=True).data) == 2
    assert len(L.lines({"a": land, "b": land}).data) == 2
    fig = L.explorer({"r8": land})          # no widget frontend under pytest: the static first view
    assert fig.data[0].type == "contour"
    with pytest.raises(ValueError, match="2-D"):
        L.surface(L.slice_1d(model, d0, batches()[:1], L.grid(1, 3), progress=False))
