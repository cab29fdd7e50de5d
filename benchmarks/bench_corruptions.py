"""wb.data.corrupt against what a user would otherwise run: a per-image numpy loop.

For each corruption at severity 3, one process, 1,000 CIFAR-10 test images (the generated ``shapes``
images when the CIFAR-10 mirror is missing):

* ours: ``corrupt(images, name, 3)``, the whole batch as tensor ops (this machine's CPU threads);
* numpy: make_cifar_c.py's formula at the CIFAR constants, image by image, as re-implemented in
  tests/unit/test_data_corruptions.py (where the tests check that it gives our pixels), drawing its
  own random numbers with numpy as the original does;
* imagecorruptions: the PyPI package's ``corrupt`` image by image at its own (ImageNet) constants,
  where it runs beside numpy 2 and scikit-image 0.26 (its gaussian_blur, glass_blur and fog do not).

Timed round robin, best of ``--repeats`` after a warm-up round; printed: times per 1,000 images, the
ratios (reference time / ours: above 1, ours is faster) and their geometric mean per family. Wall
times on a shared machine are noisy; nothing fails on time.

Run:  python benchmarks/bench_corruptions.py [--n 1000] [--repeats 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.data import corruptions as C

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit import test_data_corruptions as T  # noqa: E402  (the numpy references)


def own_draws(name: str, p, shape: tuple[int, ...]) -> tuple:
    """The random numbers make_cifar_c draws for one image, drawn with numpy."""
    h, w = shape[:2]
    if name in ("gaussian_noise", "speckle_noise"):
        return (np.random.normal(size=shape),)
    if name == "glass_blur":
        return (np.random.randint(-p[1], p[1], size=(p[2], h - 2, w - 2, 2)),)
    if name == "motion_blur":
        return (np.random.uniform(-45, 45),)
    if name == "snow":
        return np.random.normal(size=(h, w)), np.random.uniform(-135, -45)
    if name == "fog":
        size = 1 << (max(h, w) - 1).bit_length()
        sides = [2 ** i for i in range(int(math.log2(size)))]  # the diamond-square levels, 3 draws each
        return ([np.random.uniform(size=(k, k)) for k in sides for _ in range(3)],)
    if name == "elastic_transform":
        return np.random.uniform(size=(3, 2)), np.random.uniform(size=(2, h, w))
    return ()


def ref_shot_noise(img, c):
    return np.clip(np.random.poisson(img / 255. * c) / c, 0, 1) * 255


def ref_impulse_noise(img, c):
    from skimage.util import random_noise
    return np.clip(random_noise(img / 255., mode="s&p", amount=c), 0, 1) * 255


def numpy_loop(name: str, images: list[np.ndarray]):
    ref = {**T.REFERENCE, "shot_noise": ref_shot_noise, "impulse_noise": ref_impulse_noise}[name]
    p = C.SEVERITIES[name][2]
    return lambda: [np.uint8(ref(img, p, *own_draws(name, p, img.shape))) for img in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    np.random.seed(0)
    try:
        data = wb.load("cifar10", "test", subset=args.n)
    except wb.data.DataUnavailableError:
        data = wb.load("shapes", "test", subset=args.n)
    x = data.images.to(args.device)
    images = [img.permute(1, 2, 0).numpy() for img in data.images]
    try:
        import imagecorruptions as ic
    except ImportError:
        ic = None
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    print(f"{args.n} images of {data.name} ({x.device}, {torch.get_num_threads()} threads), severity 3; "
          f"ratio = reference time / ours")
    print(f"{'corruption':18s} {'ours s':>8s} {'numpy s':>8s} {'ratio':>7s} {'imagecorr. s':>13s} {'ratio':>7s}")
    ratios: dict[str, list[float]] = {}
    for family, names in C.FAMILIES.items():
        for name in names:
            fns = {"ours": lambda name=name: (C.corrupt(x, name, 3), sync()), "numpy": numpy_loop(name, images)}
            if ic is not None:
                try:
                    ic.corrupt(images[0], 3, name)
                    fns["ic"] = lambda name=name: [ic.corrupt(img, 3, name) for img in images]
                except Exception:  # gaussian_blur, glass_blur (scikit-image >= 0.19), fog (numpy >= 2)
                    pass
            t = interleaved(fns, args.repeats)
            r = t["numpy"] / t["ours"]
            ratios.setdefault(family, []).append(r)
            ic_cols = f"{t['ic']:13.3f} {t['ic'] / t['ours']:7.1f}" if "ic" in t else f"{'fails':>13s} {'':>7s}"
            print(f"{name:18s} {t['ours']:8.3f} {t['numpy']:8.3f} {r:7.1f} {ic_cols}")
    print("geometric mean of numpy / ours per family: " + ", ".join(
        f"{f} {math.exp(sum(map(math.log, rs)) / len(rs)):.1f}x" for f, rs in ratios.items()))


if __name__ == "__main__":
    main()
