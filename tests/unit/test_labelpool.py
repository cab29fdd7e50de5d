"""LabelPooling, label maps, crops and the generated multi-object data."""
import pytest
import torch

import workbench as wb
from workbench.multilabel import labelpool as lp
from workbench.multilabel import synthetic as syn


def test_box_coordinates_are_x0_y0_x1_y1_fractions():
    m = torch.zeros(1, 3, 8, 8)
    m[0, 0, :, :4] = 10.0   # class 0 fills the left half (small x)
    m[0, 1, :4, :] = 10.0   # class 1 fills the top half (small y)
    left_bottom = lp.label_pooling(m, torch.tensor([[0.0, 0.5, 0.5, 1.0]]))
    right_top = lp.label_pooling(m, torch.tensor([[0.5, 0.0, 1.0, 0.5]]))
    assert left_bottom.argmax().item() == 0 and left_bottom[0, 0] > 0.99
    assert right_top.argmax().item() == 1 and right_top[0, 1] > 0.99


def test_full_box_pools_the_mean_and_crops_nothing():
    torch.manual_seed(0)
    m = torch.randn(2, 5, 4, 4)
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    assert torch.allclose(lp.roi_pool_scores(m, full, samples=4), m.mean((2, 3)), atol=1e-6)
    assert torch.allclose(lp.label_pooling(m, full, samples=4), m.mean((2, 3)).softmax(1), atol=1e-6)
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(lp.crop_resize(img, full, 16), img)


def test_label_map_averages_to_the_logits():
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8).eval()
    x = torch.randn(3, 3, 32, 32)
    maps = lp.label_maps(model, x)
    assert maps.shape == (3, 10, 8, 8)
    assert torch.allclose(maps.mean((2, 3)), model(x), atol=1e-5)


def test_sparse_maps_round_trip_and_keep_the_ranking():
    torch.manual_seed(0)
    m = torch.randn(2, 6, 3, 3)
    v, i = lp.topk_sparse(m, 6)
    assert torch.equal(lp.sparse_to_dense(v, i, 6), m)
    v, i = lp.topk_sparse(m, 2)
    d = lp.sparse_to_dense(v, i, 6)
    assert torch.equal(d.argmax(1), m.argmax(1))


def test_random_boxes_lie_inside_with_the_asked_area():
    b = lp.random_boxes(2000, scale=(0.2, 0.5), generator=torch.Generator().manual_seed(0))
    assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 1 + 1e-6).all() and (b[:, 2:] > b[:, :2]).all()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    assert area.min() >= 0.2 * 0.9 and area.max() <= 0.5 + 1e-6


@pytest.mark.parametrize("boxes, message", [
    (torch.tensor([0.0, 0.0, 1.0, 1.0]), r"boxes must be \[batch, 4\]"),
    (torch.tensor([[0.5, 0.0, 0.2, 1.0]]), "x1 > x0"),
    (torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), "finite"),
])
def test_bad_boxes(boxes, message):
    with pytest.raises(ValueError, match=message):
        lp.label_pooling(torch.zeros(1, 3, 4, 4), boxes)


def test_multi_object_data_is_consistent_and_reproducible():
    a, b = syn.make_multi_shapes(300, seed=3), syn.make_multi_shapes(300, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.pixels, b.pixels)
    assert a.multi[torch.arange(300), a.labels].all(), "the single label is always in the set"
    counts = torch.nn.functional.one_hot(a.pixels.long().clamp_min(0), 10).mul((a.pixels >= 0)[..., None]).sum((1, 2))
    assert torch.equal(counts.argmax(1), a.labels)
    assert (a.multi.sum(1) > 1).float().mean() > 0.4, "most images hold several objects"
    # random crops often lose the single label's object: the noise LabelPooling addresses
    boxes = lp.random_boxes(300, generator=torch.Generator().manual_seed(0))
    assert 0.2 < syn.crop_single_label_noise(a, boxes).float().mean() < 0.8
