"""Image-text matching (notebook 62): the switched ranking-loss task, the negatives a ranking loss sends
gradient to, the spread of embeddings, retrieval similarities."""
from types import SimpleNamespace

import pytest
import torch

import workbench as wb
from workbench.data import scenes as S
from workbench.vl import (SwitchedMatching, caption_table, distinct_captions, embedding_spread, hinge_active_negatives,
                          hinge_hardest, hinge_sum, retrieval_metrics, retrieval_similarity)

# s = img @ txt.T = txt.T for img = I: s[i, j] is image i against caption j
SIM = torch.tensor([[1.0, 0.9, 0.85], [0.0, 1.0, 0.5], [0.95, 0.0, 1.0]])


def _pair():
    return torch.eye(3), SIM.T.clone()


def test_active_negatives_by_hand():
    img, txt = _pair()
    assert torch.equal(img @ txt.T, SIM)
    s = hinge_active_negatives(img, txt, "hinge_sum", margin=0.2)
    # image 0: 0.9 and 0.85 are within 0.2 of 1; image 1: none; image 2: 0.95 only
    assert s["i2t"].tolist() == [2, 0, 1]
    # caption 0: image 2 (0.95); caption 1: image 0 (0.9); caption 2: image 0 (0.85)
    assert s["t2i"].tolist() == [1, 1, 1]
    h = hinge_active_negatives(img, txt, "hinge_hardest", margin=0.2)
    assert h["i2t"].tolist() == [1, 0, 1] and h["t2i"].tolist() == [1, 1, 1]
    same = torch.zeros(3, 3, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True                     # caption 1 is word for word caption 0: not a negative
    assert hinge_active_negatives(img, txt, "hinge_sum", 0.2, same)["i2t"].tolist() == [1, 0, 1]
    assert hinge_active_negatives(img, txt, "hinge_sum", margin=0.01)["i2t"].tolist() == [0, 0, 0]


def test_active_negatives_hardest_never_more_than_one_for_distinct_similarities():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1)
    h = hinge_active_negatives(img, txt, "hinge_hardest", margin=0.2)
    s = hinge_active_negatives(img, txt, "hinge_sum", margin=0.2)
    assert (h["i2t"] <= 1).all() and (h["t2i"] <= 1).all()
    assert (s["i2t"] >= h["i2t"]).all() and s["i2t"].float().mean() > 5


def test_active_negatives_errors():
    img, txt = _pair()
    with pytest.raises(ValueError, match="hinge_sum, hinge_hardest"):
        hinge_active_negatives(img, txt, "info_nce")
    with pytest.raises(ValueError, match="same shape"):
        hinge_active_negatives(img, txt[:2])


def test_embedding_spread_exact():
    assert embedding_spread(torch.eye(2)) == pytest.approx(0.0)
    assert embedding_spread(torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])) == pytest.approx(1.0)
    assert embedding_spread(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-1.0)
    assert embedding_spread(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="N >= 2"):
        embedding_spread(torch.ones(1, 4))


def _task(**kw):
    return SwitchedMatching(torch.zeros(5, 2, 4, dtype=torch.long), **kw)


def test_switched_matching_schedule_and_losses():
    task = _task(switch_at=0.5)
    at = lambda step: SimpleNamespace(step=step, total_steps=10)  # noqa: E731
    assert [task.current(at(k)) for k in (0, 4, 5, 9)] == ["hinge_sum", "hinge_sum", "hinge_hardest", "hinge_hardest"]
    assert task.current(None) == "hinge_hardest"
    assert _task(switch_at=0.0).current(at(0)) == "hinge_hardest"
    assert _task(switch_at=1.0).current(at(9)) == "hinge_sum"
    img, txt = _pair()
    out = (img, txt, torch.tensor(0.0), None)
    assert task.loss(out, None, at(0)) == pytest.approx(float(hinge_sum(img, txt, 0.2)))
    assert task.loss(out, None, at(5)) == pytest.approx(float(hinge_hardest(img, txt, 0.2)))
    # by hand: sum of violations 0.1 + 0.05 + 0.15 (images) + 0.15 + 0.1 + 0.05 (captions), over 3 pairs
    assert float(hinge_sum(img, txt, 0.2)) == pytest.approx(0.6 / 3)
    assert float(hinge_hardest(img, txt, 0.2)) == pytest.approx((0.1 + 0.15 + 0.15 + 0.1 + 0.05) / 3)
    cfg = task.config()
    assert cfg["first"] == "hinge_sum" and cfg["switch_at"] == 0.5 and cfg["loss"] == "hinge_hardest"


def test_switched_matching_errors():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        _task(switch_at=1.5)
    with pytest.raises(ValueError, match="first is one of"):
        _task(first="triplet")
    with pytest.raises(ValueError, match="loss is one of"):
        _task(loss="triplet")


@pytest.fixture(scope="module")
def scenes():
    items = wb.load("fashion_mnist", "test", subset=200, seed=0)
    return S.make_scenes(items, 40, size=32, max_objects=2, seed=0, split="test")


def test_retrieval_similarity_and_a_short_switched_run(scenes):
    caps = caption_table(scenes, length=16)
    res = wb.fit(wb.create_model("clip_tiny", context=16, width=4, num_classes=0), scenes.as_dataset("index"),
                 task=SwitchedMatching(caps, switch_at=0.5), algorithms=[wb.vl.RetrievalCurve(scenes, length=16)],
                 epochs=2, batch_size=20, lr=1e-3, optimizer="adamw", weight_decay=0.0, augment=None, seed=0,
                 progress=False)
    h = res.history
    assert {"i2t_R@1", "t2i_R@1", "image_spread", "retrieval_step"} <= set(h.columns)
    assert h["retrieval_step"].tolist() == [2, 4]
    s = retrieval_similarity(res.model, scenes, length=16)
    assert s.shape == (40, 40) and s.abs().max() <= 1 + 1e-5
    m = retrieval_metrics(s, ks=(1,))
    assert m["i2t_R@1"] == pytest.approx(h["i2t_R@1"].iloc[-1])
    with pytest.raises(ValueError, match="two-tower"):
        retrieval_similarity(torch.nn.Linear(2, 2), scenes)


def test_distinct_captions_keeps_first_of_each_caption(scenes):
    d = distinct_captions(scenes)
    firsts = [c[0] for c in d.captions]
    assert len(set(firsts)) == len(firsts) == len({c[0] for c in scenes.captions})
    assert firsts[0] == scenes.captions[0][0] and torch.equal(d.images[0], scenes.images[0])
    assert len(d.images) == len(d.items) == len(d.counts) == len(d.captions)
    assert len(distinct_captions(scenes, limit=5)) == 5
    with pytest.raises(ValueError, match="generate more scenes"):
        distinct_captions(scenes, limit=10_000)
