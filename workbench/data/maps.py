"""Top-down "remote-sensing-like" maps and visual questions about them (and about the garment scenes).

:func:`make_maps` draws ``size x size`` maps seen from above: bare ground, with water (smooth blobs), roads
(straight bands), fields (striped rectangles) and buildings (small grey blocks with a shadow), each a class
of a per-pixel mask (:data:`MAP_CLASSES`), with the count of every kind of object. It is the second scene
style of :mod:`workbench.data.scenes`, for RSVQA (Lobry et al., arXiv:2003.07333), whose questions are of
four kinds: presence, comparison, count and area.

:func:`make_questions` asks those four kinds of questions about any such scenes from their counts and areas
(the garment scenes too, through :func:`scene_facts`), with answers from :data:`ANSWERS`, balanced between yes
and no where the answer is a yes or a no. :class:`VQAData` and :class:`VQALoader` serve ``(image, question
tokens, answer)`` batches to ``wb.fit`` (with ``wb.vl.VQATask``).

What the maps keep of remote sensing: a view from above, land-cover classes, counting many small objects,
areas as shares of the image. What they lose: real sensors, seasons, shadows of real heights, the variety of
real buildings and roads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .dataset import to_float, validate_images
from .loader import TensorLoader

__all__ = ["MAP_CLASSES", "ANSWERS", "AREA_BINS", "Maps", "make_maps", "scene_facts", "make_questions", "VQAData",
           "VQALoader"]

MAP_CLASSES = ("ground", "water", "road", "field", "building")
_PLURAL = {"water": "water bodies", "road": "roads", "field": "fields", "building": "buildings"}
_AREA = {"water": "water", "road": "roads", "field": "fields", "building": "buildings"}
ANSWERS = ("yes", "no", "0", "1", "2", "3", "4", "5", "6", "none", "small", "medium", "large")
AREA_BINS = ((0.0, "none"), (0.05, "small"), (0.15, "medium"), (1.01, "large"))  # share of the image < bound


@dataclass
class Maps:
    """``images`` uint8 ``[N, 3, S, S]``, ``masks`` int64 ``[N, S, S]`` (index into :data:`MAP_CLASSES`) and
    ``counts`` int64 ``[N, len(MAP_CLASSES)]`` (objects of each kind; water bodies, roads, fields, buildings)."""

    images: torch.Tensor
    masks: torch.Tensor
    counts: torch.Tensor
    seed: int = 0

    def __len__(self) -> int:
        return len(self.images)


def make_maps(n: int, size: int = 64, seed: int = 0) -> Maps:
    """``n`` maps (see the module docstring), deterministic for a seed."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(size, int) and size >= 32):
        raise ValueError(f"size must be an integer of at least 32 pixels, got {size!r}")
    g = torch.Generator().manual_seed(int(seed))
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    images = torch.empty(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.int64)
    counts = torch.zeros(n, len(MAP_CLASSES), dtype=torch.int64)
    for i in range(n):
        soil = torch.tensor([0.55, 0.48, 0.36]).view(3, 1, 1) * (0.9 + 0.15 * F.avg_pool2d(
            torch.rand(1, 1, size, size, generator=g), 5, 1, 2)[0])
        img, m = soil.clone(), torch.zeros(size, size, dtype=torch.int64)
        # water: 0-2 smooth blobs
        k = int(torch.randint(3, (1,), generator=g))
        for _ in range(k):
            cx, cy = (torch.rand(2, generator=g) * size).tolist()
            r = float(size * (0.08 + 0.12 * torch.rand(1, generator=g)))
            wob = 1 + 0.25 * torch.sin(torch.atan2(yy - cy, xx - cx) * 3 + float(torch.rand(1, generator=g) * 6))
            m[((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() < r * wob] = 1
        counts[i, 1] = k
        # fields: 0-3 striped rectangles on land
        k = int(torch.randint(4, (1,), generator=g))
        placed = 0
        for _ in range(k):
            w, h = (size * (0.15 + 0.2 * torch.rand(2, generator=g))).long().tolist()
            x0, y0 = int(torch.randint(size - w, (1,), generator=g)), int(torch.randint(size - h, (1,), generator=g))
            area = m[y0:y0 + h, x0:x0 + w]
            if (area != 0).float().mean() < 0.2:
                area[area == 0] = 3
                placed += 1
        counts[i, 3] = placed
        # roads: 0-2 straight bands
        k = int(torch.randint(3, (1,), generator=g))
        for _ in range(k):
            angle = float(torch.rand(1, generator=g) * math.pi)
            off = float((torch.rand(1, generator=g) - 0.5) * size * 0.6)
            d = (xx - size / 2) * math.sin(angle) - (yy - size / 2) * math.cos(angle) - off
            m[d.abs() < 1.5] = 2
        counts[i, 2] = k
        # buildings: 0-6 small blocks on free ground, not overlapping
        k = int(torch.randint(7, (1,), generator=g))
        placed = 0
        for _ in range(4 * k):
            if placed == k:
                break
            s = int(3 + torch.randint(4, (1,), generator=g))
            x0, y0 = int(torch.randint(size - s - 1, (1,), generator=g)), int(torch.randint(size - s - 1, (1,), generator=g))
            if (m[max(y0 - 1, 0):y0 + s + 2, max(x0 - 1, 0):x0 + s + 2] == 0).all():
                m[y0:y0 + s, x0:x0 + s] = 4
                placed += 1
        counts[i, 4] = placed
        colours = {1: (0.15, 0.32, 0.55), 2: (0.35, 0.35, 0.37), 4: (0.78, 0.76, 0.74)}
        for c, rgb in colours.items():
            img[:, m == c] = torch.tensor(rgb).view(3, 1)
        stripes = 0.75 + 0.25 * torch.sin(xx * 1.3 + yy * 0.4)
        field_rgb = torch.tensor([0.35, 0.62, 0.22]) if torch.rand(1, generator=g) < 0.5 else torch.tensor([0.8, 0.72, 0.3])
        img[:, m == 3] = (field_rgb.view(3, 1) * stripes[m == 3])
        shadow = F.pad((m == 4).float(), (1, 0, 1, 0))[:-1, :-1].bool() & (m == 0)  # cast down and right
        img[:, shadow] *= 0.55
        img = img + 0.03 * torch.randn(3, size, size, generator=g)
        images[i], masks[i] = img.clamp(0, 1), m
    return Maps((images * 255).round().to(torch.uint8), masks, counts, int(seed))


def scene_facts(scenes) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(kinds, counts [N, kinds], areas [N, kinds])`` of garment scenes (``wb.data.make_scenes``): one kind per
    Fashion-MNIST class, the number of garments of it and the share of the image they cover."""
    from .scenes import ITEM_WORDS
    kinds = [w for w, _ in ITEM_WORDS]
    n, K = scenes.items.shape
    counts = torch.zeros(n, len(kinds), dtype=torch.int64)
    areas = torch.zeros(n, len(kinds))
    sem = scenes.semantic_masks()                                  # 0 ground, class + 1
    for c in range(len(kinds)):
        counts[:, c] = (scenes.items == c).sum(1)
        areas[:, c] = (sem == c + 1).float().mean((1, 2))
    return kinds, counts, areas


def _map_facts(maps: Maps) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    kinds = list(MAP_CLASSES[1:])
    areas = torch.stack([(maps.masks == c).float().mean((1, 2)) for c in range(1, len(MAP_CLASSES))], 1)
    return kinds, maps.counts[:, 1:], areas


def _area_word(share: float) -> str:
    for bound, word in AREA_BINS:
        if share <= bound if word == "none" else share < bound:
            return word
    return "large"


def make_questions(source, per_scene: int = 4, seed: int = 0,
                   kinds: Sequence[str] = ("presence", "comparison", "count", "area")) -> list[dict]:
    """Questions about every scene of ``source`` (:class:`Maps` or garment ``Scenes``): ``per_scene`` of them, the
    kinds taken in turn, each a dict ``scene``, ``kind``, ``question``, ``answer`` (one of :data:`ANSWERS`).
    Presence and comparison questions are drawn so that yes and no are about equally common."""
    bad = [k for k in kinds if k not in ("presence", "comparison", "count", "area")]
    if bad or not kinds:
        raise ValueError(f"question kinds are presence, comparison, count, area; got {list(kinds)}")
    from .scenes import ITEM_WORDS
    names, counts, areas = _map_facts(source) if isinstance(source, Maps) else scene_facts(source)
    plurals = _PLURAL if isinstance(source, Maps) else dict(ITEM_WORDS)
    plural = plurals.get
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for i in range(len(counts)):
        for q in range(per_scene):
            kind = kinds[q % len(kinds)]
            if kind == "presence":
                want_yes = bool(torch.rand(1, generator=g) < 0.5)
                pool = [c for c in range(len(names)) if (counts[i, c] > 0) == want_yes] or list(range(len(names)))
                c = pool[int(torch.randint(len(pool), (1,), generator=g))]
                out.append(dict(scene=i, kind=kind, question=f"is there a {names[c]}" if names[c] != "water"
                                else "is there water", answer="yes" if counts[i, c] > 0 else "no"))
            elif kind == "comparison":
                a, b = torch.randperm(len(names), generator=g)[:2].tolist()
                out.append(dict(scene=i, kind=kind, question=f"are there more {plural(names[a])} than {plural(names[b])}",
                                answer="yes" if counts[i, a] > counts[i, b] else "no"))
            elif kind == "count":
                c = int(torch.randint(len(names), (1,), generator=g))
                out.append(dict(scene=i, kind=kind, question=f"how many {plural(names[c])} are there",
                                answer=str(min(int(counts[i, c]), 6))))
            else:
                c = int(torch.randint(len(names), (1,), generator=g))
                noun = _AREA[names[c]] if isinstance(source, Maps) else plural(names[c])
                out.append(dict(scene=i, kind=kind, question=f"what is the area of {noun}",
                                answer=_area_word(float(areas[i, c]))))
    return out


@dataclass
class VQAData:
    """Scene images (uint8 ``[S, 3, H, W]``) and questions about them: ``scene`` ``[Q]`` (which image), ``tokens``
    ``[Q, L]`` (question word ids), ``answers`` ``[Q]`` (index into :data:`ANSWERS`), ``kinds`` (per question)."""

    images: torch.Tensor
    scene: torch.Tensor
    tokens: torch.Tensor
    answers: torch.Tensor
    kinds: list[str]
    name: str = "vqa"
    split: str = "train"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        validate_images(self.images)
        if not (len(self.scene) == len(self.tokens) == len(self.answers) == len(self.kinds)):
            raise ValueError("scene, tokens, answers and kinds need one entry per question")

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def num_classes(self) -> int:
        return len(ANSWERS)

    @classmethod
    def build(cls, images: torch.Tensor, questions: list[dict], length: int = 12, name: str = "vqa",
              split: str = "train") -> "VQAData":
        from .scenes import tokenize
        return cls(images, torch.tensor([q["scene"] for q in questions]), tokenize([q["question"] for q in questions],
                                                                                  length),
                   torch.tensor([ANSWERS.index(q["answer"]) for q in questions]), [q["kind"] for q in questions],
                   name, split)

    def to(self, device: torch.device | str) -> "VQAData":
        return VQAData(self.images.to(device), self.scene.to(device), self.tokens.to(device), self.answers.to(device),
                       self.kinds, self.name, self.split, self.mean, self.std)


class VQALoader(TensorLoader):
    """Batches ``(images [B, 3, H, W] normalized, question tokens [B, L], answers [B])`` of a :class:`VQAData`."""

    data_type, made_by = VQAData, "wb.data.maps.VQAData.build"

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        d = self.dataset
        return to_float(d.images[d.scene[idx]], d.mean, d.std), d.tokens[idx], d.answers[idx]
