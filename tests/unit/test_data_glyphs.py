"""Generated glyph data (Deep Aramaic, arXiv:2310.07310): determinism, balance, held-out fonts, clean renders,
and the message for a missing font."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.data import DataUnavailableError, glyphs as G


def _installed() -> bool:
    try:
        for name in (*G.TRAIN_FONTS, *G.TEST_FONTS):
            G.find_font(name)
        return True
    except DataUnavailableError:
        return False


needs_fonts = pytest.mark.skipif(not _installed(), reason="fonts missing: apt-get install -y fonts-noto-core culmus")


@needs_fonts
def test_deterministic_per_seed(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "a"))
    a = G.make_glyphs("train", n_per_class=3, seed=5)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "b"))          # recomputed, not read back
    b = G.make_glyphs("train", n_per_class=3, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, G.make_glyphs("train", n_per_class=3, seed=6).images)
    t1, t2 = G.make_glyphs("test", n_per_class=2, seed=1), G.make_glyphs("test", n_per_class=2, seed=1)
    assert torch.equal(t1.images, t2.images)


@needs_fonts
@pytest.mark.parametrize("split,augment", [("train", True), ("train", False), ("test", True)])
def test_classes_balanced_and_shapes(split, augment):
    ds = G.make_glyphs(split, n_per_class=5, augment=augment, size=24)
    assert ds.images.shape == (22 * 5, 1, 24, 24) and ds.images.dtype == torch.uint8
    assert ds.classes == G.LETTERS and len(G.LETTERS) == 22
    assert torch.equal(torch.bincount(ds.labels, minlength=22), torch.full((22,), 5))
    assert ds.name == ("glyphs_plain" if not augment else "glyphs") and ds.split == split


def test_test_fonts_are_held_out_families():
    assert set(G.TRAIN_FONTS).isdisjoint(G.TEST_FONTS)
    family = lambda name: name.split("-")[0].removesuffix("Regular").removesuffix("Demi")  # noqa: E731
    assert {family(n) for n in G.TRAIN_FONTS}.isdisjoint(family(n) for n in G.TEST_FONTS)
    files = lambda names: {G.FONTS[n].file for n in names}  # noqa: E731
    assert files(G.TRAIN_FONTS).isdisjoint(files(G.TEST_FONTS))
    assert len(G.TRAIN_FONTS) >= 10 and len(G.TEST_FONTS) >= 4


@needs_fonts
def test_test_split_renders_only_test_fonts():
    test = G.make_glyphs("test", n_per_class=1)
    named = test.source.split(" of fonts ")[1].split(", ")
    assert sorted(named) == sorted(G.TEST_FONTS)
    # and the real-like making differs from the clean renders of those very fonts
    clean = G.render_glyphs(G.TEST_FONTS)
    assert not any(torch.equal(img, clean[f, int(y)]) for img, y in zip(test.images, test.labels)
                   for f in range(len(G.TEST_FONTS)))


@needs_fonts
def test_augmentation_off_gives_the_clean_renders():
    ds = G.make_glyphs("train", n_per_class=4, augment=False, seed=2)
    clean = G.render_glyphs(G.TRAIN_FONTS)                                       # [F, 22, 1, 32, 32]
    for img, y in zip(ds.images, ds.labels):
        assert any(torch.equal(img, clean[f, int(y)]) for f in range(len(G.TRAIN_FONTS)))
    # a black letter on white, centred: white border, dark ink
    assert (clean[..., 0, :] == 255).all() and (clean[..., 0] == 255).all() and int(clean.amin()) < 40
    aug = G.make_glyphs("train", n_per_class=4, augment=True, seed=2)
    assert not any(torch.equal(img, clean[f, int(y)]) for img, y in zip(aug.images, aug.labels)
                   for f in range(len(G.TRAIN_FONTS)))


@needs_fonts
def test_letters_keep_their_relative_size_within_a_font():
    clean = G.render_glyphs(["NotoSansHebrew-Regular", "DavidCLM-Medium"], size=32)
    ink = (clean < 128)[:, :, 0]                                                  # [F, 22, H, W]
    height = ink.any(-1).sum(-1)                                                  # rows with ink
    yodh, waw = G.LETTERS.index("yodh"), G.LETTERS.index("waw")
    assert (height[:, waw] <= 24).all() and (height[:, yodh] < 0.8 * height[:, waw]).all()  # not each scaled to fit


@needs_fonts
def test_registered_and_loadable(monkeypatch):
    calls = []
    real = G.make_glyphs

    def small(split, augment=True):
        calls.append((split, augment))
        return real(split, n_per_class=2, augment=augment)

    monkeypatch.setattr(G, "make_glyphs", small)
    assert {"glyphs", "glyphs_plain"} <= set(wb.data.list_datasets())
    ds = wb.data.load("glyphs", "test", subset=10)
    assert len(ds) == 10 and ds.shape == (1, 32, 32) and ds.name == "glyphs"
    assert wb.data.load("glyphs_plain", "train").name == "glyphs_plain"
    assert wb.data.load("glyphs", "train").name == "glyphs"
    assert calls == [("test", True), ("train", False), ("train", True)]


def test_missing_font_names_the_package(monkeypatch, tmp_path):
    with pytest.raises(DataUnavailableError, match=r"apt-get install -y fonts-nope"):
        G.find_font(G.GlyphFont("Nope", "Nope.ttf", "fonts-nope", "hebrew"))
    monkeypatch.delenv("WORKBENCH_FONT_DIR", raising=False)
    monkeypatch.setattr(G, "_FONT_DIRS", (str(tmp_path),))                       # nothing installed
    with pytest.raises(DataUnavailableError, match=r"apt-get install -y culmus fonts-noto-core"):
        G.make_glyphs("train", n_per_class=1)
    with pytest.raises(DataUnavailableError, match=r"apt-get install -y culmus"):
        G.make_glyphs("test", n_per_class=1, fonts=["KeterYG-Medium"])


@needs_fonts
def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="valid|one of"):
        G.make_glyphs("train", fonts=["Comic Sans"])
    with pytest.raises(ValueError, match="splits train, test"):
        G.make_glyphs("val")
    with pytest.raises(ValueError, match="real-like"):
        G.make_glyphs("test", augment=False)
    with pytest.raises(ValueError, match="n_per_class"):
        G.make_glyphs("train", n_per_class=0)
    with pytest.raises(ValueError, match="size"):
        G.make_glyphs("train", size=4)
    hebrew_as_aramaic = G.GlyphFont("x", str(G.find_font("NotoSansHebrew-Regular")), "fonts-noto-core",
                                    "imperial_aramaic")
    with pytest.raises(ValueError, match=r"no glyph for aleph \(U\+10840\)"):
        G.render_glyphs([hebrew_as_aramaic])


@needs_fonts
def test_a_font_file_path_is_accepted_and_its_script_detected():
    path = G.find_font("NotoSansImperialAramaic-Regular")
    by_path, by_name = G.render_glyphs([path]), G.render_glyphs(["NotoSansImperialAramaic-Regular"])
    assert torch.equal(by_path, by_name)
