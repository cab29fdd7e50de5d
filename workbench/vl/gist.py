"""GIST: image-specific text for fine-grained classification (Lewis, Mu, Dalca & Guttag, arXiv:2307.11315), on
the captioned scenes of :mod:`wb.data.scenes`.

GIST's recipe: a language model writes several candidate descriptions of each class; the pretrained CLIP matches
every training image to the best-fitting candidates *of its own class* (highest image-text cosine similarity);
CLIP is then fine-tuned contrastively on the (image, matched description) pairs and classifies with its
fine-tuned encoders. Here the scenes' grammar stands in for the language model:

* :func:`candidate_descriptions`: every phrasing "a {size} {colour} {item} on {ground}" of one class, written
  from the class alone (every attribute combination, never read from an image), with the attributes each names;
* :func:`match_descriptions`: for each image, the indices of the ``top`` candidates of its own class most
  similar to it (the matching step, on given embeddings);
* :func:`matched_caption_table`: the matching step with a model: a caption table ``[N, top, length]`` for
  :class:`~workbench.vl.ImageTextContrastive` (one matched description drawn per image and step), the matched
  texts and the attributes they name;
* :func:`class_name_table`: the baseline's caption table, one class prompt per image ("a photo of a coat");
* :func:`attribute_accuracy`: how often the matched description names an image's true size, colour, ground;
* :func:`fine_grained_scenes`: single-garment scenes of a few chosen classes, labelled ``0..C-1``;
* :func:`fine_tune_contrastive`: InfoNCE over given (image, caption) pairs in which a batch's other pair whose
  caption is word for word the positive's is not a negative (``wb.vl.ImageTextContrastive(skip_duplicates=True)``). Few-shot fine-tuning
  on four classes puts several images of one class in every batch; with class names as captions, plain InfoNCE
  would push an image away from its own class's text (the same text under another index), a penalty the
  matched descriptions (rarely identical) would not pay. Masking duplicates makes the class-name arm plain
  cross-entropy over its distinct class prompts (the usual contrastive fine-tuning of FLYP-style baselines)
  and treats both arms alike;
* :func:`fine_tune_contrastive`: a pretrained two-tower model fine-tuned on given (image, caption table) pairs
  through :func:`wb.train_model` (cached; the run starts from the pretrained weights).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import torch
from torch import nn

from ..data import ImageDataset
from ..data.scenes import COLOURS, GROUNDS, ITEM_WORDS, SIZES, Scenes, make_scenes, tokenize
from .losses import ImageTextContrastive
from .zeroshot import _embed_texts, embed_images

__all__ = ["FINE_GRAINED", "ATTRIBUTES", "candidate_descriptions", "match_descriptions", "matched_caption_table",
           "class_name_table", "attribute_accuracy", "fine_grained_scenes", "fine_tune_contrastive"]

FINE_GRAINED = ("tshirt", "pullover", "coat", "shirt")  # Fashion-MNIST's four upper-body garments, the most confused
ATTRIBUTES = ("size", "colour", "ground")                 # what a candidate description names besides its class
_WORDS = [w for w, _ in ITEM_WORDS]


def _check_item(item: str) -> None:
    if item not in _WORDS:
        raise ValueError(f"item is a garment word of the scenes' grammar ({', '.join(_WORDS)}), got {item!r}")


def candidate_descriptions(item: str) -> tuple[list[str], torch.Tensor]:
    """Every description "a {size} {colour} {item} on {ground}" of a class (2 x 6 x 4 = 48), in the order of
    :data:`~wb.data.scenes.SIZES`, :data:`COLOURS`, :data:`GROUNDS` (ground fastest), and int64 ``[48, 3]``:
    the indices of the size, colour and ground each names (:data:`ATTRIBUTES` order).

    Example: ``candidate_descriptions("coat")[0][0] == "a small red coat on grass"``.
    """
    _check_item(item)
    texts, attrs = [], []
    for (s, size), (c, colour), (g, ground) in itertools.product(enumerate(SIZES), enumerate(COLOURS),
                                                                 enumerate(GROUNDS)):
        texts.append(f"a {size} {colour} {item} on {ground}")
        attrs.append((s, c, g))
    return texts, torch.tensor(attrs, dtype=torch.int64)


def match_descriptions(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, labels: torch.Tensor,
                       top: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """GIST's matching step: for image ``i`` of class ``labels[i]``, the ``top`` candidates of *its own class*
    most similar to it (dot product; pass L2-normalized embeddings for cosine similarity).

    Args:
        image_embeddings: ``[N, D]``.
        text_embeddings: ``[C, M, D]``: ``M`` candidate descriptions for each of ``C`` classes.
        labels: int64 ``[N]`` in ``0..C-1``.
        top: how many descriptions per image (1..M).

    Returns:
        ``(indices [N, top], similarities [N, top])``, best first; indices are into the class's candidates.
    """
    if image_embeddings.ndim != 2 or text_embeddings.ndim != 3 or image_embeddings.shape[1] != text_embeddings.shape[2]:
        raise ValueError(f"image embeddings are [N, D] and text embeddings [classes, candidates, D] of the same D, "
                         f"got {tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    labels = torch.as_tensor(labels).to(image_embeddings.device)
    if labels.shape != (len(image_embeddings),):
        raise ValueError(f"labels must be [N] beside {len(image_embeddings)} images, got {tuple(labels.shape)}")
    C, M = text_embeddings.shape[:2]
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= C):
        raise ValueError(f"labels must lie in 0..{C - 1} (one row of text embeddings per class)")
    if not (isinstance(top, int) and 1 <= top <= M):
        raise ValueError(f"top is an integer from 1 to the {M} candidates per class, got {top!r}")
    own = text_embeddings.to(image_embeddings.device)[labels]                      # [N, M, D]
    sims = torch.einsum("nd,nmd->nm", image_embeddings, own)                        # [N, M]
    values, indices = sims.topk(top, dim=1)
    return indices, values


def matched_caption_table(model: nn.Module, data: ImageDataset, class_words: Sequence[str], top: int = 1,
                          length: int = 16) -> dict:
    """Match every image of ``data`` (labels index ``class_words``) to the ``top`` best of its class's
    :func:`candidate_descriptions` by ``model``'s image-text cosine similarity (the pretrained model, before
    fine-tuning).

    Returns:
        dict with ``captions`` (int64 ``[N, top, length]`` token ids, for :class:`wb.vl.ImageTextContrastive`),
        ``texts`` (per image its ``top`` matched descriptions, best first), ``attributes`` (int64
        ``[N, top, 3]``: size, colour, ground named by each) and ``similarities`` ``[N, top]``.
    """
    if len(class_words) != data.num_classes:
        raise ValueError(f"class_words names the data's {data.num_classes} classes in label order, got "
                         f"{len(class_words)} words")
    cands = [candidate_descriptions(w) for w in class_words]
    texts = [t for ts, _ in cands for t in ts]
    M = len(cands[0][0])
    emb = _embed_texts(model, texts, length)
    emb = nn.functional.normalize(emb, dim=-1).view(len(class_words), M, -1)      # [C, M, D]
    img = embed_images(model, data)                                                 # [N, D], normalized
    labels = data.labels.to(img.device)
    idx, sims = match_descriptions(img, emb, labels, top)
    idx, sims, labels = idx.cpu(), sims.cpu(), labels.cpu()
    chosen = [[cands[int(c)][0][int(j)] for j in row] for c, row in zip(labels, idx)]
    attrs = torch.stack([cands[int(c)][1][row] for c, row in zip(labels, idx)]) if len(labels) else \
        torch.zeros(0, top, 3, dtype=torch.int64)
    tokens = tokenize([t for row in chosen for t in row], length).view(len(chosen), top, length)
    return {"captions": tokens, "texts": chosen, "attributes": attrs, "similarities": sims}


def class_name_table(labels: torch.Tensor, class_words: Sequence[str], template: str = "a photo of a {}",
                     length: int = 16) -> torch.Tensor:
    """The class-name baseline's caption table: int64 ``[N, 1, length]``, image ``i``'s caption is
    ``template.format(class_words[labels[i]])``."""
    if "{}" not in template:
        raise ValueError(f"the template needs a '{{}}' where the class name goes, got {template!r}")
    labels = torch.as_tensor(labels).cpu()
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_words)):
        raise ValueError(f"labels must lie in 0..{len(class_words) - 1} (one word per class)")
    table = tokenize([template.format(w) for w in class_words], length)             # [C, length]
    return table[labels].unsqueeze(1)


def attribute_accuracy(matched: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """How often matched attributes equal the true ones: per attribute of :data:`ATTRIBUTES` and ``"all"``
    (every attribute right). ``matched`` and ``true`` are int64 ``[N, 3]`` (use ``attributes[:, 0]`` of
    :func:`matched_caption_table` for the best match)."""
    if matched.ndim != 2 or matched.shape != true.shape or matched.shape[1] != len(ATTRIBUTES):
        raise ValueError(f"matched and true attributes must both be [N, {len(ATTRIBUTES)}] ({', '.join(ATTRIBUTES)}), "
                         f"got {tuple(matched.shape)} and {tuple(true.shape)}")
    if len(matched) == 0:
        raise ValueError("no images to score")
    right = matched.cpu() == true.cpu()
    out = {a: float(right[:, k].double().mean()) for k, a in enumerate(ATTRIBUTES)}
    out["all"] = float(right.all(1).double().mean())
    return out


def fine_grained_scenes(items: ImageDataset, n: int, classes: Sequence[str] = FINE_GRAINED, size: int = 32,
                        seed: int = 0, exclude: Sequence[tuple[str, str]] = (),
                        split: str = "train") -> tuple[ImageDataset, Scenes, torch.Tensor]:
    """``n`` single-garment scenes (:func:`wb.data.scenes.make_scenes`) whose garment is one of ``classes``.

    Returns:
        ``(dataset, scenes, attributes)``: the scenes as an :class:`ImageDataset` labelled ``0..C-1`` in the
        order of ``classes``; the scenes themselves; int64 ``[n, 3]``: each scene's true size, colour, ground.
    """
    for w in classes:
        _check_item(w)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes are at least two distinct garment words, got {list(classes)!r}")
    ids = torch.tensor([_WORDS.index(w) for w in classes])
    sel = torch.isin(items.labels.cpu(), ids)
    if not sel.any():
        raise ValueError(f"items hold no image of {list(classes)}: pass Fashion-MNIST (labels 0..9)")
    pool = ImageDataset(items.images[sel], items.labels[sel], list(items.classes), items.name, items.split,
                        items.mean, items.std, items.source)
    scenes = make_scenes(pool, n, size=size, max_objects=1, seed=seed, exclude=exclude, split=split)
    remap = torch.full((10,), -1, dtype=torch.int64)
    remap[ids] = torch.arange(len(classes))
    labels = remap[scenes.items[:, 0]]
    data = ImageDataset(scenes.images, labels, list(classes), f"scenes/{'-'.join(classes)}", split,
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), f"{n} single-garment scenes (seed {seed})")
    attrs = torch.stack([scenes.sizes[:, 0], scenes.colours[:, 0], scenes.grounds], 1)
    return data, scenes, attrs


def fine_tune_contrastive(pretrained: nn.Module, images: ImageDataset, captions: torch.Tensor, *, name: str,
                          model_kwargs: dict, init_key: str, seed: int = 0, **fit_kwargs):
    """Fine-tune a copy of ``pretrained`` (registry model ``name`` built with ``model_kwargs``) contrastively on
    image ``i`` of ``images`` paired with the phrasings ``captions[i]`` (``[N, P, L]``; one drawn per step), by
    :func:`wb.train_model` with ``ImageTextContrastive(loss="info_nce", skip_duplicates=True)`` (duplicate
    captions not negatives). The cache key holds ``init_key`` (what the pretrained weights are) and, through the
    task, the caption table's contents, so arms that differ only in their captions never share an entry.
    Returns the :class:`TrainResult`."""
    from ..train import train_model
    if not (isinstance(captions, torch.Tensor) and captions.ndim == 3 and len(captions) == len(images)):
        raise ValueError(f"captions are token ids [images, phrasings, length] beside {len(images)} images, got "
                         f"{tuple(captions.shape) if isinstance(captions, torch.Tensor) else type(captions).__name__}")
    data = ImageDataset(images.images, torch.arange(len(images)), [str(i) for i in range(len(images))],
                        images.name + "/index", images.split, images.mean, images.std, images.source)
    state = {k: v.detach().cpu().clone() for k, v in pretrained.state_dict().items()}

    def setup(model):
        model.load_state_dict(state)
        return {}

    task = ImageTextContrastive(captions, loss="info_nce", skip_duplicates=True)
    return train_model(name, data, model_kwargs=model_kwargs, seed=seed, task=task, setup=setup,
                       setup_key={"init": init_key}, **fit_kwargs)
