"""Image description with an LSTM (LRCN, Donahue et al., arXiv:1411.4389, section 5), as a task of ``wb.fit``.

* :class:`CaptionTask`: teacher forcing. A batch is ``(images, scene indices)`` (``Scenes.as_dataset("index")``);
  the task looks up each scene's caption (token ids from :func:`workbench.vl.caption_table`), feeds the model
  ``<bos> w_1 ... w_{T-1}`` and scores its next-word logits against ``w_1 ... w_T <eos>``: the mean over the
  real (non-padding) target words of ``-log p(w_t | w_{<t}, image)``. Metrics ``loss`` (per word) and ``acc``
  (next-word accuracy).
* :func:`greedy_decode`: a caption per image, each step taking the most likely word, until ``<eos>``.
* :func:`caption_scores`: how well decoded captions name what is in the image: precision, recall and F1 of
  their **content words** (colours, items, sizes, grounds, counts) against a reference caption's, each a set,
  averaged over images; a per-kind recall (``colour_recall``, ``item_recall``, ``ground_recall``) says which
  words are right. Order-free on purpose: a scene's objects have no order a picture could show.

The model is any module with ``encode(images) -> v``, ``start(v) -> state``, ``step(tokens, v, state) ->
(logits, state)`` and ``forward(images, tokens) -> logits [B, T, vocab]`` (``wb.create_model("caption_lstm")``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import random_stream
from ..data.scenes import COLOURS, COUNT_WORDS, GROUNDS, ITEM_WORDS, SIZES, VOCAB
from ..train.tasks import Task

__all__ = ["CaptionTask", "teacher_forced_loss", "greedy_decode", "caption_scores", "content_words",
           "CONTENT_KINDS"]

PAD, BOS, EOS = 0, 1, 2
_PHRASING_STREAM = 71_245_531
# content words by kind; plural item words count as their item
CONTENT_KINDS: dict[str, frozenset[str]] = {
    "colour": frozenset(COLOURS), "item": frozenset(w for pair in ITEM_WORDS for w in pair),
    "size": frozenset(SIZES), "ground": frozenset(GROUNDS), "count": frozenset(COUNT_WORDS)}
_SINGULAR = {plural: single for single, plural in ITEM_WORDS}


def content_words(caption: str) -> set[str]:
    """The content words of a caption (plural items made singular): ``"two bags and a red coat on sand"`` ->
    ``{"two", "bag", "red", "coat", "sand"}``."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption is a string, got {type(caption).__name__}")
    words = set()
    for w in caption.lower().split():
        if any(w in kind for kind in CONTENT_KINDS.values()):
            words.add(_SINGULAR.get(w, w))
    return words


def teacher_forced_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-word cross-entropy: ``logits [B, T-1, vocab]`` computed from ``tokens[:, :-1]``, scored against
    ``tokens[:, 1:]``; padding targets (id 0) are left out; the mean over the real target words."""
    if not (isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and tokens.shape[1] >= 2):
        raise ValueError("tokens are ids [batch, length >= 2] (<bos>, words, <eos>): wb.data.scenes.tokenize")
    if logits.ndim != 3 or logits.shape[:2] != (tokens.shape[0], tokens.shape[1] - 1):
        raise ValueError(f"logits must be [batch, length - 1, vocab] = [{tokens.shape[0]}, {tokens.shape[1] - 1}, "
                         f"vocab] for tokens of shape {list(tokens.shape)}, got {list(logits.shape)}")
    target = tokens[:, 1:]
    if not (target != PAD).any():
        raise ValueError("every target is padding: the captions hold no words (tokenize them first)")
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD)


class CaptionTask(Task):
    """Train a captioner by teacher forcing (see the module docstring).

    Args:
        captions: ``[N, P, L]`` token ids (:func:`workbench.vl.caption_table`), indexed by the batch's labels
            (scene indices).
        phrasings: which of the ``P`` phrasings to train on (default all: one drawn per scene and step, from the
            run's seed, so a resumed run is exact); evaluation reads the first of them.
    """

    metric_names = ("loss", "acc")

    def __init__(self, captions: torch.Tensor, phrasings: Sequence[int] | None = None):
        if not (isinstance(captions, torch.Tensor) and captions.ndim == 3 and not captions.is_floating_point()):
            raise ValueError("captions are token ids [scenes, phrasings, length]: build them with "
                             "wb.vl.caption_table(scenes)")
        P = captions.shape[1]
        which = list(range(P)) if phrasings is None else [int(p) for p in phrasings]
        if not which or any(not 0 <= p < P for p in which):
            raise ValueError(f"phrasings are indices in 0..{P - 1} (the caption table has {P}), got {phrasings!r}")
        if not (captions[:, which, 0] == BOS).all():
            raise ValueError("every caption must start with <bos> (id 1): build the table with wb.vl.caption_table")
        used = (captions[:, which] != PAD).any(0).any(0).nonzero()
        length = int(used.max()) + 1                              # drop the columns that are padding everywhere
        self.captions, self.phrasings = captions[:, which, :max(length, 2)].contiguous(), which

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not all(hasattr(model, a) for a in ("encode", "start", "step")):
            raise ValueError(f"{self.name} trains a captioner with encode, start and step "
                             f"(wb.create_model('caption_lstm')), got {type(model).__name__}")
        if len(dataset) > len(self.captions):
            raise ValueError(f"the data has {len(dataset)} scenes but the caption table {len(self.captions)}: use "
                             "scenes.as_dataset('index') with the caption table of the same scenes")

    def check_batch(self, batch: Any) -> None:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and batch[1].ndim == 1
                and not batch[1].is_floating_point()):
            raise ValueError(f"{self.name} reads batches (images, scene indices): train on "
                             "scenes.as_dataset('index')")

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.captions = self.captions.to(device)

    def tokens(self, idx: torch.Tensor, state: Any = None) -> torch.Tensor:
        """The captions of scenes ``idx``: a phrasing drawn per scene in training, the first in evaluation."""
        P = self.captions.shape[1]
        if state is not None and P > 1:
            g = random_stream(state.seed, _PHRASING_STREAM, state.step)
            which = torch.randint(P, (len(idx),), generator=g).to(idx.device)
        else:
            which = torch.zeros_like(idx)
        return self.captions[idx, which]                           # [B, L]

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        tokens = self.tokens(batch[1], state)
        return model(batch[0], tokens[:, :-1]), tokens

    def loss(self, outputs: Any, batch: Any, state: Any = None) -> torch.Tensor:
        logits, tokens = outputs
        return teacher_forced_loss(logits, tokens)

    def metrics(self, outputs: Any, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        logits, tokens = outputs
        target = tokens[:, 1:]
        real = target != PAD
        n = int(real.sum())
        hits = ((logits.argmax(-1) == target) & real).sum()
        return {"loss": loss.detach().double() * n, "acc": hits.double()}, n

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "captions": list(self.captions.shape), "phrasings": self.phrasings}


@torch.no_grad()
def greedy_decode(model: nn.Module, images: torch.Tensor, max_len: int = 24, batch_size: int = 500) -> torch.Tensor:
    """Captions ``[N, max_len]`` of token ids: ``<bos>``, then at each step the model's most likely word, until
    ``<eos>`` (padding after it); ``images`` are float and normalized like the training batches
    (``wb.data.to_float``). Read them with :func:`workbench.data.scenes.detokenize`."""
    if not (isinstance(max_len, int) and max_len >= 2):
        raise ValueError(f"max_len must be an integer >= 2 (<bos> and at least one word), got {max_len!r}")
    if not all(hasattr(model, a) for a in ("encode", "start", "step")):
        raise ValueError("greedy_decode needs a captioner with encode, start and step "
                         "(wb.create_model('caption_lstm'))")
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            v = model.encode(x)
            state = model.start(v)
            tok = torch.full((len(x), 1), BOS, dtype=torch.long, device=x.device)
            seq, done = [tok], torch.zeros(len(x), dtype=torch.bool, device=x.device)
            for _ in range(max_len - 1):
                logits, state = model.step(tok, v, state)
                tok = logits[:, -1].argmax(-1, keepdim=True)          # [B, 1]
                tok = torch.where(done[:, None], torch.zeros_like(tok), tok)
                seq.append(tok)
                done |= tok[:, 0] == EOS
                if done.all():
                    break
            ids = torch.cat(seq, 1)
            out.append(F.pad(ids, (0, max_len - ids.shape[1]), value=PAD))
    finally:
        model.train(was)
    return torch.cat(out, 0)


def caption_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Content-word precision, recall and F1 of ``predictions`` against ``references`` (one each, as sets of
    :func:`content_words`), averaged over the pairs, and recall per kind (``colour_recall``, ``item_recall``,
    ``size_recall``, ``ground_recall``; count words are in the totals). An empty prediction has precision 0;
    F1 of a pair is 0 when precision and recall are."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references are lists of captions (one string per image)")
    if len(predictions) != len(references) or not len(predictions):
        raise ValueError(f"give one reference per prediction (and at least one): {len(predictions)} predictions, "
                         f"{len(references)} references")
    sums = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    kinds = ("colour", "item", "size", "ground")
    kind_hits = {k: 0.0 for k in kinds}
    kind_counts = {k: 0 for k in kinds}
    for p, r in zip(predictions, references):
        pw, rw = content_words(p), content_words(r)
        if not rw:
            raise ValueError(f"the reference {r!r} names nothing (no colour, item, size, ground or count)")
        hit = len(pw & rw)
        prec = hit / len(pw) if pw else 0.0
        rec = hit / len(rw)
        sums["precision"] += prec
        sums["recall"] += rec
        sums["f1"] += 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        for k in kinds:
            ref_k = {w for w in rw if _SINGULAR.get(w, w) in CONTENT_KINDS[k] or w in CONTENT_KINDS[k]}
            if ref_k:
                kind_hits[k] += len(ref_k & pw) / len(ref_k)
                kind_counts[k] += 1
    n = len(predictions)
    out = {k: v / n for k, v in sums.items()}
    out.update({f"{k}_recall": kind_hits[k] / kind_counts[k] if kind_counts[k] else float("nan") for k in kinds})
    return out
