"""ResFormer (Tian et al. 2023, arXiv 2212.00776): the any-size ViT with global-local positional embedding,
and multi-resolution training with the scale-consistency loss (wb.attention)."""
import pytest
import torch
import torch.nn.functional as F

import workbench as wb
import workbench.attention as att
import workbench.models.resformer as R  # registers resformer_tiny
from workbench.attention.multires import _evaluate_at

torch.set_num_threads(1)
SMALL = dict(dim=16, depth=2, heads=2, mlp_ratio=2.0)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("resformer_tiny", **{**SMALL, **kw}).eval()


def _trained_looking(model, seed=1):
    """Non-zero local convolutions and a rough global table, so that modes and variants can differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def test_registered_with_hook_points():
    assert "resformer_tiny" in wb.list_models("resformer*")
    names = wb.models.hook_points(_model())
    assert {"hook_embed", "blocks.0", "blocks.1", "hook_pool"} <= set(names)
    _, cache = wb.run_with_cache(_model(), torch.randn(2, 3, 24, 24), ["hook_embed", "blocks.1", "hook_pool"])
    assert cache["hook_embed"].shape == (2, 1 + 36, 16) and cache["hook_pool"].shape == (2, 16)


@pytest.mark.parametrize("pos", R.POS_MODES)
def test_base_resolution_is_the_same_whatever_the_interpolation(pos):
    """Interpolating the global table to its own grid is the identity, so at the base size the mode cannot matter."""
    bicubic = _trained_looking(_model(pos=pos, interpolation="bicubic"))
    bilinear = _model(pos=pos, interpolation="bilinear")
    bilinear.load_state_dict(bicubic.state_dict())
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(bicubic(x), bilinear(x))
    assert torch.equal(bicubic.global_pos(8, 8), bicubic.pos_embed)
    assert not torch.equal(bicubic(torch.randn(3, 3, 48, 48)[:, :, :40, :40]), bilinear(torch.randn(3, 3, 40, 40)))
    x40 = torch.randn(2, 3, 40, 40)
    assert not torch.allclose(bicubic(x40), bilinear(x40)), "off the base grid the two modes must differ"


def test_global_local_equals_interp_at_initialization_and_not_after():
    """The local convolution starts at zero (as in the authors' code) and both variants share every other weight."""
    a, b = _model(seed=3, pos="global_local"), _model(seed=3, pos="interp")
    x = torch.randn(2, 3, 40, 40)
    assert torch.equal(a(x), b(x))
    assert sum(p.numel() for p in a.parameters()) - sum(p.numel() for p in b.parameters()) == 16 * 9 + 16
    with torch.no_grad():
        a.local_pos.weight.fill_(0.1)
    assert not torch.allclose(a(x), b(x))


def test_global_pos_is_the_interpolated_table():
    m = _trained_looking(_model(interpolation="bilinear"))
    want = F.interpolate(m.pos_embed, size=(4, 12), mode="bilinear", align_corners=False)
    assert torch.equal(m.global_pos(4, 12), want)


@pytest.mark.parametrize("patch,sizes", [(4, (16, 24, 32, 48, 64)), (8, (8, 16, 24, 32, 48, 64))])
def test_runs_at_any_multiple_of_the_patch(patch, sizes):
    m = _trained_looking(_model(patch=patch, pos="global_local"))
    for s in sizes:
        out = m(torch.randn(2, 3, s, s))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert m(torch.randn(1, 3, 16, 40)).shape == (1, 10)  # not square


def test_bad_input_names_the_fix():
    m = _model()
    with pytest.raises(ValueError, match="multiple of 4.*28 or 32"):
        m(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="stride of 4|multiple of 4"):
        m(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="multiple of 4.*4 pixels"):
        m.check_size(4, 3)
    with pytest.raises(ValueError, match="global_local, interp"):
        wb.create_model("resformer_tiny", pos="sincos")
    with pytest.raises(ValueError, match="bicubic, bilinear"):
        wb.create_model("resformer_tiny", interpolation="nearest")
    with pytest.raises(ValueError, match="multiple of patch"):
        wb.create_model("resformer_tiny", base_size=30)
    with pytest.raises(ValueError, match="odd"):
        wb.create_model("resformer_tiny", local_kernel=2)
    with pytest.raises(TypeError, match="float images"):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_resize_same_size_is_identity_and_shrinking_is_antialiased():
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(att.resize(x, 32), x)
    assert torch.equal(att.resize(x, (32, 32), mode="bicubic"), x)
    small = att.resize(x, 16)
    assert torch.equal(small, F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True))
    # a 2x shrink of an impulse: antialiased, the triangle filter spreads it as 1/8, 3/8, 3/8, 1/8 over the
    # outputs whose windows cover it; without antialiasing it would land on one output as 1/2
    impulse = torch.zeros(1, 1, 1, 8)
    impulse[..., 3] = 1.0
    torch.testing.assert_close(att.resize(impulse, (1, 4)), torch.tensor([[[[0.0, 0.375, 0.125, 0.0]]]]))
    with pytest.raises(ValueError, match="bilinear, bicubic"):
        att.resize(x, 16, mode="nearest")
    with pytest.raises(ValueError, match="positive integer"):
        att.resize(x, 0)
    with pytest.raises(ValueError, match="float images"):
        att.resize(x[0], 16)


def _batch(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_loss_without_consistency_is_the_mean_of_the_cross_entropies():
    """By hand: resize the batch to each size, cross-entropy of the model there, mean over the three sizes."""
    m = _trained_looking(_model())
    x, y = _batch()
    task = att.MultiResolution((24, 40, 32), feature_weight=0.0, kl_weight=0.0)
    assert task.sizes == [(40, 40), (32, 32), (24, 24)]
    out = task.forward(m, (x, y))
    want = sum(F.cross_entropy(m(F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                                               antialias=s < 32)), y) for s in (40, 32, 24)) / 3
    torch.testing.assert_close(task.loss(out, (x, y)), want)
    sums, n = task.metrics(out, (x, y), task.loss(out, (x, y)))
    assert n == 6 and float(sums["consistency"]) == 0.0
    torch.testing.assert_close(float(sums["ce_24"]) / 6, float(F.cross_entropy(m(att.resize(x, 24)), y).detach()))
    one = att.MultiResolution((32,))  # one resolution: plain classification, whatever the weights
    torch.testing.assert_close(one.loss(one.forward(m, (x, y)), (x, y)), F.cross_entropy(m(x), y))


def test_consistency_is_zero_when_every_resolution_agrees():
    """A model that pools the image's mean colour gives the same logits and features at every size."""
    class MeanColour(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hook_pool = wb.models.HookPoint()
            self.head = torch.nn.Linear(3, 10)

        def forward(self, x):
            f = x.mean((2, 3)).round()  # integer colours: the rounding undoes the resize's float error
            f = (f - f.mean(1, keepdim=True)) / f.std(1, unbiased=False, keepdim=True)  # already whitened
            return self.head(self.hook_pool(f))

    torch.manual_seed(0)
    m = MeanColour()
    x = torch.randint(-3, 4, (4, 3, 1, 1)).float().expand(4, 3, 40, 40).contiguous()  # constant images
    y = torch.randint(0, 10, (4,))
    for teacher in att.TEACHERS:
        task = att.MultiResolution((40, 32, 24), feature_weight=1.0, kl_weight=1.0, whiten=False, teacher=teacher)
        out = task.forward(m, (x, y))
        ces, terms = task.parts(out, (x, y))
        assert len(terms) == 2 and all(float(t.detach()) == 0.0 for t in terms), terms
        torch.testing.assert_close(task.loss(out, (x, y)), sum(ces) / 3)
    whitened = att.MultiResolution((40, 24), feature_weight=1.0, kl_weight=0.0)  # LN of whitened features ~ same
    assert float(whitened.parts(whitened.forward(m, (x, y)), (x, y))[1][0]) < 1e-8


def test_consistency_terms_by_hand_and_teachers():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 10, generator=g) for _ in range(3)]
    feats = [torch.randn(5, 8, generator=g) for _ in range(3)]
    outputs = list(zip(logits, feats))
    y = torch.randint(0, 10, (5,), generator=g)

    def kl(s, t, temp):
        p = F.softmax(t / temp, 1)
        return temp ** 2 * (p * (p.log() - F.log_softmax(s / temp, 1))).sum(1).mean()

    def feat(s, t):
        t = (t - t.mean(1, keepdim=True)) / (t.var(1, unbiased=False, keepdim=True) + 1e-6).sqrt()
        return F.smooth_l1_loss(s, t)

    task = att.MultiResolution((3 * 8, 2 * 8, 8), feature_weight=0.5, kl_weight=2.0, temperature=2.0)
    _, terms = task.parts(outputs, (None, y))
    for i, t in enumerate(terms, start=1):  # adjacent: resolution i learns from i - 1
        torch.testing.assert_close(t, 0.5 * feat(feats[i], feats[i - 1]) + 2.0 * kl(logits[i], logits[i - 1], 2.0))
    task = att.MultiResolution((24, 16, 8), feature_weight=1.0, kl_weight=0.0, teacher="highest")
    _, terms = task.parts(outputs, (None, y))
    torch.testing.assert_close(terms[1], feat(feats[2], feats[0]))


def test_teacher_is_detached():
    m = _trained_looking(_model())
    x, y = _batch(4)
    task = att.MultiResolution((32, 16), feature_weight=1.0, kl_weight=1.0)
    out = task.forward(m, (x, y))
    _, terms = task.parts(out, (x, y))
    grads = torch.autograd.grad(terms[0], [out[0][0], out[1][0]], allow_unused=True)
    assert grads[0] is None and grads[1] is not None and grads[1].abs().sum() > 0


def test_task_trains_through_fit_and_evaluates_at_a_resolution(tmp_path):
    data = wb.load("shapes", "train").subset(64, seed=0)
    test = wb.load("shapes", "test").subset(48, seed=0)
    m = _model(pos="global_local").train()
    task = att.MultiResolution((24, 16), eval_size=16)
    res = wb.fit(m, data, test, task=task, epochs=1, batch_size=32, optimizer="adamw", lr=1e-3, progress=False,
                 seed=0, augment=None)
    h = res.history
    assert {"train_loss", "train_acc", "train_consistency", "train_ce_24", "train_ce_16", "test_acc", "test_loss"} <= set(h.columns)
    assert h["train_consistency"].iloc[0] > 0
    curve = att.evaluate_at_resolutions(res.model, test, [16, 24, 32])
    assert list(curve.columns) == ["size", "acc", "loss", "n"] and list(curve["size"]) == [16, 24, 32]
    assert curve.loc[0, "acc"] == pytest.approx(h["test_acc"].iloc[-1])
    # accuracy at a size, by hand
    x = test.normalize(test.images)
    logits = res.model.eval()(att.resize(x, 24))
    assert curve.loc[1, "acc"] == pytest.approx(float((logits.argmax(1) == test.labels).float().mean()))
    assert curve.loc[1, "loss"] == pytest.approx(float(F.cross_entropy(logits, test.labels)), rel=1e-5)
    agree = att.evaluate_at_resolutions(res.model, test, [16, 24], reference=24)
    assert agree.loc[1, "agree"] == 1.0  # the reference agrees with itself
    at16 = res.model(att.resize(x, 16)).argmax(1)
    assert agree.loc[0, "agree"] == pytest.approx(float((at16 == logits.argmax(1)).float().mean()))


def test_task_and_evaluation_refuse_bad_input():
    with pytest.raises(ValueError, match="different resolutions"):
        att.MultiResolution((32, 32))
    with pytest.raises(ValueError, match="adjacent, highest"):
        att.MultiResolution(teacher="lowest")
    with pytest.raises(ValueError, match="positive integer"):
        att.MultiResolution((32, -8))
    with pytest.raises(ValueError, match=">= 0"):
        att.MultiResolution(kl_weight=-1)
    data = wb.load("shapes", "train").subset(8, seed=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        att.MultiResolution((32, 30)).check_data(_model(), data)
    plain = wb.create_model("resnet8")
    with pytest.raises(ValueError, match="hook_pool"):
        att.MultiResolution((32, 24)).check_data(torch.nn.Sequential(plain), data)
    with pytest.raises(ValueError, match="multiple of 4"):
        att.evaluate_at_resolutions(_model(), data, [16, 18])
    with pytest.raises(ValueError, match="at least one"):
        att.evaluate_at_resolutions(_model(), data, [])
    with pytest.raises(TypeError, match="ImageDataset"):
        att.evaluate_at_resolutions(_model(), data.images, [16])
