"""Vision and language: the scene generator against the training step, and the contrastive loss and retrieval
metrics against the straightforward ways to compute them.

In one process:

1. the captioned-scene generator's images per second (``wb.data.scenes.make_scenes``) against a training step of
   ``clip_tiny`` with ``ImageTextContrastive`` (images per second); goal: the generator is never the bottleneck
   (scenes are made once per dataset and kept as tensors; this says how long a new dataset takes);
2. ``wb.vl.info_nce`` against open_clip's formulation written out (its ``ClipLoss``: the image-to-text and
   text-to-image cross-entropies of the logit matrix and its transpose, computed as two matrices) and a naive
   loop over the rows, timed forward and backward; goal: the same value (printed), cost no more. open_clip itself
   imports torchvision and cannot be installed beside this torch (../shared/PACKAGES.md), so its formulation is
   written here from its description, not imported;
3. ``wb.vl.retrieval_metrics`` (recall at 1, 5, 10 both ways, median ranks) against a loop over the queries that
   sorts each row (the way retrieval code is usually written); goal: the same numbers, cost no more.

Timed round robin (``_timing.interleaved``), best of ``--repeats``; ratios printed.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_vl.py [--batch 128] [--n 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.data import scenes as S
from workbench.vl import ImageTextContrastive, caption_table, info_nce, retrieval_metrics


def open_clip_style(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    scale = logit_scale.exp()
    per_image, per_text = scale * img @ txt.T, scale * txt @ img.T
    labels = torch.arange(len(img))
    return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2


def looped_info_nce(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    scale, total = logit_scale.exp(), 0.0
    for i in range(len(img)):
        total = total - torch.log_softmax(scale * txt @ img[i], 0)[i] - torch.log_softmax(scale * img @ txt[i], 0)[i]
    return total / (2 * len(img))


def looped_retrieval(sim: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    n = len(sim)
    ranks = {"i2t": [], "t2i": []}
    for i in range(n):
        for name, row in (("i2t", sim[i]), ("t2i", sim[:, i])):
            order = sorted(range(n), key=lambda j: (-float(row[j]), j == i))   # ties: the true pair last
            ranks[name].append(order.index(i) + 1)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = sum(r <= k for r in ranks["i2t"]) / n
        out[f"t2i_R@{k}"] = sum(r <= k for r in ranks["t2i"]) / n
    for name in ("i2t", "t2i"):
        out[f"{name}_medr"] = float(sorted(ranks[name])[(n - 1) // 2])   # the lower median, as torch.median
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n", type=int, default=1000, help="scenes generated, and images in the retrieval matrix")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", torch.get_num_threads())))
    items = wb.load("fashion_mnist", "train", subset=2000)

    # 1. the generator against the training step
    scenes = S.make_scenes(items, args.batch, size=64, seed=0)
    data, table = scenes.as_dataset("index"), caption_table(scenes)
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny")
    task = ImageTextContrastive(table)
    task.setup(model, torch.device("cpu"))
    x = data.normalize(data.images)
    batch = (x, data.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        task.loss(task.forward(model, batch), batch).backward()
        opt.step()

    def generate():
        S.make_scenes(items, args.n, size=64, seed=1)

    best = interleaved({"step": step, "generate": generate}, args.repeats)
    step_ips, gen_ips = args.batch / best["step"], args.n / best["generate"]
    print(f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"scene generator: {gen_ips:.0f} images/s against clip_tiny's training step (batch {args.batch}, 64x64): "
          f"{step_ips:.0f} images/s: {gen_ips / step_ips:.1f}x (goal: > 1, never the bottleneck)")

    # 2. InfoNCE three ways, on the same embeddings; timed forward and backward (what a training step pays)
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(args.batch, 64, generator=g), dim=1).requires_grad_()
    txt = F.normalize(img.detach() + 0.5 * torch.randn(args.batch, 64, generator=g), dim=1).requires_grad_()
    scale = torch.tensor(2.659)   # log(1 / 0.07), CLIP's initial temperature
    losses = {"ours": info_nce, "open_clip": open_clip_style, "loop": looped_info_nce}
    values = {k: float(fn(img, txt, scale).detach()) for k, fn in losses.items()}
    timed = {k: (lambda fn=fn: fn(img, txt, scale).backward()) for k, fn in losses.items()}
    # sub-millisecond calls: many rounds; the slow loop apart, so that it does not evict the others' caches
    best = interleaved({k: timed[k] for k in ("ours", "open_clip")}, 30 * args.repeats)
    best.update(interleaved({"loop": timed["loop"]}, args.repeats))
    print(f"InfoNCE, batch {args.batch}: ours {values['ours']:.6f}, open_clip's formulation "
          f"{values['open_clip']:.6f}, loop {values['loop']:.6f}; forward and backward: open_clip's / ours "
          f"{best['open_clip'] / best['ours']:.2f}x, loop / ours {best['loop'] / best['ours']:.1f}x (goal: same value, "
          ">= 1)")

    # 3. retrieval metrics against a loop that sorts each row
    sim = torch.randn(args.n, args.n, generator=g) + 3 * torch.eye(args.n)
    sim[0, 1] = sim[0, 0]                        # one tie, counted against the true pair
    fast, slow = retrieval_metrics(sim), looped_retrieval(sim)
    same = all(abs(fast[k] - slow[k]) < 1e-6 for k in fast)
    best = interleaved({"ours": lambda: retrieval_metrics(sim), "loop": lambda: looped_retrieval(sim)},
                       max(1, args.repeats // 3))
    print(f"recall at K and median ranks, {args.n} x {args.n}: the same numbers: {same} (i2t R@1 {fast['i2t_R@1']:.3f},"
          f" t2i R@1 {fast['t2i_R@1']:.3f}); loop / ours {best['loop'] / best['ours']:.0f}x (goal: same, >= 1)")


if __name__ == "__main__":
    main()
