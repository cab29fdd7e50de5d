"""Zero-shot classification from prompts and descriptions, linear probes' inputs, and retrieval metrics.

* :func:`class_embeddings`: a class's text embedding from one prompt or several (prompt ensembling: the
  normalized mean of the normalized embeddings of ``template.format(name)`` for every template, CLIP's
  section 3.1.4);
* :func:`zero_shot_logits`: images against class embeddings (cosine similarity);
* :func:`description_scores`: classification by description (Menon & Vondrick, arXiv:2210.07183): a class's
  score is the mean similarity of the image to the class's descriptors ("a coat, which has sleeves", ...),
  with the per-descriptor similarities kept to show which ones decided;
* :func:`retrieval_metrics`: recall at K both ways and the median rank, from an image-text similarity matrix
  whose diagonal holds the matching pairs;
* :func:`embed_images`: normalized image embeddings of a dataset, in batches (for probes and retrieval).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..data import ImageDataset, Loader
from ..data.scenes import tokenize

__all__ = ["class_embeddings", "zero_shot_logits", "description_scores", "retrieval_metrics", "embed_images",
           "TEMPLATES"]

TEMPLATES = ("a {}", "a photo of a {}", "a {} on grass", "a {} on sand", "a {} on water", "a {} on snow")


@torch.no_grad()
def _embed_texts(model: nn.Module, texts: Sequence[str], length: int) -> torch.Tensor:
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        return model.encode_text(tokenize(list(texts), length).to(dev))
    finally:
        model.train(was)


def class_embeddings(model: nn.Module, names: Sequence[str], templates: Sequence[str] = ("a {}",),
                     length: int = 24) -> torch.Tensor:
    """``[classes, D]``: for each name the normalized mean over ``templates`` of the normalized embeddings of
    ``template.format(name)`` (one template: that prompt's embedding)."""
    if not names or not templates:
        raise ValueError("give at least one class name and one template (e.g. 'a photo of a {}')")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"every template needs a '{{}}' where the class name goes; {bad[0]!r} has none")
    e = _embed_texts(model, [t.format(n) for n in names for t in templates], length)
    e = e.view(len(names), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(e, dim=-1)


@torch.no_grad()
def embed_images(model: nn.Module, data: ImageDataset | torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Normalized image embeddings ``[N, D]`` of a dataset (or of normalized images), in eval mode."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        if isinstance(data, torch.Tensor):
            return torch.cat([model.encode_image(data[i:i + batch_size].to(dev))
                              for i in range(0, len(data), batch_size)])
        return torch.cat([model.encode_image(x) for x, _ in Loader(data, batch_size, shuffle=False, device=dev)])
    finally:
        model.train(was)


def zero_shot_logits(image_embeddings: torch.Tensor, class_embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[N, classes]`` (both inputs L2-normalized)."""
    if image_embeddings.shape[1] != class_embeds.shape[1]:
        raise ValueError(f"image embeddings of width {image_embeddings.shape[1]} against class embeddings of width "
                         f"{class_embeds.shape[1]}: both must come from the same model")
    return image_embeddings @ class_embeds.T


def description_scores(model: nn.Module, image_embeddings: torch.Tensor, descriptors: Mapping[str, Sequence[str]],
                       length: int = 24) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scores ``[N, classes]`` (classes in the order of ``descriptors``): the mean over a class's descriptors of
    the image's similarity to each; and per class the similarities ``[N, descriptors]`` behind the mean.
    One descriptor per class equal to the class prompt is name-based zero-shot classification."""
    if not descriptors or any(len(v) == 0 for v in descriptors.values()):
        raise ValueError("descriptors maps every class name to a non-empty list of descriptions")
    per: dict[str, torch.Tensor] = {}
    for name, descs in descriptors.items():
        per[name] = image_embeddings @ _embed_texts(model, list(descs), length).T      # [N, d]
    return torch.stack([v.mean(1) for v in per.values()], 1), per


def retrieval_metrics(similarity: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """From a square image-by-text similarity matrix whose diagonal holds the true pairs: ``i2t_R@k`` (an image's
    caption among its ``k`` most similar texts), ``t2i_R@k``, and the median ranks ``i2t_medr``, ``t2i_medr``
    (1 is best). Ties count against the true pair (the worst rank among equals)."""
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square [images, texts] with the true pairs on the diagonal, got "
                         f"{tuple(similarity.shape)}")
    s = similarity.float()
    pos = s.diag()
    rank_i2t = (s >= pos[:, None]).sum(1)          # 1 + how many texts beat (or tie) the true one
    rank_t2i = (s >= pos[None, :]).sum(0)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((rank_i2t <= k).double().mean())   # double: a fraction of N exactly
        out[f"t2i_R@{k}"] = float((rank_t2i <= k).double().mean())
    out["i2t_medr"] = float(rank_i2t.float().median())
    out["t2i_medr"] = float(rank_t2i.float().median())
    return out
