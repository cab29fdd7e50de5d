"""Image-text models: a small text encoder, a two-tower CLIP-style model, and a VQA model.

* :class:`TextEncoder`: word embeddings and learned positions, then a small pre-norm transformer
  (``kind="transformer"``, the text tower of CLIP in miniature: its features at the ``<eos>`` token) or a
  GRU (``kind="gru"``: its last hidden state before the padding); the tokens come from
  :func:`workbench.data.scenes.tokenize`.
* :class:`TwoTower` (``clip_tiny``): a CIFAR ResNet trunk for images (its pooled features) and a text encoder,
  each followed by a linear projection into a shared space of ``embed_dim``, L2-normalized, and a learnable
  temperature stored as ``logit_scale = log(1 / T)`` (CLIP's initialization, T = 0.07). ``word_head`` adds a
  linear layer from the image embedding to the vocabulary: the predictive (bag-of-words) objective CLIP was
  compared with.
* :class:`VQANet` (``vqa_tiny``): RSVQA's model in miniature: image features and a question encoding
  projected to the same width, fused by an element-wise product, then a classifier over the answers;
  ``image=False`` is the question-only baseline that exposes the answers' priors.

Radford et al., *Learning Transferable Visual Models From Natural Language Supervision* (arXiv:2103.00020);
Lobry, Marcos, Murray & Tuia, *RSVQA: Visual Question Answering for Remote Sensing Data* (arXiv:2003.07333).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import CifarResNet

TEXT_KINDS = ("transformer", "gru")
PAD, EOS = 0, 2  # the ids of <pad> and <eos> in workbench.data.scenes.VOCAB


class TextEncoder(nn.Module):
    """Token ids ``[B, L]`` (0 = padding) -> features ``[B, width]``."""

    def __init__(self, vocab: int, width: int = 64, layers: int = 2, heads: int = 4, context: int = 24,
                 kind: str = "transformer"):
        super().__init__()
        if kind not in TEXT_KINDS:
            raise ValueError(f"kind is one of {', '.join(TEXT_KINDS)}, got {kind!r}")
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        self.kind, self.context, self.width = kind, context, width
        self.embed = nn.Embedding(vocab, width, padding_idx=PAD)
        if kind == "transformer":
            self.pos = nn.Parameter(torch.zeros(context, width))
            nn.init.normal_(self.pos, std=0.01)
            layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(width)
        else:
            self.rnn = nn.GRU(width, width, num_layers=layers, batch_first=True)
        self.hook_tokens = HookPoint()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not (isinstance(tokens, torch.Tensor) and tokens.ndim == 2 and not tokens.is_floating_point()):
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"the text encoder takes token ids [batch, length] (wb.data.scenes.tokenize), got {got}")
        if tokens.shape[1] > self.context:
            raise ValueError(f"captions of {tokens.shape[1]} tokens are longer than the context of {self.context}: "
                             f"tokenize with length <= {self.context} or build the model with a longer context")
        pad = tokens == PAD
        lengths = (~pad).sum(1).clamp(min=1)                                   # [B]
        h = self.embed(tokens)                                                 # [B, L, width]
        if self.kind == "transformer":
            h = h + self.pos[:tokens.shape[1]]
            h = self.norm(self.blocks(h, src_key_padding_mask=pad))
            h = self.hook_tokens(h)
        else:
            h = self.hook_tokens(self.rnn(h)[0])
        return h[torch.arange(len(tokens), device=tokens.device), lengths - 1]  # the last real token (<eos>)


class TwoTower(WorkbenchModel):
    def __init__(self, vocab: int, in_chans: int = 3, depth: int = 8, width: int = 16, text_width: int = 64,
                 text_layers: int = 2, text_kind: str = "transformer", context: int = 24, embed_dim: int = 64,
                 word_head: bool = False, num_classes: int = 0):
        super().__init__()
        self.in_chans, self.num_classes, self.vocab = in_chans, num_classes, vocab
        self.image = CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
        self.image.fc = nn.Identity()
        self.text = TextEncoder(vocab, text_width, text_layers, 4, context, text_kind)
        self.image_proj = nn.Linear(4 * width, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_width, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.word_head = nn.Linear(embed_dim, vocab) if word_head else None
        self.hook_image, self.hook_text = HookPoint(), HookPoint()

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.check_input(x)
        e = self.hook_image(self.image_proj(self.image(x)))                   # [B, D]
        return F.normalize(e, dim=-1) if normalize else e

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        e = self.hook_text(self.text_proj(self.text(tokens)))                 # [B, D]
        return F.normalize(e, dim=-1) if normalize else e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images alone give their normalized embeddings ``[B, D]`` (texts go through :meth:`encode_text`)."""
        return self.encode_image(x)


@register_model
def clip_tiny(vocab: int = 0, in_chans: int = 3, depth: int = 8, width: int = 16, text_width: int = 64,
              text_layers: int = 2, text_kind: str = "transformer", context: int = 24, embed_dim: int = 64,
              word_head: bool = False, num_classes: int = 0) -> TwoTower:
    """A two-tower image-text model: a CIFAR ResNet and a small text transformer (or GRU) projected into one
    space, with CLIP's learnable temperature; ``vocab=0`` takes the scene grammar's vocabulary."""
    if vocab == 0:
        from ..data.scenes import VOCAB
        vocab = len(VOCAB)
    return TwoTower(vocab, in_chans, depth, width, text_width, text_layers, text_kind, context, embed_dim,
                    word_head, num_classes)


class VQANet(WorkbenchModel):
    """``forward(images, questions)`` -> answer logits; see the module docstring."""

    def __init__(self, vocab: int, answers: int, in_chans: int = 3, depth: int = 8, width: int = 16,
                 text_width: int = 64, fused: int = 128, image: bool = True, context: int = 24):
        super().__init__()
        self.in_chans, self.num_classes, self.use_image = in_chans, answers, image
        self.image = CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
        self.image.fc = nn.Identity()
        self.question = TextEncoder(vocab, text_width, 1, 4, context, "gru")
        self.image_proj = nn.Linear(4 * width, fused)
        self.question_proj = nn.Linear(text_width, fused)
        self.classifier = nn.Sequential(nn.ReLU(), nn.Linear(fused, fused), nn.ReLU(), nn.Linear(fused, answers))
        self.hook_fused = HookPoint()

    def forward(self, x: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        q = torch.tanh(self.question_proj(self.question(questions)))          # [B, fused]
        v = torch.tanh(self.image_proj(self.image(x))) if self.use_image else torch.ones_like(q)
        return self.classifier(self.hook_fused(v * q))                         # [B, answers]


@register_model
def vqa_tiny(vocab: int = 0, answers: int = 2, in_chans: int = 3, depth: int = 8, width: int = 16,
             text_width: int = 64, fused: int = 128, image: bool = True, context: int = 24) -> VQANet:
    """RSVQA's fusion model in miniature (element-wise product of image and question features); ``image=False``:
    the question-only baseline."""
    if vocab == 0:
        from ..data.scenes import VOCAB
        vocab = len(VOCAB)
    return VQANet(vocab, answers, in_chans, depth, width, text_width, fused, image, context)
