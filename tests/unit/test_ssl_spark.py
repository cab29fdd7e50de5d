"""SparK's masked modeling for convnets (arXiv 2301.03580): no leak from a hidden position into a
visible one in sparse mode (checked by gradients), BatchNorm over visible positions, the loss on
hidden patches only (hand-made and closed-form cases), masks as a pure function of (seed, step),
resumed pre-training equal to an uninterrupted one, and clear errors for bad input."""
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.ssl.spark import SparK, sparse_masking


def small(seed=0, width=4, patch_size=None):
    torch.manual_seed(seed)
    return wb.create_model("spark_mim", backbone_kwargs={"width": width}, patch_size=patch_size)


def batch(n=6, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def input_gradients(model, x, visible, mode):
    """d(sum of visible outputs of each stage) / d(encoder input), one gradient per stage."""
    inp = (x * wb.ssl.upsample_mask(visible, x.shape[-2:])).requires_grad_(True)
    feats = model.encode(inp, visible, mode)
    return [torch.autograd.grad((f * wb.ssl.upsample_mask(visible, f.shape[-2:])).sum(), inp, retain_graph=True)[0]
            for f in feats]


@pytest.mark.parametrize("training", [True, False])
def test_sparse_mode_never_lets_a_hidden_position_reach_a_visible_one(training):
    model = small().train(training)
    x = batch()
    visible = wb.ssl.random_patch_mask(len(x), model.grid(x), 0.6, seed=1, step=0)
    hidden_px = ~wb.ssl.upsample_mask(visible, (32, 32)).expand_as(x)
    for g in input_gradients(model, x, visible, "sparse"):
        assert torch.count_nonzero(g[hidden_px]) == 0, "a visible output depends on a hidden input pixel"
        assert torch.count_nonzero(g[~hidden_px]) > 0, "the visible outputs should depend on the visible pixels"
    dense = input_gradients(model, x, visible, "dense")
    for g in dense:  # the same encoder on the masked image: the holes' pixels (the mask pattern) leak in
        assert g[hidden_px].abs().sum() > 0
    # and every stage's activation is exactly 0 at hidden cells in sparse mode, not in dense mode
    with torch.no_grad():
        for mode, want_zero in (("sparse", True), ("dense", False)):
            for f in model.encode(x * wb.ssl.upsample_mask(visible, (32, 32)), visible, mode):
                hid = ~wb.ssl.upsample_mask(visible, f.shape[-2:]).expand_as(f)
                assert (torch.count_nonzero(f[hid]) == 0) == want_zero, mode


@pytest.mark.parametrize("training", [True, False])
def test_no_layer_lets_its_hidden_positions_reach_a_visible_output(training):
    # a zero leaf added to every convolution's raw output: the gradient of the visible outputs of the last
    # stage with respect to it (that is, to the convolution's output) at hidden positions must be exactly
    # zero (sparse), and is not (dense)
    model = small().train(training)
    x = batch()
    visible = wb.ssl.random_patch_mask(len(x), model.grid(x), 0.6, seed=5, step=1)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    for mode in ("sparse", "dense"):
        leaves = []

        def as_leaf(module, args, out):
            leaves.append(torch.zeros_like(out, requires_grad=True))
            return out + leaves[-1]

        handles = [c.register_forward_hook(as_leaf) for c in convs]  # registered first: they run before the masking
        try:
            last = model.encode(x * wb.ssl.upsample_mask(visible, (32, 32)), visible, mode)[-1]
        finally:
            for h in handles:
                h.remove()
        grads = torch.autograd.grad((last * wb.ssl.upsample_mask(visible, last.shape[-2:])).sum(), leaves,
                                    allow_unused=True)
        leaked = []
        for z, g in zip(leaves, grads):
            g = torch.zeros_like(z) if g is None else g
            hid = ~wb.ssl.upsample_mask(visible, z.shape[-2:]).expand_as(z)
            leaked.append(float(g[hid].abs().sum()))
        assert len(leaked) == len(convs) == 21  # stem, 18 in the blocks, 2 shortcuts
        if mode == "sparse":
            assert leaked == [0.0] * len(convs), leaked
        else:
            assert leaked[0] > 0 and sum(v > 0 for v in leaked) >= len(convs) // 2, leaked


def test_mask_leak_is_zero_in_sparse_mode_and_positive_in_dense_mode():
    model = small()
    x = batch()
    visible = wb.ssl.random_patch_mask(len(x), model.grid(x), 0.5, seed=0, step=3)
    sparse, dense = (wb.ssl.mask_leak(model, x, visible, m) for m in ("sparse", "dense"))
    cols = ["grad_leak", "hidden_activity", "hidden_nonzero"]
    assert list(sparse.stage) == ["layer1", "layer2", "layer3"] and list(sparse.stride) == [1, 2, 4]
    assert (sparse[cols] == 0).all().all()
    assert (dense[cols] > 0).all().all() and (dense.grad_leak < 1).all()
    assert model.training, "mask_leak restores the train flag"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()), "hooks left behind"


def test_sparse_batchnorm_uses_the_visible_positions_only():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=0.3)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    ref = nn.BatchNorm1d(3, momentum=0.3)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    visible = wb.ssl.random_patch_mask(4, (4, 4), 0.5, seed=2, step=0)
    m = wb.ssl.upsample_mask(visible, (8, 8))                                   # [4, 1, 8, 8]
    with sparse_masking(nn.Sequential(bn), visible):
        y = bn(x * m)
    rows = (x * m).permute(0, 2, 3, 1)[m[:, 0]]                                 # [visible cells, 3]
    want = ref(rows)
    assert torch.allclose(y.permute(0, 2, 3, 1)[m[:, 0]], want, atol=1e-5)
    assert torch.count_nonzero(y * ~m) == 0
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, ref.running_var, atol=1e-5)
    assert not bn._forward_hooks and not bn._forward_pre_hooks and "forward" not in bn.__dict__, "not undone"


def test_loss_on_a_hand_made_patch():
    # one 1-channel 2x2 image, a single 2x2 patch, hidden: values 0, 0, 0, 4 -> mean 1, unbiased var 4
    x = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]]]])
    hidden = torch.zeros(1, 1, 1, dtype=torch.bool)
    loss = wb.ssl.masked_patch_loss(torch.zeros_like(x), x, hidden)
    assert loss.item() == pytest.approx((3 * 0.25 + 2.25) / 4 * 4 / (4 + 1e-6), rel=1e-6)
    perfect = torch.tensor([[[[-1.0, -1.0], [-1.0, 3.0]]]]) / (4 + 1e-6) ** 0.5
    assert wb.ssl.masked_patch_loss(perfect, x, hidden).item() == pytest.approx(0.0, abs=1e-10)


def test_loss_is_a_closed_form_for_a_zero_reconstruction_and_ignores_visible_patches():
    x = batch(3, seed=4) * 2
    visible = wb.ssl.random_patch_mask(3, (4, 4), 0.6, seed=0, step=0)             # 8x8 patches
    n = 8 * 8 * 3
    var = wb.ssl.patchify(x, 8).double().var(-1)                                    # [3, 16]
    per_patch = (n - 1) / n * var / (var + 1e-6)
    want = per_patch[~visible.flatten(1)].mean()
    rec = torch.zeros_like(x)
    assert wb.ssl.masked_patch_loss(rec, x, visible).item() == pytest.approx(float(want), rel=1e-5)
    shown = wb.ssl.upsample_mask(visible, (32, 32))
    changed = torch.where(shown, torch.randn_like(x) * 5, x)                         # new visible targets
    rec = torch.randn_like(x)
    assert torch.equal(wb.ssl.masked_patch_loss(rec, changed, visible), wb.ssl.masked_patch_loss(rec, x, visible))
    rec2 = torch.where(shown, torch.randn_like(x), rec)                              # new visible predictions
    assert torch.equal(wb.ssl.masked_patch_loss(rec2, x, visible), wb.ssl.masked_patch_loss(rec, x, visible))
    hidden_changed = torch.where(shown, x, x + torch.randn_like(x))
    assert wb.ssl.masked_patch_loss(rec, hidden_changed, visible) != wb.ssl.masked_patch_loss(rec, x, visible)


def test_masks_are_a_pure_function_of_seed_and_step():
    a = wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=3, step=7)
    assert torch.equal(a, wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=3, step=7))
    assert not torch.equal(a, wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=3, step=8))
    assert not torch.equal(a, wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=4, step=7))
    assert (a.flatten(1).sum(1) == 64 - round(0.6 * 64)).all(), "every image hides exactly round(ratio * L) patches"
    assert len({tuple(r.flatten().tolist()) for r in a}) == 16, "each image gets its own mask"
    torch.manual_seed(0)
    b = wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=3, step=7)
    torch.manual_seed(1)
    assert torch.equal(b, wb.ssl.random_patch_mask(16, (8, 8), 0.6, seed=3, step=7)), "independent of the global RNG"


@pytest.mark.parametrize("ratio", [0, 1, 0.0, 1.0, -0.2, 1.5])
def test_mask_ratio_of_zero_or_one_is_refused(ratio):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        wb.ssl.MaskedModeling(mask_ratio=ratio)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        wb.ssl.random_patch_mask(2, (4, 4), ratio, seed=0, step=0)


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="hides 0 of the 16 patches"):
        wb.ssl.random_patch_mask(2, (4, 4), 0.01, seed=0, step=0)
    with pytest.raises(ValueError, match="multiple of the encoder's total stride 4"):
        small(patch_size=6)
    with pytest.raises(ValueError, match="mode must be one of sparse, dense"):
        wb.ssl.MaskedModeling(mode="zeros")
    with pytest.raises(ValueError, match="cannot be cut into 8x8 patches"):
        small(patch_size=8)(torch.zeros(1, 3, 36, 36))
    with pytest.raises(TypeError, match="trains a SparK model"):
        wb.fit(wb.create_model("resnet8", width=4), wb.load("shapes", "train", subset=16),
               task=wb.ssl.MaskedModeling(), progress=False)
    with pytest.raises(ValueError, match="stages"):
        SparK(wb.create_model("resnet8", width=4), stages=["layer9"])


def test_reconstruction_keeps_the_visible_patches():
    model = small()
    x = batch(2)
    visible = wb.ssl.random_patch_mask(2, model.grid(x), 0.6, seed=0, step=0)
    out = wb.ssl.reconstruction(model, x, visible)
    shown = wb.ssl.upsample_mask(visible, (32, 32)).expand_as(x)
    assert out.shape == x.shape and torch.equal(out[shown], x[shown]) and not torch.equal(out[~shown], x[~shown])


def test_pretraining_resumes_exactly_and_the_backbone_fine_tunes(tmp_path):
    train = wb.load("shapes", "train", subset=96)
    kw = dict(epochs=2, batch_size=32, lr=0.05, progress=False, seed=3, augment=None)
    task = wb.ssl.MaskedModeling(0.6, "sparse")
    full = wb.fit(small(), train, train, task=task, **kw)
    assert "test_loss" in full.history and full.history.train_loss.notna().all()
    wb.fit(small(), train, task=wb.ssl.MaskedModeling(0.6, "sparse"), checkpoint_dir=tmp_path, stop_after_steps=4, **kw)
    resumed = wb.fit(small(seed=9), train, train, task=wb.ssl.MaskedModeling(0.6, "sparse"), checkpoint_dir=tmp_path,
                     **kw)
    for (n, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), n
    dense = wb.fit(small(), train, task=wb.ssl.MaskedModeling(0.6, "dense"), **kw)
    assert not torch.equal(dense.model.backbone.stem[0].weight, full.model.backbone.stem[0].weight)
    backbone = full.model.backbone
    assert type(backbone).__name__ == "CifarResNet" and backbone.fc.out_features == 10
    tuned = wb.ssl.fine_tune(full.model, train, train, seed=0, epochs=1, batch_size=32, lr=0.05, progress=False,
                             cache=False)
    assert 0 <= tuned.test_acc <= 1
    assert torch.equal(full.model.backbone.stem[0].weight, backbone.stem[0].weight), "fine-tuning trains a copy"


def test_spark_run_records_the_three_variants_from_the_same_start(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    common = dict(dataset="shapes", unlabelled_subset=200, label_fraction=0.25, test_subset=32,
                  backbone_kwargs={"width": 4}, pretrain=dict(epochs=1, batch_size=64, augment=None),
                  finetune=dict(epochs=1, batch_size=16, lr=0.05))
    none, sparse = wb.ssl.spark_run("none", 1, **common), wb.ssl.spark_run("sparse", 1, **common)
    assert none["pretrain_loss"] == [] and len(sparse["pretrain_loss"]) == 1 == len(sparse["pretrain_test_loss"])
    labels = len(wb.ssl.label_subset(wb.load("shapes", "train", subset=200, seed=0), 0.25))
    assert none["labels"] == sparse["labels"] == labels and none["curve_epoch"] == sparse["curve_epoch"] == [1]
    assert 0 <= none["test_acc"] <= 1 and 0 <= sparse["test_acc"] <= 1
    assert wb.ssl.spark_run("sparse", 1, **common)["test_acc"] == sparse["test_acc"], "a rerun is the cached run"
    torch.manual_seed(1)
    plain = wb.create_model("resnet20", width=4)
    torch.manual_seed(1)
    mim = wb.create_model("spark_mim", backbone_kwargs={"width": 4})
    for (n, p), q in zip(plain.state_dict().items(), mim.backbone.state_dict().values()):
        assert torch.equal(p, q), f"the pre-trained and the plain backbone must start from the same weights ({n})"
    with pytest.raises(ValueError, match="mode must be one of sparse, dense, none"):
        wb.ssl.spark_run("zeros", 0, **common)
