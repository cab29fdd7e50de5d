"""wb.vl.gist: candidate descriptions from the grammar, matching on hand-made embeddings, caption tables,
attribute accuracy by hand, fine-grained scenes, and a tiny fine-tuning run through wb.train_model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.data import scenes as S
from workbench.vl import gist as G


def test_candidate_descriptions_every_combination():
    texts, attrs = G.candidate_descriptions("coat")
    assert len(texts) == 48 == len(set(texts)) and attrs.shape == (48, 3)
    assert texts[0] == "a small red coat on grass" and attrs[0].tolist() == [0, 0, 0]
    assert texts[1] == "a small red coat on sand" and attrs[1].tolist() == [0, 0, 1]
    assert texts[-1] == "a large white coat on snow" and attrs[-1].tolist() == [1, 5, 3]
    for t, (s, c, g) in zip(texts, attrs.tolist()):  # the attributes are the ones the text names
        assert t == f"a {S.SIZES[s]} {list(S.COLOURS)[c]} coat on {S.GROUNDS[g]}"
    assert (S.tokenize(texts, 16) != S.VOCAB.index("<unk>")).all()  # every word is in the grammar
    with pytest.raises(ValueError, match="garment word"):
        G.candidate_descriptions("jacket")


def test_match_descriptions_by_hand():
    # two classes, three candidates each, in 2-d
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
                         [[-1.0, 0.0], [0.0, -1.0], [0.8, 0.6]]])
    img = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    idx, sim = G.match_descriptions(img, text, labels, top=1)
    # image 0 (class 0) -> candidate 1 (sim 1); image 1 (class 1, same image) -> its own class's best: 2 (0.6),
    # never class 0's candidate; image 2 (class 1) -> candidate 2 (0.8)
    assert idx[:, 0].tolist() == [1, 2, 2]
    assert sim[:, 0].tolist() == pytest.approx([1.0, 0.6, 0.8])
    idx2, sim2 = G.match_descriptions(img, text, labels, top=2)
    assert idx2.tolist() == [[1, 2], [2, 0], [2, 1]] and sim2[0].tolist() == pytest.approx([1.0, 0.8])
    with pytest.raises(ValueError, match="top"):
        G.match_descriptions(img, text, labels, top=4)
    with pytest.raises(ValueError, match="labels must lie"):
        G.match_descriptions(img, text, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="same D"):
        G.match_descriptions(img, text[..., :1], labels)


def test_class_name_table_and_errors():
    table = G.class_name_table(torch.tensor([2, 0, 2]), G.FINE_GRAINED, length=8)
    assert table.shape == (3, 1, 8)
    assert S.detokenize(table[:, 0]) == ["a photo of a coat", "a photo of a tshirt", "a photo of a coat"]
    with pytest.raises(ValueError, match="0..3"):
        G.class_name_table(torch.tensor([4]), G.FINE_GRAINED)
    with pytest.raises(ValueError, match="template"):
        G.class_name_table(torch.tensor([0]), G.FINE_GRAINED, template="a coat")


def test_attribute_accuracy_by_hand():
    true = torch.tensor([[0, 1, 2], [1, 1, 1], [0, 0, 0], [1, 5, 3]])
    matched = torch.tensor([[0, 1, 2], [1, 2, 1], [1, 0, 0], [1, 5, 0]])
    acc = G.attribute_accuracy(matched, true)
    assert acc == pytest.approx({"size": 0.75, "colour": 0.75, "ground": 0.75, "all": 0.25})
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        G.attribute_accuracy(matched[:, :2], true[:, :2])


def _items(n=200):
    g = torch.Generator().manual_seed(0)
    return wb.data.ImageDataset((torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8),
                                torch.arange(n) % 10, [w for w, _ in S.ITEM_WORDS])


def test_fine_grained_scenes_labels_and_attributes():
    data, scenes, attrs = G.fine_grained_scenes(_items(), 40, seed=1)
    assert len(data) == 40 and data.classes == list(G.FINE_GRAINED) and attrs.shape == (40, 3)
    words = [S.ITEM_WORDS[int(i)][0] for i in scenes.items[:, 0]]
    assert [G.FINE_GRAINED[int(c)] for c in data.labels] == words
    assert attrs[:, 1].tolist() == scenes.colours[:, 0].tolist() and attrs[:, 2].tolist() == scenes.grounds.tolist()
    for cap, (s, c, g), w in zip(scenes.captions, attrs.tolist(), words):  # the full caption names them
        assert cap[0] == f"a {S.SIZES[s]} {list(S.COLOURS)[c]} {w} on {S.GROUNDS[g]}"
    with pytest.raises(ValueError, match="distinct"):
        G.fine_grained_scenes(_items(), 4, classes=("coat", "coat"))


def test_matched_table_and_fine_tuning_run():
    data, _, attrs = G.fine_grained_scenes(_items(), 8, seed=2)
    kwargs = dict(context=16, width=4, word_head=False, num_classes=0)
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny", **kwargs)
    out = G.matched_caption_table(model, data, G.FINE_GRAINED, top=2, length=16)
    assert out["captions"].shape == (8, 2, 16) and out["attributes"].shape == (8, 2, 3)
    for row, lab, a in zip(out["texts"], data.labels.tolist(), out["attributes"]):
        texts, cand_attrs = G.candidate_descriptions(G.FINE_GRAINED[lab])
        assert all(t in texts for t in row)                               # only its own class's candidates
        assert [cand_attrs[texts.index(t)].tolist() for t in row] == a.tolist()
    assert (out["similarities"][:, 0] >= out["similarities"][:, 1]).all()
    assert S.detokenize(out["captions"][:, 0]) == [r[0] for r in out["texts"]]
    # the matching agrees with match_descriptions on the model's own embeddings
    img = wb.vl.embed_images(model, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = G.fine_tune_contrastive(model, data, out["captions"], name="clip_tiny", model_kwargs=kwargs,
                                  init_key="test", seed=0, epochs=2, batch_size=8, lr=1e-3, optimizer="adamw",
                                  weight_decay=0.0, augment=None, progress=False, cache=False)
    assert len(res.history) == 2 and torch.isfinite(torch.tensor(res.history["train_loss"].tolist())).all()
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items())   # it trained
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())            # on a copy
    assert F.normalize(img, dim=1).shape == (8, 64)
    with pytest.raises(ValueError, match="phrasings"):
        G.fine_tune_contrastive(model, data, out["captions"][:4], name="clip_tiny", model_kwargs=kwargs,
                                init_key="test")
    with pytest.raises(ValueError, match="class_words"):
        G.matched_caption_table(model, data, G.FINE_GRAINED[:3])


def test_info_nce_without_duplicate_negatives_known_values():
    g = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 4, generator=g), dim=1), F.normalize(torch.randn(5, 4, generator=g), dim=1)
    none = torch.zeros(5, 5, dtype=torch.bool)
    assert float(wb.vl.info_nce(img, txt, 1.0, none)) == pytest.approx(float(wb.vl.info_nce(img, txt, 1.0)))
    every = torch.ones(5, 5, dtype=torch.bool)  # every caption alike: nothing to tell apart, nothing to pay
    assert float(wb.vl.info_nce(img, txt, 1.0, every)) == pytest.approx(0.0, abs=1e-6)
    # two classes, two images each, one-hot texts: masking the duplicate leaves the positive (logit 2) against
    # the other class's two texts (logit 0): -log(e^2 / (e^2 + 2)) per image, and the same per text
    img2 = torch.eye(2).repeat_interleave(2, 0)               # images 0,1 of class 0; 2,3 of class 1
    txt2 = img2.clone()
    same = (txt2[:, None] == txt2[None]).all(-1)
    want = -torch.log_softmax(torch.tensor([2.0, 0.0, 0.0]), 0)[0]
    assert float(wb.vl.info_nce(img2, txt2, torch.tensor(2.0).log(), same)) == pytest.approx(float(want))
    assert float(wb.vl.info_nce(img2, txt2, torch.tensor(2.0).log())) > float(want)  # the duplicate's penalty
    with pytest.raises(ValueError, match="bool"):
        wb.vl.info_nce(img, txt, 1.0, none.float())
