"""Two small stateful algorithms written outside ``workbench/train`` against the documented interface,
as a paper group would write its own: the tests use them to check composition, checkpointed state
and resume after SIGKILL."""
from __future__ import annotations

import torch

import workbench as wb


class GradientNoise(wb.train.Algorithm):
    """Gaussian noise of standard deviation ``std`` added to every gradient, from its own generator."""

    def __init__(self, std: float = 0.01, seed: int = 0):
        super().__init__(std=std, seed=seed)
        self.std, self.gen = std, torch.Generator().manual_seed(seed)

    def on_after_backward(self, state):
        for p in state.trainable.values():
            if p.grad is not None:
                p.grad += self.std * torch.randn(p.shape, generator=self.gen).to(p.grad)

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, d):
        self.gen.set_state(d["gen"])


class WeightAverage(wb.train.Algorithm):
    """An exponential moving average of the trained weights, updated after every step."""

    def __init__(self, decay: float = 0.9):
        super().__init__(decay=decay)
        self.decay, self.avg, self.updates = decay, {}, 0

    def on_after_step(self, state):
        with torch.no_grad():
            for n, p in state.trainable.items():
                if n not in self.avg:
                    self.avg[n] = p.detach().clone()
                else:
                    self.avg[n].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
        self.updates += 1

    def state_dict(self):
        return {"updates": self.updates, **{f"avg.{n}": t for n, t in self.avg.items()}}

    def load_state_dict(self, d):
        self.updates = d["updates"]
        self.avg = {k[4:]: v.clone() for k, v in d.items() if k.startswith("avg.")}
