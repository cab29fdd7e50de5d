"""workbench.dense.segment: multiply-adds, equal-MACs widths, cached segmentation training, throughput,
the speed ratio, the ERF of a model on real scenes, and the constant-prediction mIoU."""
import pandas as pd
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.dense import (SegmentationData, constant_miou, erf_of, mean_iou, seg_fingerprint,
                             segmentation_macs, speed_ratio, throughput, train_segmenter, width_for_macs)


class _Conv(nn.Module):
    """One 3x3 convolution, C -> K channels, no bias: exactly 9 C K multiply-adds per output pixel."""

    def __init__(self, c=3, k=2):
        super().__init__()
        self.in_chans = c
        self.conv = nn.Conv2d(c, k, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(x)


def _data(n=6, size=16, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    masks = torch.randint(0, k, (n, size, size), generator=g)
    return SegmentationData(images, masks, k)


def test_segmentation_macs_exact_for_one_convolution():
    assert segmentation_macs(_Conv(3, 2), size=8) == 9 * 3 * 2 * 8 * 8
    assert segmentation_macs(_Conv(3, 2), size=16) == 4 * segmentation_macs(_Conv(3, 2), size=8)
    m = _Conv().train()
    segmentation_macs(m, 8)
    assert m.training  # the mode is restored
    with pytest.raises(ValueError, match="size"):
        segmentation_macs(_Conv(), size=0)


def test_width_for_macs_finds_the_width_it_was_given():
    for name, kw in (("seg_hrnet", {}), ("seg_resnet", dict(depth=8, decoder=8))):
        target = segmentation_macs(wb.create_model(name, width=6, **kw), 32)
        assert width_for_macs(name, target, 32, widths=range(2, 12), **kw) == (6, target)
    small = segmentation_macs(wb.create_model("seg_hrnet", width=2), 32)
    assert width_for_macs("seg_hrnet", 1, 32, widths=range(2, 5)) == (2, small)  # below every width: the smallest
    with pytest.raises(ValueError, match="width is what"):
        width_for_macs("seg_hrnet", 10, 32, width=4)
    with pytest.raises(ValueError, match="positive number"):
        width_for_macs("seg_hrnet", 0, 32)


def test_constant_miou_exact_and_matches_mean_iou():
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2, :2] = 1          # 4 pixels of class 1, 12 of ground, classes 2 absent
    data = SegmentationData(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), masks, 3)
    assert constant_miou(data, 0) == pytest.approx((12 / 16) / 2)   # ground IoU 0.75, class 1 IoU 0
    assert constant_miou(data, 2) == pytest.approx(0.0)              # classes 0, 1, 2 all score 0

    class Constant(nn.Module):
        def __init__(self, label):
            super().__init__()
            self.label, self.w = label, nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.zeros(len(x), 3, *x.shape[-2:]) + self.w
            out[:, self.label] = 1
            return out

    d = _data()
    for label in (0, 1):
        assert constant_miou(d, label) == pytest.approx(mean_iou(Constant(label), d)[0])
    with pytest.raises(ValueError, match="label is a class"):
        constant_miou(d, 3)
    with pytest.raises(TypeError, match="SegmentationData"):
        constant_miou(torch.zeros(2), 0)


def test_throughput_and_speed_ratio():
    slow = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(6)])
    fast = nn.Conv2d(3, 3, 1)
    slow.train()
    table = throughput({"fast": fast, "slow": slow}, size=16, batch_size=4, repeats=3, batches=2)
    assert list(table.columns) == ["model", "repeat", "images_per_s"] and len(table) == 6
    assert (table.images_per_s > 0).all() and slow.training
    assert set(table[table.repeat == 1].model) == {"fast", "slow"}
    made = pd.DataFrame({"model": ["a", "b", "a", "b", "a", "b"], "repeat": [0, 0, 1, 1, 2, 2],
                         "images_per_s": [10.0, 5.0, 9.0, 3.0, 8.0, 8.0]})
    r = speed_ratio(made, "a", "b")
    assert r["ratios"] == [2.0, 3.0, 1.0] and r["median"] == 2.0 and (r["min"], r["max"]) == (1.0, 3.0)
    with pytest.raises(ValueError, match="not a model"):
        speed_ratio(made, "a", "c")
    with pytest.raises(ValueError, match="repeats"):
        throughput({"fast": fast}, repeats=0)
    with pytest.raises(ValueError, match="at least one model"):
        throughput({})


def test_erf_of_one_convolution_is_its_kernel_square():
    d = _data(n=2, size=15)
    erf, radius = erf_of(_Conv(3, 2), d, n=2, mass=1.0)
    assert erf.shape == (15, 15) and erf.sum().item() == pytest.approx(1.0)
    nz = (erf > 0).nonzero()
    assert nz.min(0).values.tolist() == [6, 6] and nz.max(0).values.tolist() == [8, 8]
    assert radius == 1
    with pytest.raises(ValueError, match="positive number of images"):
        erf_of(_Conv(), d, n=0)


def test_train_segmenter_trains_caches_and_checks_input(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    d = _data(n=8, size=16, k=3)
    kw = dict(model_kwargs=dict(depth=8, width=4, decoder=4), seed=0, batch_size=4, epochs=1, optimizer="adam",
              lr=1e-3, weight_decay=0.0)
    a = train_segmenter("seg_resnet", d, d, **kw)
    b = train_segmenter("seg_resnet", d, d, **kw)
    for k, v in a.model.state_dict().items():      # the second call reads the first's result from the cache
        assert torch.equal(v, b.model.state_dict()[k])
    assert a.model.eval()(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    assert "test_miou" in a.history.columns
    assert seg_fingerprint(d) == seg_fingerprint(_data(n=8, size=16, k=3)) != seg_fingerprint(_data(n=8, size=16,
                                                                                                    k=3, seed=1))
    with pytest.raises(TypeError, match="SegmentationData"):
        train_segmenter("seg_resnet", torch.zeros(2, 3, 8, 8), None)
    with pytest.raises(ValueError, match="sets task"):
        train_segmenter("seg_resnet", d, None, task=None)
