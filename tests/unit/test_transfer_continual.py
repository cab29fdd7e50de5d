"""Continual learning with hypernetworks (von Oswald et al. 2020; Chandra et al. 2023): known answers for the
functional target, the recurrent generator's dependencies, the output regularizer, EWC, the accuracy-matrix
metrics, and the errors of bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.transfer import continual as C

torch.set_num_threads(1)


def _data(n=64, classes=4, size=8, chans=1, seed=0, name="toy"):
    """Images whose class sets the mean brightness of one quadrant: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, chans, size, size), generator=g)
    for c in range(classes):
        q = images[labels == c]
        r, s = divmod(c % 4, 2)
        q[:, :, r * size // 2:(r + 1) * size // 2, s * size // 2:(s + 1) * size // 2] += 150
        images[labels == c] = q
    return wb.data.ImageDataset(images.to(torch.uint8), labels, [f"c{i}" for i in range(classes)], name)


def _target(chans=1, size=8):
    return C.TargetNet(in_chans=chans, img_size=size, widths=(4, 6))


def _hnets(num_tasks=3, chunk_size=50):
    torch.manual_seed(0)
    return [C.ChunkedHypernetwork(_target(), num_tasks, embedding_dim=4, chunk_size=chunk_size, chunk_dim=3, hidden=(8,)),
            C.RecurrentHypernetwork(_target(), num_tasks, embedding_dim=4, chunk_size=chunk_size, chunk_dim=3, hidden=8)]


RECIPE = dict(epochs=2, batch_size=16, optimizer="adam", lr=1e-2, weight_decay=0.0, augment=None, device="cpu")


# --- data ------------------------------------------------------------------------------------------

def test_split_tasks_remaps_labels():
    data = _data(n=40, classes=6)
    tasks = C.split_tasks(data, n_tasks=3)
    assert [t.classes for t in tasks] == [["c0", "c1"], ["c2", "c3"], ["c4", "c5"]]
    for t, task in enumerate(tasks):
        keep = (data.labels // 2) == t
        assert torch.equal(task.images, data.images[keep])
        assert torch.equal(task.labels, data.labels[keep] - 2 * t)
        assert set(task.labels.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="need 8 classes but toy has 6"):
        C.split_tasks(data, n_tasks=4)


# --- the hypernetworks -----------------------------------------------------------------------------

@pytest.mark.parametrize("which", [0, 1])
def test_functional_target_equals_module_with_generated_weights(which):
    net = _hnets()[which]
    net.observe_task(1)
    weights = net.weights(1)
    assert sum(w.numel() for w in weights.values()) == net.num_weights == sum(p.numel() for p in _target().parameters())
    module = _target()
    module.load_state_dict({k: v.detach() for k, v in weights.items()})
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(net(x, 1), module(x), rtol=0, atol=1e-6)


def test_recurrent_chunks_depend_on_the_chunks_before_and_chunked_ones_do_not():
    chunked, recurrent = _hnets(chunk_size=40)
    for net in (chunked, recurrent):
        net.observe_task(0)
    k = 3  # change chunk 3's embedding: which chunks move?
    for net, later_move in ((chunked, False), (recurrent, True)):
        before = net.generate(0)[0].detach().view(-1)
        with torch.no_grad():
            net.chunk_embeddings[k] += 1.0
        after = net.generate(0)[0].detach().view(-1)
        changed = [(after[i * 40:(i + 1) * 40] != before[i * 40:(i + 1) * 40]).any().item() for i in range(net.num_chunks)]
        assert changed[:k] == [False] * k and changed[k]
        assert all(changed[k + 1:]) is later_move and any(changed[k + 1:]) is later_move


def test_generated_weights_have_the_target_scale():
    for net in _hnets():
        net.observe_task(0)
        w = net.generate(0)[0].detach()
        raw = w / net.scale
        assert 0.5 < float(raw.std()) < 2.0  # calibrated read-out: unit spread at initialization


def test_unknown_task_ids_name_the_known_ones():
    for net in _hnets() + [C.MultiHeadNet(3, in_chans=1, img_size=8, widths=(4, 6))]:
        net.observe_task(0)
        net.observe_task(2)
        x = torch.randn(2, 1, 8, 8)
        with pytest.raises(ValueError, match=r"task id 1 was never seen .*known ids: \[0, 2\].*TaskIncremental\(1\)"):
            net(x, 1)
        with pytest.raises(ValueError, match=r"task id 7 is not an id .*ids 0\.\.2.*known \(trained\) ids: \[0, 2\]"):
            net(x, 7)
        with pytest.raises(ValueError, match="task id True"):
            net(x, True)
        assert net(x, 2).shape == (2, 2)


def test_target_with_buffers_is_refused():
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="buffers"):
        C.RecurrentHypernetwork(bn, 2)


# --- training through fit --------------------------------------------------------------------------

def test_fit_trains_only_the_current_embedding_and_marks_the_task():
    net = _hnets()[1]
    task = C.split_tasks(_data(n=48), n_tasks=2)[1]
    before = [e.detach().clone() for e in net.task_embeddings]
    head = net.head.weight.detach().clone()
    wb.fit(net, task, task=C.TaskIncremental(1), params=net.parameters_for(1), progress=False, **RECIPE)
    assert net.known_tasks == [1]
    assert not torch.equal(net.task_embeddings[1], before[1]) and not torch.equal(net.head.weight, head)
    assert torch.equal(net.task_embeddings[0], before[0]) and torch.equal(net.task_embeddings[2], before[2])


def test_output_regularizer_penalty_by_hand():
    net = _hnets()[0]
    for t in (0, 1, 2):
        net.observe_task(t)
    reg = C.OutputRegularizer(beta=0.5)
    reg.consolidate(net, None, 0)
    reg.consolidate(net, None, 1)
    assert float(reg.penalty(net, exclude=2).detach()) == pytest.approx(0.0, abs=1e-10)
    d0, d1 = torch.randn(net.num_weights) * 0.1, torch.randn(net.num_weights) * 0.2
    reg.targets[0] = reg.targets[0] + d0
    reg.targets[1] = reg.targets[1] + d1
    want = 0.5 * (float(d0.pow(2).sum()) + float(d1.pow(2).sum())) / 2
    assert float(reg.penalty(net, exclude=2).detach()) == pytest.approx(want, rel=1e-4)
    assert float(reg.penalty(net, exclude=1).detach()) == pytest.approx(0.5 * float(d0.pow(2).sum()), rel=1e-4)
    with pytest.raises(TypeError, match="needs a hypernetwork"):
        reg.consolidate(C.MultiHeadNet(2, in_chans=1, img_size=8), None, 0)


@pytest.mark.parametrize("which", [0, 1])
def test_huge_beta_keeps_earlier_generated_weights(which):
    tasks = C.split_tasks(_data(n=64), n_tasks=2)
    drift = {}
    for beta in (0.0, 1e4):
        net = _hnets(num_tasks=2)[which]
        reg = C.OutputRegularizer(beta=beta)
        wb.fit(net, tasks[0], task=C.TaskIncremental(0), params=net.parameters_for(0), progress=False, **RECIPE)
        reg.consolidate(net, tasks[0], 0)
        w0 = net.generate(0)[0].detach().clone()
        wb.fit(net, tasks[1], task=C.TaskIncremental(1), params=net.parameters_for(1), algorithms=[reg],
               progress=False, **{**RECIPE, "lr": 1e-3, "epochs": 4})
        drift[beta] = float((net.generate(0)[0].detach() - w0).norm() / w0.norm())
    # Adam moves every parameter by about lr per step whatever the gradient's size, so a huge beta pins
    # task 0's weights down to that jitter (measured 0.2%), ten to twenty times below the free drift
    assert drift[0.0] > 0.015, drift
    assert drift[1e4] < 5e-3 and drift[1e4] < drift[0.0] / 5, drift


# --- EWC -------------------------------------------------------------------------------------------

def test_ewc_penalty_hand_formula():
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        lin.bias.fill_(0.5)
    params = dict(lin.named_parameters())
    anchors = [{"weight": torch.tensor([[0.0, -1.0]]), "bias": torch.tensor([0.0])},
               {"weight": torch.tensor([[1.0, 0.0]]), "bias": torch.tensor([1.5])}]
    fishers = [{"weight": torch.tensor([[2.0, 3.0]]), "bias": torch.tensor([4.0])},
               {"weight": torch.tensor([[5.0, 0.5]])}]  # no bias entry: not penalized
    # task 1: 2 * 1^2 + 3 * (-1)^2 + 4 * 0.5^2 = 6; task 2: 5 * 0 + 0.5 * (-2)^2 = 2; lambda / 2 * 8
    got = C.ewc_penalty(params, anchors, fishers, strength=3.0)
    assert float(got.detach()) == pytest.approx(3.0 / 2 * 8)
    got.backward()  # d/dw = lambda sum_k F_k (w - w*_k)
    assert lin.weight.grad[0].tolist() == pytest.approx([3.0 * (2 * 1 + 5 * 0), 3.0 * (3 * -1 + 0.5 * -2)])
    assert lin.bias.grad.tolist() == pytest.approx([3.0 * 4 * 0.5])
    assert float(C.ewc_penalty(params, [], [], 3.0)) == 0.0
    with pytest.raises(ValueError, match="one anchor per Fisher"):
        C.ewc_penalty(params, anchors, fishers[:1], 1.0)
    with pytest.raises(ValueError, match="not among the parameters"):
        C.ewc_penalty(params, anchors[:1], [{"nope": torch.ones(1)}], 1.0)


def test_diagonal_fisher_matches_a_loop_over_examples_and_classes():
    torch.manual_seed(0)
    net = C.MultiHeadNet(2, in_chans=1, img_size=8, widths=(3,))
    net.observe_task(1)
    data = C.split_tasks(_data(n=24), n_tasks=2)[1]
    got = C.diagonal_fisher(net, data, 1, batch_size=5)
    want = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    x_all = data.normalize(data.images)
    for x in x_all:
        logp = F.log_softmax(net(x[None], 1)[0], -1)
        for c in range(2):
            grads = torch.autograd.grad(logp[c], list(net.parameters()), retain_graph=True, allow_unused=True)
            for (n, _), g in zip(net.named_parameters(), grads):
                if g is not None:
                    want[n] += logp[c].exp().detach() * g.pow(2)
    for n in want:
        torch.testing.assert_close(got[n], want[n] / len(data), rtol=1e-4, atol=1e-9)
    assert float(got["heads.0.weight"].abs().sum()) == 0.0  # the other task's head plays no part


# --- metrics and the sequence ----------------------------------------------------------------------

def test_average_accuracy_and_backward_transfer_by_hand():
    r = [[0.9, None, None], [0.8, 0.95, None], [0.7, 0.9, 0.85]]
    assert C.average_accuracy(r) == pytest.approx((0.7 + 0.9 + 0.85) / 3)
    assert C.backward_transfer(r) == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)
    assert C.backward_transfer(torch.tensor([[0.5, float("nan")], [0.75, 0.6]])) == pytest.approx(0.25)
    assert C.backward_transfer(np.eye(3) * 0 + 0.5) == 0.0
    with pytest.raises(ValueError, match="square"):
        C.backward_transfer([[0.9, 0.8]])
    with pytest.raises(ValueError, match="diagonal"):
        C.average_accuracy([[0.9, None], [None, None]])
    with pytest.raises(ValueError, match="at least two tasks"):
        C.backward_transfer([[0.9]])


def test_train_sequence_fills_the_matrix_and_fine_tuning_keeps_old_heads():
    tasks = C.split_tasks(_data(n=64, classes=6), n_tasks=3)
    torch.manual_seed(0)
    net = C.MultiHeadNet(4, in_chans=1, img_size=8, widths=(4, 6))
    unused = net.heads[3].weight.detach().clone()
    out = C.train_sequence(net, tasks, tasks, None, **RECIPE)
    m = out.matrix
    assert m.shape == (3, 3) and np.isnan(m[np.triu_indices(3, 1)]).all()
    assert m[-1].tolist() == [C.evaluate_task(net, tasks[j], j) for j in range(3)]  # the last row: the final model
    assert out.acc == pytest.approx(m[-1].mean()) and out.bwt == pytest.approx(np.mean(m[-1, :2] - np.diag(m)[:2]))
    assert len(out.histories) == 3 and out.histories[2].task.iloc[0] == 2
    assert out.drift[-1] == 0.0 and out.drift[0] > 0.01  # fine-tuning moved task 0's shared layers
    assert torch.equal(net.heads[3].weight, unused)  # a task never trained keeps its head
    head0, features = net.heads[0].weight.detach().clone(), net.features[0].weight.detach().clone()
    wb.fit(net, tasks[1], task=C.TaskIncremental(1), params=net.parameters_for(1), progress=False, **RECIPE)
    assert torch.equal(net.heads[0].weight, head0) and not torch.equal(net.features[0].weight, features)
    with pytest.raises(ValueError, match="num_tasks=4"):
        C.train_sequence(C.MultiHeadNet(3, in_chans=1, img_size=8), tasks + tasks[:1], tasks + tasks[:1])


def test_build_model_rejects_unknown_method():
    with pytest.raises(ValueError, match="finetune, ewc, hnet, hnet_rnn"):
        C.build_continual_model("lwf", 5, 1, 28)
    assert isinstance(C.build_continual_model("hnet_rnn", 5, 1, 28), C.RecurrentHypernetwork)
