"""Video clips: the per-frame CNN over all frames at once against a loop over frames, and the clip generator
against the training step.

In one process, on the same model and clips (``video_net`` with an LSTM head, 8 frames of 32x32, batch
``--batch``):

1. a training step (forward and backward) with the frames folded into the batch (``[B * T, C, H, W]`` through the
   trunk once: what ``video_net`` does) against the same step with a Python loop applying the trunk frame by frame
   and stacking the features (the straightforward way); goal: folding at least 3x faster on a CPU;
2. the motion-clip generator's clips per second (``wb.data.motion_clips``) against the training step's clips per
   second; goal: the generator is never the bottleneck (it is run once per dataset anyway, and is cached as
   tensors; this says how long a new dataset takes to make).

Timed round robin (``_timing.interleaved``), best of ``--repeats``; ratios printed.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_sequence.py [--batch 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

import torch

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clips", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", torch.get_num_threads())))
    bg, items = wb.load("cifar10", "test", subset=2000), wb.load("fashion_mnist", "test", subset=2000)
    clips = wb.data.motion_clips(bg, items, args.batch, frames=8, seed=0)
    x = clips.normalize(clips.images)
    y = clips.labels
    torch.manual_seed(0)
    model = wb.create_model("video_net", head="lstm", width=16)
    frames = wb.data.filmstrip_frames(x, 8)                                  # [B, T, C, H, W]

    def folded():
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def looped():
        model.zero_grad()
        trunk, head = model.trunks[0], model.heads[0]
        feats = torch.stack([trunk(frames[:, t].contiguous()) for t in range(frames.shape[1])], 1)  # [B, T, F]
        torch.nn.functional.cross_entropy(head(feats), y).backward()

    def generate():
        wb.data.motion_clips(bg, items, args.clips, frames=8, seed=1)

    best = interleaved({"folded": folded, "looped": looped, "generate": generate}, args.repeats)
    step_clips = args.batch / best["folded"]
    gen_clips = args.clips / best["generate"]
    print(f"video_net (LSTM head, width 16), batch {args.batch} clips of 8 frames, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}")
    print(f"training step, frames folded into the batch: {best['folded'] * 1000:.0f} ms; looped over frames: "
          f"{best['looped'] * 1000:.0f} ms; ratio {best['looped'] / best['folded']:.2f}x (goal >= 3x)")
    print(f"clip generator: {gen_clips:.0f} clips/s against the training step's {step_clips:.0f} clips/s: "
          f"{gen_clips / step_clips:.1f}x (goal: > 1, never the bottleneck)")


if __name__ == "__main__":
    main()
