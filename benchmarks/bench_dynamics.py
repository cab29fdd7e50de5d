"""Networks at initialization over many draws: batched (``wb.dynamics.theory.measure``) against a Python loop.

Three ways to get the same statistics (per-layer preactivation variance and kurtosis; with ``--ntk`` the
empirical NTK of the output) of ``--draws`` random MLPs of ``--depth`` hidden layers of ``--width`` neurons:

1. ``measure(..., batched=True)``: every draw at once, weights stacked ``[draws, out, in]``, ``torch.bmm``,
   one backward pass for all NTKs;
2. ``measure(..., batched=False)``: the same parameters, draw by draw in a Python loop (the same numbers,
   checked draw for draw);
3. what a user would otherwise write: per draw an ``nn.Sequential`` of ``nn.Linear`` layers initialized with
   ``nn.init.normal_``, a forward pass with hooks, and ``torch.autograd.grad`` for the NTK (other random
   numbers: its means are compared with 1.'s within their standard errors).

Timed round robin, best of ``--repeats``, one process; the ratios are printed (goal >= 5x). Drawing the
weights (the same normals in 1. and 2.) is printed alone: it bounds what batching can save over 2.

Run:  python benchmarks/bench_dynamics.py [--draws 1000] [--depth 10] [--width 64] [--ntk]
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
from torch import nn

from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.dynamics import theory as T


def user_loop(x, depth, width, draws, c_w, ntk, seed=0):
    """Per draw: build, initialize, forward with hooks, NTK by autograd."""
    torch.manual_seed(seed)
    n0 = x.numel()
    ks, ths = [], []
    for _ in range(draws):
        sizes = [n0] + [width] * depth + [1]
        layers = []
        for i in range(depth + 1):
            lin = nn.Linear(sizes[i], sizes[i + 1])
            nn.init.normal_(lin.weight, 0.0, math.sqrt(c_w / sizes[i]))
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.ReLU()] if i < depth else [lin]
        net = nn.Sequential(*layers)
        pres = []
        hooks = [m.register_forward_hook(lambda m, i, o: pres.append(o.detach()))
                 for m in net if isinstance(m, nn.Linear)]
        with torch.set_grad_enabled(ntk):
            f = net(x)
        for h in hooks:
            h.remove()
        ks.append([float((p * p).mean()) for p in pres])
        if ntk:
            params = list(net.parameters())
            grads = torch.autograd.grad(f.sum(), params)
            ths.append(sum(float((g * g).sum()) / (p.shape[1] if p.dim() == 2 else 1) for g, p in zip(grads, params)))
    return np.array(ks).T, (np.array(ths) if ntk else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--ntk", action="store_true", help="also the empirical NTK of the output (a backward pass)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", os.cpu_count() or 1)))
    x = torch.randn(784)
    x = (x - x.mean()) / x.std()
    kw = dict(depth=args.depth, width=args.width, activation="relu", draws=args.draws, ntk=args.ntk, seed=0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.draws} ReLU MLPs at criticality, "
          f"depth {args.depth}, width {args.width}, NTK {'on' if args.ntk else 'off'}")
    a, b = T.measure(x, batched=True, **kw), T.measure(x, batched=False, **kw)
    same = np.allclose(a.per_draw_k, b.per_draw_k, rtol=1e-4) and (not args.ntk or np.allclose(a.ntk, b.ntk, rtol=1e-4))
    print(f"   batched and loop agree draw for draw: {same}")
    ks, th = user_loop(x, args.depth, args.width, args.draws, 2.0, args.ntk)
    se = ks.std(1, ddof=1) / math.sqrt(args.draws)
    z = np.abs(ks.mean(1) - a.K) / np.hypot(se, a.K_se)
    print(f"   nn.Sequential loop vs batched, per-layer K: largest gap {z.max():.1f} standard errors"
          + (f"; NTK mean {th.mean():.2f} vs {a.ntk_mean:.2f} ± {a.ntk_mean_se:.2f}" if args.ntk else ""))
    best = interleaved({"batched": lambda: T.measure(x, batched=True, **kw),
                        "loop": lambda: T.measure(x, batched=False, **kw),
                        "nn.Sequential loop": lambda: user_loop(x, args.depth, args.width, args.draws, 2.0, args.ntk)},
                       args.repeats)
    gen = torch.Generator().manual_seed(0)
    best_sample = interleaved({"sample": lambda: T._sample(gen, args.draws, args.depth, args.width, 2.0, 0.0,
                                                           torch.float32)}, args.repeats)["sample"]
    print(f"   drawing the parameters alone (the same normals in 1. and 2.): {best_sample:.3f} s")
    for name, t in best.items():
        print(f"   {name:22s} {t:7.3f} s   {best[name] / best['batched']:6.1f}x the batched time")
    print(f"   ratio loop / batched {best['loop'] / best['batched']:.1f}x, nn.Sequential / batched "
          f"{best['nn.Sequential loop'] / best['batched']:.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
