"""Captioned scenes: determinism, boxes and masks that agree with the pixels, captions that agree with the
attributes, held-out combinations, the tokenizer."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.data import scenes as S


@pytest.fixture(scope="module")
def items():
    return wb.load("fashion_mnist", "train", subset=2000)


def test_scenes_are_deterministic_and_consistent(items):
    sc = S.make_scenes(items, 64, seed=3)
    again = S.make_scenes(items, 64, seed=3)
    assert torch.equal(sc.images, again.images) and sc.captions == again.captions
    assert sc.images.shape == (64, 3, 64, 64) and sc.images.dtype == torch.uint8
    for i in range(64):
        k = int(sc.counts[i])
        assert (sc.items[i, :k] >= 0).all() and (sc.items[i, k:] == -1).all()
        for j in range(k):
            x0, y0, x1, y1 = sc.boxes[i, j].tolist()
            covered = (sc.masks[i] == j + 1).nonzero()
            assert len(covered) > 0
            ys, xs = covered[:, 0], covered[:, 1]
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1  # the box holds the mask
            assert S.COLOURS and list(S.COLOURS)[int(sc.colours[i, j])] in sc.captions[i][0]
            assert S.ITEM_WORDS[int(sc.items[i, j])][0] in sc.captions[i][0]
        assert S.GROUNDS[int(sc.grounds[i])] in sc.captions[i][0]
    sem = sc.semantic_masks()
    assert torch.equal(sem == 0, sc.masks == 0)
    first = sc.masks[0] == 1
    assert (sem[0][first] == sc.items[0, 0] + 1).all()


def test_relations_follow_the_pixels(items):
    sc = S.make_scenes(items, 200, seed=5)
    checked = 0
    for i in range(200):
        caps = [c for c in sc.captions[i] if any(r in c for r in S.RELATIONS)]
        if not caps:
            continue
        c0 = sc.boxes[i, 0].view(2, 2).mean(0)
        c1 = sc.boxes[i, 1].view(2, 2).mean(0)
        rel = next(r for r in S.RELATIONS if r in caps[0])
        dx, dy = float(c1[0] - c0[0]), float(c1[1] - c0[1])
        assert {"left of": dx > 0, "right of": dx < 0, "above": dy > 0, "below": dy < 0}[rel], (i, caps[0])
        checked += 1
    assert checked > 50


def test_held_out_combinations(items):
    held = [("red", "coat"), ("blue", "bag")]
    train = S.make_scenes(items, 400, seed=1, exclude=held)
    for c, w in held:
        ci, wi = list(S.COLOURS).index(c), [a for a, _ in S.ITEM_WORDS].index(w)
        assert not ((train.colours == ci) & (train.items == wi)).any()
        assert not any(f"{c} {w}" in cap for caps in train.captions for cap in caps)
    test = S.make_scenes(items, 50, seed=2, only=held)
    firsts = {(list(S.COLOURS)[int(c)], S.ITEM_WORDS[int(i)][0]) for c, i in zip(test.colours[:, 0], test.items[:, 0])}
    assert firsts <= set(held) and len(firsts) == 2
    with pytest.raises(ValueError, match="colour in red"):
        S.make_scenes(items, 4, exclude=[("pink", "coat")])


def test_tokenizer_round_trip_and_limits():
    caps = ["a small red coat on grass", "two bags and a blue dress on sand"]
    ids = S.tokenize(caps, 16)
    assert ids.shape == (2, 16) and ids[0, 0] == S.VOCAB.index("<bos>") and ids[0, 7] == S.VOCAB.index("<eos>")
    assert S.detokenize(ids) == caps
    with pytest.warns(UserWarning, match=r"3 words of 2 texts .* became <unk>: 'zebra' \(2x\), 'striped' \(1x\)"):
        ids = S.tokenize(["a zebra", "a striped zebra"], 6)
    assert ids[0, 2] == ids[1, 3] == ids[1, 2] == S.VOCAB.index("<unk>")
    with pytest.raises(ValueError, match="has 7 words; tokenize with length >= 9"):
        S.tokenize("a small red coat on green grass", 6)


def test_as_dataset_labels(items):
    sc = S.make_scenes(items, 32, seed=0)
    assert torch.equal(sc.as_dataset("count").labels, sc.counts - 1)
    assert sc.as_dataset("index").classes[5] == sc.captions[5][0]
    with pytest.raises(ValueError, match="label is one of"):
        sc.as_dataset("size")
