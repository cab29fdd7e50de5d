"""wb.train.cached_fit: the one cached wb.fit (train_model, fine_tune, train_reinforced, the feature heads and
the dense and VL tools' train_* functions are each a model, loaders, a task and a key for it)."""
import pytest
import torch

import workbench as wb
from workbench.train import cached_fit


def _parts(seed=0):
    data = wb.load("fashion_mnist", "train", subset=64, seed=0)

    def build():
        torch.manual_seed(seed)
        return wb.create_model("resnet8", num_classes=10, in_chans=1, width=4)

    return build, (lambda: (data, None))


def test_second_call_loads_the_same_weights_and_history(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    build, loaders = _parts()
    kw = dict(task=wb.train.Classification(), key={"what": "resnet8 on 64 garments"}, name="test_cached_fit",
              fit_kwargs=dict(epochs=1, batch_size=32, lr=0.05))
    first = cached_fit(build, loaders, **kw)
    calls = []
    again = cached_fit(build, lambda: calls.append(1) or loaders(), **kw)
    assert not calls                                              # from the cache: the data were never loaded
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    assert list(first.history["train_loss"]) == list(again.history["train_loss"])
    other = cached_fit(build, loaders, **{**kw, "key": {"what": "something else"}})
    assert len(list((tmp_path / "results" / "test_cached_fit").iterdir())) == 2   # another key, another entry


def test_reserved_arguments_and_unnamed_functions_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    build, loaders = _parts()
    kw = dict(task=wb.train.Classification(), key={}, name="test_cached_fit")
    with pytest.raises(ValueError, match="test_cached_fit sets seed itself"):
        cached_fit(build, loaders, fit_kwargs={"seed": 1}, **kw)
    with pytest.raises(ValueError, match="cache_key"):
        cached_fit(build, loaders, fit_kwargs={"epochs": 1, "loss_fn": lambda o, y: o.sum()}, **kw)


def test_a_cached_model_is_rebuilt_with_its_algorithms_structure_and_its_setup(tmp_path, monkeypatch):
    """An algorithm that changes the model at init (QAT's fake-quantized layers) is applied to the rebuilt model
    before the weights are loaded, as is setup (which records what it chose); refresh trains again."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    build, loaders = _parts()
    seen = []

    def setup(model):
        seen.append(type(model).__name__)
        return {"weight_decay": 0.0}

    kw = dict(key={"what": "QAT resnet8", "setup": "no decay"}, name="test_cached_fit", setup=setup,
              fit_kwargs=dict(epochs=1, batch_size=32, lr=0.05, algorithms=[wb.quant.QAT("w4a8")]))
    first = cached_fit(build, loaders, **kw)
    assert len(seen) == 2                                           # the fresh model, then the one rebuilt
    trained = []
    again = cached_fit(build, lambda: trained.append(1) or loaders(), **kw)
    assert not trained and len(seen) == 3
    quantized = [type(m).__name__ for m in again.model.modules() if type(m).__name__.startswith("Quant")]
    assert quantized and quantized == [type(m).__name__ for m in first.model.modules()
                                       if type(m).__name__.startswith("Quant")]
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    cached_fit(build, lambda: trained.append(1) or loaders(), refresh=True, **kw)
    assert trained == [1]
