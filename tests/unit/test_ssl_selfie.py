"""Selfie's masked patch selection (arXiv 1906.02940): the loss on hand-made cases and in closed
form, masks as a pure function of (seed, step), the encoder blind to masked patches, the transfer
of the patch network into a full ResNet-20, and clear errors for bad input."""
import math

import pytest
import torch

import workbench as wb
from workbench.ssl.selfie import EVAL_SEED


def test_loss_equals_a_hand_computed_cross_entropy():
    # one image, two masked patches: scores v_i . h_j = [[2, 0], [0, 1]]
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    h = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    loss, hits = wb.ssl.selfie_loss(q, h)
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert hits.item() == 2
    # the first query prefers a distractor: scores [[0, 3], [0, 1]], only the second query is right
    q2 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    h2 = torch.tensor([[[0.0, 0.0], [3.0, 1.0]]])
    loss2, hits2 = wb.ssl.selfie_loss(q2, h2)
    want2 = (math.log(1 + math.exp(3)) + math.log(1 + math.exp(-1))) / 2
    assert loss2.item() == pytest.approx(want2, abs=1e-6) and hits2.item() == 1


def test_loss_matches_a_loop_over_images_and_queries():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    h = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    loss, hits = wb.ssl.selfie_loss(q, h)
    terms, right = [], 0
    for b in range(3):
        for i in range(5):
            s = [float(q[b, i] @ h[b, j]) for j in range(5)]  # only this image's masked patches compete
            terms.append(-s[i] + math.log(sum(math.exp(v) for v in s)))
            right += max(range(5), key=s.__getitem__) == i
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    assert hits.item() == right


@pytest.mark.parametrize("m", [2, 4, 12])
def test_loss_closed_form_when_the_right_patch_scores_highest(m):
    # v_i = h_i = s e_i: the right patch scores s^2, each distractor 0, so the loss is log(1 + (m-1) e^(-s^2))
    eye = torch.eye(m, dtype=torch.float64)[None].expand(2, -1, -1)
    losses = []
    for s in (0.0, 1.0, 2.0, 4.0):
        loss, hits = wb.ssl.selfie_loss(s * eye, s * eye)
        assert loss.item() == pytest.approx(math.log(1 + (m - 1) * math.exp(-s * s)), rel=1e-6, abs=1e-12)
        if s > 0:
            assert hits.item() == 2 * m                          # every query scores its own patch highest
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(m))           # no information: chance, log M
    assert losses == sorted(losses, reverse=True) and losses[-1] < 1e-5 * m   # -> 0 as the margin grows


def test_masks_are_a_pure_function_of_seed_and_step():
    a = wb.ssl.selfie_masks(8, 16, 4, seed=3, step=7)
    b = wb.ssl.selfie_masks(8, 16, 4, seed=3, step=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    masked, visible = a
    assert masked.shape == (8, 4) and visible.shape == (8, 12) and masked.dtype == torch.int64
    for mk, vs in zip(masked, visible):
        assert sorted(mk.tolist() + vs.tolist()) == list(range(16))   # a split of the patches
        assert mk.tolist() == sorted(mk.tolist())
    assert not torch.equal(masked, wb.ssl.selfie_masks(8, 16, 4, seed=3, step=8)[0])
    assert not torch.equal(masked, wb.ssl.selfie_masks(8, 16, 4, seed=4, step=7)[0])
    torch.manual_seed(0)
    x = torch.rand(3)
    torch.manual_seed(0)
    wb.ssl.selfie_masks(8, 16, 4, seed=3, step=7)
    assert torch.equal(torch.rand(3), x)                          # the global RNG is left alone


def test_patchify_cuts_row_by_row():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    p = wb.ssl.selfie_patches(x, 4)
    assert p.shape == (2, 6, 3, 4, 4)
    for n in range(6):
        r, c = divmod(n, 3)
        assert torch.equal(p[:, n], x[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4])


def test_num_masked_rounds_and_refuses_bad_ratios():
    assert wb.ssl.num_masked(16, 0.25) == 4 and wb.ssl.num_masked(16, 0.5) == 8 and wb.ssl.num_masked(16, 0.9) == 14
    for r in (0, 1, 0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            wb.ssl.num_masked(16, r)
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            wb.ssl.Selfie(mask_ratio=r)
    with pytest.raises(ValueError, match="at least 2 masked"):
        wb.ssl.num_masked(16, 0.05)                                # 1 of 16: no distractor
    with pytest.raises(ValueError, match="none visible"):
        wb.ssl.num_masked(4, 0.9)                                  # 4 of 4
    with pytest.raises(ValueError, match="at least 2 masked"):
        wb.ssl.selfie_loss(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="one shape"):
        wb.ssl.selfie_loss(torch.zeros(2, 4, 3), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="between 2"):
        wb.ssl.selfie_masks(2, 16, 1, 0, 0)


def test_image_size_not_divisible_by_the_patch_size():
    with pytest.raises(ValueError, match=r"32x32 is not divisible by patch_size 5.*2, 4, 8, 16"):
        wb.create_model("selfie_net", patch_size=5)
    with pytest.raises(ValueError, match="30x30 is not divisible by patch_size 8"):
        wb.ssl.selfie_patches(torch.zeros(1, 3, 30, 30), 8)
    net = wb.create_model("selfie_net", backbone_kwargs={"width": 4})
    with pytest.raises(ValueError, match="built for 32x32"):
        net.patch_vectors(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match="stages must be one of 1, 2, 3"):
        wb.create_model("selfie_net", stages=4)
    with pytest.raises(ValueError, match="no stem"):
        wb.create_model("selfie_net", backbone="vit_tiny")


def test_the_encoder_never_sees_the_masked_patches():
    torch.manual_seed(0)
    net = wb.create_model("selfie_net", backbone_kwargs={"width": 4}).eval()
    assert net.dim == 8 and net.num_patches == 16
    x = torch.randn(2, 3, 32, 32)
    masked, visible = wb.ssl.selfie_masks(2, 16, 4, seed=0, step=0)
    q, h = net(x, masked, visible)
    assert q.shape == h.shape == (2, 4, 8)
    y = x.clone()
    for b in range(2):                                             # repaint every masked patch of every image
        for n in masked[b].tolist():
            r, c = divmod(n, 4)
            y[b, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8] = torch.randn(3, 8, 8)
    q2, h2 = net(y, masked, visible)
    assert torch.equal(q, q2)                                      # the queries only see visible patches
    assert not torch.allclose(h, h2)                               # the candidates are the masked patches
    # the candidates are the patch network's vectors of exactly those patches
    assert torch.allclose(h, net.patch_vectors(x)[torch.arange(2)[:, None], masked])


def test_fit_trains_the_task_deterministically():
    data = wb.data.ImageDataset(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8,
                                              generator=torch.Generator().manual_seed(0)),
                                torch.arange(32) % 10, [str(i) for i in range(10)], mean=(0.5,) * 3, std=(0.25,) * 3)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        net = wb.create_model("selfie_net", backbone_kwargs={"width": 4})
        res = wb.fit(net, data, data, task=wb.ssl.Selfie(0.5), epochs=1, batch_size=16, optimizer="adamw", lr=1e-3,
                     augment=None, progress=False, seed=1)
        losses.append((res.history.train_loss.item(), res.history.test_acc.item()))
    assert losses[0] == losses[1]
    assert 0 <= losses[0][1] <= 1 and math.isfinite(losses[0][0])
    assert res.config["task"] == {"name": "Selfie", "mask_ratio": 0.5}
    with pytest.raises(ValueError, match="trains a Selfie network"):
        wb.fit(wb.create_model("resnet8"), data, task=wb.ssl.Selfie(), epochs=1, progress=False)


def test_eval_masks_repeat_from_one_evaluation_to_the_next():
    task = wb.ssl.Selfie(0.25)
    net = wb.create_model("selfie_net", backbone_kwargs={"width": 4}).eval()
    x = torch.randn(4, 3, 32, 32)
    loader = [(x, torch.zeros(4, dtype=torch.int64))] * 2
    assert task.evaluate(net, loader) == task.evaluate(net, loader)
    out = task.forward(net, (x, None), None)
    masked, visible = wb.ssl.selfie_masks(4, 16, 4, EVAL_SEED, task._eval_calls)
    assert torch.equal(out[0], net(x, masked, visible)[0])


def test_patch_network_goes_back_into_a_full_resnet20():
    torch.manual_seed(1)
    net = wb.create_model("selfie_net", backbone_kwargs={"width": 8}, stages=2)
    with torch.no_grad():
        for p in net.backbone.parameters():
            p.add_(1.0)                                            # stand-in for pre-training
    state = wb.ssl.selfie_patch_state(net)
    assert {k.split(".")[0] for k in state} == {"stem", "layer1", "layer2"}
    assert set(state) == {k for k in net.backbone.state_dict() if k.startswith(("stem.", "layer1.", "layer2."))}
    setup, key = wb.ssl.selfie_setup(net)
    assert key == wb.ssl.selfie_setup(state)[1] and setup.cache_key == key
    torch.manual_seed(5)
    fresh = wb.create_model("resnet20", width=8)
    torch.manual_seed(5)
    target = wb.create_model("resnet20", width=8)
    assert setup(target) == {}
    for k, v in target.state_dict().items():
        if k in state:
            assert torch.equal(v, state[k]), k                     # the pre-trained patch network
        else:
            assert torch.equal(v, fresh.state_dict()[k]), k        # the seed's initialization elsewhere
    assert target(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # other pre-trained weights, another cache key
    with torch.no_grad():
        net.backbone.stem[0].weight.mul_(2)
    assert wb.ssl.selfie_setup(net)[1] != key
    with pytest.raises(ValueError, match="same width"):
        setup(wb.create_model("resnet20", width=16))
    with pytest.raises(ValueError, match="has no"):
        setup(wb.create_model("vit_tiny"))
    with pytest.raises(TypeError, match="takes a SelfieNet"):
        wb.ssl.selfie_patch_state(fresh)
