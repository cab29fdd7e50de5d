"""Test settings: a private cache, the shared data mirror when present, smoke mode, two threads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data"

os.environ.setdefault("WORKBENCH_MODE", "smoke")
if "WORKBENCH_DATA_DIR" not in os.environ and MIRROR.is_dir():
    os.environ["WORKBENCH_DATA_DIR"] = str(MIRROR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", 0)) or min(2, os.cpu_count() or 1))  # WORKBENCH_THREADS: beside other work


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """A cache folder shared by the whole session (decoded datasets are reused)."""
    if "WORKBENCH_CACHE_DIR" not in os.environ:
        os.environ["WORKBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("wb-cache"))
    yield


@pytest.fixture(autouse=True)
def _reset_overrides():
    from workbench import config
    saved = dict(config._overrides)
    yield
    config._overrides.clear()
    config._overrides.update(saved)


@pytest.fixture
def no_data_source(monkeypatch, tmp_path):
    """No mirror, no Debian package, no hub: every loader must fail with its one message."""
    from workbench.data import sources

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources.FASHION_MNIST, "debian", tmp_path / "nothing")
    return tmp_path


def have_mirror(name: str) -> bool:
    d = os.environ.get("WORKBENCH_DATA_DIR")
    return bool(d) and (Path(d) / name / "train.parquet").is_file()


requires_cifar = pytest.mark.skipif(not have_mirror("cifar10"),
                                    reason="CIFAR-10 mirror not found: set WORKBENCH_DATA_DIR (CI sets ../shared/data)")
requires_fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                      reason="apt-get install dataset-fashion-mnist")
