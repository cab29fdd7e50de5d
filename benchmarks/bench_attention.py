"""HaloNet's blocked local attention (``wb.models.halonet.halo_attention``, arXiv 2103.12731) against what
a user would otherwise write:

(i)  the naive reference ``halo_attention_naive``: a Python loop over the query blocks, each attending to
     its neighbourhood cropped to the image;
(ii) ``F.scaled_dot_product_attention`` over the whole flattened image with a boolean mask that lets each
     query see only its block's ``(block + 2 halo)^2`` neighbourhood (the mask, ``(H W)^2`` booleans, is
     built once outside the timed call, as a user would cache it; its size is printed).

For each size: the largest output difference from ours (goal ~1e-6 at float32), the time of a forward
pass without autograd (round robin, best of ``--repeats``; ratios > 1 mean ours is faster), and the peak
memory each call allocates above its inputs (ratios > 1 mean ours needs less). Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on the CPU the allocator's own
allocation and free events recorded by ``torch.profiler`` (``profile_memory=True``), summed in time
order, so every tensor the call allocates counts, kernel-internal scratch included. With ``--train`` the
forward and backward pass is timed too. Wall-clock numbers are reported, never asserted.

Run:  python benchmarks/bench_attention.py [--repeats 3] [--device cpu|cuda] [--train]
"""
from __future__ import annotations

import argparse
import contextlib
import os

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench.models.halonet import halo_attention, halo_attention_naive


def block_mask(h: int, w: int, block: int, halo: int, device) -> torch.Tensor:
    """[H*W, H*W] bool: query pixel p may attend to key pixel k iff k lies in p's block grown by ``halo``."""
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    def near(a):  # [n, n]: key index within the query's block +- halo, along one axis
        lo = (a // block * block - halo)[:, None]
        return (a[None, :] >= lo) & (a[None, :] < lo + block + 2 * halo)
    return (near(ys)[:, None, :, None] & near(xs)[None, :, None, :]).reshape(h * w, h * w)


def sdpa_masked(q, k, v, mask):
    b, heads, h, w, _ = q.shape
    out = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3), attn_mask=mask)
    return out.view(b, heads, h, w, -1)


@contextlib.contextmanager
def _quiet_stderr():  # the profiler prints start/stop lines on the C stderr
    fd = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def peak_bytes(fn, device: torch.device) -> int:
    """Peak memory allocated by ``fn()`` above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def run(batch, heads, size, d, block, halo, repeats, device, train):
    g = torch.Generator(device=device).manual_seed(size + halo)
    q, k, v = (torch.randn(batch, heads, size, size, d, generator=g, device=device) for _ in range(3))
    mask = block_mask(size, size, block, halo, device)
    fns = {"ours": lambda: halo_attention(q, k, v, block, halo),
           "naive loop": lambda: halo_attention_naive(q, k, v, block, halo),
           "SDPA + mask": lambda: sdpa_masked(q, k, v, mask)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"\n{size}x{size} image, batch {batch}, {heads} heads, d {d}, block {block}, halo {halo} "
          f"(each query sees {(block + 2 * halo) ** 2} of {size * size} keys; SDPA's boolean mask "
          f"{mask.numel() / 2 ** 20:.0f} MiB)")
    with torch.no_grad():
        ref = fns["ours"]()
        outs = {name: fn() for name, fn in fns.items()}
        timed = {name: (lambda f=fn: (f(), sync())) for name, fn in fns.items()}
        t = interleaved(timed, repeats)
        mem = {name: peak_bytes(fn, device) for name, fn in fns.items()}
    print(f"   {'method':14s} {'max |diff|':>11s} {'forward ms':>11s} {'time / ours':>12s} {'peak MiB':>9s} "
          f"{'mem / ours':>11s}")
    for name in fns:
        diff = float((outs[name] - ref).abs().max())
        print(f"   {name:14s} {diff:11.1e} {t[name] * 1e3:11.1f} {t[name] / t['ours']:11.2f}x "
              f"{mem[name] / 2 ** 20:9.1f} {mem[name] / mem['ours']:10.2f}x")
    if train:
        qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
        step = {"ours": lambda: halo_attention(qg, kg, vg, block, halo),
                "naive loop": lambda: halo_attention_naive(qg, kg, vg, block, halo),
                "SDPA + mask": lambda: sdpa_masked(qg, kg, vg, mask)}
        tt = interleaved({n: (lambda f=f: (f().square().sum().backward(), sync())) for n, f in step.items()}, repeats)
        print("   forward + backward: "
              + ", ".join(f"{n} {s * 1e3:.0f} ms ({s / tt['ours']:.2f}x)" for n, s in tt.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--train", action="store_true", help="also time forward + backward")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}; torch {torch.__version__}; {torch.get_num_threads()} CPU thread(s)")
    for size, halo in ((32, 2), (64, 3)):
        run(8, 4, size, 16, 8, halo, args.repeats, device, args.train)


if __name__ == "__main__":
    main()
