"""Sequences and video: reading images as sequences, the recurrent and clip models, the motion clips,
gradients through time, gradient clipping, sparse recurrent masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.data import MOTIONS, ImageDataset, filmstrip_frames, motion_clips
from workbench.models import frame_differences, read_sequence
from workbench.sequence import (ClipGrad, graph_mask, graph_recurrent_masks, gradient_through_time,
                                magnitude_recurrent_masks, mask_density, unrolled_states)


# ------------------------------------------------------------------------------------------ reading
def test_read_sequence_orders():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)  # [B, C, H, W]
    rows = read_sequence(x, "rows")
    assert rows.shape == (1, 3, 8) and torch.equal(rows[0, 1], torch.cat([x[0, 0, 1], x[0, 1, 1]]))
    pix = read_sequence(x, "pixels")
    assert pix.shape == (1, 12, 2) and torch.equal(pix[0, 5], x[0, :, 1, 1])   # raster order: row 1, column 1
    perm = torch.randperm(12)
    assert torch.equal(read_sequence(x, "permuted", perm), pix[:, perm])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_unrolled_cells_equal_the_fused_layer(cell):
    torch.manual_seed(0)
    m = wb.create_model("seq_rnn", cell=cell, hidden=12, read="rows", img_size=8).eval()
    x = torch.randn(3, 1, 8, 8)
    logits, states = unrolled_states(m, x)
    assert len(states) == 8 and torch.allclose(logits, m(x), atol=1e-5)


def test_bidirectional_reads_both_final_states():
    torch.manual_seed(0)
    m = wb.create_model("seq_rnn", cell="gru", hidden=5, bidirectional=True, img_size=6).eval()
    x = torch.randn(2, 1, 6, 6)
    states = wb.run_with_cache(m, x, ["hook_states"])[1]["hook_states"]
    last = wb.run_with_cache(m, x, ["hook_last"])[1]["hook_last"]
    assert torch.equal(last[:, :5], states[:, -1, :5]) and torch.equal(last[:, 5:], states[:, 0, 5:])


def test_gradient_through_time_matches_the_chain_rule_on_a_three_step_rnn():
    """h_t = tanh(W x_t + U h_{t-1} + b), logits = V h_3 + c: dL/dh_3 = V^T (p - e_y) and
    dL/dh_{t-1} = U^T ((1 - h_t^2) * dL/dh_t), written out by hand."""
    torch.manual_seed(3)
    m = wb.create_model("seq_rnn", cell="rnn", hidden=4, read="rows", img_size=3, num_classes=3).eval()
    x, y = torch.randn(1, 1, 3, 3), torch.tensor([2])
    W, U = m.rnn.weight_ih_l0.detach(), m.rnn.weight_hh_l0.detach()
    b = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0).detach()
    V, c = m.fc.weight.detach(), m.fc.bias.detach()
    seq = x[0, 0]                                               # rows are the steps
    hs, h = [], torch.zeros(4)
    for t in range(3):
        h = torch.tanh(W @ seq[t] + U @ h + b)
        hs.append(h)
    p = torch.softmax(V @ hs[-1] + c, 0)
    g = [None, None, V.T @ (p - F.one_hot(y[0], 3).float())]
    for t in (2, 1):
        g[t - 1] = U.T @ ((1 - hs[t] ** 2) * g[t])
    table = gradient_through_time(m, x, y)
    assert table.grad_norm.tolist() == pytest.approx([float(v.norm()) for v in g], rel=1e-5)
    assert table.distance.tolist() == [2, 1, 0]


def test_vanilla_rnn_gradient_vanishes_and_lstm_keeps_more():
    """Over 28 steps, with PyTorch's default initialization, the vanilla RNN's gradient at the first step is a
    far smaller share of the last step's than the LSTM's (the review's point, on real images)."""
    ds = wb.load("fashion_mnist", "test", subset=64)
    x, y = ds.normalize(ds.images), ds.labels
    ratios = {}
    for cell in ("rnn", "lstm"):
        torch.manual_seed(0)
        m = wb.create_model("seq_rnn", cell=cell, hidden=64)
        t = gradient_through_time(m, x, y)
        ratios[cell] = t.grad_norm.iloc[0] / t.grad_norm.iloc[-1]
    assert ratios["rnn"] < 1e-3 and ratios["lstm"] > 10 * ratios["rnn"]


def test_decay_fit_recovers_a_known_rate():
    import pandas as pd
    from workbench.sequence import decay_fit
    t = pd.DataFrame({"distance": range(10), "grad_norm": [0.5 ** d for d in range(10)]})
    fit = decay_fit(t)
    assert fit["per_step"] == pytest.approx(0.5) and fit["r2"] == pytest.approx(1.0)
    assert fit["farthest_over_last"] == pytest.approx(0.5 ** 9)


def test_gradient_through_time_bad_input():
    with pytest.raises(ValueError, match="layers=1"):
        gradient_through_time(wb.create_model("seq_rnn", layers=2, img_size=4), torch.randn(1, 1, 4, 4),
                              torch.tensor([0]))
    with pytest.raises(TypeError, match="seq_rnn"):
        gradient_through_time(wb.create_model("resnet8"), torch.randn(1, 3, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="cell is one of rnn, lstm, gru"):
        wb.create_model("seq_rnn", cell="transformer")


def test_clip_grad_caps_the_norm():
    train = wb.load("shapes", "train", subset=64)
    seen = []

    class Norm(wb.train.Callback):
        def on_after_backward(self, state):
            seen.append(float(torch.cat([p.grad.flatten() for p in state.trainable.values()]).norm()))

    torch.manual_seed(0)
    res = wb.fit(wb.create_model("resnet8", width=8), train, epochs=1, batch_size=32, lr=0.1, progress=False,
                 algorithms=[ClipGrad(0.05), Norm()])
    assert max(seen) <= 0.05 * (1 + 1e-5) and res.history["grad_norm"].iloc[-1] > 0.05
    with pytest.raises(ValueError, match="max_norm"):
        ClipGrad(0)


# ------------------------------------------------------------------------------------------ sparse masks
@pytest.mark.parametrize("graph", ["erdos_renyi", "watts_strogatz", "barabasi_albert"])
def test_graph_masks(graph):
    assert torch.equal(graph_mask(16, 1.0, graph), torch.ones(16, 16))     # density 1 is dense
    m = graph_mask(64, 0.25, graph, seed=1)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    if graph == "erdos_renyi":
        assert int(m.sum()) == round(0.25 * 64 * 64)                        # exactly
    else:
        assert abs(float(m.mean()) - 0.25) < 0.05 and torch.equal(m, m.T)   # undirected, near the density
        assert torch.equal(m.diagonal(), torch.ones(64))
    assert torch.equal(m, graph_mask(64, 0.25, graph, seed=1))             # deterministic per seed


def test_recurrent_masks_on_an_lstm_and_sparse_training():
    torch.manual_seed(0)
    model = wb.create_model("seq_rnn", cell="lstm", hidden=16, img_size=8)
    g = graph_recurrent_masks(model, 0.25, "erdos_renyi")
    assert list(g) == ["rnn.weight_hh_l0"] and g["rnn.weight_hh_l0"].shape == (64, 16)
    blocks = g["rnn.weight_hh_l0"].view(4, 16, 16)
    assert all(torch.equal(blocks[0], blocks[k]) for k in range(4))         # one pattern for every gate
    mag = magnitude_recurrent_masks(model, 0.1)
    w = model.rnn.weight_hh_l0.detach().abs()
    kept = w[mag["rnn.weight_hh_l0"].bool()]
    assert mask_density(mag) == pytest.approx(round(0.1 * w.numel()) / w.numel())
    assert kept.min() >= w[~mag["rnn.weight_hh_l0"].bool()].max()
    data = wb.load("fashion_mnist", "train", subset=64)
    small = ImageDataset(torch.nn.functional.interpolate(data.images.float(), size=8).to(torch.uint8), data.labels,
                         data.classes, "fm8")
    wb.fit(model, small, epochs=1, batch_size=32, lr=0.1, augment=None, progress=False,
           algorithms=[wb.prune.Masked(g)])
    assert torch.equal(model.rnn.weight_hh_l0.detach() != 0, g["rnn.weight_hh_l0"].bool() &
                       (model.rnn.weight_hh_l0.detach() != 0))
    assert float(model.rnn.weight_hh_l0.detach()[~g["rnn.weight_hh_l0"].bool()].abs().max()) == 0.0
    with pytest.raises(ValueError, match="density"):
        graph_mask(8, 0.0)
    with pytest.raises(ValueError, match="no recurrent layer"):
        graph_recurrent_masks(wb.create_model("resnet8"), 0.5)


# ------------------------------------------------------------------------------------------ clips and video models
def _plain_sources():
    bg = ImageDataset(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), ["bg"], "bg")
    sq = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    sq[:, :, 4:24, 4:24] = 255
    sq[1, :, 4:8, 4:24] = 0    # item 1 lacks its top rows: a rotation shows
    it = ImageDataset(sq, torch.tensor([0, 1]), ["a", "b"], "items")
    return bg, it


def test_motion_clips_move_the_way_their_class_says():
    bg, it = _plain_sources()
    clips = motion_clips(bg, it, 200, frames=6, seed=0)
    frames = filmstrip_frames(clips.images, 6).float().mean(2)               # [N, T, H, W] brightness
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = frames.sum((2, 3))
    cx, cy = (frames * xs).sum((2, 3)) / mass, (frames * ys).sum((2, 3)) / mass
    for k, name in enumerate(MOTIONS):
        sel = clips.labels == k
        assert sel.any(), name
        dx, dy, dm = (cx[sel, -1] - cx[sel, 0]), (cy[sel, -1] - cy[sel, 0]), mass[sel, -1] / mass[sel, 0]
        if name == "left":
            assert (dx < -3).all()
        elif name == "right":
            assert (dx > 3).all()
        elif name == "up":
            assert (dy < -3).all()
        elif name == "down":
            assert (dy > 3).all()
        elif name == "towards":
            assert (dm > 1.15).all()
        elif name == "away":
            assert (dm < 0.87).all()
    again = motion_clips(bg, it, 200, frames=6, seed=0)
    assert torch.equal(again.images, clips.images)
    items = motion_clips(bg, it, 20, frames=6, seed=0, label="item")
    assert items.classes == ["a", "b"] and set(items.labels.tolist()) == {0, 1}
    # motion and colour family: the same clips, the motion and the strongest channel of the garment's colour
    both = motion_clips(bg, it, 200, frames=6, seed=0, label="motion_colour")
    assert torch.equal(both.images, clips.images) and len(both.classes) == 24 and both.classes[4] == "right, greenish"
    assert torch.equal(both.labels // 3, clips.labels)
    first = filmstrip_frames(both.images, 6)[:, 0].float()                  # [N, 3, H, W]: the first frame
    lit = first.amax(1, keepdim=True) > 40                                  # the garment (the ground is dark)
    colour = (first * lit).sum((2, 3)) / lit.sum((2, 3)).clamp(min=1)       # its mean colour
    agree = (colour.argmax(1) == both.labels % 3).float().mean()
    assert agree > 0.9, f"the colour family should be the garment's strongest channel, agreed for {agree:.0%}"
    with pytest.raises(ValueError, match="frames must be an integer >= 2"):
        motion_clips(bg, it, 4, frames=1)


def test_lrcn_with_one_frame_is_the_cnn_plus_one_lstm_step():
    torch.manual_seed(0)
    m = wb.create_model("video_net", frames=1, head="lstm", width=8, hidden=6).eval()
    x = torch.randn(3, 3, 32, 32)
    f = m.trunks[0](x)                                                     # [B, F]
    cell = nn.LSTMCell(f.shape[1], 6)
    rnn = m.heads[0].rnn
    with torch.no_grad():
        cell.weight_ih.copy_(rnn.weight_ih_l0), cell.weight_hh.copy_(rnn.weight_hh_l0)
        cell.bias_ih.copy_(rnn.bias_ih_l0), cell.bias_hh.copy_(rnn.bias_hh_l0)
    h, _ = cell(f)
    assert torch.allclose(m(x), m.heads[0].fc(h), atol=1e-5)


def test_temporal_inception_of_width_one_is_mean_pooling_after_a_linear_map():
    torch.manual_seed(0)
    m = wb.create_model("video_net", frames=4, head="tconv", kernel_sizes=(1,), tconv_relu=False, width=8).eval()
    x = torch.randn(2, 3, 128, 32)
    f = wb.run_with_cache(m, x, ["hook_features"])[1]["hook_features"]      # [B, T, F]
    conv, fc = m.heads[0].convs[0], m.heads[0].fc
    linear = f.mean(1) @ conv.weight[:, :, 0].T + conv.bias                 # the linear map of the mean
    assert torch.allclose(m(x), fc(linear), atol=1e-5)


def test_video_streams_and_steps():
    frames = torch.randn(2, 4, 3, 8, 8)
    d = frame_differences(frames)
    assert torch.equal(d[:, 0], torch.zeros_like(d[:, 0])) and torch.allclose(d[:, 2], frames[:, 2] - frames[:, 1])
    torch.manual_seed(0)
    m = wb.create_model("video_net", frames=4, head="mean", width=8).eval()
    x = torch.randn(2, 3, 128, 32)
    steps = wb.run_with_cache(m, x, ["heads.0.hook_steps"])[1]["heads.0.hook_steps"]
    assert steps.shape == (2, 4, 8) and torch.allclose(steps.mean(1), m(x), atol=1e-6)
    with pytest.raises(ValueError, match="built for 4 frames"):
        m(torch.randn(1, 3, 96, 32))
    with pytest.raises(ValueError, match="head is one of"):
        wb.create_model("video_net", head="attention")


# ------------------------------------------------------------------------------------------ long-memory problems
def test_adding_problem_and_its_baseline():
    d = wb.data.adding_problem(20_000, 50, seed=0)
    assert d.x.shape == (20_000, 50, 2) and torch.equal(d.x[..., 1].sum(1), torch.full((20_000,), 2.0))
    first, second = d.x[..., 1].argmax(1), 49 - d.x[..., 1].flip(1).argmax(1)
    assert (first < 25).all() and (second >= 25).all()
    manual = d.x[torch.arange(20_000), first, 0] + d.x[torch.arange(20_000), second, 0]
    assert torch.allclose(manual, d.y)
    baseline = float(((d.y - 1.0) ** 2).mean())                 # always answering 1
    assert baseline == pytest.approx(wb.data.ADDING_BASELINE_MSE, rel=0.03)
    assert torch.equal(wb.data.adding_problem(5, 10, seed=3).x, wb.data.adding_problem(5, 10, seed=3).x)
    with pytest.raises(ValueError, match="length must be at least 2"):
        wb.data.adding_problem(4, 1)


def test_copy_task_layout_and_baseline():
    d = wb.data.copy_task(6, delay=15, symbols=8, copy_length=10, seed=1)
    tokens = d.x.argmax(-1)
    assert d.x.shape == (6, 35, 10) and torch.equal(d.y[:, -10:], tokens[:, :10])
    assert (tokens[:, 24] == 9).all() and (d.y[:, :-10] == 0).all() and (tokens[:, 10:24] == 0).all()
    # the memoryless answer: blank until the copy, then uniform over the symbols
    logits = torch.full((6, 35, 9), -1e9)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    ce = float(F.cross_entropy(logits.flatten(0, 1), d.y.flatten()))
    assert ce == pytest.approx(wb.data.copy_baseline_loss(15, 8, 10), rel=1e-5)


def test_sequence_tasks_train_through_fit():
    from workbench.sequence import LastStepRegression, StepClassification
    train = wb.data.SequenceLoader(wb.data.adding_problem(512, 10, seed=0), batch_size=64, seed=0)
    test = wb.data.SequenceLoader(wb.data.adding_problem(256, 10, seed=1, split="test"), batch_size=256,
                                  shuffle=False)
    torch.manual_seed(0)
    m = wb.create_model("rnn_sequence", input_size=2, output_size=1, cell="lstm", hidden=32)
    res = wb.fit(m, train, test, task=LastStepRegression(), epochs=6, lr=0.01, optimizer="adam", progress=False,
                 weight_decay=0.0, schedule="constant")
    assert res.history["test_mse"].iloc[-1] < wb.data.ADDING_BASELINE_MSE    # it has remembered something
    copy = wb.data.SequenceLoader(wb.data.copy_task(64, delay=5), batch_size=32)
    torch.manual_seed(0)
    c = wb.create_model("rnn_sequence", input_size=10, output_size=9, per_step=True, hidden=16)
    out = wb.fit(c, copy, copy, task=StepClassification(10), epochs=1, progress=False)
    assert 0 <= out.history["test_acc"].iloc[-1] <= 1
    with pytest.raises(ValueError, match="trains on sequences"):
        wb.fit(c, wb.load("shapes", "train", subset=32), task=StepClassification(), progress=False)


def test_flow_filmstrips_point_the_way_things_move():
    from workbench.data import flow_filmstrips
    bg, it = _plain_sources()
    clips = motion_clips(bg, it, 40, frames=4, seed=0)
    flow = flow_filmstrips(clips, 4)
    assert flow.images.shape == clips.images.shape
    f = filmstrip_frames(flow.images, 4).float() - 128                     # [N, T, 3, H, W]
    assert (f[:, 0] == 0).all()                                              # no flow into the first frame
    moving = f[:, 1:, 2] > 4                                                 # pixels that moved
    dx = (f[:, 1:, 0] * moving).sum((1, 2, 3)) / moving.sum((1, 2, 3)).clamp(min=1)
    for k, name in ((0, "left"), (1, "right")):
        sel = clips.labels == k
        if sel.any():
            assert ((dx[sel] < 0) if name == "left" else (dx[sel] > 0)).all(), name
