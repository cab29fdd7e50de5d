"""wb.nas.experiments: resized data (exact averages, disjoint held-out subsets), the registered supernets and
found networks (the same modules as the wb.nas constructors), and one cached training run as a sweep record."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import nas
from workbench.nas import experiments as nx

OPS3 = ("identity", "sep_conv_3x3", "max_pool_3x3")


def test_downsample_is_the_rounded_block_average():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    images[0, 0, :2, :2] = torch.tensor([[0, 1], [1, 1]], dtype=torch.uint8)  # mean 0.75 rounds to 1
    ds = wb.data.ImageDataset(images, torch.tensor([0, 1]), ["a", "b"], name="toy")
    small = nx.downsample(ds, 2)
    assert small.images.shape == (2, 3, 2, 2) and small.images.dtype == torch.uint8
    assert small.images[0, 0, 0, 0] == 1
    # every other block: four consecutive-row values of arange, whose mean is x + 2.5 -> rounded half to even
    x = images[1, 2].float()
    want = torch.tensor([[x[:2, :2].mean(), x[:2, 2:].mean()], [x[2:, :2].mean(), x[2:, 2:].mean()]]).round()
    assert torch.equal(small.images[1, 2].float(), want)
    assert small.labels.tolist() == [0, 1] and small.classes == ["a", "b"] and small.mean == ds.mean
    assert nx.downsample(ds, 4) is ds
    with pytest.raises(ValueError, match=r"divides the side of the square images \(4\)"):
        nx.downsample(ds, 3)


def test_held_out_subset_is_disjoint_and_together_the_larger_subset():
    a = nx.load_resized("shapes", "train", 30)
    b = nx.load_resized("shapes", "train", 20, offset=30)
    both = wb.data.load("shapes", "train").subset(50, seed=0)
    key = lambda ds: sorted(bytes(im.numpy().tobytes()) + bytes([int(y)]) for im, y in zip(ds.images, ds.labels))  # noqa: E731
    assert key(both) == sorted(key(a) + key(b))
    assert not set(key(a)) & set(key(b))
    small = nx.load_resized("shapes", "test", 8, size=16)
    assert small.shape == (3, 16, 16) and len(small) == 8


def test_registered_models_are_the_nas_constructors():
    space = nas.cell_space(2, OPS3)
    arch = space.sample(3)
    torch.manual_seed(0)
    a = wb.create_model("nas_cell_network", arch=arch, cells=1, width=8, stages=2)
    torch.manual_seed(0)
    b = nas.cell_network(arch, cells=1, width=8, stages=2)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    sup = wb.create_model("nas_cell_supernet", blocks=2, ops=list(OPS3), width=8, stages=2)  # a list, as JSON gives
    assert sup.space == space and sup.config["cells"] == 1
    vit_space = dict(depths=[[1, 2], [1]], widths=[[16, 32], [32]], heads=[[1, 2], [2]], mlp_ratios=[[2.0], [2.0]])
    vsup = wb.create_model("nas_vit_supernet", **vit_space)
    assert vsup.space == nas.vit_stage_space(**vit_space) and vsup.max_arch["stage1.width"] == 32
    torch.manual_seed(0)
    v = wb.create_model("nas_vit_stages", arch=nas.vit_tiny_arch(2, 32, 2, 2.0))
    torch.manual_seed(0)
    w = nas.vit_stages_network(nas.vit_tiny_arch(2, 32, 2, 2.0))
    assert all(torch.equal(t, w.state_dict()[k]) for k, t in v.state_dict().items())


def test_network_run_is_a_cached_record_at_the_given_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    arch = nas.cell_space(1, OPS3).sample(0)
    kw = dict(model_kwargs=dict(arch=arch, cells=1, width=4, stages=2), dataset="shapes", train_subset=32,
              test_subset=16, image_size=16, epochs=2, batch_size=16, lr=0.05, augment=None)
    rec = nx.network_run("nas_cell_network", 0, **kw)
    assert rec["diverged"] is False and rec["curve_epoch"] == [1, 2] and len(rec["curve_test_acc"]) == 2
    assert rec["test_acc"] == rec["curve_test_acc"][-1] and 0 <= rec["test_acc"] <= 1
    net = nas.cell_network(arch, cells=1, width=4, stages=2)
    cost = wb.models.summary(net, (3, 16, 16))
    assert (rec["params"], rec["macs"]) == (cost.params, cost.macs)
    assert cost.macs * 4 == pytest.approx(wb.models.summary(net, (3, 32, 32)).macs, rel=0.01)  # 16x16: a quarter
    monkeypatch.setattr(wb.train.cached, "fit", lambda *a, **k: pytest.fail("trained again"))
    again = nx.network_run("nas_cell_network", 0, **kw)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in rec.items() if k != "seconds"}
