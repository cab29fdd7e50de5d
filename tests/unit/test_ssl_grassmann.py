"""Grassmann class representation (arXiv 2308.01547): the heads, the Riemannian update inside fit,
and the measures of intra-class variability, on closed forms and hand-made cases."""
import pytest
import torch

import workbench as wb
from workbench.ssl import grassmann as G
from workbench.train import State

f64 = dict(dtype=torch.float64)


def _orthonormal(*shape, seed=0):
    return G.orthonormalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), **f64))


def test_grassmann_logit_hand_made_values():
    head = G.GrassmannHead(3, 3, k=2, scale=10.0).double()
    e = torch.eye(3, **f64)
    with torch.no_grad():  # class 0: the plane e1, e2; class 1: the plane e1, e3; class 2: the plane e2, e3
        head.bases.copy_(torch.stack([e[:, [0, 1]], e[:, [0, 2]], e[:, [1, 2]]]))
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], **f64)
    want = torch.tensor([[10.0, 6.0, 8.0], [0.0, 10.0, 10.0]], **f64)  # s * ||S^T x|| / ||x||: 5/5, 3/5, 4/5 ...
    assert torch.allclose(head(x), want, atol=1e-12)
    head.normalize = False
    assert torch.allclose(head(x), want / 10 * torch.tensor([[5.0], [2.0]], **f64), atol=1e-12)  # the raw ||S^T x||


def test_one_dimensional_subspaces_are_a_cosine_classifier_up_to_sign():
    torch.manual_seed(0)
    cos = G.CosineHead(6, 4, scale=16.0).double()
    grass = G.GrassmannHead(6, 4, k=1, scale=16.0).double()
    with torch.no_grad():
        grass.bases.copy_((cos.weight / cos.weight.norm(dim=1, keepdim=True)).unsqueeze(2))  # the same vectors
    x = torch.randn(32, 6, **f64)
    assert (cos(x) < 0).any()  # a line has no sign: the Grassmann logit is |cos|
    assert torch.allclose(grass(x), cos(x).abs(), rtol=0, atol=1e-12)
    with torch.no_grad():  # non-negative features (after ReLU) and vectors: exactly the cosine classifier
        cos.weight.abs_()
        grass.bases.abs_()
    assert torch.allclose(grass(x.abs()), cos(x.abs()), rtol=0, atol=1e-12)


def test_class_head_net_k1_equals_cosine_head_on_relu_features():
    torch.manual_seed(0)
    c = wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4}, head="cosine").eval()
    g = wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4}, head="grassmann",
                        k=1).eval()
    g.backbone.load_state_dict(c.backbone.state_dict())
    with torch.no_grad():
        c.head.weight.abs_()
        g.head.bases.copy_(torch.nn.functional.normalize(c.head.weight, dim=1).unsqueeze(2))
    x = torch.randn(8, 3, 32, 32)
    assert (c.features(x) >= 0).all()  # pooled ReLU features
    assert torch.allclose(g(x), c(x), atol=1e-5)
    assert torch.equal(c.features(x), c.backbone.forward_features(x))
    z, y = wb.ssl.encode(g, wb.data.load("shapes", "test", subset=20))
    assert z.shape == (20, 16) and y.shape == (20,)


def test_logits_depend_on_the_subspace_not_on_the_basis():
    head = G.GrassmannHead(8, 5, k=3).double()
    x = torch.randn(10, 8, **f64)
    before = head(x)
    q = _orthonormal(5, 3, 3, seed=1)  # a rotation inside each class's subspace
    with torch.no_grad():
        head.bases.copy_(head.bases @ q)
    assert torch.allclose(head(x), before, atol=1e-12)
    assert (before >= 0).all() and (before <= head.scale + 1e-12).all()


def test_tangent_projection_is_orthogonal_to_the_bases_and_idempotent():
    s = _orthonormal(4, 10, 3)
    g = torch.randn(4, 10, 3, **f64)
    t = G.tangent_project(s, g)
    assert s.transpose(-1, -2).matmul(t).abs().max() < 1e-12
    assert torch.allclose(G.tangent_project(s, t), t, atol=1e-12)
    assert torch.allclose(g - t, s @ (s.transpose(-1, -2) @ g), atol=1e-12)  # the removed part lies in span S
    with pytest.raises(ValueError, match="one shape"):
        G.tangent_project(s, g[:, :, :2])


def test_geodesic_has_the_tangent_singular_values_as_principal_angles():
    s = _orthonormal(3, 12, 4)
    delta = G.tangent_project(s, torch.randn(3, 12, 4, generator=torch.Generator().manual_seed(2), **f64))
    delta = delta / torch.linalg.matrix_norm(delta, ord=2).view(3, 1, 1) * 1.2  # largest angle 1.2 < pi / 2
    end = G.grassmann_exp(s, delta)
    assert G.orthonormality_error(end) < 1e-12
    want = torch.linalg.svdvals(delta).sort(dim=-1).values
    assert torch.allclose(G.principal_angles(s, end), want, atol=1e-10)
    assert torch.allclose(G.grassmann_exp(s, torch.zeros_like(s)), s, atol=1e-12)


def test_orthonormalize_keeps_an_orthonormal_basis_and_finds_the_span():
    s = _orthonormal(2, 7, 3)
    assert torch.allclose(G.orthonormalize(s), s, atol=1e-12)
    a = s @ torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 3.0]], **f64)  # the same span
    for method in ("qr", "polar"):
        b = G.orthonormalize(a, method)
        assert G.orthonormality_error(b) < 1e-12 and G.principal_angles(s, b).max() < 1e-7
    with pytest.raises(ValueError, match="'qr' or 'polar'"):
        G.orthonormalize(a, "svd")


def _state(model, opt):
    s = State(model=model, forward=model, task=None, device=torch.device("cpu"), precision="fp32", seed=0, epochs=1,
              steps_per_epoch=1, total_steps=1, weight_decay=0.0)
    s.optimizer = opt
    return s


def test_one_update_is_riemannian_sgd_with_momentum_by_hand():
    torch.manual_seed(0)
    model = torch.nn.Sequential(G.GrassmannHead(6, 3, k=2, scale=5.0)).double()
    x, y = torch.randn(16, 6, **f64), torch.randint(0, 3, (16,))
    lr, mu = 0.3, 0.9
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mu)
    alg = G.GrassmannUpdate()
    state = _state(model, opt)
    alg.on_init(state)
    assert state.no_decay == ["0.bases"]
    alg.on_fit_start(state)
    s, buf = model[0].bases.detach().clone(), None
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        euclid = torch.autograd.grad(loss, model[0].bases, retain_graph=True)[0]
        loss.backward()
        alg.on_after_backward(state)
        opt.step()
        alg.on_after_step(state)
        opt.zero_grad()
        g = G.tangent_project(s, euclid)                       # by hand: Riemannian gradient
        buf = g if buf is None else mu * buf + g               # momentum (already carried to s)
        s = G.grassmann_exp(s, -lr * buf)                      # geodesic step
        buf = G.tangent_project(s, buf)                        # carried to the new point
        assert torch.allclose(model[0].bases.detach(), s, atol=1e-10)
        assert torch.allclose(opt.state[model[0].bases]["momentum_buffer"], buf, atol=1e-10)


@pytest.mark.parametrize("retraction", G.RETRACTIONS)
def test_bases_stay_orthonormal_through_many_fit_steps(retraction):
    train = wb.data.load("shapes", "train", subset=256)
    torch.manual_seed(0)
    model = wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4}, head="grassmann",
                            k=4, num_classes=train.num_classes)
    start = model.head.bases.detach().clone()
    alg = G.GrassmannUpdate(retraction)
    res = wb.fit(model, train, epochs=40, batch_size=32, lr=0.5, momentum=0.9, nesterov=True, weight_decay=5e-4,
                 max_steps=150, algorithms=[alg], progress=False)
    bases = model.head.bases.detach()
    assert G.orthonormality_error(bases) < 1e-5
    assert G.principal_angles(start, bases).max() > 0.1  # the subspaces did move
    buf = alg.optimizer.state[model.head.bases]["momentum_buffer"]
    assert (bases.transpose(-1, -2) @ buf).abs().max() < 1e-5  # the momentum lives in the current tangent space
    assert res.config["masked"] == ["head.bases"]  # no weight decay on the bases


def test_without_the_update_sgd_leaves_the_manifold():
    train = wb.data.load("shapes", "train", subset=256)
    torch.manual_seed(0)
    model = wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4}, head="grassmann",
                            k=4, num_classes=train.num_classes)
    wb.fit(model, train, epochs=40, batch_size=32, lr=0.5, momentum=0.9, max_steps=150, progress=False)
    assert G.orthonormality_error(model.head.bases.detach()) > 1e-3


def test_within_class_ratio_and_class_separation_hand_made():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]], **f64)
    y = torch.tensor([0, 0, 1, 1])
    assert G.within_class_ratio(z, y, normalize=False) == pytest.approx(4 / 20)
    assert G.within_class_ratio(z[[0, 0, 2, 2]] + 1, y, normalize=False) == 0.0       # collapsed classes
    same = torch.randn(50, 3, **f64)
    assert G.within_class_ratio(torch.cat([same, same]), torch.arange(2).repeat_interleave(50)) == pytest.approx(1.0)
    e1, e2 = torch.eye(2, **f64)
    assert G.class_separation(torch.stack([e1, e1, e2, e2]), y) == pytest.approx(1.0)
    assert G.class_separation(torch.stack([e1, e2, e1, e2]), y) == pytest.approx(0.0, abs=1e-12)
    assert G.class_separation(torch.stack([e1, e2, e1, e1]), y) == pytest.approx(1 / 3)


def test_class_separation_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(3)
    z, y = torch.randn(60, 5, generator=g, **f64) + 0.5, torch.randint(0, 4, (60,), generator=g)
    u = torch.nn.functional.normalize(z, dim=1)
    d = 1 - u @ u.T
    cls = range(4)
    within = sum(d[y == c][:, y == c].mean() for c in cls) / 4
    total = sum(d[y == a][:, y == b].mean() for a in cls for b in cls) / 16
    assert G.class_separation(z, y) == pytest.approx(float(1 - within / total), abs=1e-12)
    stats = G.feature_statistics(z, y)
    assert stats["norm_mean"] == pytest.approx(float(z.norm(dim=1).mean()))
    assert set(stats) == {"norm_mean", "norm_cv", "within_ratio", "separation"}


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="k, the dimension of each class's subspace, must be an integer >= 1"):
        G.GrassmannHead(64, 10, k=0)
    with pytest.raises(ValueError, match=r"k=65 exceeds the feature size D=64.*1\.\.64"):
        G.GrassmannHead(64, 10, k=65)
    G.GrassmannHead(64, 10, k=8)  # 80 > 64 directions in all: classes may share directions, as in the paper
    with pytest.raises(ValueError, match="scale must be a positive number"):
        G.GrassmannHead(64, 10, k=8, scale=0)
    with pytest.raises(ValueError, match="choose one of softmax, cosine, grassmann"):
        wb.create_model("class_head_net", head="linear")
    with pytest.raises(ValueError, match="k=17 exceeds the feature size D=16"):
        wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4}, k=17)
    with pytest.raises(ValueError, match="choose one of exp, qr, polar"):
        G.GrassmannUpdate("cayley")
    with pytest.raises(ValueError, match="within-class and total variation need at least two classes"):
        G.within_class_ratio(torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    train = wb.data.load("shapes", "train", subset=64)
    plain = wb.create_model("resnet8", width=4, num_classes=train.num_classes)
    with pytest.raises(ValueError, match="found no GrassmannHead"):
        wb.fit(plain, train, max_steps=1, algorithms=[G.GrassmannUpdate()], progress=False)
    net = wb.create_model("class_head_net", backbone="resnet8", backbone_kwargs={"width": 4},
                          num_classes=train.num_classes)
    with pytest.raises(ValueError, match="works with optimizer='sgd'"):
        wb.fit(net, train, max_steps=1, optimizer="adam", lr=1e-3, algorithms=[G.GrassmannUpdate()], progress=False)
