"""Image-text objectives and the tasks that train a two-tower model through ``wb.fit``.

* :func:`info_nce`: CLIP's symmetric cross-entropy over the batch's image-text similarity matrix, scaled by
  the learnable ``exp(logit_scale)`` (Radford et al., arXiv:2103.00020, figure 3).
* :func:`hinge_sum` and :func:`hinge_hardest`: the bidirectional ranking losses of image-text matching: the
  sum over every negative of ``max(0, margin - s(i, t) + s(i, t'))`` both ways (Kiros et al.; Wang, Li &
  Lazebnik's bidirectional ranking, arXiv:1511.06078), and VSE++'s hardest negative only (Faghri et al.,
  arXiv:1707.05612).
* :class:`ImageTextContrastive`: the task. A batch is ``(images, scene indices)`` (``Scenes.as_dataset("index")``);
  each step reads one of each scene's caption phrasings (drawn from the run's seed and the step, so a resumed
  run is exact) and scores the batch with the chosen loss; metrics ``loss`` and ``acc`` (how often an image's
  own caption is its most similar in the batch).
* :class:`CaptionWords`: the predictive baseline: the image embedding predicts which words its caption holds
  (a multi-label bag of words, binary cross-entropy), the "bag-of-words prediction" CLIP compares against.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import fingerprint
from ..data import random_stream
from ..data.scenes import Scenes, VOCAB, tokenize
from ..train.tasks import Task

__all__ = ["info_nce", "hinge_sum", "hinge_hardest", "ImageTextContrastive", "CaptionWords", "caption_table",
           "LOSSES", "VQATask", "vqa_accuracy"]

LOSSES = ("info_nce", "hinge_sum", "hinge_hardest")
_CAPTION_STREAM = 32_452_843


def _check_pair(img: torch.Tensor, txt: torch.Tensor) -> None:
    if img.ndim != 2 or txt.shape != img.shape:
        raise ValueError(f"image and text embeddings must both be [batch, dim] of the same shape, got "
                         f"{tuple(img.shape)} and {tuple(txt.shape)}")


def info_nce(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float,
             same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of matching rows: ``(CE(s, I) + CE(s^T, I)) / 2`` with ``s = exp(logit_scale) img txt^T``
    (embeddings assumed L2-normalized). Identical embeddings for every pair give ``log(batch)``. ``same``, a bool
    ``[B, B]`` mask, leaves pair ``(i, j)`` (``i != j``: text ``j`` word for word text ``i``) out of the negatives
    both ways; with every caption alike the loss is 0."""
    _check_pair(img, txt)
    scale = torch.as_tensor(logit_scale, dtype=img.dtype, device=img.device).exp()
    logits = scale * img @ txt.T                                        # [B, B]
    if same is not None:
        if same.shape != logits.shape or same.dtype != torch.bool:
            raise ValueError(f"same is a bool [B, B] mask beside {len(img)} pairs, got {same.dtype} "
                             f"{tuple(same.shape)}")
        eye = torch.eye(len(img), dtype=torch.bool, device=img.device)
        logits = logits.masked_fill(same.to(img.device) & ~eye, float("-inf"))
    target = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _margins(img: torch.Tensor, txt: torch.Tensor, margin: float,
             same: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    s = img @ txt.T                                                     # [B, B]
    pos = s.diag()
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    if same is not None:
        if same.shape != s.shape:
            raise ValueError(f"same must be a [B, B] mask beside {len(s)} pairs, got {tuple(same.shape)}")
        off = off & ~same.to(s.device)
    i2t = (margin - pos[:, None] + s).clamp(min=0) * off                # image i against text j
    t2i = (margin - pos[None, :] + s).clamp(min=0) * off                # text j against image i
    return i2t, t2i


def hinge_sum(img: torch.Tensor, txt: torch.Tensor, margin: float = 0.2,
              same: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over every negative, both directions, of the hinge ``max(0, margin - s_pos + s_neg)``; mean over
    the batch. ``same`` (bool ``[B, B]``): pairs that are not negatives (another pair with the same caption)."""
    _check_pair(img, txt)
    i2t, t2i = _margins(img, txt, margin, same)
    return (i2t.sum(1) + t2i.sum(0)).mean()


def hinge_hardest(img: torch.Tensor, txt: torch.Tensor, margin: float = 0.2,
                  same: torch.Tensor | None = None) -> torch.Tensor:
    """VSE++: the hinge of the hardest negative only, both directions; mean over the batch (``same`` as in
    :func:`hinge_sum`)."""
    _check_pair(img, txt)
    i2t, t2i = _margins(img, txt, margin, same)
    return (i2t.amax(1) + t2i.amax(0)).mean()


def caption_table(scenes: Scenes, length: int = 24, phrasings: Sequence[int] | None = None) -> torch.Tensor:
    """Token ids ``[N, P, length]`` of every scene's phrasings (a scene with fewer repeats its first)."""
    P = max(len(c) for c in scenes.captions)
    which = list(range(P)) if phrasings is None else list(phrasings)
    rows = [[caps[p] if p < len(caps) else caps[0] for p in which] for caps in scenes.captions]
    return tokenize([t for r in rows for t in r], length).view(len(rows), len(which), length)


class ImageTextContrastive(Task):
    """Train a two-tower model (``clip_tiny``) on image-caption pairs; see the module docstring.

    Args:
        captions: ``[N, P, L]`` token ids (:func:`caption_table`), indexed by the batch's labels.
        loss: one of :data:`LOSSES`; ``margin`` for the hinge losses.
        skip_duplicates: a batch's other pair whose caption is word for word the positive's is not counted as
            a negative (the generated scenes repeat short captions often, real captions rarely; a hardest
            "negative" identical to the positive can never be beaten and drags the embeddings together). By
            default (``None``) on for the hinge losses and off for InfoNCE, which counts every other pair as a
            negative, as CLIP does; ``True`` with InfoNCE suits fine-tuning on a few classes' prompts.
    """

    metric_names = ("loss", "acc")

    def __init__(self, captions: torch.Tensor, loss: str = "info_nce", margin: float = 0.2,
                 skip_duplicates: bool | None = None):
        if loss not in LOSSES:
            raise ValueError(f"loss is one of {', '.join(LOSSES)}, got {loss!r}")
        if not (isinstance(captions, torch.Tensor) and captions.ndim == 3):
            raise ValueError("captions are token ids [scenes, phrasings, length]: build them with "
                             "wb.vl.caption_table(scenes)")
        self.captions, self.loss_name, self.margin = captions, loss, margin
        self.skip_duplicates = loss != "info_nce" if skip_duplicates is None else bool(skip_duplicates)

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if not hasattr(model, "encode_text"):
            raise ValueError(f"{self.name} trains a two-tower model with encode_image and encode_text "
                             "(wb.create_model('clip_tiny')), got " + type(model).__name__)
        if len(dataset) > len(self.captions):
            raise ValueError(f"the data has {len(dataset)} scenes but the caption table {len(self.captions)}: use "
                             "scenes.as_dataset('index') with the caption table of the same scenes")

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.captions = self.captions.to(device)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        x, idx = batch[0], batch[1]
        P = self.captions.shape[1]
        if state is not None:  # training: a phrasing per scene drawn from the step
            g = random_stream(state.seed, _CAPTION_STREAM, state.step)
            which = torch.randint(P, (len(idx),), generator=g).to(idx.device)
        else:                  # evaluation: the first (fullest) phrasing
            which = torch.zeros_like(idx)
        tokens = self.captions[idx, which]
        same = None
        if self.skip_duplicates:
            same = (tokens[:, None] == tokens[None]).all(-1)              # [B, B]: word for word the same caption
        return model.encode_image(x), model.encode_text(tokens), model.logit_scale, same

    def loss(self, outputs: Any, batch: Any, state: Any = None) -> torch.Tensor:
        img, txt, scale, same = outputs
        if self.loss_name == "info_nce":
            return info_nce(img.float(), txt.float(), scale.clamp(max=4.6052), same)  # CLIP clips the scale at 100
        fn = hinge_sum if self.loss_name == "hinge_sum" else hinge_hardest
        return fn(img.float(), txt.float(), self.margin, same)

    def metrics(self, outputs: Any, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        img, txt = outputs[0], outputs[1]
        hits = ((img @ txt.T).argmax(1) == torch.arange(len(img), device=img.device)).sum()
        n = len(img)
        return {"loss": loss.detach().double() * n, "acc": hits.double()}, n

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "loss": self.loss_name, "margin": self.margin,
                "captions": [*self.captions.shape, fingerprint(self.captions)],
                **({"skip_duplicates": self.skip_duplicates}
                   if self.loss_name != "info_nce" or self.skip_duplicates else {})}


class CaptionWords(Task):
    """Predict the set of words of an image's caption from the image alone (``clip_tiny(word_head=True)``):
    binary cross-entropy over the vocabulary (special tokens and grammar words left out); metric ``loss``."""

    metric_names = ("loss",)

    def __init__(self, captions: torch.Tensor):
        if not (isinstance(captions, torch.Tensor) and captions.ndim == 3):
            raise ValueError("captions are token ids [scenes, phrasings, length]: wb.vl.caption_table(scenes)")
        bags = torch.zeros(len(captions), len(VOCAB))
        bags.scatter_(1, captions[:, 0], 1.0)      # the fullest phrasing names every object, ground, size
        from ..data.scenes import CONTENT_WORDS
        content = torch.tensor([float(w in CONTENT_WORDS) for w in VOCAB])  # grammar and question words carry none
        self.bags, self.content = bags * content, content

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        if getattr(model, "word_head", None) is None:
            raise ValueError("CaptionWords needs a model with a word head: wb.create_model('clip_tiny', word_head=True)")

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.bags, self.content = self.bags.to(device), self.content.to(device)

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        return model.word_head(model.encode_image(batch[0]))

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        target = self.bags[batch[1]]
        per = F.binary_cross_entropy_with_logits(outputs.float(), target, reduction="none")
        return (per * self.content).sum(1).mean() / self.content.sum()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "scenes": len(self.bags), "bags": fingerprint(self.bags)}


class VQATask(Task):
    """Visual question answering as a task of ``wb.fit``: batches ``(images, question tokens, answers)``
    (``wb.data.maps.VQALoader``), the model called as ``model(images, tokens)`` (``vqa_tiny``), cross-entropy
    over the answers; metrics ``loss`` and ``acc``."""

    metric_names = ("loss", "acc")

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        from ..data.maps import VQAData
        if not isinstance(dataset, VQAData):
            raise ValueError(f"{self.name} trains on questions about images: pass a wb.data.maps.VQALoader, got "
                             f"{type(dataset).__name__}")

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        return model(batch[0], batch[1])

    def loss(self, outputs: torch.Tensor, batch: Any, state: Any = None) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), batch[2])

    def metrics(self, outputs: torch.Tensor, batch: Any, loss: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        n = len(batch[2])
        return {"loss": loss.detach().double() * n, "acc": (outputs.argmax(1) == batch[2]).sum().double()}, n


@torch.no_grad()
def vqa_accuracy(model: nn.Module, data: Any, batch_size: int = 500) -> dict[str, float]:
    """Accuracy per question kind (and ``"all"``) of ``model(images, tokens)`` on a ``VQAData``."""
    from ..data.maps import VQALoader
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        preds = torch.cat([model(x, q).argmax(1).cpu() for x, q, _ in
                           VQALoader(data, batch_size, shuffle=False, device=dev)])
    finally:
        model.train(was)
    right = preds == data.answers.cpu()
    out = {"all": float(right.float().mean())}
    for kind in sorted(set(data.kinds)):
        sel = torch.tensor([k == kind for k in data.kinds])
        out[kind] = float(right[sel].float().mean())
    return out
