"""Captioned scenes made from real images: one to four Fashion-MNIST garments on a textured ground, with
boxes, masks and captions from a small grammar.

One generator, several uses: image-text pairs for contrastive pre-training and zero-shot classification,
detection boxes, segmentation masks, and attribute-object combinations held out of training.

A scene of ``size x size`` pixels (default 64) holds ``count`` objects (1 to ``max_objects``), each a
Fashion-MNIST garment (its intensity is its shape) tinted one of :data:`COLOURS`, ``small`` or ``large``,
placed in its own quarter of the canvas (so objects never overlap and "left of" / "above" are defined by
their centres), on a ground of one of :data:`GROUNDS` (procedural textures: grass, sand, water, snow).
Everything is drawn from the seed: the same seed gives the same pixels, boxes and captions.

Captions (several phrasings per scene, :func:`captions_of`): "a small red coat on grass", "two bags and a
blue dress on sand", "a red coat left of a white sneaker", "a photo of a large yellow bag". Their words
form a closed vocabulary, :data:`VOCAB` (a word-level tokenizer is enough: the grammar has no other words,
and a learned subword vocabulary would only split them again).

What the scenes keep of real image-text data: compositional captions (attribute + object + relation +
count + ground), several objects per image, real object shapes, an open set of combinations (those held
out of training with ``exclude=``). What they lose: natural language (no synonyms beyond the grammar's,
no paraphrase), real scenes, occlusion, and the long tail of real concepts.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .dataset import ImageDataset

__all__ = ["COLOURS", "GROUNDS", "SIZES", "ITEM_WORDS", "VOCAB", "Scenes", "make_scenes", "captions_of",
           "tokenize", "detokenize", "COUNT_WORDS", "CONTENT_WORDS"]

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.16, 0.14), "green": (0.15, 0.75, 0.2), "blue": (0.2, 0.35, 0.95),
    "yellow": (0.96, 0.88, 0.15), "purple": (0.62, 0.22, 0.85), "white": (0.97, 0.97, 0.97)}
GROUNDS = ("grass", "sand", "water", "snow")
SIZES = ("small", "large")
# Fashion-MNIST's classes as single words (singular, plural)
ITEM_WORDS = (("tshirt", "tshirts"), ("trousers", "trousers"), ("pullover", "pullovers"), ("dress", "dresses"),
              ("coat", "coats"), ("sandal", "sandals"), ("shirt", "shirts"), ("sneaker", "sneakers"),
              ("bag", "bags"), ("boot", "boots"))
COUNT_WORDS = ("one", "two", "three", "four")
RELATIONS = ("left of", "right of", "above", "below")
SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
_GRAMMAR_WORDS = ("a", "an", "and", "on", "of", "photo", "the", "left", "right", "above", "below", "with")
# the words of visual questions and of the map-style scenes (wb.data.maps), appended so earlier ids stay
_QUESTION_WORDS = ("is", "there", "are", "more", "than", "how", "many", "what", "area", "water", "bodies", "road",
                   "roads", "field", "fields", "building", "buildings")
VOCAB: tuple[str, ...] = tuple(dict.fromkeys(
    SPECIAL + _GRAMMAR_WORDS + tuple(COLOURS) + GROUNDS + SIZES + COUNT_WORDS
    + tuple(w for pair in ITEM_WORDS for w in pair) + _QUESTION_WORDS))
_INDEX = {w: i for i, w in enumerate(VOCAB)}
# the words that say what a scene holds (colours, grounds, sizes, counts, garments), in VOCAB's order: what the
# bag-of-words baseline predicts and captions are scored on; grammar and question words carry none
CONTENT_WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    tuple(COLOURS) + GROUNDS + SIZES + COUNT_WORDS + tuple(w for pair in ITEM_WORDS for w in pair)))


@dataclass
class Scenes:
    """Generated scenes and everything known about them (``K = max_objects``; unused slots are -1 / NaN).

    Attributes:
        images: uint8 ``[N, 3, S, S]``.
        items, colours, sizes: int64 ``[N, K]``: Fashion-MNIST class, index into :data:`COLOURS`, into
            :data:`SIZES`; -1 where the slot is empty.
        boxes: float ``[N, K, 4]``: ``(x0, y0, x1, y1)`` in pixels of the garment's visible extent.
        counts: int64 ``[N]``; grounds: int64 ``[N]`` (index into :data:`GROUNDS`).
        masks: uint8 ``[N, S, S]``: 0 for the ground, ``k + 1`` where object ``k`` covers the pixel.
        captions: a list per scene of its phrasings (the first is the fullest).
    """

    images: torch.Tensor
    items: torch.Tensor
    colours: torch.Tensor
    sizes: torch.Tensor
    boxes: torch.Tensor
    counts: torch.Tensor
    grounds: torch.Tensor
    masks: torch.Tensor
    captions: list[list[str]] = field(default_factory=list)
    split: str = "train"
    seed: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def semantic_masks(self) -> torch.Tensor:
        """int64 ``[N, S, S]``: 0 for the ground, ``class + 1`` for the garment covering the pixel."""
        lut = torch.cat([torch.zeros(len(self), 1, dtype=torch.int64), self.items.clamp(min=-1) + 1], 1)  # [N, K+1]
        return lut.gather(1, self.masks.long().flatten(1)).view_as(self.masks).long()

    def as_dataset(self, label: str = "first_item") -> ImageDataset:
        """The scenes as an :class:`ImageDataset` labelled by ``"first_item"`` (the first object's class),
        ``"count"`` (1..K as classes 0..K-1), ``"first_colour"``, ``"ground"``, or ``"index"`` (label = the
        scene's own index, for image-text tasks that look captions up by index)."""
        n = len(self)
        if label == "first_item":
            labels, classes = self.items[:, 0], [w for w, _ in ITEM_WORDS]
        elif label == "count":
            labels, classes = self.counts - 1, list(COUNT_WORDS[:self.items.shape[1]])
        elif label == "first_colour":
            labels, classes = self.colours[:, 0], list(COLOURS)
        elif label == "ground":
            labels, classes = self.grounds, list(GROUNDS)
        elif label == "index":
            labels, classes = torch.arange(n), [c[0] for c in self.captions]
        else:
            raise ValueError(f"label is one of first_item, count, first_colour, ground, index; got {label!r}")
        return ImageDataset(self.images, labels.long(), classes, f"scenes/{label}", self.split,
                            (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), f"{n} generated scenes (seed {self.seed})")


def _ground(kind: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Procedural ground textures ``[N, 3, S, S]`` in [0, 1]."""
    n = len(kind)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    noise = torch.rand(n, 1, size, size, generator=g)
    smooth = F.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    phase = torch.rand(n, 1, 1, 1, generator=g) * 2 * math.pi
    out = torch.empty(n, 3, size, size)
    base = {0: (0.22, 0.45, 0.16), 1: (0.78, 0.68, 0.45), 2: (0.12, 0.3, 0.55), 3: (0.88, 0.9, 0.93)}
    for k, rgb in base.items():
        sel = kind == k
        if not sel.any():
            continue
        c = torch.tensor(rgb).view(1, 3, 1, 1)
        if k == 0:    # grass: blades (vertical streaks) and patches
            tex = 0.6 + 0.5 * F.avg_pool2d(noise[sel], (5, 1), 1, (2, 0)) + 0.3 * smooth[sel]
        elif k == 1:  # sand: fine grain and gentle dunes
            tex = 0.85 + 0.15 * noise[sel] + 0.1 * torch.sin(12 * yy + 3 * xx + phase[sel])
        elif k == 2:  # water: waves
            tex = 0.8 + 0.35 * torch.sin(30 * yy + 6 * torch.sin(8 * xx) + phase[sel]) * 0.5 + 0.15 * smooth[sel]
        else:         # snow: bright, faint drifts
            tex = 0.93 + 0.07 * smooth[sel] + 0.03 * noise[sel]
        out[sel] = (c * tex).clamp(0, 1)
    return out


def make_scenes(items: ImageDataset, n: int, size: int = 64, max_objects: int = 4, seed: int = 0,
                exclude: Sequence[tuple[str, str]] = (), only: Sequence[tuple[str, str]] = (),
                split: str = "train") -> Scenes:
    """``n`` scenes (see the module docstring) with garments from ``items`` (1-channel images, Fashion-MNIST).

    Args:
        size: the canvas side in pixels (at least 32).
        max_objects: 1 to 4 objects per scene (each in its own quarter).
        exclude: ``(colour, item word)`` combinations that never occur (held out of training), e.g.
            ``[("red", "coat")]``; ``only``: the first object of every scene is one of these combinations
            (a test set of the held-out ones).
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(size, int) and size >= 32):
        raise ValueError(f"size must be an integer of at least 32 pixels, got {size!r}")
    if not (isinstance(max_objects, int) and 1 <= max_objects <= 4):
        raise ValueError(f"max_objects is 1 to 4 (one object per quarter of the canvas), got {max_objects!r}")
    if items.images.shape[1] != 1:
        raise ValueError(f"items must be grey garments (Fashion-MNIST), got {items.images.shape[1]} channels")
    words = [w for w, _ in ITEM_WORDS]
    for colour, word in list(exclude) + list(only):
        if colour not in COLOURS or word not in words:
            raise ValueError(f"a combination is (colour, item) with colour in {', '.join(COLOURS)} and item in "
                             f"{', '.join(words)}; got {(colour, word)!r}")
    banned = {(list(COLOURS).index(c), words.index(w)) for c, w in exclude}
    g = torch.Generator().manual_seed(int(seed))
    K = max_objects
    counts = torch.randint(1, K + 1, (n,), generator=g)
    grounds = torch.randint(len(GROUNDS), (n,), generator=g)
    # one garment image per slot; its class fixes the item
    idx = torch.randint(len(items), (n, K), generator=g)
    cls = items.labels[idx]
    colours = torch.randint(len(COLOURS), (n, K), generator=g)
    if only:
        pick = torch.randint(len(only), (n,), generator=g)
        want_c = torch.tensor([list(COLOURS).index(c) for c, _ in only])[pick]
        want_i = torch.tensor([words.index(w) for _, w in only])[pick]
        pool = [torch.nonzero(items.labels == k).flatten() for k in range(10)]
        colours[:, 0] = want_c
        for k in want_i.unique().tolist():
            sel = (want_i == k).nonzero().flatten()
            idx[sel, 0] = pool[k][torch.randint(len(pool[k]), (len(sel),), generator=g)]
        cls = items.labels[idx]
    for _ in range(20):  # redraw the colour of banned combinations (never the held-out pair in training)
        bad = torch.zeros(n, K, dtype=torch.bool)
        for c, k in banned:
            bad |= (colours == c) & (cls == k)
        if only:
            bad[:, 0] = False
        if not bad.any():
            break
        colours[bad] = torch.randint(len(COLOURS), (int(bad.sum()),), generator=g)
    sizes = torch.randint(len(SIZES), (n, K), generator=g)
    quarter = torch.stack([torch.randperm(4, generator=g)[:K] for _ in range(n)])     # [N, K] distinct cells
    jitter = (torch.rand(n, K, 2, generator=g) - 0.5)
    used = torch.arange(K)[None] < counts[:, None]                                    # [N, K]
    # geometry in normalized coordinates [-1, 1]: quarter centres at +-0.5, side s
    side = torch.where(sizes == 1, 0.44, 0.28) * (1 + 0.1 * torch.rand(n, K, generator=g))
    cx = torch.where(quarter % 2 == 1, 0.5, -0.5) + jitter[..., 0] * (0.9 - 2 * side).clamp(min=0) * 0.5
    cy = torch.where(quarter // 2 == 1, 0.5, -0.5) + jitter[..., 1] * (0.9 - 2 * side).clamp(min=0) * 0.5
    theta = torch.zeros(n * K, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / side.flatten()
    theta[:, 0, 2], theta[:, 1, 2] = -cx.flatten() / side.flatten(), -cy.flatten() / side.flatten()
    garments = items.images[idx.flatten()].float() / 255                              # [N*K, 1, 28, 28]
    grid = F.affine_grid(theta, [n * K, 1, size, size], align_corners=False)
    alpha = F.grid_sample(garments, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = alpha.view(n, K, size, size) * used[..., None, None]
    canvas = _ground(grounds, size, g)
    tints = torch.tensor(list(COLOURS.values()))[colours]                              # [N, K, 3]
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    for k in range(K):
        a = alpha[:, k:k + 1]
        canvas = canvas * (1 - a) + tints[:, k, :, None, None] * a
        masks[(alpha[:, k] > 0.25)] = k + 1
    images = (canvas * 255).round().clamp(0, 255).to(torch.uint8)
    boxes = torch.full((n, K, 4), float("nan"))
    for k in range(K):
        on = alpha[:, k] > 0.25                                                        # [N, S, S]
        has = on.flatten(1).any(1)
        ys = torch.where(on.any(2), torch.arange(size).float(), float("nan"))
        xs = torch.where(on.any(1), torch.arange(size).float(), float("nan"))
        box = torch.stack([xs.nan_to_num(1e9).amin(1), ys.nan_to_num(1e9).amin(1),
                           xs.nan_to_num(-1e9).amax(1) + 1, ys.nan_to_num(-1e9).amax(1) + 1], 1)
        boxes[has, k] = box[has]
    items_t = torch.where(used, cls, -1)
    scenes = Scenes(images, items_t, torch.where(used, colours, -1), torch.where(used, sizes, -1), boxes,
                    counts, grounds, masks, split=split, seed=int(seed))
    centres = torch.stack([cx, cy], -1)
    scenes.captions = [captions_of(scenes, i, centres[i], g) for i in range(n)]
    return scenes


def _phrase(colour: int, item: int, size: int | None = None, article: bool = True) -> str:
    words = ([SIZES[size]] if size is not None else []) + [list(COLOURS)[colour], ITEM_WORDS[item][0]]
    return " ".join((["a"] if article else []) + words)


def captions_of(scenes: Scenes, i: int, centres: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> list[str]:
    """The phrasings of scene ``i``: the objects with sizes and colours on the ground; the counts of each
    kind of item; a relation between the first two objects; a photo of the first object."""
    k = int(scenes.counts[i])
    objs = [(int(scenes.colours[i, j]), int(scenes.items[i, j]), int(scenes.sizes[i, j])) for j in range(k)]
    ground = GROUNDS[int(scenes.grounds[i])]
    full = " and ".join(_phrase(c, it, s) for c, it, s in objs) + f" on {ground}"
    by_item: dict[int, int] = {}
    for _, it, _ in objs:
        by_item[it] = by_item.get(it, 0) + 1
    counted = " and ".join((f"a {ITEM_WORDS[it][0]}" if m == 1 else f"{COUNT_WORDS[m - 1]} {ITEM_WORDS[it][1]}")
                           for it, m in by_item.items()) + f" on {ground}"
    out = [full, counted, f"a photo of {_phrase(*objs[0])}"]
    if k >= 2 and centres is not None:
        (x0, y0), (x1, y1) = centres[0].tolist(), centres[1].tolist()
        if abs(x0 - x1) >= abs(y0 - y1):
            rel = "left of" if x0 < x1 else "right of"
        else:
            rel = "above" if y0 < y1 else "below"
        out.append(f"{_phrase(objs[0][0], objs[0][1])} {rel} {_phrase(objs[1][0], objs[1][1])}")
    return out


def tokenize(texts: str | Sequence[str], length: int = 24) -> torch.Tensor:
    """Word ids ``[len(texts), length]``: ``<bos>``, the words, ``<eos>``, then ``<pad>`` (0); a word outside
    :data:`VOCAB` becomes ``<unk>``, and a warning counts them and names the first few (a word-level vocabulary of
    the scenes' grammar: any other word carries nothing the models could have learnt); a caption longer than
    ``length - 2`` words is refused."""
    if isinstance(texts, str):
        texts = [texts]
    out = torch.zeros(len(texts), length, dtype=torch.int64)
    unknown: dict[str, int] = {}
    for r, t in enumerate(texts):
        words = t.lower().split()
        if len(words) > length - 2:
            raise ValueError(f"the caption {t!r} has {len(words)} words; tokenize with length >= {len(words) + 2}")
        for w in words:
            if w not in _INDEX:
                unknown[w] = unknown.get(w, 0) + 1
        ids = [_INDEX["<bos>"]] + [_INDEX.get(w, _INDEX["<unk>"]) for w in words] + [_INDEX["<eos>"]]
        out[r, :len(ids)] = torch.tensor(ids)
    if unknown:
        shown = ", ".join(f"{w!r} ({n}x)" for w, n in list(unknown.items())[:5])
        warnings.warn(f"{sum(unknown.values())} words of {len(texts)} texts are not in the scenes' vocabulary and "
                      f"became <unk>: {shown}{', ...' if len(unknown) > 5 else ''} (wb.data.scenes.VOCAB lists "
                      "the words the models know)", stacklevel=2)
    return out


def detokenize(ids: torch.Tensor) -> list[str]:
    """The words of token ids (special tokens dropped)."""
    return [" ".join(VOCAB[i] for i in row.tolist() if VOCAB[i] not in SPECIAL) for row in ids.view(-1, ids.shape[-1])]
