"""Paper-scale runs for *Training BatchNorm and Only BatchNorm* on a GPU.

For each depth, one packed network trains one member per policy (bn_only, full,
random_per_channel, random_anywhere) with the open_lth recipe (SGD momentum 0.9,
lr 0.1, x0.1 at epochs 80 and 120, 160 epochs, batch 128, weight decay 1e-4, crop
and flip); every member starts from the same random network and sees the same
batches. Each member's result is written as a small JSON record under --out.

    WORKBENCH_DATA_DIR=../shared/data python scripts/paper_bn_only.py --depths 14 32 --budget-min 8

Runs that would pass the time budget stop at an epoch boundary and are recorded
with ``complete: false`` and the epochs they ran.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

import workbench as wb
from workbench import bn_only
from workbench.models import PackedCifarResNet
from workbench.models.resnet_cifar import CifarResNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", type=int, nargs="+", default=[14, 32])
    ap.add_argument("--policies", nargs="+", default=list(bn_only.POLICIES))
    ap.add_argument("--epochs", type=int, default=160)
    ap.add_argument("--budget-min", type=float, default=8.0, help="wall-clock budget for all training")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", default="reduce-overhead", help="torch.compile mode, or 'none'")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-output", action="store_true")
    ap.add_argument("--commit", default=None, help="default: git rev-parse HEAD, else WORKBENCH_COMMIT")
    ap.add_argument("--out", default="results/bn_only")
    ap.add_argument("--max-steps", type=int, default=None, help="for a quick check of the script")
    args = ap.parse_args()

    if args.commit is None:
        import subprocess
        try:
            args.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            args.commit = os.environ.get("WORKBENCH_COMMIT", "unknown")
    t_start = time.perf_counter()
    deadline = t_start + 60 * args.budget_min
    dev = wb.device()
    device_name = torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"device {dev} ({device_name}), torch {torch.__version__}", flush=True)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train, test = wb.load("cifar10", "train"), wb.load("cifar10", "test")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = wb.train.recipe("open_lth", epochs=args.epochs)
    for depth in args.depths:
        left = deadline - time.perf_counter()
        if left < 30:
            print(f"resnet{depth}: skipped, {left:.0f} s of budget left", flush=True)
            continue
        torch.manual_seed(args.seed)
        lone = bn_only.init_batchnorm(CifarResNet(depth), "pytorch")
        compile_mode = None if args.compile == "none" or dev.type != "cuda" else args.compile

        def train_packed(compile_mode):
            """A fresh packed model from ``lone`` (so a failed compile leaves no half-trained state), trained."""
            packed = PackedCifarResNet(depth, len(args.policies)).load_members([lone] * len(args.policies))
            summaries, kw = bn_only.configure_packed(packed, args.policies, train_output=args.train_output,
                                                     seed=args.seed)
            res = wb.fit(packed, train, test, seed=args.seed, precision=args.precision, compile=compile_mode or False,
                         eval_every=args.eval_every, progress=False,
                         stop_after_seconds=deadline - time.perf_counter() - 20, max_steps=args.max_steps,
                         **recipe, **kw)
            return res, summaries

        t0 = time.perf_counter()
        try:
            res, summaries = train_packed(compile_mode)
        except Exception as e:  # a compiler failure must not lose the run: train eagerly instead
            if compile_mode is None:
                raise
            print(f"compile failed ({type(e).__name__}: {str(e)[:300]}); training eagerly", flush=True)
            res, summaries = train_packed(None)
        wall = time.perf_counter() - t0
        h = res.history
        ev = wb.evaluate(res.model, test)
        epochs_done = int(h["epoch"].iloc[-1]) if len(h) else 0
        steps = int(h["step"].iloc[-1]) if len(h) else 0
        print(f"resnet{depth}: {epochs_done}/{args.epochs} epochs in {wall:.0f} s "
              f"({1000 * wall / max(steps, 1):.2f} ms per packed step of {len(args.policies)} members)", flush=True)
        for g, (policy, s) in enumerate(zip(args.policies, summaries)):
            member = res.model.member(g)
            gam = bn_only.gamma_fractions(member, thresholds=(0.01, 0.05, 0.1))
            dis = bn_only.disabled_features(member, test, max_examples=2000)
            record = {
                "paper": 48, "model": f"resnet{depth}", "policy": policy, "train_output": args.train_output,
                "trainable": s.trainable, "recipe": "open_lth", "recipe_args": {k: v for k, v in recipe.items()},
                "epochs": epochs_done, "epochs_planned": args.epochs,
                "complete": epochs_done == args.epochs and args.max_steps is None,
                "test_acc": ev["acc_members"][g], "seed": args.seed,
                "gamma_fraction_below": {str(t): float(gam[(gam.layer == "all") & (gam.threshold == t)]["fraction"].iloc[0])
                                         for t in (0.01, 0.05, 0.1)},
                "disabled_fraction": float(dis[dis.layer == "all"]["fraction"].iloc[0]),
                "device": device_name, "precision": args.precision, "compile": compile_mode,
                "packed_members": len(args.policies), "wall_seconds": wall, "torch": torch.__version__,
                "commit": args.commit, "date": datetime.date.today().isoformat(),
            }
            path = out_dir / f"resnet{depth}-{policy}{'-out' if args.train_output else ''}-seed{args.seed}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(path)
            print(f"  {policy:20s} test acc {record['test_acc']:.4f}  |gamma|<0.1: "
                  f"{record['gamma_fraction_below']['0.1']:.3f}  disabled: {record['disabled_fraction']:.3f}", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
