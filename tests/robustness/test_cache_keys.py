"""A cached result is returned only for the exact configuration, data and package version that made it."""
import pytest
import torch

import workbench as wb
from workbench.train import cached as cached_mod


@pytest.fixture
def counted_fit(monkeypatch, tmp_path):
    wb.config.set_cache_dir(tmp_path)
    calls = []
    real = cached_mod.fit

    def fit(*a, **k):
        calls.append(k.get("lr"))
        return real(*a, **k)

    monkeypatch.setattr(cached_mod, "fit", fit)
    yield calls
    wb.config.set_cache_dir(None)


def test_each_ingredient_of_the_key_invalidates(counted_fit, monkeypatch):
    data = wb.load("shapes", "train", subset=128)
    kw = dict(epochs=1, batch_size=64, lr=0.05, progress=False, model_kwargs={"width": 4})
    wb.train_model("resnet8", data, **kw)
    wb.train_model("resnet8", data, **kw)
    assert len(counted_fit) == 1, "the same call is served from the cache"
    wb.train_model("resnet8", data, **{**kw, "lr": 0.06})
    assert len(counted_fit) == 2, "a configuration change recomputes"
    changed = wb.data.ImageDataset(data.images.clone(), data.labels.clone(), data.classes, data.name, data.split,
                                   data.mean, data.std)
    changed.images[0, 0, 0, 0] ^= 1  # one bit of one pixel
    wb.train_model("resnet8", changed, **kw)
    assert len(counted_fit) == 3, "a data change recomputes"
    monkeypatch.setattr(wb, "__version__", wb.__version__ + ".post1")
    wb.train_model("resnet8", data, **kw)
    assert len(counted_fit) == 4, "another package version recomputes"


def test_guided_results_are_keyed_on_the_guides_weights(counted_fit):
    data = wb.load("shapes", "train", subset=128)
    kw = dict(epochs=1, batch_size=64, progress=False, target_kwargs={"depth": 2, "width": 16})
    torch.manual_seed(0)
    guide = wb.create_model("resnet8", width=4)
    wb.guidance.train_guided("mlp", data, guide=guide, **kw)
    wb.guidance.train_guided("mlp", data, guide=guide, **kw)
    assert len(counted_fit) == 1
    with torch.no_grad():
        next(guide.parameters())[0].mul_(1.5)  # the same architecture, other weights
    wb.guidance.train_guided("mlp", data, guide=guide, **kw)
    assert len(counted_fit) == 2
    wb.guidance.train_guided("mlp", data, guide=guide, **{**kw, "alpha": 2.0})
    assert len(counted_fit) == 3
