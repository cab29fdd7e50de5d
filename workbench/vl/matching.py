"""Bidirectional image-text matching with ranking losses (issue 24; notebook 62).

* :class:`SwitchedMatching`: the task of ``wb.fit`` that trains a two-tower model with one ranking loss for the
  first part of the run and another after (VSE++'s hardest negative needs a good starting point, Faghri et al.
  arXiv:1707.05612, section 4: start from the sum of violations, then switch). ``switch_at=0`` is the second
  loss throughout, ``switch_at=1`` the first throughout; one schedule of the learning rate spans the run.
* :func:`hinge_active_negatives`: per query, how many negatives the ranking loss sends gradient to (the hinges
  that are violated and counted): the sum of violations spreads its gradient over every violating negative,
  the hardest negative over at most one per query and direction.
* :func:`embedding_spread`: the mean cosine similarity between distinct embeddings (1: every embedding alike,
  the collapse of a hardest-negative run from scratch, whose loss then sits at ``2 * margin``).
* :class:`RetrievalCurve`: an algorithm of ``wb.fit`` that measures image-to-text and text-to-image recall at
  1 on held-out scenes after every epoch, with the training loss's collapse measure.
* :func:`retrieval_similarity`: the image-by-caption cosine similarity matrix of a set of scenes (one phrasing
  per scene), the input of :func:`wb.vl.retrieval_metrics`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import random_stream
from ..train.events import Algorithm, State
from .losses import (_CAPTION_STREAM, LOSSES, ImageTextContrastive, _check_pair, hinge_hardest, hinge_sum,
                     info_nce)

__all__ = ["SwitchedMatching", "hinge_active_negatives", "embedding_spread", "retrieval_similarity",
           "distinct_captions", "RetrievalCurve", "RANKING_LOSSES"]

RANKING_LOSSES = ("hinge_sum", "hinge_hardest")


class SwitchedMatching(ImageTextContrastive):
    """:class:`wb.vl.ImageTextContrastive` with a schedule of the loss: ``first`` for the first ``switch_at`` of
    the run's optimizer steps, then ``loss`` (both one of :data:`wb.vl.LOSSES`). Evaluation scores ``loss``.

    Args:
        captions, margin, skip_duplicates: as in :class:`wb.vl.ImageTextContrastive`.
        loss: the loss after the switch (and in evaluation); ``first``: the loss before it.
        switch_at: the share of the run's steps (0..1) trained with ``first``.
    """

    def __init__(self, captions: torch.Tensor, loss: str = "hinge_hardest", first: str = "hinge_sum",
                 switch_at: float = 0.5, margin: float = 0.2, skip_duplicates: bool = True):
        super().__init__(captions, loss, margin, skip_duplicates)
        if first not in LOSSES:
            raise ValueError(f"first is one of {', '.join(LOSSES)}, got {first!r}")
        if not 0.0 <= float(switch_at) <= 1.0:
            raise ValueError(f"switch_at is the share of the steps trained with the first loss, in [0, 1], got "
                             f"{switch_at}")
        self.first, self.switch_at = first, float(switch_at)

    def current(self, state: Any = None) -> str:
        """The loss used at ``state``'s step (``None``: evaluation, the final loss)."""
        if state is None:
            return self.loss_name
        return self.first if state.step < self.switch_at * state.total_steps else self.loss_name

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> Any:
        x, idx = batch[0], batch[1]
        P = self.captions.shape[1]
        if state is not None:  # training: a phrasing per scene drawn from the step, as the parent task does
            g = random_stream(state.seed, _CAPTION_STREAM, state.step)
            which = torch.randint(P, (len(idx),), generator=g).to(idx.device)
        else:
            which = torch.zeros_like(idx)
        tokens = self.captions[idx, which]
        same = None
        if self.skip_duplicates and self.current(state) != "info_nce":
            same = (tokens[:, None] == tokens[None]).all(-1)
        return model.encode_image(x), model.encode_text(tokens), model.logit_scale, same

    def loss(self, outputs: Any, batch: Any, state: Any = None) -> torch.Tensor:
        img, txt, scale, same = outputs
        name = self.current(state)
        if name == "info_nce":
            return info_nce(img.float(), txt.float(), scale.clamp(max=4.6052))
        fn = hinge_sum if name == "hinge_sum" else hinge_hardest
        return fn(img.float(), txt.float(), self.margin, same)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "first": self.first, "switch_at": self.switch_at}


def hinge_active_negatives(img: torch.Tensor, txt: torch.Tensor, loss: str = "hinge_sum", margin: float = 0.2,
                           same: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """How many negatives each query's ranking loss sends gradient to: ``{"i2t": [B], "t2i": [B]}`` (an image
    against the batch's other captions; a caption against the other images). For ``"hinge_sum"`` every violated
    hinge (``margin - s_pos + s_neg > 0``) counts; for ``"hinge_hardest"`` only the most violating, so at most 1
    (unless several negatives tie exactly: the maximum then shares its gradient among them).
    Measured from the gradient itself: a negative counts when the loss's gradient on its similarity is non-zero."""
    _check_pair(img, txt)
    if loss not in RANKING_LOSSES:
        raise ValueError(f"loss is one of {', '.join(RANKING_LOSSES)}, got {loss!r}")
    s = (img.detach().float() @ txt.detach().float().T).requires_grad_(True)
    eye = torch.eye(len(s), dtype=torch.bool, device=s.device)
    # the loss as a function of the similarity matrix, the same as hinge_sum / hinge_hardest on embeddings
    pos = s.diag()
    off = ~eye if same is None else ~eye & ~same.to(s.device)
    i2t = (margin - pos[:, None] + s).clamp(min=0) * off
    t2i = (margin - pos[None, :] + s).clamp(min=0) * off
    rows, cols = (i2t.sum(1), t2i.sum(0)) if loss == "hinge_sum" else (i2t.amax(1), t2i.amax(0))
    g_i2t, = torch.autograd.grad(rows.sum(), s, retain_graph=True)
    g_t2i, = torch.autograd.grad(cols.sum(), s)
    return {"i2t": ((g_i2t != 0) & ~eye).sum(1), "t2i": ((g_t2i != 0) & ~eye).sum(0)}


def embedding_spread(emb: torch.Tensor) -> float:
    """Mean cosine similarity between the distinct rows of ``emb`` ``[N, D]`` (N >= 2): 1 when every embedding
    points the same way (a collapsed embedding), near 0 for directions spread over the space."""
    if emb.ndim != 2 or len(emb) < 2:
        raise ValueError(f"embeddings must be [N, D] with N >= 2, got {tuple(emb.shape)}")
    z = torch.nn.functional.normalize(emb.detach().double(), dim=1)
    n = len(z)
    total = z.sum(0)
    return float(((total @ total) - n) / (n * (n - 1)))   # sum over i != j of z_i . z_j, each row unit length


@torch.no_grad()
def retrieval_similarity(model: nn.Module, scenes: Any, length: int = 24, phrasing: int = 0,
                         batch_size: int = 500) -> torch.Tensor:
    """``[N, N]`` cosine similarities of every scene's image (rows) to every scene's caption ``phrasing``
    (columns), in eval mode; the true pairs are on the diagonal (input of :func:`wb.vl.retrieval_metrics`)."""
    from .losses import caption_table
    from .zeroshot import embed_images
    if not hasattr(model, "encode_text"):
        raise ValueError("retrieval needs a two-tower model with encode_image and encode_text (clip_tiny)")
    tokens = caption_table(scenes, length, phrasings=[phrasing])[:, 0]
    img = embed_images(model, scenes.as_dataset("index"), batch_size)
    dev = img.device
    was = model.training
    model.eval()
    try:
        txt = torch.cat([model.encode_text(tokens[i:i + batch_size].to(dev))
                         for i in range(0, len(tokens), batch_size)])
    finally:
        model.train(was)
    img = torch.nn.functional.normalize(img.float(), dim=1)
    txt = torch.nn.functional.normalize(txt.float(), dim=1)
    return (img @ txt.T).cpu()


class RetrievalCurve(Algorithm):
    """After every epoch: image-to-text and text-to-image recall at 1 on held-out ``scenes`` (first phrasing)
    and the spread of their image embeddings (:func:`embedding_spread`); the history gains ``i2t_R@1``,
    ``t2i_R@1``, ``image_spread`` and ``retrieval_step``."""

    def __init__(self, scenes: Any, length: int = 24):
        from ..train.cached import data_fingerprint
        super().__init__(scenes=data_fingerprint(scenes.as_dataset("index")), length=length)
        self.scenes, self.length = scenes, length

    def on_epoch_end(self, state: State) -> None:
        from .zeroshot import retrieval_metrics
        s = retrieval_similarity(state.model, self.scenes, self.length)
        m = retrieval_metrics(s, ks=(1,))
        row = state.rows[-1]
        row["i2t_R@1"], row["t2i_R@1"] = m["i2t_R@1"], m["t2i_R@1"]
        row["image_spread"] = embedding_spread(_image_embeddings(state.model, self.scenes))
        row["retrieval_step"] = state.step


def _image_embeddings(model: nn.Module, scenes: Any) -> torch.Tensor:
    from .zeroshot import embed_images
    return embed_images(model, scenes.as_dataset("index")).cpu()


def distinct_captions(scenes: Any, limit: int | None = None) -> Any:
    """The scenes whose fullest caption (the first phrasing) no earlier scene has word for word, in order, at most
    ``limit`` of them: a retrieval test set where every caption has exactly one true image (two scenes with
    the same caption would tie, and :func:`wb.vl.retrieval_metrics` counts ties against the true pair)."""
    import dataclasses
    seen: set[str] = set()
    keep: list[int] = []
    for i, caps in enumerate(scenes.captions):
        if caps[0] not in seen:
            seen.add(caps[0])
            keep.append(i)
        if limit is not None and len(keep) >= limit:
            break
    if limit is not None and len(keep) < limit:
        raise ValueError(f"only {len(keep)} of the {len(scenes)} scenes have distinct captions, fewer than "
                         f"limit={limit}: generate more scenes")
    idx = torch.tensor(keep, dtype=torch.long)
    fields = {f.name: getattr(scenes, f.name)[idx] for f in dataclasses.fields(scenes)
              if isinstance(getattr(scenes, f.name), torch.Tensor)}
    return dataclasses.replace(scenes, **fields, captions=[scenes.captions[i] for i in keep])
