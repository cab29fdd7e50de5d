"""What a training-recipe switch and adversarial training cost per step, against plain training.

In one process, on the same data and model (ResNet-20 on CIFAR-10 batches of ``--batch``), the seconds per
step of ``wb.fit`` with:

* plain training;
* each recipe switch of ``wb.dynamics.SWITCHES`` alone (fit arguments cost nothing; the algorithms EMA,
  RandAugment and NoDecay, and the model options squeeze-and-excitation, ResNet-D, stochastic depth and
  dropout, cost what they add);
* ordinary FGSM adversarial training (``StaleAdversarial(staleness=0)``: the attack with the current weights,
  then the step), ConAdv's stale-weight version made in turn with the step (``staleness=1``), and the same made
  concurrently (``concurrent=True``: the next batch's attack on a worker thread, on a side CUDA stream on a
  GPU, while this step trains), each training on the adversarial batch alone (``mix="adversarial"``: one
  batch per step, as plain training) and on the clean and adversarial batch together (``mix="both"``: twice
  the images per step).

Timed round robin (``_timing.interleaved``), best of ``--repeats``, each a run of ``--steps`` steps; the ratio
to plain is printed, and beside the adversarial rows the gradient computations per step that ran one after
the other (``critical_path_gradients`` where the attack ran concurrently, else 2). Issue 22's goals: stale-weight adversarial within
1.2x of plain per step on one device, ordinary adversarial about 2x. The concurrent version can only get there
where one step leaves the device idle part of the time (a GPU with a small network); on a CPU one step
already keeps every core busy, and the attack's thread competes with it. Measured here (2026-12-07, two
threads of an Intel Xeon, ResNet-20, batch 128, adversarial batch alone, two runs): fresh 1.72x and 1.75x,
stale in turn 1.73x and 1.76x, stale concurrent 1.89x and 1.95x; the GPU measurement is still to be made.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_dynamics_training.py [--steps 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

import torch

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.dynamics import SWITCHES, StaleAdversarial, training_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default="resnet20")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", torch.get_num_threads())))
    train = wb.load("cifar10", "train", subset=args.batch * args.steps, seed=0)
    dev = wb.device()

    def arm(model_kwargs=None, algorithms=(), **fit_kwargs):
        def run():
            torch.manual_seed(0)
            model = wb.create_model(args.model, **(model_kwargs or {}))
            kw = dict(epochs=1, batch_size=args.batch, lr=0.05, progress=False, seed=0, device=dev)
            kw.update(fit_kwargs)
            wb.fit(model, train, algorithms=list(algorithms), **kw)
        return run

    arms = {"plain": arm()}
    for name in SWITCHES:
        p = training_recipe([name], epochs=1, mean=train.mean, std=train.std)
        fit_kw = {k: v for k, v in p.fit_kwargs.items() if k not in ("epochs", "batch_size", "lr")}
        arms[f"+{name}"] = arm(p.model_kwargs, p.algorithms, **fit_kw)
    adversarial = {}
    for mix in ("adversarial", "both"):
        for name, kw in (("fresh", dict(staleness=0)), ("stale, in turn", dict(staleness=1)),
                         ("stale, concurrent", dict(staleness=1, concurrent=True))):
            adversarial[f"FGSM {name} ({mix})"] = StaleAdversarial(train.mean, train.std, 2.0, mix=mix, **kw)
    for name, alg in adversarial.items():
        arms[name] = arm(algorithms=[alg])
    best = interleaved(arms, args.repeats)
    per_step = {k: v / args.steps for k, v in best.items()}
    print(f"{args.model}, batch {args.batch}, {args.steps} steps per run, best of {args.repeats}, device {dev}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'arm':38s} {'ms/step':>9s} {'x plain':>8s}")
    for k, v in per_step.items():
        alg = adversarial.get(k)
        extra = "" if alg is None else \
            f"   gradients in sequence per step: {alg.critical_path_gradients if alg.concurrent else 2}"
        print(f"{k:38s} {1000 * v:9.1f} {v / per_step['plain']:8.2f}{extra}")
    ratio = {k: per_step[k] / per_step["plain"] for k in adversarial}
    print(f"\nadversarial batch alone: stale-weight (ConAdv) {ratio['FGSM stale, concurrent (adversarial)']:.2f}x "
          f"plain per step made concurrently, {ratio['FGSM stale, in turn (adversarial)']:.2f}x in turn (goal "
          f"1.2x on one device); fresh {ratio['FGSM fresh (adversarial)']:.2f}x (goal about 2x). Clean and "
          f"adversarial together: {ratio['FGSM stale, concurrent (both)']:.2f}x, "
          f"{ratio['FGSM stale, in turn (both)']:.2f}x and {ratio['FGSM fresh (both)']:.2f}x.")

if __name__ == "__main__":
    main()
