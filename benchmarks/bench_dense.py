"""Dense prediction and generation: the degradation generators against the training step, PSNR computed in the
task against torchmetrics, and the diffusion sampler with the model compiled and not.

In one process:

1. each degradation of ``wb.data.degrade`` (images per second, on CIFAR-10 test images) against a training step of
   ``mirnet_tiny`` with ``Restoration`` (images per second, batch ``--batch``); goal: the generators are never the
   bottleneck (a paired dataset is degraded once and kept as tensors; this says how long a new one takes);
2. the PSNR that ``Restoration`` computes inside the loop (``10 log10(1 / MSE)`` of the difference) against
   ``wb.dense.psnr`` (torchmetrics' ``peak_signal_noise_ratio``): the same values, cost no more. ``wb.dense.ssim``
   *is* torchmetrics' SSIM, so there is nothing of ours to compare; piq, the other library, imports torchvision
   and cannot be installed beside this torch (../shared/PACKAGES.md);
3. DDIM sampling with ``dit_tiny`` (steps per second, batch ``--batch``), eager against ``torch.compile``
   (compilation time printed apart; where compile fails, e.g. without a C++ compiler, the reason is printed).

Timed round robin (``_timing.interleaved``), best of ``--repeats``; ratios printed.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_dense.py [--batch 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.data import DEGRADATIONS, PairLoader, degrade, paired
from workbench.dense import NoiseSchedule, Restoration, ddim_sample, psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=500, help="images per degradation timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sampling-steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", torch.get_num_threads())))
    data = wb.load("cifar10", "test", subset=max(args.images, args.batch))
    print(f"{torch.get_num_threads()} threads, best of {args.repeats}")

    # 1. generators against the training step
    pairs = paired(data, "gaussian", 3)
    x, y = PairLoader(pairs, batch_size=args.batch, shuffle=False).batch(torch.arange(args.batch))
    torch.manual_seed(0)
    model = wb.create_model("mirnet_tiny")
    task = Restoration("l1")
    task.check_data(model, pairs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        task.loss(model(x), (x, y)).backward()
        opt.step()

    images = data.images[:args.images]
    fns = {"step": step, **{k: (lambda k=k: degrade(images, k, 3, seed=1)) for k in DEGRADATIONS}}
    best = interleaved(fns, args.repeats)
    step_ips = args.batch / best["step"]
    print(f"mirnet_tiny training step, batch {args.batch}: {step_ips:.0f} images/s")
    for k in DEGRADATIONS:
        ips = args.images / best[k]
        print(f"  degrade {k:>16}: {ips:>8.0f} images/s, {ips / step_ips:>7.1f}x the step (goal: > 1)")

    # 2. PSNR in the task against torchmetrics
    with torch.no_grad():
        out = model(x)
    std = torch.tensor(pairs.std).view(1, -1, 1, 1)
    mean = torch.tensor(pairs.mean).view(1, -1, 1, 1)
    in_task = task.metrics(out, (x, y), torch.zeros(()))[0]["psnr"] / args.batch
    library = psnr(out * std + mean, y * std + mean).mean()
    best = interleaved({"task": lambda: task.metrics(out, (x, y), torch.zeros(())),
                        "torchmetrics": lambda: psnr(out * std + mean, y * std + mean)}, 10 * args.repeats)
    print(f"PSNR of a batch of {args.batch}: in the task {float(in_task):.4f} dB, torchmetrics {float(library):.4f} dB;"
          f" torchmetrics / task {best['torchmetrics'] / best['task']:.2f}x (goal: same value, >= 1)")

    # 3. the diffusion sampler, eager and compiled
    schedule = NoiseSchedule(1000)
    torch.manual_seed(0)
    dit = wb.create_model("dit_tiny").eval()
    shape = (args.batch, 3, 32, 32)

    def sample(fn):
        return lambda: ddim_sample(fn, schedule, shape, steps=args.sampling_steps)

    try:
        compiled = torch.compile(dit)
        t = time.perf_counter()
        sample(compiled)()
        compile_s = time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 - report why and time eager alone
        print(f"DDIM with dit_tiny: torch.compile failed here ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
              "eager only")
        best = interleaved({"eager": sample(dit)}, args.repeats)
        print(f"  eager: {args.sampling_steps / best['eager']:.1f} steps/s at batch {args.batch}")
        return
    best = interleaved({"eager": sample(dit), "compiled": sample(compiled)}, args.repeats)
    eager_sps, comp_sps = args.sampling_steps / best["eager"], args.sampling_steps / best["compiled"]
    same = torch.allclose(sample(dit)(), sample(compiled)(), atol=1e-3)
    print(f"DDIM with dit_tiny, batch {args.batch}: eager {eager_sps:.1f} steps/s, compiled {comp_sps:.1f} steps/s: "
          f"{comp_sps / eager_sps:.2f}x (first call compiles: {compile_s:.0f} s); same samples: {same}")


if __name__ == "__main__":
    main()
