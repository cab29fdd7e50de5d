"""Poincaré ResNet layers (van Spengler, Berkhout & Mettes, ICCV 2023): exact and known answers."""
import math

import geoopt
import geoopt.manifolds.stereographic.math as gmath
import pytest
import torch
import torch.nn.functional as F

import workbench as wb
import workbench.models.poincare_resnet as P  # registers the poincare_resnet* models
from workbench.models import create_model, hook_points, list_models
from workbench.probe import run_with_cache

D = torch.float64


def _points(*shape, scale=1.0, c=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return P.expmap0(torch.randn(*shape, generator=g, dtype=D) * scale, c, dim=-1)


def _k(c):
    return torch.tensor(-c, dtype=D)


# --- the ball's operations agree with geoopt's and stay in the ball ------------------------------------------------
@pytest.mark.parametrize("c", [0.1, 1.0, 3.0])
def test_operations_agree_with_geoopt(c):
    x, y = _points(40, 6, scale=1.5, c=c), _points(40, 6, scale=0.7, c=c, seed=1)
    v = torch.randn(40, 6, dtype=D)
    k = _k(c)
    assert torch.allclose(P.mobius_add(x, y, c), gmath.mobius_add(x, y, k=k), atol=1e-12)
    assert torch.allclose(P.expmap0(v, c), gmath.expmap0(v, k=k), atol=1e-12)
    assert torch.allclose(P.logmap0(x, c), gmath.logmap0(x, k=k), atol=1e-9)
    assert torch.allclose(P._logmap(y[:1], x, c, -1), gmath.logmap(y[:1], x, k=k), atol=1e-9)
    assert torch.allclose(P._expmap(y[:1], 0.3 * v, c, -1), gmath.expmap(y[:1], 0.3 * v, k=k), atol=1e-12)
    assert torch.allclose(P.poincare_midpoint(x, c, -1, 0), gmath.weighted_midpoint(x, k=k, reducedim=[0]), atol=1e-12)
    far = torch.randn(40, 6, dtype=D) * 10
    assert torch.allclose(P._project(far, c), gmath.project(far, k=k), atol=1e-12)


@pytest.mark.parametrize("c", [0.1, 1.0, 5.0])
def test_every_operation_maps_the_ball_into_the_ball(c):
    torch.manual_seed(0)
    radius = 1 / math.sqrt(c)
    x = _points(2, 4, 6, 6, scale=1.0, c=c).permute(0, 3, 1, 2).contiguous()  # [2, 6, 4, 6] float64, up to 0.99 r
    ops = {  # the ball's operations, in float64
        "mobius_add": P.mobius_add(x, x.flip(0), c, dim=1),
        "relu": P.poincare_relu(x, c),
        "midpoint": P.poincare_midpoint(x, c, dim=1, reducedim=(0, 2, 3), keepdim=True),
        "frechet": P.frechet_mean(x, c, dim=1, reducedim=(0, 2, 3), keepdim=True),
        "beta_concat": P.beta_concat([x, x[:, :2]], c, dim=1),
        "fc": P.poincare_fc(x.movedim(1, -1), torch.randn(6, 4, dtype=D) * 0.3, torch.randn(4, dtype=D) * 0.3,
                            c).movedim(-1, 1),
        "conv": P.poincare_conv2d(x, torch.randn(54, 5, dtype=D) * 0.3, torch.randn(5, dtype=D) * 0.3, c, 3, 1, 1),
    }
    xf = _points(2, 4, 6, 6, scale=6.0, c=c).permute(0, 3, 1, 2).contiguous().float()  # float32, at the edge
    layers = {  # the layers project their outputs back inside the ball, also in float32
        "conv3x3": P.PoincareConv2d(6, 5, 3, c=c, init="standard")(xf),
        "conv_identity": P.PoincareConv2d(6, 8, 3, stride=2, c=c)(xf),
        "linear": P.PoincareLinear(6, 3, c=c, init="standard")(xf.movedim(1, -1)).movedim(-1, 1),
        "batchnorm": P.PoincareBatchNorm2d(6, c)(xf),
        "frechet_bn": P.PoincareBatchNorm2d(6, c, mean="frechet")(xf),
        "block": P.PoincareBasicBlock(6, 6, c=c)(xf),
    }
    for name, y in {**ops, **layers}.items():
        assert torch.isfinite(y).all(), name
        assert float(y.detach().norm(dim=1).max()) < radius, f"{name} left the ball of radius {radius}"


# --- beta-concatenation and the convolution ---------------------------------------------------------------------------
def test_beta_ratio_closed_forms():
    assert P.beta_ratio(7, 7) == 1.0
    assert math.isclose(P.beta_ratio(2, 1), 2 / math.pi, rel_tol=1e-12)  # B(1, 1/2) = 2, B(1/2, 1/2) = pi
    assert math.isclose(P.beta_ratio(4, 2), (4 / 3) / 2, rel_tol=1e-12)  # B(2, 1/2) = 4/3, B(1, 1/2) = 2
    x = _points(5, 4)
    assert torch.allclose(P.beta_concat([x], 1.0), x, atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        P.beta_ratio(0, 1)


@pytest.mark.parametrize("k,stride,padding,c", [(3, 1, 1, 1.0), (3, 2, 1, 0.3), (1, 2, 0, 2.0), (3, 1, 0, 1.0)])
def test_fused_convolution_equals_unfold_beta_concat_fc(k, stride, padding, c):
    torch.manual_seed(0)
    x = _points(2, 7, 7, 4, scale=1.2, c=c).permute(0, 3, 1, 2)  # [2, 4, 7, 7]
    z, r = torch.randn(k * k * 4, 5, dtype=D) * 0.3, torch.randn(5, dtype=D) * 0.2
    fused = P.poincare_conv2d(x, z, r, c, k, stride, padding, fused=True)
    literal = P.poincare_conv2d(x, z, r, c, k, stride, padding, fused=False)
    # the literal path, written out once more here: unfold log_0, scale by beta, exp_0, the FC layer
    u = F.unfold(P.logmap0(x, c, dim=1) * P.beta_ratio(k * k * 4, 4), k, padding=padding, stride=stride)
    by_hand = P.poincare_fc(P.expmap0(u.transpose(1, 2), c), z, r, c).transpose(1, 2).reshape(literal.shape)
    side = (7 + 2 * padding - k) // stride + 1
    assert fused.shape == literal.shape == (2, 5, side, side)
    assert torch.allclose(literal, by_hand, atol=1e-13)
    assert torch.allclose(fused, literal, atol=1e-10)


# --- the Euclidean limit c -> 0 -------------------------------------------------------------------------------------
def test_curvature_to_zero_gives_the_euclidean_layers():
    torch.manual_seed(0)
    c = 1e-9
    x, y = torch.randn(6, 5, dtype=D) * 0.5, torch.randn(6, 5, dtype=D) * 0.5
    assert torch.allclose(P.mobius_add(x, y, c), x + y, atol=1e-7)  # the residual connection
    z, r = torch.randn(5, 3, dtype=D), torch.randn(3, dtype=D) * 0.1
    assert torch.allclose(P.poincare_fc(x, z, r, c), 2 * x @ z - 2 * r * z.norm(dim=0), atol=1e-6)
    assert torch.allclose(P.poincare_midpoint(x, c, -1, 0), x.mean(0), atol=1e-7)
    assert torch.allclose(P.frechet_mean(x, c, iters=3), x.mean(0), atol=1e-7)
    imgs = torch.randn(2, 3, 6, 6, dtype=D) * 0.5
    zc = torch.randn(27, 4, dtype=D) * 0.3
    rho = P.beta_ratio(27, 3)
    euclid = F.conv2d(imgs, P._conv_weight(2 * rho * zc, 3, 3), stride=2, padding=1)
    assert torch.allclose(P.poincare_conv2d(imgs, zc, torch.zeros(4, dtype=D), c, 3, 2, 1), euclid, atol=1e-6)
    rc = torch.randn(4, dtype=D) * 0.1
    euclid_b = F.conv2d(imgs, P._conv_weight(2 * rho * zc, 3, 3), bias=-2 * rc * zc.norm(dim=0), padding=1)
    assert torch.allclose(P.poincare_conv2d(imgs, zc, rc, c, 3, 1, 1), euclid_b, atol=1e-6)
    # and at c = 1 they are not: the check above can fail
    assert not torch.allclose(P.poincare_fc(P.expmap0(x), z, r, 1.0), 2 * P.expmap0(x) @ z - 2 * r * z.norm(dim=0),
                              atol=1e-3)


# --- the identity-based initialization -------------------------------------------------------------------------------
def test_identity_fc_is_exactly_the_identity_through_many_layers():
    x = _points(16, 8, scale=1.5)
    h, std = x, x
    for i in range(50):
        h = P.PoincareLinear(8, 8, init="identity").double()(h)
        torch.manual_seed(i)
        std = P.PoincareLinear(8, 8, init="standard").double()(std)
    assert torch.allclose(h, x, atol=1e-10)  # z = I/2, r = 0: y = x exactly
    assert float(std.norm(dim=-1).max()) < 1e-6 * float(x.norm(dim=-1).min())  # HNN++ init: collapsed to the origin
    wide = P.PoincareLinear(8, 12, init="identity").double()
    assert torch.allclose(wide(x)[:, :8] / x, torch.ones_like(x), rtol=0.05)  # the copied coordinates, nearly


def test_identity_1x1_conv_is_exact_and_3x3_is_the_identity_to_first_order():
    x = _points(2, 5, 5, 4, scale=1.0).permute(0, 3, 1, 2).contiguous()  # [2, 4, 5, 5]
    one = P.PoincareConv2d(4, 4, 1, padding=0).double()
    assert torch.allclose(one(x), x, atol=1e-10)
    three = P.PoincareConv2d(4, 4, 3).double()
    small = x * 1e-4
    assert torch.allclose(three(small), small, rtol=1e-5, atol=1e-12)  # centre tap I/(2 rho): identity to first order
    assert not torch.allclose(three(x), x, atol=1e-3)  # and only to first order


def test_identity_init_keeps_norms_where_the_standard_init_collapses():
    imgs = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    ident = P.norms_through_depth(imgs, depth=20, width=8, init="identity", c=0.1)
    std = P.norms_through_depth(imgs, depth=20, width=8, init="standard", c=0.1)
    assert len(ident) == len(std) == 21 and ident[0] == std[0]
    assert all(0.5 * ident[0] < n < 1 / math.sqrt(0.1) for n in ident)  # away from the origin at every depth
    assert std[-1] < 1e-6 * std[0] and all(b < a for a, b in zip(std[1:], std[2:]))  # shrinks at every layer
    assert P.norms_through_depth(imgs, depth=3, init="standard", seed=1) != P.norms_through_depth(imgs, depth=3,
                                                                                                   init="standard")


# --- the two batch norms ---------------------------------------------------------------------------------------------
def test_midpoint_and_frechet_mean_closed_forms():
    c = 0.5
    x = _points(1, 3, c=c)[0]
    pair = torch.stack([x, -x])
    assert torch.allclose(P.poincare_midpoint(pair, c), torch.zeros(3, dtype=D), atol=1e-12)
    assert torch.allclose(P.frechet_mean(pair, c, iters=3), torch.zeros(3, dtype=D), atol=1e-12)
    y = _points(1, 3, c=c, seed=3)[0]
    halfway = gmath.geodesic(torch.tensor(0.5, dtype=D), x, y, k=_k(c))  # two points: both means are the midpoint
    assert torch.allclose(P.poincare_midpoint(torch.stack([x, y]), c), halfway, atol=1e-10)
    assert torch.allclose(P.frechet_mean(torch.stack([x, y]), c, iters=30), halfway, atol=1e-8)


def test_frechet_mean_minimises_the_variance_and_the_midpoint_is_close():
    c = 1.0
    x = P.mobius_add(_points(1, 8, scale=0.5, c=c, seed=7), _points(400, 8, scale=0.6, c=c), c)  # off the origin

    def var(m):
        return float((gmath.dist(m[None], x, k=_k(c)) ** 2).mean())
    fm, mid = P.frechet_mean(x, c, iters=10), P.poincare_midpoint(x, c)
    grad = P._logmap(fm[None], x, c, -1).mean(0)
    assert float(grad.norm()) < 1e-7  # a stationary point of the Fréchet variance (measured 2.5e-9)
    assert var(fm) <= var(mid) and all(var(fm) <= var(fm + 1e-3 * d) for d in torch.eye(8, dtype=D))
    spread = var(fm) ** 0.5
    assert float(gmath.dist(fm, mid, k=_k(c))) < 0.05 * spread  # measured: 0.9% of the spread
    assert var(mid) < 1.001 * var(fm)  # measured: 1.0002


def test_midpoint_and_frechet_batchnorm_give_matching_statistics():
    torch.manual_seed(0)
    c = 0.1
    x = P.mobius_add(_points(1, 1, 1, 6, scale=1.0, c=c, seed=2), _points(8, 5, 5, 6, scale=1.5, c=c), c)
    x = x.permute(0, 3, 1, 2).contiguous()  # [8, 6, 5, 5]
    outs = {}
    for mean in P.BATCHNORMS:
        bn = P.PoincareBatchNorm2d(6, c, mean=mean, iters=10).double()
        y = bn(x)
        tangent = P.logmap0(y, c, dim=1)
        outs[mean] = (y, bn.running_mean.clone(), float(bn.running_var))
        centre = P.poincare_midpoint(y, c, dim=1, reducedim=(0, 2, 3))
        assert float(centre.norm()) < 0.05  # re-centred at the bias, the origin (measured 0.016 and 0.0016)
        assert abs(float(tangent.pow(2).sum(1).mean()) - 1.0) < 0.02  # unit variance in the tangent space
    (ym, rm, vm), (yf, rf, vf) = outs["midpoint"], outs["frechet"]
    # the two normalized batches differ by 0.02 (tangent norm) per point, for points of norm about 1;
    # the running means by 0.003 and the running variances by 0.01%
    assert float((P.logmap0(ym, c, dim=1) - P.logmap0(yf, c, dim=1)).norm(dim=1).mean()) < 0.05
    assert float((rm - rf).norm()) < 0.01 and abs(vm - vf) / vf < 0.01


def test_batchnorm_eval_uses_running_statistics_and_bias_is_a_ball_parameter():
    bn = P.PoincareBatchNorm2d(4, 1.0)
    assert isinstance(bn.bias, geoopt.ManifoldParameter) and isinstance(bn.bias.manifold, geoopt.PoincareBall)
    x = _points(4, 3, 3, 4, scale=0.8).permute(0, 3, 1, 2).float()
    for _ in range(200):  # momentum 0.1: 0.9^200 of the initial statistics remain
        bn(x)
    train_out = bn(x)
    bn.eval()
    assert torch.allclose(bn(x), train_out, atol=1e-4)  # the running statistics converged to the batch's


def test_poincare_dist_and_the_comparison_of_batch_means():
    c = 0.5
    x, y = _points(7, 4, c=c), _points(7, 4, c=c, seed=1)
    assert torch.allclose(P.poincare_dist(x, y, c), gmath.dist(x, y, k=_k(c)), atol=1e-9)
    assert torch.allclose(P.poincare_dist(x, x, c), torch.zeros(7, dtype=D), atol=1e-6)
    model = create_model("poincare_resnet8", width=4).eval()
    table = P.compare_batch_means(model, torch.randn(4, 3, 16, 16), other=torch.randn(4, 3, 16, 16))
    assert len(table) == sum(isinstance(m, P.PoincareBatchNorm2d) for m in model.modules()) == 9
    assert (table.batch_to_batch > 0).all()
    same = P.compare_batch_means(model, torch.ones(2, 3, 8, 8), other=torch.ones(2, 3, 8, 8))
    assert (same.batch_to_batch < 1e-6).all() and "batch_to_batch" not in P.compare_batch_means(
        model, torch.ones(2, 3, 8, 8)).columns
    assert (table.frechet_distance < table.midpoint_distance + 1e-6).all() and (table.relative < 0.2).all()
    assert (table.variance_ratio >= 1 - 1e-9).all()  # the Fréchet mean minimises the variance
    assert not model.training and table.points.iloc[0] == 4 * 16 * 16
    with pytest.raises(ValueError, match="no PoincareBatchNorm2d"):
        P.compare_batch_means(create_model("resnet8"), torch.randn(2, 3, 8, 8))


def test_time_steps_interleaves_the_models():
    models = {"a": create_model("resnet8", width=4), "b": create_model("poincare_resnet8", width=4)}
    t = P.time_steps(models, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), repeats=3)
    assert list(t.model) == ["a", "b"] * 3 and (t.seconds > 0).all()
    assert all(p.grad is None for m in models.values() for p in m.parameters())
    with pytest.raises(ValueError, match="repeats"):
        P.time_steps(models, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), repeats=0)


# --- the model -----------------------------------------------------------------------------------------------------
def test_registered_models_forward_and_backward_on_a_cifar_batch():
    assert {"poincare_resnet", "poincare_resnet8", "poincare_resnet20"} <= set(list_models("poincare_resnet*"))
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for kwargs in ({}, {"bn": "frechet", "init": "standard", "curvature": 1.0}):
        model = create_model("poincare_resnet8", width=4, **kwargs)
        logits = model(x)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all()
        F.cross_entropy(logits, y).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), kwargs
        assert float(grads["stem.0.z"].abs().sum()) > 0
    model = create_model("poincare_resnet", depth=14, width=4).eval()
    assert model(x).shape == (4, 10)
    assert sum(p.numel() for p in create_model("poincare_resnet8").parameters()) == pytest.approx(
        sum(p.numel() for p in create_model("resnet8", width=8).parameters()), rel=0.05)  # the Euclidean twin's size


def test_hook_points_hold_points_on_the_ball():
    model = create_model("poincare_resnet8", width=4).eval()
    names = hook_points(model)
    for n in ("stem", "layer1", "layer1.0", "layer1.0.hook_branch", "layer3.0.hook_out", "hook_pool"):
        assert n in names
    out, cache = run_with_cache(model, torch.randn(2, 3, 32, 32), ["layer1", "layer2.0", "layer3", "hook_pool"])
    assert cache["layer1"].shape == (2, 4, 32, 32) and cache["layer2.0"].shape == (2, 8, 16, 16)
    assert cache["layer3"].shape == (2, 16, 8, 8) and cache["hook_pool"].shape == (2, 16)
    assert float(cache["layer3"].norm(dim=1).max()) < 1 / math.sqrt(model.c)
    assert torch.allclose(model.fc(cache["hook_pool"]), out, atol=1e-6)


def test_fit_with_the_riemannian_optimizer_keeps_the_bias_in_the_ball():
    train = wb.load("shapes", "train", subset=64)
    opt = P.riemannian_optimizer("sgd", momentum=0.9)
    assert opt.cache_key.startswith("riemannian_optimizer(kind='sgd'")  # train_model's cache tells optimizers apart
    assert isinstance(opt([{"params": [torch.nn.Parameter(torch.zeros(2))]}]), geoopt.optim.RiemannianSGD)
    model = create_model("poincare_resnet8", width=4, curvature=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wb.fit(model, train, epochs=1, batch_size=32, optimizer=opt, lr=0.5, progress=False, device="cpu")
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "stem.1.bias" in moved and "stem.0.z" in moved
    for m in model.modules():
        if isinstance(m, P.PoincareBatchNorm2d):
            assert float(m.bias.norm()) < 1.0
    adam = P.riemannian_optimizer("adam")([{"params": [torch.nn.Parameter(torch.zeros(2))]}])
    assert isinstance(adam, geoopt.optim.RiemannianAdam)


# --- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_curvature_must_be_positive(bad):
    with pytest.raises(ValueError, match="positive number c > 0"):
        create_model("poincare_resnet8", curvature=bad)
    with pytest.raises(ValueError, match="positive"):
        P.PoincareConv2d(3, 4, c=bad)


def test_bad_arguments_list_the_valid_values():
    with pytest.raises(TypeError, match="positive number"):
        P.check_curvature("one")
    with pytest.raises(ValueError, match="identity, standard"):
        create_model("poincare_resnet8", init="xavier")
    with pytest.raises(ValueError, match="midpoint, frechet"):
        create_model("poincare_resnet8", bn="layer")
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("poincare_resnet", depth=9)
    with pytest.raises(ValueError, match="sgd, adam"):
        P.riemannian_optimizer("lbfgs")
    with pytest.raises(ValueError, match="iters"):
        P.frechet_mean(_points(3, 2), iters=0)
    model = create_model("poincare_resnet8", width=4)
    with pytest.raises(ValueError, match="at least 4x4"):
        model(torch.randn(1, 3, 3, 3))
    model(torch.randn(2, 3, 4, 4))  # the smallest valid size runs
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.randn(1, 1, 32, 32))
