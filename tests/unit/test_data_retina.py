"""Generated retina-like fundus images (stand-in for Castilla et al. 2022, arXiv:2210.03180): determinism,
shapes, grades and referable labels, the field of view, lesions by grade, local contrast normalization and
the hub loader's offline message."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.data import DataUnavailableError, retina as R


def test_deterministic_per_seed(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "a"))
    a = R.make_retina(40, seed=5, size=24)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "b"))          # recomputed, not read back
    b = R.make_retina(40, seed=5, size=24)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, R.make_retina(40, seed=6, size=24).images)


def test_shapes_labels_and_grades(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    ds = R.make_retina(300, seed=0, size=32)
    graded = R.make_retina(300, seed=0, size=32, label="grade")
    assert ds.images.shape == (300, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, graded.images)                              # the label does not change the draw
    assert ds.classes == ["non-referable", "referable"] and graded.classes == R.GRADES
    assert torch.equal(ds.labels, (graded.labels >= 2).long())
    share = ds.labels.float().mean().item()
    assert 0.15 < share < 0.35                                                # prior: 25% referable
    assert set(graded.labels.tolist()) == {0, 1, 2, 3, 4}


def test_black_outside_the_field_of_view(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    ds = R.make_retina(20, seed=1, size=32)
    assert (ds.images[:, :, 0, 0] == 0).all() and (ds.images[:, :, -1, -1] == 0).all()   # corners: black
    assert (ds.images[:, 0, 16, 16] > 20).all()                               # centre: lit (red channel)


def test_prior_sets_the_grades(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    healthy = R.make_retina(30, seed=2, size=24, label="grade", prior=(1, 0, 0, 0, 0))
    assert (healthy.labels == 0).all()
    ill = R.make_retina(30, seed=2, size=24, prior=(0, 0, 0, 0, 1))
    assert (ill.labels == 1).all()


def test_lesions_darken_the_retina():
    """Same random stream, grade 0 against grade 3: haemorrhages and microaneurysms add dark red spots, so
    the darkest inner pixels of the green channel get darker."""
    g0, g3 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = R._draw(torch.zeros(16, dtype=torch.long), 32, g0)
    b = R._draw(torch.full((16,), 3, dtype=torch.long), 32, g3)
    inner = (slice(None), 1, slice(8, 24), slice(8, 24))
    assert not torch.equal(a, b)
    assert a[inner].std() < b[inner].std()


def test_referable_threshold():
    assert R.referable(torch.tensor([0, 1, 2, 3, 4])).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="0-4"):
        R.referable(torch.tensor([5]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        R.make_retina(4, size=8)
    with pytest.raises(ValueError, match="label"):
        R.make_retina(4, label="severity")
    with pytest.raises(ValueError, match="prior"):
        R.make_retina(4, prior=(0.5, 0.5))
    with pytest.raises(ValueError, match="n must"):
        R.make_retina(0)


def test_local_contrast_normalize_exact_cases():
    # a flat disc: no local difference -> mid-grey (128) inside the kept radius, black outside and in the corner
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= 14 ** 2)
    img = (disc * 100).to(torch.uint8).expand(3, 32, 32)[None].contiguous()
    out = R.local_contrast_normalize(img, sigma=1.0, keep=0.5)
    assert out[0, :, 15, 15].tolist() == [128, 128, 128]
    assert out[0, :, 0, 0].tolist() == [0, 0, 0] and out[0, :, 15, 3].tolist() == [0, 0, 0]
    # a dark dot on the flat disc: darker than mid-grey after normalization, a slow gradient: removed
    img2 = img.clone()
    img2[0, :, 15, 15] = 60
    assert (R.local_contrast_normalize(img2, sigma=2.0, keep=0.5)[0, :, 15, 15] < 100).all()
    with pytest.raises(ValueError, match="uint8"):
        R.local_contrast_normalize(img.float())


def test_preprocess_keeps_labels_and_uses_given_stats(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    ds = R.make_retina(20, seed=3, size=24)
    p = R.preprocess(ds, stats=((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)))
    assert torch.equal(p.labels, ds.labels) and p.mean == (0.5, 0.5, 0.5) and p.images.shape == ds.images.shape


def test_registered_and_hub_offline(monkeypatch):
    assert "retina" in wb.data.list_datasets()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="HF_HUB_OFFLINE"):
        R.load_fundus_hub("someone/fundus")
    with pytest.raises(ValueError, match="owner/name"):
        R.load_fundus_hub("fundus")
