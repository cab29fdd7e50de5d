"""An image-to-caption LSTM: LRCN's description model in miniature (``caption_lstm``).

Donahue et al., *Long-term Recurrent Convolutional Networks for Visual Recognition and Description*
(arXiv:1411.4389), section 5: a CNN reads the image once; an LSTM language model emits the caption one word at
a time, each step reading the previous word (teacher forcing in training, its own greedy choice in decoding)
and the image. With ``h_t, c_t = LSTM([embed(w_{t-1}); v], (h_{t-1}, c_{t-1}))`` and
``p(w_t | w_{<t}, image) = softmax(W h_t + b)``, the training loss is the next-word cross-entropy
``-1/T sum_t log p(w_t | w_{<t}, image)`` (:class:`workbench.sequence.CaptionTask`).

* ``trunk``: a CIFAR ResNet of ``depth`` and ``width`` (``resnet_cifar`` without its classifier): pooled
  features ``[B, 4 * width]``, projected to ``image_dim`` (``v``, after a ReLU).
* ``condition``: how the image enters the language model. ``"input"`` (LRCN's way, its "LRCN1u"): ``v`` is
  concatenated to the word embedding at **every** step. ``"init"``: ``v`` sets the LSTM's first state
  (``h_0 = tanh(A v)``, ``c_0 = 0``) and the inputs are the words alone (the Show-and-Tell way).
* ``image=False``: the image is never read (``v = 0``, the trunk is skipped): a plain LSTM language model of
  the captions, the **caption prior** a captioner must beat.

Hook points: ``hook_image`` (``v``, ``[B, image_dim]``), ``hook_steps`` (next-word logits ``[B, T, vocab]``).
Tokens come from :func:`workbench.data.scenes.tokenize` (``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2).
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import CifarResNet

CONDITIONS = ("input", "init")


class CaptionLSTM(WorkbenchModel):
    """``forward(images [B, C, H, W], tokens [B, T])`` -> next-word logits ``[B, T, vocab]`` (see the module
    docstring); :meth:`start` and :meth:`step` run it one word at a time for decoding."""

    def __init__(self, vocab: int, in_chans: int = 3, depth: int = 8, width: int = 16, image_dim: int = 64,
                 embed_dim: int = 32, hidden: int = 128, condition: str = "input", image: bool = True):
        super().__init__()
        if condition not in CONDITIONS:
            raise ValueError(f"condition is one of {', '.join(CONDITIONS)}, got {condition!r}")
        for name, v in (("vocab", vocab), ("image_dim", image_dim), ("embed_dim", embed_dim), ("hidden", hidden)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.in_chans, self.num_classes, self.vocab = in_chans, vocab, vocab
        self.condition, self.use_image, self.image_dim, self.hidden = condition, bool(image), image_dim, hidden
        self.trunk = CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
        self.trunk.fc = nn.Identity()
        self.image_proj = nn.Linear(4 * width, image_dim)
        self.embed = nn.Embedding(vocab, embed_dim, padding_idx=0)
        rnn_in = embed_dim + (image_dim if condition == "input" else 0)
        self.rnn = nn.LSTM(rnn_in, hidden, batch_first=True)
        self.init_proj = nn.Linear(image_dim, hidden) if condition == "init" else None
        self.out = nn.Linear(hidden, vocab)
        self.hook_image, self.hook_steps = HookPoint(), HookPoint()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> ``v`` ``[B, image_dim]`` (zeros when the model is image-blind)."""
        self.check_input(x)
        if not self.use_image:
            return self.hook_image(x.new_zeros(len(x), self.image_dim))
        return self.hook_image(torch.relu(self.image_proj(self.trunk(x))))

    def _check_tokens(self, tokens: torch.Tensor, batch: int) -> None:
        if not (isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and not tokens.is_floating_point()):
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"{type(self).__name__} reads token ids [batch, length] (wb.data.scenes.tokenize), "
                             f"got {got}")
        if len(tokens) != batch:
            raise ValueError(f"{len(tokens)} captions for {batch} images: give one caption per image")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab):
            raise ValueError(f"token ids must lie in 0..{self.vocab - 1} (the model's vocab), got "
                             f"{int(tokens.min())}..{int(tokens.max())}")

    def start(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's first state ``(h_0, c_0)``, each ``[1, B, hidden]``."""
        zeros = v.new_zeros(1, len(v), self.hidden)
        if self.condition == "init":
            return torch.tanh(self.init_proj(v))[None], zeros
        return zeros, zeros.clone()

    def step(self, tokens: torch.Tensor, v: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Words ``[B, T]`` (one or more steps) from ``state`` -> logits ``[B, T, vocab]`` and the new state."""
        e = self.embed(tokens)                                                  # [B, T, embed]
        if self.condition == "input":
            e = torch.cat([e, v[:, None].expand(-1, tokens.shape[1], -1)], -1)  # [B, T, embed + image_dim]
        h, state = self.rnn(e, state)                                           # [B, T, hidden]
        return self.out(h), state

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        v = self.encode(x)
        self._check_tokens(tokens, len(x))
        logits, _ = self.step(tokens, v, self.start(v))
        return self.hook_steps(logits)                                          # [B, T, vocab]


@register_model
def caption_lstm(vocab: int = 0, in_chans: int = 3, depth: int = 8, width: int = 16, image_dim: int = 64,
                 embed_dim: int = 32, hidden: int = 128, condition: str = "input", image: bool = True,
                 num_classes: int = 0) -> CaptionLSTM:
    """LRCN's captioner: a CIFAR ResNet's features condition an LSTM language model (``condition="input"``: at
    every step, ``"init"``: its first state); ``image=False`` is the image-blind caption prior. ``vocab=0`` takes
    the scene grammar's vocabulary; ``num_classes`` is ignored (``train_model`` passes the dataset's)."""
    if vocab == 0:
        from ..data.scenes import VOCAB
        vocab = len(VOCAB)
    return CaptionLSTM(vocab, in_chans, depth, width, image_dim, embed_dim, hidden, condition, image)
