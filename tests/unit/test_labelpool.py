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


def test_crop_training_is_wb_fit_with_a_crop_loader_and_task(tmp_path):
    """train_crops is one wb.fit run: CropLoader's crops are a pure function of (seed, epoch, batch), so a run
    stopped and resumed from its checkpoint ends with the weights of the uninterrupted one; the labelpool
    target is LabelPooling of the stored maps over each crop's box, and with a map that is one class everywhere
    it is that class (up to the softmax); bad targets are refused before any work."""
    data = syn.make_multi_shapes(96, seed=0, size=16)
    loader = syn.CropLoader(data, 32, scale=(0.2, 1.0), seed=3)
    a, b = list(loader), list(syn.CropLoader(data, 32, scale=(0.2, 1.0), seed=3))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[2], y[2]) for x, y in zip(a, b))
    x, y, boxes, idx = a[0]
    assert x.shape == (32, 3, 16, 16) and torch.equal(y, data.labels[idx])
    assert torch.equal(x, data.normalize(lp.crop_resize(data.images[idx], boxes, 16)))

    maps = torch.full((96, 10, 4, 4), -20.0)
    maps[:, 7] = 20.0
    task = syn.CropTargets("labelpool", maps)
    logits = torch.zeros(32, 10)
    logits[:, 7] = 30.0
    assert float(task.loss(logits, a[0])) < 1e-6 < float(syn.CropTargets("single").loss(logits, a[0]))

    def student():
        torch.manual_seed(0)
        return wb.create_model("resnet8", width=4)

    kw = dict(task=task, epochs=2, lr=0.05, optimizer="sgd", progress=False, seed=1)
    full = wb.fit(student(), syn.CropLoader(data, 32, seed=1), **kw)
    wb.fit(student(), syn.CropLoader(data, 32, seed=1), checkpoint_dir=tmp_path, stop_after_steps=4, **kw)
    resumed = wb.fit(student(), syn.CropLoader(data, 32, seed=1), checkpoint_dir=tmp_path, **kw)
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(p, q)
    model = student()
    hist = syn.train_crops(model, data, "single", epochs=1, batch_size=32, progress=False)
    assert len(hist["loss"]) == 1 and not model.training
    with pytest.raises(ValueError, match="'single' or 'labelpool'"):
        syn.train_crops(student(), data, "soft")
    with pytest.raises(ValueError, match="needs annotator="):
        syn.train_crops(student(), data, "labelpool")
    with pytest.raises(ValueError, match="area fractions"):
        syn.CropLoader(data, 32, scale=(0.5, 0.2))


def test_crop_targets_shown_scores_each_target_against_the_pixels():
    """With label maps that are the true class maps (one-hot per pixel, scaled), LabelPooling's top class is
    always a class the crop shows; the single label is not, for crops that miss its object."""
    data = syn.make_multi_shapes(200, seed=2, size=16)
    onehot = torch.nn.functional.one_hot(data.pixels.long().clamp(min=0), 10).permute(0, 3, 1, 2).float()
    maps = 20.0 * onehot * (data.pixels >= 0)[:, None]
    boxes = lp.random_boxes(200, (0.08, 0.3), generator=torch.Generator().manual_seed(0))
    got = syn.crop_targets_shown(data, boxes, maps, min_fraction=2 / 256)
    assert got["labelpool"] > 0.9 > got["single"] and got["crops"] > 100
    same = syn.crop_targets_shown(data, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 200), maps)
    assert same["single"] == 1.0  # whole images: the single label is the largest visible class
