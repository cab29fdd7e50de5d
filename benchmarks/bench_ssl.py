"""A SimCLR epoch (``wb.ssl.Contrastive(views="simclr")``, arXiv 2002.05709) and its two parts against what
a user would otherwise write:

(i)   the loss: ``wb.ssl.nt_xent`` against NT-Xent written anchor by anchor (the formula as printed), and
      against lightly's ``NTXentLoss`` where lightly imports (it needs torchvision, which this CPU torch
      lacks: PACKAGES.md; on a GPU machine with a matching torchvision it is compared too). Equal losses
      (max difference) and the time ratio;
(ii)  the views: ``wb.ssl.make_views`` (kornia on the whole batch, on the batch's device) against the
      per-image pipeline of a torchvision-style ``Dataset`` (PIL: random resized crop, flip, colour
      jitter, grayscale, then to a normalized tensor), the same recipe, image by image;
(iii) one epoch of SimCLR pre-training of ResNet-20: its time and the share the views take.

Ratios > 1 mean ours is faster. Wall-clock numbers are reported, never asserted.

Run:  python benchmarks/bench_ssl.py [--images 1024] [--repeats 3] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance

from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
import workbench as wb


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent as printed: for each of the 2N anchors, -log of its partner's share of the other 2N-1."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = z.new_zeros(())
    for i in range(2 * n):
        sims = (z @ z[i]) / tau
        others = torch.cat([sims[:i], sims[i + 1:]])
        total = total - (sims[(i + n) % (2 * n)] - torch.logsumexp(others, 0))
    return total / (2 * n)


def pil_view(img: np.ndarray, rng: random.Random, mean, std, s: float = 0.5) -> torch.Tensor:
    """One SimCLR view of one HWC uint8 image, per image with PIL (a torchvision-style pipeline)."""
    im = Image.fromarray(img)
    w, h = im.size
    for _ in range(10):  # random resized crop: scale 0.2-1, aspect 3/4-4/3
        area = rng.uniform(0.2, 1.0) * w * h
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = im.crop((x0, y0, x0 + cw, y0 + ch))
            break
    im = im.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.8:
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enhance(im).enhance(rng.uniform(1 - 0.8 * s, 1 + 0.8 * s))
        hsv = np.array(im.convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.uniform(-0.2 * s, 0.2 * s) * 255)) % 256
        im = Image.fromarray(hsv, "HSV").convert("RGB")
    if rng.random() < 0.2:
        im = im.convert("L").convert("RGB")
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"device {dev}; torch {torch.__version__}; {torch.get_num_threads()} CPU thread(s)")

    # (i) the loss
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(args.batch, 64, generator=g).to(dev) for _ in range(2))
    fns = {"ours": lambda: wb.ssl.nt_xent(z1, z2, 0.5)[0], "anchor loop": lambda: nt_xent_loop(z1, z2, 0.5)}
    try:
        from lightly.loss import NTXentLoss  # needs torchvision
        lightly_loss = NTXentLoss(temperature=0.5)
        fns["lightly NTXentLoss"] = lambda: lightly_loss(z1, z2)
    except Exception as err:  # noqa: BLE001 - any import failure: report it and go on
        print(f"lightly's NTXentLoss is not importable here ({type(err).__name__}: {str(err)[:80]}); not compared")
    ref = fns["ours"]()
    t = interleaved({n: (lambda f=f: (f(), sync())) for n, f in fns.items()}, args.repeats)
    print(f"\nNT-Xent of 2 x {args.batch} embeddings of 64 dimensions, forward")
    for name, fn in fns.items():
        print(f"   {name:20s} loss {float(fn()):.6f}  |diff| {abs(float(fn() - ref)):.1e}  "
              f"{t[name] * 1e3:8.2f} ms  {t[name] / t['ours']:7.1f}x")

    # (ii) the views
    data = wb.load("cifar10", "train", subset=args.images, seed=0)
    x = data.normalize(data.images[: args.batch]).to(dev)
    hwc = data.images[: args.batch].permute(0, 2, 3, 1).numpy()
    rng = random.Random(0)
    views = {"ours (kornia, batched)": lambda: (wb.ssl.make_views(x, data.mean, data.std, 1, "simclr"), sync()),
             "PIL, per image": lambda: torch.stack([pil_view(im, rng, data.mean, data.std) for im in hwc]).to(dev)}
    t = interleaved(views, args.repeats)
    print(f"\nSimCLR views of {args.batch} CIFAR-10 images (random resized crop, flip, colour jitter, grayscale)")
    for name in views:
        print(f"   {name:24s} {t[name] * 1e3:8.1f} ms  {t[name] / t['ours (kornia, batched)']:6.2f}x")

    # (iii) one epoch of SimCLR pre-training
    torch.manual_seed(0)
    enc = wb.create_model("ssl_encoder", backbone="resnet20", proj_dim=64)
    task = wb.ssl.Contrastive(0.5, views="simclr")
    spent = {"views": 0.0}
    make_pair = task.make_pair

    def timed_pair(*a):
        start = time.perf_counter()
        out = make_pair(*a)
        sync()
        spent["views"] += time.perf_counter() - start
        return out

    task.make_pair = timed_pair
    start = time.perf_counter()
    wb.fit(enc, data, task=task, augment=None, epochs=1, batch_size=args.batch, lr=0.3, progress=False, device=dev)
    sync()
    epoch = time.perf_counter() - start
    print(f"\nSimCLR epoch, ResNet-20 on {args.images} images in batches of {args.batch}: {epoch:.1f} s, "
          f"views {spent['views']:.1f} s ({spent['views'] / epoch:.0%} of the epoch)")


if __name__ == "__main__":
    main()
