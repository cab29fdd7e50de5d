"""A 21x21 filter-normalized loss slice: wb.landscape against loss-landscapes and a naive loop.

Same model (ResNet-20, BatchNorm in evaluation mode, running statistics of CIFAR-10), same
images as one batch, same two directions for wb and the loop, one process:

* the forward-only bound: 441 x the time of one forward pass over the data (no work beyond
  the forward passes themselves), and each method's speed as a fraction of it;
* the loop a user would write: a copy of the model, ``load_state_dict`` of the perturbed
  weights per point, evaluate;
* ``wb.landscape.slice_2d``: functional calls on the perturbed weights (on a GPU, vmapped over
  chunks of points);
* PyPI ``loss-landscapes`` 3.0.6 ``random_plane`` (its own directions), and its defects, each
  shown on the same model: where its grid lies relative to the model, what its ``distance``
  does, what it does to the caller's model, and what its "random" directions look like.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_landscape.py [--n 256] [--steps 21] [--device cuda]
Goals (issue 5): agreement with the loop to 1e-6 and a centre equal to the model's own loss;
on a CPU at least 0.9 of the forward-only bound; on a GPU at least 3x faster than the loop.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import workbench as wb

sys.path.insert(0, os.path.dirname(__file__))
from bench_hessian import setup, sync  # noqa: E402  (same model and images as the Hessian benchmark)


def naive_loop(model, x, y, dx, dy, alphas):
    m = copy.deepcopy(model).eval()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = np.zeros((len(alphas), len(alphas)))
    with torch.no_grad():
        for i, b in enumerate(alphas):
            for j, a in enumerate(alphas):
                sd = m.state_dict()
                for n, t in base.items():
                    sd[n] = t + float(a) * dx[n] + float(b) * dy[n]
                m.load_state_dict(sd)
                out[i, j] = float(F.cross_entropy(m(x), y))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--untrained", action="store_true",
                    help="use the untrained ResNet-20 (loss-landscapes then crashes, see part 2)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", os.cpu_count() or 1)))
    warnings.simplefilter("ignore")
    dev = args.device
    model, x, y = setup(args.n, dev, not args.untrained)
    L = wb.landscape
    alphas = L.grid(1.0, args.steps)
    P = len(alphas) ** 2
    dx, dy = L.random_direction(model, 0), L.random_direction(model, 1)
    with torch.no_grad():
        own = float(F.cross_entropy(model(x), y))
        model(x)
        sync(dev)
        t = time.perf_counter()
        for _ in range(10):
            model(x)
        sync(dev)
        t_fwd = (time.perf_counter() - t) / 10
    bound = P * t_fwd
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}; ResNet-20, {args.n} images, "
          f"{len(alphas)}x{len(alphas)} grid; the model's own loss {own:.4f}")
    print(f"forward-only bound: {P} x {t_fwd * 1e3:.1f} ms = {bound:.2f} s")

    t = time.perf_counter()
    loop = naive_loop(model, x, y, dx, dy, alphas)
    t_loop = time.perf_counter() - t
    ours = L.slice_2d(model, dx, dy, [(x, y)], alphas, progress=False)
    t_ours = ours.seconds
    c = len(alphas) // 2
    print("1. Speed (fraction of the forward-only bound; higher is better, 1.0 = nothing but forward passes):")
    print(f"   naive load_state_dict loop        {t_loop:7.2f} s   {bound / t_loop:5.2f}")
    print(f"   wb.landscape.slice_2d             {t_ours:7.2f} s   {bound / t_ours:5.2f}   "
          f"({t_loop / t_ours:.2f}x the loop; goal CPU >= 0.9 of the bound, GPU >= 3x the loop)")
    print(f"   wb vs loop: largest difference {np.abs(ours.loss - loop).max():.1e} (goal <= 1e-6); centre "
          f"{ours.loss[c, c]:.6f} = the model's loss {ours.center_loss:.6f}: {ours.loss[c, c] == ours.center_loss}")

    try:
        import loss_landscapes
        from loss_landscapes.metrics import Loss
        from loss_landscapes.model_interface.model_parameters import rand_u_like
        from loss_landscapes.model_interface.model_wrapper import wrap_model
    except ImportError:
        print("loss-landscapes is not installed (pip install loss-landscapes): nothing more to compare")
        return
    metric = Loss(F.cross_entropy, x, y)
    torch.manual_seed(0)
    t = time.perf_counter()
    try:
        with torch.no_grad():
            ll = loss_landscapes.random_plane(model, metric, distance=0.5, steps=args.steps, normalization="filter",
                                              deepcopy_model=True)
    except ZeroDivisionError:
        print("   loss-landscapes 3.0.6 crashed (ZeroDivisionError): its filter normalization divides by the norm of "
              "a bias vector, zero in this model (BatchNorm's beta before training); run without --untrained")
        return
    t_ll = time.perf_counter() - t
    print(f"   loss-landscapes 3.0.6             {t_ll:7.2f} s   {bound / t_ll:5.2f}   (its own directions)")

    print("2. loss-landscapes' defects, on the same model:")
    print(f"   its grid's centre value {ll[c, c]:.4f}, the model's loss {own:.4f}")
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    seen = []

    class Where:   # a metric that records how far each grid point lies from the model
        def __call__(self, wrapper):
            now = torch.cat([p.detach().reshape(-1) for p in wrapper.modules[0].parameters()])
            seen.append(float((now - theta).norm() / theta.norm()))
            return 0.0

    for distance in (1.0, 2.0):
        seen.clear()
        torch.manual_seed(0)
        loss_landscapes.random_plane(model, Where(), distance=distance, steps=args.steps, normalization="filter",
                                     deepcopy_model=True)
        print(f"   distance={distance:g}: nearest grid point {min(seen):.4f} x |theta| from the model (0 would be "
              f"on it), farthest {max(seen):.3f} x |theta|")
    print("   -> the grid misses the model, and a larger `distance` gives a smaller grid (its scaling is inverted)")
    victim = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in victim.named_parameters()}
    loss_landscapes.random_plane(victim, Loss(F.cross_entropy, x, y), distance=1.0, steps=3, normalization="filter")
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in victim.named_parameters())
    flags = sum(p.requires_grad for p in victim.parameters())
    print(f"   with deepcopy_model=False (its default) the caller's model was moved by up to {moved:.3g} per weight "
          f"and {len(before) - flags} of its {len(before)} parameters no longer require gradients")
    fresh = wb.create_model("resnet20").eval()
    try:
        loss_landscapes.random_plane(fresh, Loss(F.cross_entropy, x[:8].cpu(), y[:8].cpu()), steps=3,
                                     normalization="filter", deepcopy_model=True)
        print("   an untrained ResNet-20 (BatchNorm beta = 0) works")
    except ZeroDivisionError:
        print("   on an untrained ResNet-20 it crashes (ZeroDivisionError): its filter normalization divides by the "
              "norm of a zero bias vector (BatchNorm's beta at initialization); wb sets such entries to zero")
    u = torch.cat([t.reshape(-1) for t in rand_u_like(wrap_model(copy.deepcopy(model)).get_module_parameters())])
    ours_d = torch.cat([t.reshape(-1) for t in L.random_direction(model, 0, normalize=None).values()])
    print(f"   its 'random' direction: mean {float(u.mean()):.3f}, {float((u > 0).float().mean()):.0%} positive "
          f"(uniform on [0, 1]); wb's: mean {float(ours_d.mean()):+.3f}, {float((ours_d > 0).float().mean()):.0%} "
          "positive (Gaussian, as in Li et al.)")


if __name__ == "__main__":
    main()
