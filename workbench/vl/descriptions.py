"""Classification by description (Menon & Vondrick, *Visual Classification via Description from Large Language
Models*, ICLR 2023, arXiv:2210.07183) on the captioned scenes of :mod:`wb.data.scenes`.

In the paper a language model writes, for every class, a few visual descriptors ("a hen: which has a red comb,
two legs, ..."); a class's score is the mean CLIP similarity of the image to ``"{class}, which has {descriptor}"``
over its descriptors (:func:`wb.vl.description_scores`), so every decision can be read off the descriptors that
carried it, and editing a descriptor edits the classifier. Descriptors help because they carry what the world
knows about a class: its typical look.

Here no language model writes them: the analogue of that knowledge is a table of **class-typical attributes**
(:data:`TYPICAL`: boots mostly on snow, sandals mostly on sand, bags mostly large, ...) written in the grammar's
words, and test scenes whose garments follow it (:func:`typical_scenes`):

* :data:`TYPICAL`: per garment a typical ground, colour and size (all ten garments differ in at least one);
* :func:`descriptor_table`: the descriptors of a table, in the grammar's words ("a boot on snow", "a blue boot",
  "a small boot"), checked against :data:`wb.data.scenes.VOCAB`;
* :func:`shuffled_table`: the same descriptors given to the wrong classes (a control: knowledge that is wrong);
* :func:`typical_scenes`: single-garment scenes in which each attribute is the class's typical value with
  probability ``typicality + (1 - typicality) / K`` (K values of that attribute), else another value at random:
  ``typicality=0`` is :func:`make_scenes`'s own uniform draw, ``1`` always the typical look. Exact rejection
  sampling of :func:`make_scenes` output (seeded, in rounds);
* :func:`attributes_named` / :func:`attribute_present`: which attribute a descriptor names, and which scenes have it;
* :func:`deciding_descriptors`: per image, the descriptor of the predicted class with the highest similarity (the
  largest share of the class's score) and whether the scene really has the attribute it names;
* :func:`explain`: one decision as rows (class, descriptor, similarity, contribution to the class's score);
* :func:`edit_descriptor`: a table with one descriptor replaced, the original untouched;
* :func:`prediction_share`: the share of predictions of one class among the scenes that satisfy a condition.
"""
from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

import torch

from ..data import ImageDataset
from ..data.scenes import COLOURS, GROUNDS, ITEM_WORDS, SIZES, VOCAB, Scenes, make_scenes

__all__ = ["TYPICAL", "ATTRIBUTES", "descriptor_table", "shuffled_table", "typical_scenes", "subset_scenes",
           "attributes_named", "attribute_present", "deciding_descriptors", "explain", "edit_descriptor",
           "prediction_share", "CIFAR10_DESCRIPTORS", "open_clip_description_accuracy"]

# the attributes a descriptor can name, with their values (the grammar's words)
ATTRIBUTES: dict[str, tuple[str, ...]] = {"ground": GROUNDS, "colour": tuple(COLOURS), "size": SIZES}

# the "world knowledge" of the generated data: each garment's typical ground, colour and size
TYPICAL: dict[str, dict[str, str]] = {
    "tshirt": {"ground": "sand", "colour": "white", "size": "small"},
    "trousers": {"ground": "grass", "colour": "blue", "size": "large"},
    "pullover": {"ground": "snow", "colour": "red", "size": "large"},
    "dress": {"ground": "sand", "colour": "yellow", "size": "large"},
    "coat": {"ground": "snow", "colour": "purple", "size": "large"},
    "sandal": {"ground": "sand", "colour": "yellow", "size": "small"},
    "shirt": {"ground": "grass", "colour": "white", "size": "large"},
    "sneaker": {"ground": "grass", "colour": "green", "size": "small"},
    "bag": {"ground": "water", "colour": "red", "size": "large"},
    "boot": {"ground": "snow", "colour": "blue", "size": "small"},
}

_PHRASES = {"ground": "a {item} on {value}", "colour": "a {value} {item}", "size": "a {value} {item}"}
_ITEMS = [w for w, _ in ITEM_WORDS]


def _check_table(typical: Mapping[str, Mapping[str, str]]) -> None:
    if not typical:
        raise ValueError("the table maps garment words (wb.data.scenes.ITEM_WORDS) to their typical attributes")
    for item, attrs in typical.items():
        if item not in _ITEMS:
            raise ValueError(f"{item!r} is not a garment of the scenes; use one of {', '.join(_ITEMS)}")
        for kind, value in attrs.items():
            if kind not in ATTRIBUTES:
                raise ValueError(f"{item}: attribute {kind!r} is not one of {', '.join(ATTRIBUTES)}")
            if value not in ATTRIBUTES[kind]:
                raise ValueError(f"{item}: {kind} {value!r} is not one of {', '.join(ATTRIBUTES[kind])}")


def descriptor_table(typical: Mapping[str, Mapping[str, str]] = TYPICAL, with_name: bool = False
                     ) -> dict[str, list[str]]:
    """Per garment its descriptors, one per typical attribute, in the grammar's words: ``{"boot": ["a boot on
    snow", "a blue boot", "a small boot"]}`` (``with_name``: the class prompt "a boot" first). Every word is in
    :data:`VOCAB` (checked)."""
    _check_table(typical)
    out = {item: ([f"a {item}"] if with_name else [])
           + [_PHRASES[kind].format(item=item, value=value) for kind, value in attrs.items()]
           for item, attrs in typical.items()}
    for item, descs in out.items():
        if not descs:
            raise ValueError(f"{item} has no descriptor: give it at least one attribute or with_name=True")
        for d in descs:
            bad = [w for w in d.split() if w not in VOCAB]
            if bad:
                raise ValueError(f"descriptor {d!r} has words outside the scenes' vocabulary: {bad}")
    return out


def shuffled_table(typical: Mapping[str, Mapping[str, str]] = TYPICAL, seed: int = 0) -> dict[str, dict[str, str]]:
    """The same attribute values given to the wrong garments: for each attribute, a random derangement of the
    classes (no garment keeps its own entry; a value may still coincide when two garments share it)."""
    _check_table(typical)
    items = list(typical)
    if len(items) < 2:
        raise ValueError("shuffling needs at least two garments")
    rng = random.Random(seed)
    out: dict[str, dict[str, str]] = {i: {} for i in items}
    for kind in ATTRIBUTES:
        have = [i for i in items if kind in typical[i]]
        if len(have) < 2:
            continue
        while True:
            perm = have[:]
            rng.shuffle(perm)
            if all(a != b for a, b in zip(have, perm)):
                break
        for a, b in zip(have, perm):
            out[a][kind] = typical[b][kind]
    return {i: {k: out[i][k] for k in typical[i] if k in out[i]} for i in items}


def subset_scenes(scenes: Scenes, index: torch.Tensor | Sequence[int]) -> Scenes:
    """The scenes at ``index`` (a new :class:`Scenes`; captions kept)."""
    idx = torch.as_tensor(index, dtype=torch.int64)
    if idx.numel() and (idx.min() < 0 or idx.max() >= len(scenes)):
        raise IndexError(f"index out of range for {len(scenes)} scenes")
    pick = lambda t: t[idx]  # noqa: E731
    return Scenes(pick(scenes.images), pick(scenes.items), pick(scenes.colours), pick(scenes.sizes),
                  pick(scenes.boxes), pick(scenes.counts), pick(scenes.grounds), pick(scenes.masks),
                  [scenes.captions[i] for i in idx.tolist()], split=scenes.split, seed=scenes.seed)


def _values(scenes: Scenes, kind: str) -> torch.Tensor:
    return {"ground": scenes.grounds, "colour": scenes.colours[:, 0], "size": scenes.sizes[:, 0]}[kind]


def _acceptance(scenes: Scenes, typical: Mapping[str, Mapping[str, str]], typicality: float) -> torch.Tensor:
    """Each scene's target probability over make_scenes' uniform one, divided by its largest value: in [0, 1]."""
    weight = torch.ones(len(scenes), dtype=torch.float64)
    top = 1.0
    items = scenes.items[:, 0]
    for kind, values in ATTRIBUTES.items():
        k = len(values)
        want = torch.full((10,), -1, dtype=torch.int64)
        for item, attrs in typical.items():
            if kind in attrs:
                want[_ITEMS.index(item)] = values.index(attrs[kind])
        constrained = want[items] >= 0
        typ = _values(scenes, kind) == want[items]
        w_typ, w_other = typicality * k + 1 - typicality, 1 - typicality     # p / (1 / k)
        weight *= torch.where(constrained, torch.where(typ, w_typ, w_other), torch.ones((), dtype=torch.float64))
        top *= w_typ
    return weight / top


def typical_scenes(items: ImageDataset, n: int, typical: Mapping[str, Mapping[str, str]] = TYPICAL,
                   typicality: float = 0.7, size: int = 32, seed: int = 0, split: str = "test",
                   max_rounds: int = 200) -> Scenes:
    """``n`` single-garment scenes whose garment follows ``typical``: each of its attributes (ground, colour,
    size) is the class's typical value with probability ``typicality + (1 - typicality) / K`` and each other value
    with ``(1 - typicality) / K`` (K values; garments absent from the table and attributes it does not name stay
    uniform). Exact rejection sampling of :func:`make_scenes` (one object, seeded rounds), so the garment images,
    textures and captions are the generator's own. ``typicality=0`` keeps make_scenes' distribution."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0 <= typicality <= 1:
        raise ValueError(f"typicality is a probability in [0, 1] (0: uniform, 1: always typical), got {typicality!r}")
    _check_table(typical)
    gen = torch.Generator().manual_seed(int(seed))
    top = math.prod(typicality * len(v) + 1 - typicality for v in ATTRIBUTES.values())
    chunk = max(256, min(20_000, int(1.3 * n * top)))
    kept: list[Scenes] = []
    have = 0
    for r in range(max_rounds):
        pool = make_scenes(items, chunk, size=size, max_objects=1, seed=int(seed) * 100_003 + r, split=split)
        accept = torch.rand(len(pool), generator=gen, dtype=torch.float64) < _acceptance(pool, typical, typicality)
        idx = accept.nonzero().flatten()[: n - have]
        if len(idx):
            kept.append(subset_scenes(pool, idx))
            have += len(idx)
        if have >= n:
            break
    else:
        raise RuntimeError(f"only {have} of {n} scenes accepted in {max_rounds} rounds; raise max_rounds")
    out = kept[0] if len(kept) == 1 else Scenes(
        *(torch.cat([getattr(s, f) for s in kept]) for f in
          ("images", "items", "colours", "sizes", "boxes", "counts", "grounds", "masks")),
        [c for s in kept for c in s.captions], split=split, seed=int(seed))
    return out


def attributes_named(text: str) -> list[tuple[str, str]]:
    """The attributes a descriptor names, as ``(kind, value)`` pairs in the order of its words: "a small blue
    boot" -> ``[("size", "small"), ("colour", "blue")]``."""
    out = []
    for w in text.lower().split():
        for kind, values in ATTRIBUTES.items():
            if w in values:
                out.append((kind, w))
    return out


def attribute_present(scenes: Scenes, kind: str, value: str) -> torch.Tensor:
    """Bool ``[N]``: the scene has this attribute (ground, or its first garment's colour or size)."""
    if kind not in ATTRIBUTES or value not in ATTRIBUTES[kind]:
        raise ValueError(f"(kind, value) is one of {ATTRIBUTES}; got {(kind, value)!r}")
    return _values(scenes, kind) == ATTRIBUTES[kind].index(value)


def deciding_descriptors(per: Mapping[str, torch.Tensor], descriptors: Mapping[str, Sequence[str]],
                         scenes: Scenes | None = None) -> dict[str, object]:
    """For every image, the predicted class (highest mean similarity) and its *deciding descriptor*: the one of
    the predicted class's descriptors with the highest similarity, i.e. the largest share of its score.

    Args:
        per: class -> similarities ``[N, descriptors]`` (the second output of :func:`wb.vl.description_scores`).
        descriptors: the table behind ``per`` (same classes, same order).
        scenes: if given, also whether each scene has the attribute the deciding descriptor names (``present``,
            False where it names none) and the same share for a descriptor of the predicted class drawn at random
            (``present_random``, its expectation: the mean over the class's descriptors).

    Returns: dict with ``pred`` (int64 ``[N]``), ``descriptor`` (list of N strings) and, given scenes, ``present``
    (bool ``[N]``) and ``present_random`` (float ``[N]``).
    """
    names = list(per)
    if list(descriptors) != names or any(per[c].shape[1] != len(descriptors[c]) for c in names):
        raise ValueError("per and descriptors must hold the same classes and descriptors, in the same order")
    scores = torch.stack([per[c].mean(1) for c in names], 1)
    pred = scores.argmax(1)
    best = [per[c].argmax(1) for c in names]
    desc = [descriptors[names[p]][int(best[p][i])] for i, p in enumerate(pred.tolist())]
    out: dict[str, object] = {"pred": pred, "descriptor": desc}
    if scenes is not None:
        if len(scenes) != len(pred):
            raise ValueError(f"{len(scenes)} scenes for {len(pred)} images")
        hit: dict[str, torch.Tensor] = {}

        def has(d: str) -> torch.Tensor:
            if d not in hit:
                named = attributes_named(d)
                hit[d] = (torch.stack([attribute_present(scenes, k, v) for k, v in named]).all(0) if named
                          else torch.zeros(len(scenes), dtype=torch.bool))
            return hit[d]
        present = torch.zeros(len(pred), dtype=torch.bool)
        for d in set(desc):
            sel = torch.tensor([x == d for x in desc])
            present[sel] = has(d)[sel]
        out["present"] = present
        rand = torch.zeros(len(pred), dtype=torch.float64)
        for p, c in enumerate(names):
            sel = pred == p
            if sel.any():
                rand[sel] = torch.stack([has(d)[sel].double() for d in descriptors[c]]).mean(0)
        out["present_random"] = rand
    return out


def explain(per: Mapping[str, torch.Tensor], descriptors: Mapping[str, Sequence[str]], index: int,
            classes: int = 2) -> list[dict[str, object]]:
    """One decision, as rows: for the ``classes`` best-scoring classes of image ``index`` (best first), each
    descriptor with its similarity and its contribution to the class's score (similarity / number of
    descriptors: the contributions of a class sum to its score)."""
    names = list(per)
    if list(descriptors) != names:
        raise ValueError("per and descriptors must hold the same classes, in the same order")
    n = len(next(iter(per.values())))
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for {n} images")
    scores = torch.tensor([float(per[c][index].mean()) for c in names])
    rows = []
    for rank, p in enumerate(scores.argsort(descending=True)[:classes].tolist()):
        c = names[p]
        for d, s in zip(descriptors[c], per[c][index].tolist()):
            rows.append(dict(rank=rank + 1, cls=c, score=float(scores[p]), descriptor=d, similarity=s,
                             contribution=s / len(descriptors[c])))
    return rows


def edit_descriptor(descriptors: Mapping[str, Sequence[str]], cls: str, old: str, new: str) -> dict[str, list[str]]:
    """A copy of the table with ``cls``'s descriptor ``old`` replaced by ``new`` (the original is untouched)."""
    if cls not in descriptors:
        raise ValueError(f"{cls!r} is not a class of the table ({', '.join(descriptors)})")
    if old not in descriptors[cls]:
        raise ValueError(f"{cls} has no descriptor {old!r}; it has {list(descriptors[cls])}")
    bad = [w for w in new.split() if w not in VOCAB]
    if bad:
        raise ValueError(f"the new descriptor {new!r} has words outside the scenes' vocabulary: {bad}")
    return {c: [new if (c == cls and d == old) else d for d in ds] for c, ds in descriptors.items()}


def prediction_share(pred: torch.Tensor, cls: int, where: torch.Tensor | None = None) -> float:
    """The share of ``pred`` equal to ``cls`` among the images where ``where`` is True (all by default); NaN
    where no image qualifies."""
    pred = torch.as_tensor(pred)
    if where is None:
        where = torch.ones_like(pred, dtype=torch.bool)
    if where.shape != pred.shape:
        raise ValueError(f"where {tuple(where.shape)} must have pred's shape {tuple(pred.shape)}")
    m = int(where.sum())
    return float("nan") if m == 0 else float((pred[where] == cls).double().mean())


# hand-written descriptors for CIFAR-10 (for an open_clip model in paper mode; written here, not by a language model)
CIFAR10_DESCRIPTORS: dict[str, list[str]] = {
    "airplane": ["wings", "a long fuselage", "a tail fin", "the sky around it"],
    "automobile": ["four wheels", "windows", "headlights", "a road beneath it"],
    "bird": ["feathers", "a beak", "two thin legs", "wings folded at its sides"],
    "cat": ["pointed ears", "whiskers", "fur", "slit pupils"],
    "deer": ["antlers", "long thin legs", "brown fur", "a forest or meadow around it"],
    "dog": ["floppy or pointed ears", "a snout with a black nose", "fur", "a wagging tail"],
    "frog": ["smooth green skin", "bulging eyes", "long folded hind legs", "a wide mouth"],
    "horse": ["a mane", "hooves", "a long face", "a long tail"],
    "ship": ["a hull", "water around it", "a deck", "masts or funnels"],
    "truck": ["a large cargo box", "big wheels", "a cab", "a road beneath it"],
}


def open_clip_description_accuracy(architecture: str, pretrained: str, data: ImageDataset,
                                   descriptors: Mapping[str, Sequence[str]] = CIFAR10_DESCRIPTORS,
                                   batch_size: int = 256) -> dict[str, float]:
    """Top-1 accuracy of an open_clip model on ``data`` by the class prompt "a photo of a {class}." and by
    description ("{class}, which has {descriptor}", mean similarity over a class's descriptors). Imports
    open_clip only when called (it downloads the weights: a connected machine, paper mode)."""
    try:
        import open_clip  # noqa: PLC0415
    except ModuleNotFoundError:
        raise ModuleNotFoundError("open_clip is not installed: `pip install open_clip_torch` on a connected "
                                  "machine, or leave OPEN_CLIP = None") from None
    from ..config import device  # noqa: PLC0415
    names = list(descriptors)
    if names != list(data.classes):
        raise ValueError(f"descriptors must name the dataset's classes in order: {list(data.classes)}")
    dev = device()
    model, _, _ = open_clip.create_model_and_transforms(architecture, pretrained=pretrained, device=dev)
    tok = open_clip.get_tokenizer(architecture)
    model.eval()
    side = model.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073), device=dev).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711), device=dev).view(1, 3, 1, 1)
    with torch.no_grad():
        def text(t: list[str]) -> torch.Tensor:
            return torch.nn.functional.normalize(model.encode_text(tok(t).to(dev)).float(), dim=-1)
        name_e = text([f"a photo of a {c}." for c in names])                                   # [C, D]
        desc_e = [text([f"{c}, which has {d}." for d in descriptors[c]]) for c in names]
        right_name = right_desc = 0
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float() / 255
            x = torch.nn.functional.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
            z = torch.nn.functional.normalize(model.encode_image((x.clamp(0, 1) - mean) / std).float(), dim=-1)
            y = data.labels[i:i + batch_size].to(dev)
            right_name += int(((z @ name_e.T).argmax(1) == y).sum())
            right_desc += int((torch.stack([(z @ e.T).mean(1) for e in desc_e], 1).argmax(1) == y).sum())
    return {"name": right_name / len(data), "descriptors": right_desc / len(data)}
