"""CLIP's compute comparison: zero-shot scoring of the bag-of-words baseline, the zero-shot curve along
training, steps to a target accuracy, few-shot indices."""
import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.data import scenes as S
from workbench.vl import CaptionWords, caption_table, class_embeddings, embed_images, zero_shot_logits
from workbench.vl.efficiency import (CONTENT_WORDS, ZeroShotCurve, few_shot_indices, steps_to_reach, word_scores,
                                     zero_shot_accuracy, zero_shot_scores)


def test_steps_to_reach_interpolates_between_evaluations():
    assert steps_to_reach([0, 100, 200], [0.1, 0.3, 0.5], 0.4) == pytest.approx(150.0)
    assert steps_to_reach([50, 100], [0.6, 0.7], 0.5) == 50.0          # reached at the first evaluation
    assert steps_to_reach([10, 20, 30], [0.2, 0.5, 0.4], 0.5) == 20.0  # the first crossing counts
    assert math.isinf(steps_to_reach([10, 20], [0.2, 0.3], 0.5))
    with pytest.raises(ValueError, match="increase"):
        steps_to_reach([20, 10], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="equally long"):
        steps_to_reach([1, 2], [0.1], 0.5)


def test_few_shot_indices_are_balanced_and_seeded():
    labels = torch.tensor([0, 1, 2] * 10)
    idx = few_shot_indices(labels, 4, seed=3)
    assert len(idx) == 12 and len(set(idx.tolist())) == 12
    assert torch.bincount(labels[idx]).tolist() == [4, 4, 4]
    assert torch.equal(idx, few_shot_indices(labels, 4, seed=3))
    assert not torch.equal(idx, few_shot_indices(labels, 4, seed=4))
    with pytest.raises(ValueError, match="fewer than shots"):
        few_shot_indices(labels, 11)
    with pytest.raises(ValueError, match="positive integer"):
        few_shot_indices(labels, 0)


def test_content_words_are_what_caption_words_predicts():
    table = S.tokenize(["a red coat on grass"], 12).view(1, 1, 12)
    content = CaptionWords(table).content
    assert [S.VOCAB[i] for i in content.nonzero().flatten().tolist()] == list(CONTENT_WORDS)
    assert "a" not in CONTENT_WORDS and "coat" in CONTENT_WORDS and "grass" in CONTENT_WORDS


def test_word_scores_sum_the_log_probabilities_of_the_prompt_words():
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny", width=8, word_head=True).eval()
    bias = torch.randn(len(S.VOCAB))
    with torch.no_grad():  # the same logits for every image: the bias
        model.word_head.weight.zero_()
        model.word_head.bias.copy_(bias)
    x = torch.randn(3, 3, 32, 32)
    lp = F.logsigmoid(bias)
    i = {w: k for k, w in enumerate(S.VOCAB)}
    got = word_scores(model, x, ["red coat", "bag"], ["a {}", "a {} on grass"])
    want_red_coat = lp[i["red"]] + lp[i["coat"]] + 0.5 * lp[i["grass"]]   # "grass" in one template of two
    want_bag = lp[i["bag"]] + 0.5 * lp[i["grass"]]
    assert got.shape == (3, 2)
    assert torch.allclose(got[:, 0], want_red_coat.expand(3), atol=1e-5)
    assert torch.allclose(got[:, 1], want_bag.expand(3), atol=1e-5)
    assert torch.equal(zero_shot_scores(model, x, ["red coat", "bag"], ["a {}", "a {} on grass"]), got)
    with pytest.raises(ValueError, match="not in the scenes' vocabulary"):
        word_scores(model, x, ["jacket"])
    with pytest.raises(ValueError, match="no word the word head predicts"):
        word_scores(model, x, ["a"])
    with pytest.raises(ValueError, match="needs a '{}'"):
        word_scores(model, x, ["coat"], ["a photo"])
    plain = wb.create_model("clip_tiny", width=8)
    with pytest.raises(ValueError, match="word head"):
        word_scores(plain, x, ["coat"])


def test_zero_shot_scores_by_text_and_the_curve_through_fit():
    items = wb.load("fashion_mnist", "train", subset=500)
    sc = S.make_scenes(items, 64, size=32, max_objects=1, seed=0)
    data, probe = sc.as_dataset("index"), sc.as_dataset("first_item")
    table = caption_table(sc, length=16)
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny", context=16, width=8, text_width=32, embed_dim=32)
    names = [w for w, _ in S.ITEM_WORDS]
    want = zero_shot_logits(embed_images(model, probe), class_embeddings(model, names, ["a {}"], 16))
    assert torch.allclose(zero_shot_scores(model, probe, names, length=16), want)
    with pytest.raises(ValueError, match="'text' or 'words'"):
        zero_shot_scores(model, probe, names, by="pixels")
    with pytest.raises(ValueError, match="one name per class"):
        ZeroShotCurve(probe, names[:3])
    curve = ZeroShotCurve(probe, names, length=16)
    res = wb.fit(model, data, task=wb.vl.ImageTextContrastive(table), algorithms=[curve], epochs=2, batch_size=16,
                 lr=1e-3, optimizer="adamw", augment=None, progress=False, weight_decay=0.0)
    h = res.history
    assert h["zero_shot_step"].tolist() == [4, 8]
    assert h["zero_shot_acc"].iloc[-1] == pytest.approx(zero_shot_accuracy(model, probe, names, length=16))
    # the bag-of-words model is scored through its word head
    torch.manual_seed(0)
    words = wb.create_model("clip_tiny", context=16, width=8, text_width=32, embed_dim=32, word_head=True)
    acc = zero_shot_accuracy(words, probe, names)
    scores = word_scores(words, probe, names, ["a {}"])
    assert acc == pytest.approx(float((scores.argmax(1) == probe.labels).double().mean()))
