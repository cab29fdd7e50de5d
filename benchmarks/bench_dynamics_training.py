"""What a training-recipe switch and adversarial training cost per step, against plain training.

In one process, on the same data and model (ResNet-20 on CIFAR-10 batches of ``--batch``), the seconds per
step of ``wb.fit`` with:

* plain training;
* each recipe switch of ``wb.dynamics.SWITCHES`` alone (fit arguments cost nothing; the algorithms EMA,
  RandAugment and NoDecay, and the model options squeeze-and-excitation, ResNet-D, stochastic depth and
  dropout, cost what they add);
* ordinary FGSM adversarial training (``StaleAdversarial(staleness=0)``: the attack with the current weights,
  then a step on the clean and adversarial batch together) and ConAdv's stale-weight version (``staleness=1``).

Timed round robin (``_timing.interleaved``), best of ``--repeats``, each a run of ``--steps`` steps; the ratio
to plain is printed. ``critical_path_gradients`` is printed beside the adversarial rows: the gradient
computations per step that must run one after the other. On one device nothing runs concurrently, so the
stale version costs what the fresh one costs; ConAdv's saving (the attack on other workers, concurrently
with the previous step) needs a second device. Issue 22's goal for stale-weight training, within 1.2x of
plain per step "on one device", is therefore not met by this implementation on one device, and the
benchmark says so rather than hiding it.

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
    adversarial = {"FGSM, fresh weights": StaleAdversarial(train.mean, train.std, 2.0, staleness=0),
                   "FGSM, stale weights (ConAdv)": StaleAdversarial(train.mean, train.std, 2.0, staleness=1)}
    for name, alg in adversarial.items():
        arms[name] = arm(algorithms=[alg])
    best = interleaved(arms, args.repeats)
    per_step = {k: v / args.steps for k, v in best.items()}
    print(f"{args.model}, batch {args.batch}, {args.steps} steps per run, best of {args.repeats}, device {dev}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'arm':34s} {'ms/step':>9s} {'x plain':>8s}")
    for k, v in per_step.items():
        extra = f"   critical-path gradients per step: {adversarial[k].critical_path_gradients}" \
            if k in adversarial else ""
        print(f"{k:34s} {1000 * v:9.1f} {v / per_step['plain']:8.2f}{extra}")
    stale = per_step["FGSM, stale weights (ConAdv)"] / per_step["plain"]
    fresh = per_step["FGSM, fresh weights"] / per_step["plain"]
    print(f"\nstale-weight adversarial: {stale:.2f}x plain per step on one device (issue 22's goal 1.2x needs the "
          f"attack on a second device, concurrently: not met here); fresh: {fresh:.2f}x (goal about 2x). Both "
          "train on twice the images per step (clean and adversarial) after one attack pass.")


if __name__ == "__main__":
    main()
