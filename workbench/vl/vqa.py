"""Visual question answering, measured per kind of question (RSVQA, Lobry et al., arXiv:2003.07333).

* :func:`train_vqa`: ``vqa_tiny`` (with its image tower, or ``image=False``: the question-only baseline) from a
  seed, trained by ``wb.fit`` with :class:`~workbench.vl.losses.VQATask` on a :class:`~workbench.data.maps.VQAData`;
  cached on the questions, the images, the seed and every fit argument.
* :func:`vqa_predict`: the model's answer (index into :data:`~workbench.data.maps.ANSWERS`) to every question.
* :func:`accuracy_by_kind`: accuracy overall and per question kind, from predictions.
* :func:`majority_answers`: the best any question-only model can do on its training questions: each question's
  most frequent training answer (the prior a blind model learns), applied to other questions.
* :func:`count_error`: how far count answers are off, in objects (mean absolute error on count questions).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import torch
from torch import nn

from ..cache import fingerprint

__all__ = ["vqa_fingerprint", "train_vqa", "vqa_predict", "accuracy_by_kind", "majority_answers", "count_error"]


def _check_data(data: Any, what: str = "data") -> None:
    from ..data.maps import VQAData
    if not isinstance(data, VQAData):
        raise TypeError(f"{what} must be questions about images, a wb.data.maps.VQAData (VQAData.build(images, "
                        f"make_questions(...))), got {type(data).__name__}")


def vqa_fingerprint(data: Any) -> str:
    """A short hash of a ``VQAData``'s images, questions, answers and kinds (for cache keys)."""
    _check_data(data)
    fp = getattr(data, "_fingerprint", None)
    if fp is None:
        fp = fingerprint(data.images, data.scene, data.tokens, data.answers, list(data.kinds))
        data._fingerprint = fp
    return fp


def train_vqa(train: Any, test: Any | None = None, *, image: bool = True, seed: int = 0, batch_size: int = 64,
              model_kwargs: dict | None = None, cache: bool = True, **fit_kwargs: Any):
    """``wb.create_model("vqa_tiny", answers=len(ANSWERS), image=image, **model_kwargs)`` from ``seed``, trained
    by ``wb.fit`` on ``train`` (a ``VQALoader`` of ``batch_size``, order from the seed) with ``VQATask``;
    ``test`` is evaluated each epoch. ``augment`` is off (a flip would keep every answer here, but the loaders
    of questions do not augment). Returns ``wb.fit``'s ``TrainResult`` (from the cache: the model rebuilt with
    its trained weights, and the history)."""
    from ..data.maps import ANSWERS, VQALoader
    from ..models import create_model
    from ..train.cached import cached_fit
    from .losses import VQATask

    _check_data(train, "train")
    if test is not None:
        _check_data(test, "test")
    if "augment" in fit_kwargs:
        raise ValueError("train_vqa sets augment itself (off: the loaders of questions do not augment)")
    model_kwargs = dict(model_kwargs or {})
    if "answers" in model_kwargs or "image" in model_kwargs:
        raise ValueError("train_vqa sets the model's answers (len(ANSWERS)) and image (its image= argument) itself")
    model_kwargs.setdefault("context", train.tokens.shape[1])
    kwargs = dict(answers=len(ANSWERS), image=bool(image), **model_kwargs)

    def build() -> nn.Module:
        torch.manual_seed(seed)
        return create_model("vqa_tiny", **kwargs)

    def loaders():
        return (VQALoader(train, batch_size, seed=seed),
                VQALoader(test, 500, shuffle=False) if test is not None else None)

    key = {"model": "vqa_tiny", "model_kwargs": kwargs, "batch_size": batch_size,
           "train": [train.name, len(train), vqa_fingerprint(train)],
           "test": [test.name, len(test), vqa_fingerprint(test)] if test is not None else None}
    return cached_fit(build, loaders, task=VQATask(), key=key, name="train_vqa", seed=seed, cache=cache,
                      fit_kwargs={**fit_kwargs, "augment": None})


@torch.no_grad()
def vqa_predict(model: nn.Module, data: Any, batch_size: int = 500) -> torch.Tensor:
    """The model's answer to every question of ``data`` (``VQAData``): indices into ``ANSWERS``, ``[Q]`` on the
    CPU. The model is called as ``model(images, tokens)`` in eval mode (and put back as it was)."""
    from ..data.maps import VQALoader
    _check_data(data)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x, q).argmax(1).cpu() for x, q, _ in
                          VQALoader(data, batch_size, shuffle=False, device=dev)])
    finally:
        model.train(was)


def accuracy_by_kind(preds: torch.Tensor | Sequence[int], answers: torch.Tensor | Sequence[int],
                     kinds: Sequence[str]) -> dict[str, float]:
    """``{"all": accuracy, kind: accuracy of that kind's questions, ...}`` (kinds in sorted order) for predicted
    and true answer indices and each question's kind."""
    preds, answers = torch.as_tensor(preds).cpu(), torch.as_tensor(answers).cpu()
    if preds.ndim != 1 or preds.shape != answers.shape or len(kinds) != len(preds):
        raise ValueError(f"preds, answers and kinds need one entry per question: got {tuple(preds.shape)}, "
                         f"{tuple(answers.shape)} and {len(kinds)} kinds")
    if len(preds) == 0:
        raise ValueError("there are no questions to score")
    right = (preds == answers).float()
    out = {"all": float(right.mean())}
    for kind in sorted(set(kinds)):
        sel = torch.tensor([k == kind for k in kinds])
        out[kind] = float(right[sel].mean())
    return out


def majority_answers(train: Any, test: Any) -> torch.Tensor:
    """For every question of ``test``, the answer most often given to the same question (word for word) in
    ``train``; a question never asked in training gets the most frequent training answer of its kind (or
    overall). Ties go to the answer listed first in ``ANSWERS``. The best a model that never looks at the image
    can do on the training distribution: the question-only baseline's ceiling. Returns indices ``[Q]``."""
    _check_data(train, "train")
    _check_data(test, "test")
    by_question: dict[tuple, Counter] = {}
    by_kind: dict[str, Counter] = {}
    overall: Counter = Counter()
    for t, a, k in zip(train.tokens.cpu().tolist(), train.answers.cpu().tolist(), train.kinds):
        by_question.setdefault(tuple(t), Counter())[a] += 1
        by_kind.setdefault(k, Counter())[a] += 1
        overall[a] += 1

    def best(c: Counter) -> int:
        return min(c, key=lambda a: (-c[a], a))

    out = []
    for t, k in zip(test.tokens.cpu().tolist(), test.kinds):
        c = by_question.get(tuple(t)) or by_kind.get(k) or overall
        out.append(best(c))
    return torch.tensor(out, dtype=torch.int64)


def count_error(preds: torch.Tensor | Sequence[int], answers: torch.Tensor | Sequence[int],
                kinds: Sequence[str]) -> dict[str, float]:
    """How far the count questions' answers (``kind == "count"``; ``"0"`` ... ``"6"``, where ``"6"`` stands for
    six or more) are off: ``{"mae": mean absolute error in objects, "off_by_one": share off by exactly one,
    "not_a_number": share answered with a word that is no count}`` (the error is over the answers that are
    counts; NaN if none is)."""
    from ..data.maps import ANSWERS
    preds, answers = torch.as_tensor(preds).cpu(), torch.as_tensor(answers).cpu()
    if preds.ndim != 1 or preds.shape != answers.shape or len(kinds) != len(preds):
        raise ValueError(f"preds, answers and kinds need one entry per question: got {tuple(preds.shape)}, "
                         f"{tuple(answers.shape)} and {len(kinds)} kinds")
    sel = [i for i, k in enumerate(kinds) if k == "count"]
    if not sel:
        raise ValueError("there are no count questions (kind 'count') to score")
    value = {i: int(a) for i, a in enumerate(ANSWERS) if a.isdigit()}
    p, t = preds[sel].tolist(), answers[sel].tolist()
    bad = sorted({ANSWERS[a] if 0 <= a < len(ANSWERS) else str(a) for a in t if a not in value})
    if bad:
        raise ValueError(f"the true answers of count questions must be numbers ('0' to '6'), got {bad}")
    errs = [abs(value[a] - value[b]) for a, b in zip(p, t) if a in value]
    return {"mae": sum(errs) / len(errs) if errs else float("nan"),
            "off_by_one": sum(e == 1 for e in errs) / len(sel),
            "not_a_number": 1 - len(errs) / len(sel)}
