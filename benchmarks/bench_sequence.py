"""Video clips: the per-frame CNN over all frames at once against a loop over frames, and the clip generator
against the training step.

In one process, on the same model and clips (``video_net`` with an LSTM head, 8 frames of 32x32, batch
``--batch``):

1. a training step (forward and backward) with the frames folded into the batch (``[B * T, C, H, W]`` through the
   trunk once: what ``video_net`` does) against the same step with a Python loop applying the trunk frame by frame
   and stacking the features (the straightforward way), at each batch size of ``--batch``; goal: folding at least 3x
   faster on a CPU. Measured here (2026-12-07, one thread of an Intel Xeon, two runs): 1.6x and 2.6x at batch 1, 1.2x
   and 1.4x at 4, 0.9x at 32: on a CPU a convolution's cost grows with its batch, so folding saves only the per-call
   overhead, which matters where the batch is small; the 3x is a GPU effect (one launch per layer instead of ``T``),
   not shown here;
2. the motion-clip generator's clips per second (``wb.data.motion_clips``) against the training step's clips per
   second; goal: the generator is never the bottleneck (it is run once per dataset anyway, and is cached as
   tensors; this says how long a new dataset takes to make).

Timed round robin (``_timing.interleaved``), best of ``--repeats``; ratios printed.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_sequence.py [--batch 1,4,32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

import torch

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", default="1,4,32", help="comma-separated batch sizes (clips)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clips", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", torch.get_num_threads())))
    bg, items = wb.load("cifar10", "test", subset=2000), wb.load("fashion_mnist", "test", subset=2000)
    batches = [int(b) for b in str(args.batch).split(",")]
    if not batches or min(batches) < 1:
        raise SystemExit(f"--batch takes positive batch sizes separated by commas, got {args.batch!r}")
    torch.manual_seed(0)
    model = wb.create_model("video_net", head="lstm", width=16)
    trunk, head = model.trunks[0], model.heads[0]
    print(f"video_net (LSTM head, width 16), clips of 8 frames, {torch.get_num_threads()} threads, best of "
          f"{args.repeats}")
    for batch in batches:
        clips = wb.data.motion_clips(bg, items, batch, frames=8, seed=0)
        x, y = clips.normalize(clips.images), clips.labels
        frames = wb.data.filmstrip_frames(x, 8)                              # [B, T, C, H, W]

        def folded():
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()

        def looped():
            model.zero_grad()
            feats = torch.stack([trunk(frames[:, t].contiguous()) for t in range(frames.shape[1])], 1)  # [B, T, F]
            torch.nn.functional.cross_entropy(head(feats), y).backward()

        best = interleaved({"folded": folded, "looped": looped}, args.repeats)
        print(f"batch {batch:>3}: training step with the frames folded into the batch {best['folded'] * 1000:.0f} ms, "
              f"looped over frames {best['looped'] * 1000:.0f} ms: ratio {best['looped'] / best['folded']:.2f}x "
              f"(goal >= 3x)")

    batch = batches[-1]
    clips = wb.data.motion_clips(bg, items, batch, frames=8, seed=0)
    x, y = clips.normalize(clips.images), clips.labels

    def step():
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def generate():
        wb.data.motion_clips(bg, items, args.clips, frames=8, seed=1)

    best = interleaved({"step": step, "generate": generate}, args.repeats)
    step_clips, gen_clips = batch / best["step"], args.clips / best["generate"]
    print(f"clip generator: {gen_clips:.0f} clips/s against the training step's {step_clips:.0f} clips/s at batch "
          f"{batch}: {gen_clips / step_clips:.1f}x (goal: > 1, never the bottleneck)")

if __name__ == "__main__":
    main()
