"""How fast does a notebook train? ResNet-20 on CIFAR-10 with the laptop recipe.

Prints, in one process on the same machine:

1. data pipeline: images per second of ``wb.data.Loader`` (whole-batch augmentation on
   tensors) against an idiomatic per-image ``torch.utils.data.DataLoader`` (a Dataset
   whose ``__getitem__`` crops and flips one image), and the ratio;
2. training steps: seconds per step with each pipeline feeding the same model, the
   share of time spent on data, and the ratio;
3. the loop: seconds per step of ``wb.fit`` (a task and algorithms at named events, none listening)
   against the loop it replaced (``tests/reference/legacy_fit.py``), timed alternately;
4. the full laptop run: test accuracy, wall time, data share of epoch time.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_train.py [--epochs 6] [--skip-full]
Goal (issue 2): >= 75% test accuracy within 10 minutes on 2 CPU cores, data <= 10% of epoch time.
Goal (issue 26): the events cost nothing measurable when no algorithm listens (within 2%).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import workbench as wb
from workbench.train.schedules import recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the frozen old loop lives in tests/reference


class PerImageDataset(torch.utils.data.Dataset):
    """What a user would write without the workbench: per-image crop and flip."""

    def __init__(self, ds, padding: int = 4):
        self.images, self.labels, self.padding = ds.images, ds.labels, padding
        self.mean = torch.tensor(ds.mean).view(-1, 1, 1)
        self.std = torch.tensor(ds.std).view(-1, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i].float() / 255
        p = self.padding
        img = F.pad(img, (p, p, p, p))
        dx, dy = torch.randint(0, 2 * p + 1, (2,)).tolist()
        img = img[:, dy:dy + 32, dx:dx + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return (img - self.mean) / self.std, self.labels[i]


class PILDataset(PerImageDataset):
    """The torchvision pattern (CIFAR10 dataset of PIL images; RandomCrop(32, padding=4),
    RandomHorizontalFlip, ToTensor, Normalize), written with PIL and NumPy since
    torchvision does not import beside the CPU torch used here."""

    def __init__(self, ds, padding: int = 4):
        super().__init__(ds, padding)
        self.arrays = ds.images.permute(0, 2, 3, 1).numpy()

    def __getitem__(self, i):
        import random

        import numpy as np
        from PIL import Image, ImageOps

        img = Image.fromarray(self.arrays[i])
        img = ImageOps.expand(img, border=self.padding, fill=0)
        dx, dy = random.randint(0, 2 * self.padding), random.randint(0, 2 * self.padding)
        img = img.crop((dx, dy, dx + 32, dy + 32))
        if random.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        return (x - self.mean) / self.std, self.labels[i]


def time_batches(iterable, n_batches: int, warmup: int = 5) -> float:
    """Seconds for ``n_batches`` batches, after ``warmup`` untimed ones."""
    it = iter(iterable)
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return time.perf_counter() - t


def time_steps(batches, model, opt, n: int) -> tuple[float, float]:
    """Seconds per step and data share over ``n`` steps (after 3 warm-up steps)."""
    it = iter(batches)
    data_t = total_t = 0.0
    for i in range(n + 3):
        t0 = time.perf_counter()
        x, y = next(it)
        x = x.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 3:
            data_t += t1 - t0
            total_t += t2 - t0
    return total_t / n, data_t / total_t


def time_loops(train, rounds: int, steps: int) -> tuple[float, float]:
    """Median seconds per step of the new and the old loop (ResNet-20, batch 256, no test set, no
    algorithm), alternating old and new ``rounds`` times; each figure is the loop's own step time."""
    from tests.reference.legacy_fit import fit as legacy_fit

    per = {"new": [], "old": []}
    subset = wb.data.ImageDataset(train.images[:256 * steps], train.labels[:256 * steps], train.classes,
                                  name=train.name, mean=train.mean, std=train.std)
    for r in range(rounds + 1):
        for name, fit in (("old", legacy_fit), ("new", wb.fit)) if r % 2 else (("new", wb.fit), ("old", legacy_fit)):
            torch.manual_seed(0)
            h = fit(wb.create_model("resnet20"), subset, batch_size=256, epochs=1, progress=False, seed=0).history
            if r:  # round 0 warms up both
                per[name].append(h["seconds"].iloc[-1] / h["step"].iloc[-1])
    return statistics.median(per["new"]), statistics.median(per["old"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=30, help="steps timed per pipeline in part 2")
    ap.add_argument("--skip-full", action="store_true", help="skip the full training run (part 4)")
    ap.add_argument("--loop-rounds", type=int, default=6, help="alternating rounds of part 3 (0 skips it)")
    ap.add_argument("--only-loop", action="store_true", help="run part 3 alone")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    threads = int(os.environ.get("WORKBENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    wb.seed_everything(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{threads} threads, device {wb.device()}")
    t = time.perf_counter()
    train, test = wb.load("cifar10", "train"), wb.load("cifar10", "test")
    print(f"load CIFAR-10 (train+test): {time.perf_counter() - t:.2f} s  [{train.source}]")
    out: dict = {}

    if not args.only_loop:
        bs = 256
        ours = wb.data.Loader(train, batch_size=bs, augment="crop_flip", device="cpu", seed=0)
        n_b = 50
        t_ours = time_batches(ours, n_b)
        dl = torch.utils.data.DataLoader(PerImageDataset(train), batch_size=bs, shuffle=True, num_workers=0)
        t_dl = time_batches(dl, n_b)
        pil = torch.utils.data.DataLoader(PILDataset(train), batch_size=bs, shuffle=True, num_workers=0)
        t_pil = time_batches(pil, n_b)
        print(f"\n1. data pipeline, {n_b} batches of {bs} with crop+flip:")
        print(f"   wb.data.Loader                     {n_b * bs / t_ours:10.0f} images/s")
        print(f"   per-image tensor DataLoader        {n_b * bs / t_dl:10.0f} images/s   (Loader {t_dl / t_ours:.1f}x faster)")
        print(f"   per-image PIL (torchvision-style)  {n_b * bs / t_pil:10.0f} images/s   (Loader {t_pil / t_ours:.1f}x faster)")
        out.update(data_ratio_tensor=t_dl / t_ours, data_ratio_pil=t_pil / t_ours)

        model = wb.create_model("resnet20").to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        s_ours, share_ours = time_steps(ours, model, opt, args.steps)
        s_dl, share_dl = time_steps(dl, model, opt, args.steps)
        s_pil, share_pil = time_steps(pil, model, opt, args.steps)
        print(f"\n2. resnet20 training steps (batch {bs}, fp32, {args.steps} steps each):")
        print(f"   wb.data.Loader                     {s_ours * 1000:6.0f} ms/step, data {share_ours:6.1%} of step time")
        print(f"   per-image tensor DataLoader        {s_dl * 1000:6.0f} ms/step, data {share_dl:6.1%}   "
              f"epoch time ratio {s_dl / s_ours:.2f}x")
        print(f"   per-image PIL (torchvision-style)  {s_pil * 1000:6.0f} ms/step, data {share_pil:6.1%}   "
              f"epoch time ratio {s_pil / s_ours:.2f}x")
        out.update(step_ratio_tensor=s_dl / s_ours, step_ratio_pil=s_pil / s_ours, data_share_steps=share_ours,
                   data_share_tensor=share_dl, data_share_pil=share_pil)

    if args.loop_rounds:
        new, old = time_loops(train, args.loop_rounds, steps=10)
        print(f"\n3. the loop, resnet20, batch 256, 10 steps, median of {args.loop_rounds} alternating rounds:")
        print(f"   wb.fit (task + events, no algorithm)  {new * 1000:6.1f} ms/step")
        print(f"   the old loop (legacy_fit)              {old * 1000:6.1f} ms/step   new/old {new / old:.3f}")
        out.update(loop_new_s=new, loop_old_s=old, loop_ratio=new / old)

    if not args.skip_full and not args.only_loop:
        cfg = recipe("laptop", epochs=args.epochs, precision=args.precision)
        print(f"\n4. full laptop run: resnet20, {cfg}")
        wb.seed_everything(0)
        model = wb.create_model("resnet20")
        t = time.perf_counter()
        res = wb.fit(model, train, test, seed=0, progress=False, **cfg)
        wall = time.perf_counter() - t
        h = res.history
        share = h["data_seconds"].iloc[-1] / h["seconds"].iloc[-1]
        print(h[["epoch", "lr", "train_loss", "train_acc", "test_acc", "seconds"]].to_string(index=False))
        print(f"   test accuracy {res.test_acc:.2%} after {args.epochs} epochs, wall time {wall / 60:.1f} min, "
              f"data {share:.1%} of epoch time")
        print(f"   goal: >= 75% within 10 min and data <= 10%: "
              f"{'MET' if res.test_acc >= 0.75 and wall <= 600 and share <= 0.10 else 'NOT MET'}")
        out.update(test_acc=res.test_acc, wall_s=wall, data_share=share, epochs=args.epochs, precision=args.precision)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
