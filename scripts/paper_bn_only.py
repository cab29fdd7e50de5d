"""Paper-scale runs for *Training BatchNorm and Only BatchNorm* on a GPU, as a wb.sweep.

The grid is depth x seed x policy. For each depth and seed, one packed network trains one
member per policy still to run (bn_only, full, random_per_channel, random_anywhere) with the
open_lth recipe (SGD momentum 0.9, lr 0.1, x0.1 at epochs 80 and 120, 160 epochs, batch 128,
weight decay 1e-4, crop and flip); every member starts from the same random network and sees
the same batches. Each member's result is one JSON record under --out (default
results/bn_only/), named resnet14-bn_only-seed0.json as before; a rerun skips the complete ones.

    WORKBENCH_DATA_DIR=../shared/data python scripts/paper_bn_only.py --depths 14 32 --budget-min 8
    ... --backend ray                     # every GPU of this machine, one depth per GPU
    ... --backend ray --address auto      # a Ray cluster started with `ray start --head`

Runs that would pass the time budget stop at an epoch boundary and are recorded with
``complete: false`` and the epochs they ran (a rerun runs them again); a depth that would start
with less than 30 s of budget left is not started and stays pending.
"""
from __future__ import annotations

import argparse
import functools
import platform
import time

import torch

import workbench as wb
from workbench import bn_only
from workbench.models import PackedCifarResNet
from workbench.models.resnet_cifar import CifarResNet
from workbench.sweep import BACKENDS

PAPER_EPOCHS = 160


def record_stem(c: dict) -> str:
    """The file names the script has always used (plus the epochs when they are not the paper's)."""
    return (f"resnet{c['depth']}-{c['policy']}{'-out' if c['train_output'] else ''}-seed{c['seed']}"
            + ("" if c["epochs_planned"] == PAPER_EPOCHS else f"-e{c['epochs_planned']}"))


def train_policies(depth: int, policy: list[str], seed: int, epochs_planned: int, train_output: bool, *,
                   deadline: float, precision: str = "auto", compile: str = "reduce-overhead", eval_every: int = 10,
                   max_steps: int | None = None) -> list[dict] | None:
    """One packed ResNet of ``depth``, a member per policy, trained; one record per policy (None: no budget left)."""
    left = deadline - time.time()
    if left < 30:
        print(f"resnet{depth} seed {seed}: not started, {left:.0f} s of budget left", flush=True)
        return None
    dev = wb.device()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train, test = wb.load("cifar10", "train"), wb.load("cifar10", "test")  # decoded once, then from the cache
    recipe = wb.train.recipe("open_lth", epochs=epochs_planned)
    torch.manual_seed(seed)
    lone = bn_only.init_batchnorm(CifarResNet(depth), "pytorch")
    compile_mode = None if compile == "none" or dev.type != "cuda" else compile

    def train_packed(compile_mode):
        """A fresh packed model from ``lone`` (so a failed compile leaves no half-trained state), trained."""
        packed = PackedCifarResNet(depth, len(policy)).load_members([lone] * len(policy))
        summaries, kw = bn_only.configure_packed(packed, policy, train_output=train_output, seed=seed)
        res = wb.fit(packed, train, test, seed=seed, precision=precision, compile=compile_mode or False,
                     eval_every=eval_every, progress=False, stop_after_seconds=deadline - time.time() - 20,
                     max_steps=max_steps, **recipe, **kw)
        return res, summaries

    t0 = time.perf_counter()
    try:
        res, summaries = train_packed(compile_mode)
    except Exception as e:  # a compiler failure must not lose the run: train eagerly instead
        if compile_mode is None:
            raise
        print(f"compile failed ({type(e).__name__}: {str(e)[:300]}); training eagerly", flush=True)
        compile_mode = None
        res, summaries = train_packed(None)
    wall = time.perf_counter() - t0
    h = res.history
    ev = wb.evaluate(res.model, test)
    epochs_done = int(h["epoch"].iloc[-1]) if len(h) else 0
    steps = int(h["step"].iloc[-1]) if len(h) else 0
    print(f"resnet{depth} seed {seed}: {epochs_done}/{epochs_planned} epochs in {wall:.0f} s "
          f"({1000 * wall / max(steps, 1):.2f} ms per packed step of {len(policy)} members)", flush=True)
    records = []
    for g, (p, s) in enumerate(zip(policy, summaries)):
        member = res.model.member(g)
        gam = bn_only.gamma_fractions(member, thresholds=(0.01, 0.05, 0.1))
        dis = bn_only.disabled_features(member, test, max_examples=2000)
        records.append({
            "paper": 48, "model": f"resnet{depth}", "trainable": s.trainable, "recipe": "open_lth",
            "recipe_args": dict(recipe), "epochs": epochs_done,
            "complete": epochs_done == epochs_planned and max_steps is None,
            "test_acc": ev["acc_members"][g],
            "gamma_fraction_below": {str(t): float(gam[(gam.layer == "all") & (gam.threshold == t)]["fraction"].iloc[0])
                                     for t in (0.01, 0.05, 0.1)},
            "disabled_fraction": float(dis[dis.layer == "all"]["fraction"].iloc[0]),
            "precision": precision, "compile": compile_mode, "packed_members": len(policy),
            "wall_seconds": wall,  # training time of the packed network, as before
        })
        print(f"  {p:20s} test acc {records[-1]['test_acc']:.4f}  |gamma|<0.1: "
              f"{records[-1]['gamma_fraction_below']['0.1']:.3f}  disabled: {records[-1]['disabled_fraction']:.3f}",
              flush=True)
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", type=int, nargs="+", default=[14, 32])
    ap.add_argument("--policies", nargs="+", default=list(bn_only.POLICIES))
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=PAPER_EPOCHS)
    ap.add_argument("--budget-min", type=float, default=8.0, help="wall-clock budget for all training")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", default="reduce-overhead", help="torch.compile mode, or 'none'")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--train-output", action="store_true")
    ap.add_argument("--commit", default=None, help="default: WORKBENCH_COMMIT, else git rev-parse HEAD")
    ap.add_argument("--out", default=None, help="default: results/bn_only of the checkout (WORKBENCH_RESULTS_DIR)")
    ap.add_argument("--max-steps", type=int, default=None, help="for a quick check of the script")
    ap.add_argument("--backend", choices=BACKENDS, default="inprocess",
                    help="inprocess: one after another; ray: in parallel, one packed network per GPU")
    ap.add_argument("--address", default=None, help="a Ray cluster ('auto', 'ray://head:10001'); with --backend ray")
    ap.add_argument("--gpus-per-config", type=float, default=None,
                    help="GPUs per packed network on Ray (default 1 when there are GPUs)")
    ap.add_argument("--refresh", action="store_true", help="run complete configurations again")
    args = ap.parse_args(argv)
    if args.address is not None and args.backend != "ray":
        ap.error("--address needs --backend ray")

    t_start = time.time()
    dev = wb.device()
    device_name = torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"driver on {dev} ({device_name}), torch {torch.__version__}", flush=True)
    fn = functools.partial(train_policies, deadline=t_start + 60 * args.budget_min, precision=args.precision,
                           compile=args.compile, eval_every=args.eval_every, max_steps=args.max_steps)
    grid = {"depth": args.depths, "seed": args.seeds, "policy": args.policies, "epochs_planned": [args.epochs],
            "train_output": [args.train_output]}
    ray_kw = {}
    if args.backend == "ray":
        ray_kw = {"address": args.address, "gpus_per_config": args.gpus_per_config}
    table = wb.sweep(fn, grid, study="bn_only", folder=args.out, pack="policy", name=record_stem,
                     backend=args.backend, refresh=args.refresh, commit=args.commit, **ray_kw)
    if len(table):
        print(table[["model", "policy", "seed", "epochs", "complete", "test_acc", "file"]].to_string(index=False))
    print(f"total {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
