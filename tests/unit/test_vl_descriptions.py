"""Classification by description (wb.vl.descriptions): the knowledge table and its descriptors, scenes that
follow it (exact rejection sampling), deciding descriptors and explanations on hand-made similarities, edits,
prediction shares, and name-based zero-shot as the one-descriptor case."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import workbench as wb
from workbench.data import scenes as S
from workbench.vl import descriptions as D


@pytest.fixture(scope="module")
def items():
    return wb.load("fashion_mnist", "test", subset=1000)


def test_descriptor_table_is_in_the_grammar():
    table = D.descriptor_table()
    assert table["boot"] == ["a boot on snow", "a blue boot", "a small boot"]
    assert D.descriptor_table(with_name=True)["bag"] == ["a bag", "a bag on water", "a red bag", "a large bag"]
    assert list(table) == [w for w, _ in S.ITEM_WORDS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # tokenize warns on unknown words
        S.tokenize([d for ds in table.values() for d in ds], 16)
    # no two garments share all three attributes
    looks = {tuple(sorted(a.items())) for a in D.TYPICAL.values()}
    assert len(looks) == len(D.TYPICAL)
    with pytest.raises(ValueError, match="not a garment"):
        D.descriptor_table({"hat": {"ground": "snow"}})
    with pytest.raises(ValueError, match="attribute 'shape'"):
        D.descriptor_table({"boot": {"shape": "tall"}})
    with pytest.raises(ValueError, match="colour 'black'"):
        D.descriptor_table({"boot": {"colour": "black"}})
    with pytest.raises(ValueError, match="no descriptor"):
        D.descriptor_table({"boot": {}})


def test_shuffled_table_moves_every_entry():
    sh = D.shuffled_table(seed=0)
    assert sh == D.shuffled_table(seed=0) and list(sh) == list(D.TYPICAL)
    for kind in D.ATTRIBUTES:
        assert sorted(a[kind] for a in sh.values()) == sorted(a[kind] for a in D.TYPICAL.values())
    two = {"boot": {"ground": "snow"}, "sandal": {"ground": "sand"}}
    assert D.shuffled_table(two) == {"boot": {"ground": "sand"}, "sandal": {"ground": "snow"}}  # the only derangement
    with pytest.raises(ValueError, match="two garments"):
        D.shuffled_table({"boot": {"ground": "snow"}})


def test_acceptance_is_the_exact_density_ratio(items):
    sc = S.make_scenes(items, 200, size=32, max_objects=1, seed=0)
    table = {"boot": {"ground": "snow"}}
    acc = D._acceptance(sc, table, 0.5)       # ground typical: weight 0.5 * 4 + 0.5 = 2.5; other: 0.5; top 2.5*3.5*1.5
    top = 2.5 * 3.5 * 1.5
    boot = sc.items[:, 0] == S.ITEM_WORDS.index(("boot", "boots"))
    snow = sc.grounds == S.GROUNDS.index("snow")
    want = torch.where(boot, torch.where(snow, 2.5, 0.5), 1.0).double() / top
    assert torch.allclose(acc, want)
    assert torch.allclose(D._acceptance(sc, D.TYPICAL, 0.0), torch.ones(200, dtype=torch.float64))


def test_typical_scenes_follow_the_table(items):
    always = D.typical_scenes(items, 60, typicality=1.0, seed=1)
    assert len(always) == 60 and always.items.shape == (60, 1)
    for kind, values in D.ATTRIBUTES.items():
        for i in range(60):
            item = S.ITEM_WORDS[int(always.items[i, 0])][0]
            assert bool(D.attribute_present(always, kind, D.TYPICAL[item][kind])[i])
    again = D.typical_scenes(items, 60, typicality=1.0, seed=1)
    assert torch.equal(always.images, again.images)
    some = D.typical_scenes(items, 400, typicality=0.5, seed=2)
    typ = torch.zeros(400, dtype=torch.bool)
    for i, (w, _) in enumerate(S.ITEM_WORDS):
        typ |= (some.items[:, 0] == i) & D.attribute_present(some, "ground", D.TYPICAL[w]["ground"])
    assert abs(typ.double().mean() - (0.5 + 0.5 / 4)) < 0.08     # 0.625 expected, 400 draws: sd 0.024
    with pytest.raises(ValueError, match="typicality"):
        D.typical_scenes(items, 10, typicality=1.5)
    with pytest.raises(ValueError, match="positive integer"):
        D.typical_scenes(items, 0)


def test_subset_and_attributes(items):
    sc = S.make_scenes(items, 10, size=32, max_objects=1, seed=0)
    sub = D.subset_scenes(sc, [3, 1])
    assert torch.equal(sub.images, sc.images[[3, 1]]) and sub.captions == [sc.captions[3], sc.captions[1]]
    with pytest.raises(IndexError):
        D.subset_scenes(sc, [10])
    assert D.attributes_named("a small blue boot on snow") == [("size", "small"), ("colour", "blue"),
                                                                ("ground", "snow")]
    assert D.attributes_named("a boot") == []
    on = D.attribute_present(sc, "ground", "sand")
    assert torch.equal(on, sc.grounds == 1)
    with pytest.raises(ValueError, match="kind, value"):
        D.attribute_present(sc, "ground", "mud")


def _hand_made():
    table = {"boot": ["a boot on snow", "a blue boot"], "sandal": ["a sandal on sand", "a yellow sandal", "a sandal"]}
    per = {"boot": torch.tensor([[0.9, 0.1], [0.2, 0.2]]),                  # means 0.5, 0.2
           "sandal": torch.tensor([[0.3, 0.3, 0.3], [0.1, 0.6, 0.2]])}      # means 0.3, 0.3
    return table, per


def test_deciding_descriptors_and_explain_on_a_hand_made_case(items):
    table, per = _hand_made()
    sc = S.make_scenes(items, 2, size=32, max_objects=1, seed=0)
    sc.grounds[:] = torch.tensor([S.GROUNDS.index("snow"), S.GROUNDS.index("snow")])
    sc.colours[:, 0] = torch.tensor([list(S.COLOURS).index("red"), list(S.COLOURS).index("yellow")])
    out = D.deciding_descriptors(per, table, sc)
    assert out["pred"].tolist() == [0, 1]
    assert out["descriptor"] == ["a boot on snow", "a yellow sandal"]
    assert out["present"].tolist() == [True, True]
    # random descriptor of the predicted class: boot (snow yes, blue no) 1/2; sandal (sand no, yellow yes, none) 1/3
    assert torch.allclose(out["present_random"], torch.tensor([0.5, 1 / 3], dtype=torch.float64))
    rows = D.explain(per, table, 0, classes=2)
    assert [r["cls"] for r in rows] == ["boot", "boot", "sandal", "sandal", "sandal"]
    assert math.isclose(sum(r["contribution"] for r in rows if r["cls"] == "boot"), 0.5, rel_tol=1e-6)
    assert math.isclose(rows[0]["contribution"], 0.45, rel_tol=1e-6) and rows[0]["rank"] == 1 and rows[2]["rank"] == 2
    with pytest.raises(IndexError):
        D.explain(per, table, 2)
    with pytest.raises(ValueError, match="same classes"):
        D.deciding_descriptors(per, {"boot": table["boot"]})


def test_edit_and_prediction_share():
    table, _ = _hand_made()
    new = D.edit_descriptor(table, "boot", "a boot on snow", "a boot on sand")
    assert new["boot"] == ["a boot on sand", "a blue boot"] and table["boot"][0] == "a boot on snow"
    assert new["sandal"] == table["sandal"]
    with pytest.raises(ValueError, match="no descriptor"):
        D.edit_descriptor(table, "boot", "a red boot", "a boot")
    with pytest.raises(ValueError, match="vocabulary"):
        D.edit_descriptor(table, "boot", "a blue boot", "a boot with laces")
    with pytest.raises(ValueError, match="not a class"):
        D.edit_descriptor(table, "bag", "a bag", "a bag")
    pred = torch.tensor([0, 1, 1, 0, 2])
    assert D.prediction_share(pred, 1) == 0.4
    assert D.prediction_share(pred, 0, torch.tensor([True, True, False, False, False])) == 0.5
    assert math.isnan(D.prediction_share(pred, 0, torch.zeros(5, dtype=torch.bool)))
    with pytest.raises(ValueError, match="shape"):
        D.prediction_share(pred, 0, torch.ones(3, dtype=torch.bool))


def test_one_descriptor_per_class_is_name_based_zero_shot(items):
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny", context=16, width=8, text_width=32, embed_dim=32).eval()
    sc = S.make_scenes(items, 8, size=32, max_objects=1, seed=0)
    z = wb.vl.embed_images(model, sc.as_dataset("first_item"))
    names = [w for w, _ in S.ITEM_WORDS]
    scores, per = wb.vl.description_scores(model, z, D.descriptor_table(
        {c: {} for c in names}, with_name=True), length=16)
    want = wb.vl.zero_shot_logits(z, wb.vl.class_embeddings(model, names, ["a {}"], length=16))
    assert torch.allclose(scores, want, atol=1e-5)
    out = D.deciding_descriptors({c: p for c, p in per.items()}, {c: [f"a {c}"] for c in names})
    assert torch.equal(out["pred"], want.argmax(1))


def test_open_clip_is_only_imported_when_asked():
    import sys
    assert "open_clip" not in sys.modules          # importing the workbench never imports it
    try:
        import open_clip  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ModuleNotFoundError, match="open_clip_torch"):
            D.open_clip_description_accuracy("ViT-B-32", "none", None)
