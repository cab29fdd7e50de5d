import gzip
import time

import pytest
import torch

import workbench as wb
from workbench import config
from workbench.data import DataUnavailableError, ImageDataset, Loader, random_crop_flip
from workbench.data import sources
from tests.conftest import requires_cifar, requires_fashion


def test_shapes_dataset_is_generated_and_balanced():
    ds = wb.load("shapes", "train")
    assert ds.images.shape == (10_000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert torch.equal(ds.labels.bincount(), torch.full((10,), 1000))
    again = wb.load("shapes", "train")
    assert torch.equal(ds.images, again.images)  # same pixels for the same seed
    test = wb.load("shapes", "test")
    assert not torch.equal(test.images[:10], ds.images[:10])


def test_subset_is_deterministic_and_sized():
    a = wb.load("shapes", "test", subset=100, seed=3)
    b = wb.load("shapes", "test", subset=100, seed=3)
    c = wb.load("shapes", "test", subset=100, seed=4)
    assert len(a) == 100 and torch.equal(a.labels, b.labels) and not torch.equal(a.images, c.images)


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match=r"valid names: cifar10, .*fashion_mnist, .*shapes"):
        wb.load("cifar100")
    with pytest.raises(ValueError, match="splits"):
        wb.load("shapes", "validation")


@requires_cifar
def test_cifar10_from_mirror_and_cached():
    ds = wb.load("cifar10", "test")
    assert ds.images.shape == (10_000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert torch.equal(ds.labels.bincount(), torch.full((10,), 1000))
    assert "mirror" in ds.source
    t = time.perf_counter()
    wb.load("cifar10", "train")
    wb.load("cifar10", "train")
    t = time.perf_counter()
    again = wb.load("cifar10", "train")
    assert time.perf_counter() - t < 1.0, "second load of CIFAR-10 should come from the decoded cache"
    assert len(again) == 50_000
    # pixel statistics match the published per-channel means (JPEG mirror: within 0.01)
    mean = (again.images.float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01)


@requires_fashion
def test_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", "/nonexistent")
    ds = wb.load("fashion_mnist", "test")
    assert ds.images.shape == (10_000, 1, 28, 28)
    assert torch.equal(ds.labels.bincount(), torch.full((10,), 1000))
    assert ds.source.startswith("debian")


def test_missing_source_gives_one_message(no_data_source):
    tmp_path = no_data_source
    with pytest.raises(DataUnavailableError) as e:
        wb.load("fashion_mnist", "train")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "WORKBENCH_DATA_DIR" in msg and "HF_HUB_OFFLINE" in msg
    assert not list((tmp_path / "cache").rglob("*")), "nothing may be written when no source is found"


def test_idx_reader_rejects_truncated_files(tmp_path):
    p = tmp_path / "x-images-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(ValueError, match="truncated"):
        sources._read_idx(p)


def test_dataset_validation_messages():
    imgs = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8"):
        ImageDataset(imgs.float(), torch.zeros(4, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="permute"):
        ImageDataset(torch.zeros(4, 8, 8, 3, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        ImageDataset(imgs, torch.zeros(3, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        ImageDataset(imgs, torch.tensor([0, 1, 2, 0]), ["a", "b"])
    with pytest.raises(TypeError, match="int64"):
        ImageDataset(imgs, torch.zeros(4, dtype=torch.int32), ["a"])


def test_crop_is_a_window_of_the_padded_image_and_flip_mirrors():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, g, padding=2, flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(64):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    shifts = {tuple((out[i] == padded[i, :, 2:10, 2:10]).all().view(-1).tolist()) for i in range(64)}
    assert len(shifts) == 2  # some centred, some shifted
    flipped = random_crop_flip(x, torch.Generator().manual_seed(1), crop=False, flip=True)
    same = [(flipped[i] == x[i]).all().item() for i in range(64)]
    mirrored = [(flipped[i] == x[i].flip(2)).all().item() for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54


def test_loader_is_reproducible_and_resumable():
    ds = wb.load("shapes", "test", subset=300)
    a = Loader(ds, batch_size=64, augment="crop_flip", seed=5, device="cpu")
    b = Loader(ds, batch_size=64, augment="crop_flip", seed=5, device="cpu")
    a.set_epoch(2)
    b.set_epoch(2)
    full = list(a)
    tail = list(b.iter_from(3))
    assert len(full) == 5 == len(a) and len(full[-1][1]) == 300 - 4 * 64
    for (x1, y1), (x2, y2) in zip(full[3:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    b.set_epoch(3)
    assert not torch.equal(next(iter(b))[1], full[0][1])  # a new order each epoch
    seen = torch.cat([y for _, y in full])
    assert torch.equal(seen.sort().values, ds.labels.sort().values)  # every example once


def test_loader_normalizes():
    ds = wb.load("shapes", "test", subset=500)
    x, _ = next(iter(Loader(ds, batch_size=500, shuffle=False, device="cpu")))
    assert x.dtype == torch.float32
    expect = (ds.images.float() / 255 - 0.5) / 0.3
    assert torch.allclose(x, expect, atol=1e-5)


def test_loader_bad_arguments():
    ds = wb.load("shapes", "test", subset=10)
    with pytest.raises(ValueError, match="augment"):
        Loader(ds, augment="mixup")
    with pytest.raises(ValueError, match="batch_size"):
        Loader(ds, batch_size=0)
    with pytest.raises(ValueError, match="drop_last"):
        Loader(ds, batch_size=64, drop_last=True)


def test_to_uint8_inverts_normalize():
    ds = wb.data.load("shapes", "train", subset=16)
    x = ds.normalize(ds.images)
    assert torch.equal(ds.to_uint8(x), ds.images)
    s = wb.data.to_uint8(torch.randn(2, 3, 4, 4) * 10, ds.mean, ds.std, stretch=True)
    assert s.dtype == torch.uint8 and int(s[0].min()) == 0 and int(s[0].max()) == 255
    with pytest.raises(ValueError, match="float inputs"):
        ds.to_uint8(ds.images)


def test_subset_offset_holds_out_a_disjoint_set():
    n = 300
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) // 256, torch.arange(n) % 256  # image i encodes i
    ds = ImageDataset(images, torch.zeros(n, dtype=torch.int64), ["a"])

    def ids(d):
        return set((d.images[:, 0, 0, 0].long() * 256 + d.images[:, 0, 0, 1].long()).tolist())

    train, val = ds.subset(200, seed=5), ds.subset(60, seed=5, offset=200)
    assert len(val) == 60 and not ids(train) & ids(val)
    assert ids(ds.subset(None, seed=5, offset=200)) == set(range(n)) - ids(train)  # the rest, all of it
    assert ids(ds.subset(260, seed=5)) == ids(train) | ids(val)  # the same random order, continued
    with pytest.raises(ValueError, match="offset"):
        ds.subset(10, seed=5, offset=n)
