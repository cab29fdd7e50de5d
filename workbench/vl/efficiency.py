"""Zero-shot accuracy along training, for CLIP's contrastive objective and its bag-of-words baseline.

CLIP (Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*,
arXiv:2103.00020, figure 2) compares objectives by how much training compute each needs to reach a
given zero-shot accuracy. This module holds the pieces of that comparison:

* :func:`word_scores`: zero-shot classification by a model that predicts its caption's words
  (``clip_tiny(word_head=True)`` trained with :class:`~workbench.vl.CaptionWords`): a prompt's score is
  the sum, over its content words, of the log-probability the word head gives that word,
  ``sum_w log sigmoid(z_w)``; with several templates, the mean over them (prompt ensembling). Words the
  baseline never predicts (grammar words: "a", "of", "on"...) add nothing.
* :func:`zero_shot_scores`: either that or the contrastive zero-shot (cosine similarity to the class
  embeddings of :func:`~workbench.vl.class_embeddings`), by the model's kind.
* :class:`ZeroShotCurve`: an algorithm of ``wb.fit`` that measures zero-shot accuracy on a labelled
  set at the end of every epoch and writes it into the history (``zero_shot_acc``), with the step.
* :func:`steps_to_reach`: the first step at which a curve reaches a target accuracy (linearly
  interpolated between evaluations), the measure of compute the comparison reports.
* :func:`few_shot_indices`: ``k`` examples per class for a few-shot linear probe.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset
from ..data.scenes import CONTENT_WORDS, VOCAB
from ..train.events import Algorithm, State
from .zeroshot import class_embeddings, embed_images, zero_shot_logits

__all__ = ["CONTENT_WORDS", "word_scores", "zero_shot_scores", "zero_shot_accuracy", "ZeroShotCurve",
           "steps_to_reach", "few_shot_indices"]

_INDEX = {w: i for i, w in enumerate(VOCAB)}


def _prompt_words(prompt: str) -> list[int]:
    words = prompt.lower().split()
    unknown = [w for w in words if w not in _INDEX]
    if unknown:
        raise ValueError(f"the word {unknown[0]!r} of the prompt {prompt!r} is not in the scenes' vocabulary "
                         "(wb.data.scenes.VOCAB)")
    return [_INDEX[w] for w in words if w in CONTENT_WORDS]


@torch.no_grad()
def word_scores(model: nn.Module, data: ImageDataset | torch.Tensor, names: Sequence[str],
                templates: Sequence[str] = ("{}",), batch_size: int = 500) -> torch.Tensor:
    """``[N, classes]``: for each image and class, the mean over ``templates`` of ``sum_w log sigmoid(z_w)``
    over the content words ``w`` of ``template.format(name)`` (``z``: the word head's logits).

    Args:
        model: a two-tower model with a word head (``wb.create_model("clip_tiny", word_head=True)``).
        data: an :class:`ImageDataset` or normalized images ``[N, C, H, W]``.
        names: class names, one or more words each (``"coat"``, ``"red coat"``).
    """
    if getattr(model, "word_head", None) is None:
        raise ValueError("word_scores needs a model with a word head: wb.create_model('clip_tiny', word_head=True); "
                         "a contrastive model scores prompts with zero_shot_scores(..., by='text')")
    if not names or not templates:
        raise ValueError("give at least one class name and one template (e.g. '{}' or 'a photo of a {}')")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"every template needs a '{{}}' where the class name goes; {bad[0]!r} has none")
    bags = torch.zeros(len(names), len(templates), len(VOCAB))
    for i, name in enumerate(names):
        for j, t in enumerate(templates):
            ids = _prompt_words(t.format(name))
            if not ids:
                raise ValueError(f"the prompt {t.format(name)!r} has no word the word head predicts")
            for k in ids:
                bags[i, j, k] += 1.0
    weights = bags.mean(1)                                                     # [classes, vocab]
    emb = embed_images(model, data, batch_size)                                # [N, D]
    logp = F.logsigmoid(model.word_head(emb).float())                          # [N, vocab]
    return logp @ weights.to(logp.device).T


def zero_shot_scores(model: nn.Module, data: ImageDataset | torch.Tensor, names: Sequence[str],
                     templates: Sequence[str] = ("a {}",), by: str | None = None, length: int = 24) -> torch.Tensor:
    """``[N, classes]`` zero-shot scores: ``by="text"`` (cosine similarity to the text tower's class embeddings,
    the contrastive model) or ``by="words"`` (:func:`word_scores`, the bag-of-words model); ``None`` picks
    ``"words"`` for a model with a word head, else ``"text"``."""
    if by is None:
        by = "words" if getattr(model, "word_head", None) is not None else "text"
    if by == "words":
        return word_scores(model, data, names, templates)
    if by != "text":
        raise ValueError(f"by is 'text' or 'words' (or None to choose by the model), got {by!r}")
    return zero_shot_logits(embed_images(model, data), class_embeddings(model, names, templates, length))


def zero_shot_accuracy(model: nn.Module, data: ImageDataset, names: Sequence[str] | None = None,
                       templates: Sequence[str] = ("a {}",), by: str | None = None, length: int = 24) -> float:
    """Share of ``data`` whose label is the class of the highest zero-shot score (``names``: ``data.classes``)."""
    names = list(data.classes if names is None else names)
    if len(names) != data.num_classes:
        raise ValueError(f"{len(names)} names for {data.num_classes} classes: give one name per class, in order")
    scores = zero_shot_scores(model, data, names, templates, by, length)
    return float((scores.argmax(1).cpu() == data.labels.cpu()).double().mean())


class ZeroShotCurve(Algorithm):
    """Measure zero-shot accuracy on ``data`` after every epoch; the history gains ``zero_shot_acc`` and
    ``zero_shot_step`` (the optimizer steps taken so far).

    Args:
        data: a labelled :class:`ImageDataset` (``scenes.as_dataset("first_item")`` of held-out scenes).
        names, templates, by, length: as in :func:`zero_shot_accuracy`.
    """

    def __init__(self, data: ImageDataset, names: Sequence[str] | None = None, templates: Sequence[str] = ("a {}",),
                 by: str | None = None, length: int = 24):
        from ..train.cached import data_fingerprint
        names = list(data.classes if names is None else names)
        if len(names) != data.num_classes:
            raise ValueError(f"{len(names)} names for {data.num_classes} classes: give one name per class, in order")
        super().__init__(data=data_fingerprint(data), names=names, templates=list(templates), by=by, length=length)
        self.data, self.names, self.templates, self.by, self.length = data, names, list(templates), by, length

    def on_epoch_end(self, state: State) -> None:
        acc = zero_shot_accuracy(state.model, self.data, self.names, self.templates, self.by, self.length)
        state.rows[-1]["zero_shot_acc"] = acc
        state.rows[-1]["zero_shot_step"] = state.step


def steps_to_reach(steps: Sequence[float], accuracy: Sequence[float], target: float) -> float:
    """The first step at which ``accuracy`` (measured at ``steps``, increasing) reaches ``target``, linearly
    interpolated between the two evaluations around the crossing; ``inf`` if it never does.

    >>> steps_to_reach([0, 100, 200], [0.1, 0.3, 0.5], 0.4)
    150.0
    """
    s = [float(x) for x in steps]
    a = [float(x) for x in accuracy]
    if len(s) != len(a) or not s:
        raise ValueError(f"steps and accuracy must be equally long and non-empty, got {len(s)} and {len(a)}")
    if any(s1 <= s0 for s0, s1 in zip(s, s[1:])):
        raise ValueError("steps must increase")
    for i, acc in enumerate(a):
        if acc >= target:
            if i == 0:
                return s[0]
            return s[i - 1] + (target - a[i - 1]) / (acc - a[i - 1]) * (s[i] - s[i - 1])
    return float("inf")


def few_shot_indices(labels: torch.Tensor, shots: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``shots`` random examples of each class present in ``labels`` (sorted by class, then draw)."""
    if not (isinstance(shots, int) and shots >= 1):
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    labels = labels.cpu()
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for c in labels.unique().tolist():
        pool = (labels == c).nonzero().flatten()
        if len(pool) < shots:
            raise ValueError(f"class {c} has only {len(pool)} examples, fewer than shots={shots}")
        out.append(pool[torch.randperm(len(pool), generator=g)[:shots]])
    return torch.cat(out)
