"""Tests of workbench.vl.vqa: per-kind accuracy, the question-only ceiling, count errors, cached training."""
import math

import pytest
import torch

import workbench as wb
from workbench.data import maps as M
from workbench.vl import vqa as V

A = {a: i for i, a in enumerate(M.ANSWERS)}


def _data(questions, n_images=2):
    images = torch.zeros(n_images, 3, 32, 32, dtype=torch.uint8)
    return M.VQAData.build(images, questions)


def test_accuracy_by_kind_exact():
    preds = [A["yes"], A["no"], A["2"], A["3"], A["small"]]
    answers = [A["yes"], A["yes"], A["2"], A["2"], A["small"]]
    kinds = ["presence", "presence", "count", "count", "area"]
    out = V.accuracy_by_kind(torch.tensor(preds), torch.tensor(answers), kinds)
    assert out == {"all": pytest.approx(3 / 5), "area": 1.0, "count": 0.5, "presence": 0.5}
    assert list(out) == ["all", "area", "count", "presence"]
    with pytest.raises(ValueError, match="one entry per question"):
        V.accuracy_by_kind(preds, answers, kinds[:-1])
    with pytest.raises(ValueError, match="no questions"):
        V.accuracy_by_kind([], [], [])


def test_majority_answers_is_the_blind_optimum():
    q = lambda s, t, a, k: dict(scene=s, question=t, answer=a, kind=k)  # noqa: E731
    train = _data([q(0, "is there water", "yes", "presence"), q(1, "is there water", "yes", "presence"),
                   q(0, "is there water", "no", "presence"), q(0, "is there a road", "no", "presence"),
                   q(1, "is there a road", "yes", "presence"),   # a tie: "yes" comes first in ANSWERS
                   q(0, "how many roads are there", "2", "count"), q(1, "how many roads are there", "2", "count"),
                   q(0, "how many fields are there", "1", "count")])
    test = _data([q(0, "is there water", "no", "presence"), q(1, "is there a road", "yes", "presence"),
                  q(0, "how many roads are there", "2", "count"),
                  q(1, "how many buildings are there", "0", "count")])   # never asked: its kind's majority
    pred = V.majority_answers(train, test)
    assert pred.tolist() == [A["yes"], A["yes"], A["2"], A["2"]]
    assert V.accuracy_by_kind(pred, test.answers, test.kinds) == {"all": 0.5, "count": 0.5, "presence": 0.5}
    with pytest.raises(TypeError, match="VQAData"):
        V.majority_answers(train, [1, 2])


def test_count_error_exact():
    kinds = ["count", "count", "count", "presence", "count"]
    preds = [A["2"], A["3"], A["0"], A["yes"], A["yes"]]
    answers = [A["2"], A["1"], A["1"], A["no"], A["4"]]
    out = V.count_error(preds, answers, kinds)
    assert out["mae"] == pytest.approx((0 + 2 + 1) / 3)
    assert out["off_by_one"] == pytest.approx(1 / 4) and out["not_a_number"] == pytest.approx(1 / 4)
    assert math.isnan(V.count_error([A["no"]], [A["1"]], ["count"])["mae"])
    with pytest.raises(ValueError, match="no count questions"):
        V.count_error([A["yes"]], [A["no"]], ["presence"])
    with pytest.raises(ValueError, match="must be numbers"):
        V.count_error([A["1"]], [A["small"]], ["count"])


def test_train_vqa_cached_and_predict(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    m = M.make_maps(24, size=32, seed=0)
    data = M.VQAData.build(m.images, M.make_questions(m, 4, seed=0))
    kw = dict(epochs=1, lr=1e-3, optimizer="adamw", weight_decay=0.0, model_kwargs=dict(width=8))
    first = V.train_vqa(data, data, seed=0, **kw)
    again = V.train_vqa(data, data, seed=0, **kw)        # from the cache: the same weights
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu()), k
    pred = V.vqa_predict(again.model, data)
    assert pred.shape == (len(data),) and pred.dtype == torch.int64
    acc = V.accuracy_by_kind(pred, data.answers, data.kinds)
    assert acc["all"] == pytest.approx(first.history["test_acc"].iloc[-1])
    assert acc == pytest.approx(wb.vl.vqa_accuracy(again.model, data))
    blind = V.train_vqa(data, seed=0, image=False, **kw).model.eval()
    other = M.VQAData(torch.flip(data.images, [0]), data.scene, data.tokens, data.answers, data.kinds)
    assert torch.equal(V.vqa_predict(blind, data), V.vqa_predict(blind, other))   # it never looks at the image
    assert V.vqa_fingerprint(data) != V.vqa_fingerprint(other)
    with pytest.raises(ValueError, match="sets augment itself"):
        V.train_vqa(data, **kw, augment="flip")
    with pytest.raises(ValueError, match="answers"):
        V.train_vqa(data, epochs=1, model_kwargs=dict(answers=3))
    with pytest.raises(TypeError, match="VQAData"):
        V.train_vqa(m, epochs=1)
