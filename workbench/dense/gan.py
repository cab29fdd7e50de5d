"""The adversarial half of SRGAN (Ledig et al., arXiv:1609.04802) as an algorithm of ``wb.fit``.

The generator trains through ``fit`` with its task (``Restoration``: pixel and feature losses); :class:`Adversary`
adds the adversarial term ``weight * BCE(D(G(x)), real)`` to the generator's loss after the task's loss, and once
the generator's gradients are computed (after backward, with ``D`` as it was) takes one step of the discriminator
on the batch's real images against the generator's outputs (``BCE(D(y), real) + BCE(D(G(x)), fake)``), with an
optimizer of its own (its gradients from the generator's loss are discarded first). So the two-player
game is two updates per step inside the one loop, not a loop of its own, and ``fit``'s checkpoints carry the
discriminator and its optimizer: a resumed run ends bit-identical (tested). The history gets ``adv`` (the
generator's adversarial loss) and ``d_loss``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..train.events import Algorithm, State

__all__ = ["Adversary"]


class Adversary(Algorithm):
    """A discriminator trained against the generator (see the module docstring).

    Args:
        discriminator: maps images to one logit per image (``sr_discriminator``).
        weight: the adversarial term's weight in the generator's loss (SRGAN: 1e-3).
        lr, betas: the discriminator's Adam.
    """

    def __init__(self, discriminator: nn.Module, weight: float = 1e-3, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999)):
        if weight < 0 or lr <= 0:
            raise ValueError(f"weight must be >= 0 and lr > 0, got weight={weight}, lr={lr}")
        super().__init__(weight=float(weight), lr=float(lr), betas=list(betas),
                         discriminator=getattr(discriminator, "model_name", type(discriminator).__name__))
        self.d, self.weight, self.lr, self.betas = discriminator, float(weight), float(lr), tuple(betas)
        self.opt: torch.optim.Optimizer | None = None

    def on_init(self, state: State) -> None:
        self.d.to(state.device).train()
        self.opt = torch.optim.Adam(self.d.parameters(), lr=self.lr, betas=self.betas)

    def on_after_loss(self, state: State) -> None:
        logits = self.d(state.outputs)
        adv = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))
        state.loss = state.loss + self.weight * adv
        state.logs["adv"] = adv.detach()

    def on_after_backward(self, state: State) -> None:
        # the generator's gradients are computed (with the discriminator as it was); now the discriminator's step
        real, fake = state.batch[1], state.outputs.detach()
        lr_, lf = self.d(real), self.d(fake)
        loss = F.binary_cross_entropy_with_logits(lr_.float(), torch.ones_like(lr_, dtype=torch.float32)) + \
            F.binary_cross_entropy_with_logits(lf.float(), torch.zeros_like(lf, dtype=torch.float32))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        state.logs["d_loss"] = loss.detach()

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"d.{k}": v.detach().clone() for k, v in self.d.state_dict().items()}
        if self.opt is not None:
            for i, p in enumerate(self.d.parameters()):
                for k, v in self.opt.state.get(p, {}).items():
                    out[f"opt.{i}.{k}"] = v.detach().clone() if isinstance(v, torch.Tensor) else v
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.d.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("d.")})
        params = list(self.d.parameters())
        for k, v in state.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                st = self.opt.state.setdefault(params[int(i)], {})
                st[name] = v.to(params[int(i)].device) if isinstance(v, torch.Tensor) else v
