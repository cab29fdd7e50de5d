import pytest
import torch

import workbench as wb
from workbench import config


def test_mode_from_env_and_override(monkeypatch):
    monkeypatch.setenv("WORKBENCH_MODE", "paper")
    assert config.get_mode() == "paper"
    config.set_mode("smoke")
    assert config.get_mode() == "smoke"
    config.set_mode(None)
    assert config.get_mode() == "paper"
    monkeypatch.delenv("WORKBENCH_MODE")
    assert config.get_mode() == "laptop"


def test_bad_mode_names_choices(monkeypatch):
    monkeypatch.setenv("WORKBENCH_MODE", "fast")
    with pytest.raises(ValueError, match="smoke, laptop, paper"):
        config.get_mode()
    with pytest.raises(ValueError, match="unknown mode 'huge'"):
        config.set_mode("huge")


def test_by_mode():
    assert config.by_mode(1, 2, 3, mode="smoke") == 1
    assert config.by_mode(1, 2, 3, mode="laptop") == 2
    assert config.by_mode(1, 2, 3, mode="paper") == 3


def test_device_cpu_and_override(monkeypatch):
    monkeypatch.delenv("WORKBENCH_DEVICE", raising=False)
    if not torch.cuda.is_available():
        assert config.device().type in ("cpu", "mps")
    assert config.set_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    config.set_device(None)
    assert config.device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        config.set_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        config.set_device("gpu0")


def test_seed_repeats_exactly():
    wb.seed_everything(123)
    a = (torch.rand(5), wb.create_model("resnet8").fc.weight.clone())
    wb.seed_everything(123)
    b = (torch.rand(5), wb.create_model("resnet8").fc.weight.clone())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_dirs_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "d"))
    assert config.cache_dir() == tmp_path / "c"
    assert config.data_dir() == tmp_path / "d"
    monkeypatch.delenv("WORKBENCH_DATA_DIR")
    assert config.data_dir() is None
