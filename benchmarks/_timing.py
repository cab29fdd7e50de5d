"""Timing shared by the benchmarks: each contender once per round, round robin, best of the rounds."""
from __future__ import annotations

import time


def interleaved(fns: dict, repeats: int) -> dict:
    """Best time of each function over ``repeats`` rounds, one call of each per round, after a warm-up
    round: whichever runs first in a cold process is slower (the allocator and oneDNN's caches warm
    up), so no contender is timed only before the others."""
    best = dict.fromkeys(fns, float("inf"))
    for r in range(repeats + 1):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r:
                best[name] = min(best[name], time.perf_counter() - t)
    return best
