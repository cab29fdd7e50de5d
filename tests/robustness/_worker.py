"""Subprocess worker for the kill tests: trains or writes a cache entry, and can be made to hang
at a chosen point so that the parent kills it there with SIGKILL."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)


def hang_here(marker: str) -> None:
    Path(marker).write_text("ready")
    time.sleep(600)


def pause_at_step(model, x, y, logits):
    """An extra loss of zero; with WB_HANG_AT=k set, the k-th call signals and hangs."""
    pause_at_step.calls = getattr(pause_at_step, "calls", 0) + 1
    if os.environ.get("WB_HANG_AT") and pause_at_step.calls == int(os.environ["WB_HANG_AT"]):
        hang_here(os.environ["WB_MARKER"])
    return torch.zeros((), device=logits.device)


def guided_pause(guidance):
    """Guidance (an algorithm of wb.fit) plus the hang point of :func:`pause_at_step`, before its term."""
    class GuidedPause(type(guidance)):
        def on_after_loss(self, state):
            pause_at_step(state.model, state.batch[0], state.batch[1], state.outputs)
            super().on_after_loss(state)

    guidance.__class__ = GuidedPause
    return guidance


def train(ckpt: str, policy: str, out: str | None) -> None:
    import workbench as wb

    train_ds = wb.load("shapes", "train", subset=768)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8)
    kw, extra = {}, pause_at_step
    if policy == "guided":  # a ResNet guide for a plain net, guidance only for the first 7 steps
        torch.manual_seed(1)
        guide = wb.create_model("resnet8", width=8)
        model = wb.create_model("plain8", width=8)
        extra = guided_pause(wb.guidance.Guidance(guide, model, alpha=1.0, steps=7))
    elif policy == "stateful":  # two algorithms with state: a noise generator and an average of the weights
        from tests.reference.algorithms import GradientNoise, WeightAverage
        kw = {"algorithms": [GradientNoise(0.02, seed=4), WeightAverage(0.7)]}
    elif policy != "none":
        kw = wb.bn_only.configure(model, policy, seed=0).fit_kwargs()
    res = wb.fit(model, train_ds, epochs=2, batch_size=128, lr=0.1, weight_decay=1e-3, progress=False, seed=0,
                 checkpoint_dir=ckpt or None, checkpoint_every=2, extra_loss=extra, **kw)
    if out:
        from workbench.train.checkpoint import save_checkpoint
        algs = {f"alg{i}.{k}": v for i, a in enumerate(kw.get("algorithms", []))
                for k, v in (a.state_dict() or {}).items() if isinstance(v, torch.Tensor)}
        save_checkpoint(Path(out), res.model, meta={"history": res.history.to_dict(orient="list")},
                        extra_tensors=algs)


def cache_write(cache_dir: str, slow: str) -> None:
    import workbench as wb
    from workbench import cache

    if slow == "hang":  # write half of the temporary file, then hang before the rename
        real = os.fdopen

        class Half:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                hang_here(os.environ["WB_MARKER"])

            def __getattr__(self, k):
                return getattr(self.f, k)

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return self.f.__exit__(*a)

        cache.os.fdopen = lambda fd, mode: Half(real(fd, mode))
    value = wb.cached(lambda: {"x": torch.arange(200_000, dtype=torch.float64)}, key="shared", name="kill",
                      cache_dir=cache_dir)
    assert torch.equal(value["x"], torch.arange(200_000, dtype=torch.float64))
    print("ok")


def checkpoint_write(folder: str, hang_at: str) -> None:
    """Save checkpoint A, then checkpoint B, hanging halfway through B's ``hang_at``-th file write
    (1: its tensors, 2: its JSON sidecar)."""
    import workbench as wb
    from workbench import cache
    from workbench.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=4)
    save_checkpoint(Path(folder) / "ckpt-000000002", model, meta={"global_step": 2})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real, count = os.fdopen, [0]

    def fdopen(fd, mode):
        count[0] += 1
        f = real(fd, mode)
        if count[0] != int(hang_at):
            return f

        class Half:
            def write(self, data):
                f.write(data[: len(data) // 2])
                f.flush()
                hang_here(os.environ["WB_MARKER"])

            def __getattr__(self, k):
                return getattr(f, k)

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return f.__exit__(*a)

        return Half()

    cache.os.fdopen = fdopen
    save_checkpoint(Path(folder) / "ckpt-000000004", model, meta={"global_step": 4})


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ckpt":
        checkpoint_write(sys.argv[2], sys.argv[3])
    elif cmd == "train":
        train(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif cmd == "cache":
        cache_write(sys.argv[2], sys.argv[3])
