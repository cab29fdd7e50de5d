"""Clip classifiers over per-frame CNN features: LRCN, mean pooling, temporal convolutions (Temporal-Inception)
and temporal-segment LSTMs (TS-LSTM), on one stream or two.

Donahue et al., *Long-term Recurrent Convolutional Networks for Visual Recognition and Description*
(arXiv:1411.4389): a CNN reads every frame, an LSTM reads the frame features in order. Ma, Chen, Kira &
AlRegib, *TS-LSTM and Temporal-Inception* (arXiv:1703.10667): over the same per-frame features, an LSTM per
temporal segment, or parallel temporal convolutions of several widths, against mean pooling.

Input: a clip as a **filmstrip** ``[B, C, frames * H, W]`` (frames stacked top to bottom, as
:mod:`workbench.data.video` stores them); the model splits it with its own ``frames``.

* ``trunk``: a CIFAR ResNet of ``depth`` and ``width`` (``resnet_cifar`` without its classifier) shared by
  all frames: features ``[B, T, 4 * width]``.
* ``stream``: ``"rgb"`` (the frames), ``"diff"`` (frame differences ``x_t - x_{t-1}``, zero at ``t = 0``: the
  cheap stand-in for optical flow), or ``"two"``: a trunk and a head for each, their logits averaged (the
  two-stream networks' late fusion).
* ``head``: ``"mean"`` (a linear classifier on every frame's features, logits averaged over time: mean pooling),
  ``"lstm"`` / ``"gru"`` (LRCN: the classifier reads the last step's hidden state), ``"segments"`` (TS-LSTM:
  ``segments`` contiguous segments each with its own LSTM, their final states averaged), ``"tconv"``
  (Temporal-Inception: parallel 1-D convolutions over time of widths ``kernel_sizes``, concatenated, a ReLU
  if ``tconv_relu``, mean over time, then the classifier).

Hook points: ``hook_features`` (``[B, T, F]`` per-frame features of the first stream), ``hook_steps``
(per-step logits ``[B, T, classes]`` for the mean and recurrent heads: what the clip looks like after ``t``
frames).
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .base import WorkbenchModel
from .hooks import HookPoint
from .resnet_cifar import CifarResNet

HEADS = ("mean", "lstm", "gru", "segments", "tconv")
STREAMS = ("rgb", "diff", "two")


def frame_differences(frames: torch.Tensor) -> torch.Tensor:
    """``[B, T, C, H, W]`` frames -> ``x_t - x_{t-1}`` with zeros at ``t = 0``."""
    return torch.cat([torch.zeros_like(frames[:, :1]), frames[:, 1:] - frames[:, :-1]], dim=1)


class TemporalHead(nn.Module):
    """Per-frame features ``[B, T, F]`` -> clip logits ``[B, classes]`` (and per-step logits where defined)."""

    def __init__(self, head: str, features: int, num_classes: int, hidden: int, segments: int,
                 kernel_sizes: tuple[int, ...], tconv_channels: int, tconv_relu: bool, frames: int):
        super().__init__()
        self.head, self.segments, self.tconv_relu = head, segments, tconv_relu
        self.hook_steps = HookPoint()
        if head == "mean":
            self.fc = nn.Linear(features, num_classes)
        elif head in ("lstm", "gru"):
            self.rnn = (nn.LSTM if head == "lstm" else nn.GRU)(features, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, num_classes)
        elif head == "segments":
            if not 1 <= segments <= frames:
                raise ValueError(f"segments must lie in 1..frames ({frames}), got {segments}")
            self.rnns = nn.ModuleList(nn.LSTM(features, hidden, batch_first=True) for _ in range(segments))
            self.fc = nn.Linear(hidden, num_classes)
        else:
            if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
                raise ValueError(f"kernel_sizes are odd widths >= 1 (same-length convolutions over time), got "
                                 f"{kernel_sizes}")
            self.convs = nn.ModuleList(nn.Conv1d(features, tconv_channels, k, padding=k // 2) for k in kernel_sizes)
            self.fc = nn.Linear(tconv_channels * len(kernel_sizes), num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # f: [B, T, F]
        if self.head == "mean":
            steps = self.hook_steps(self.fc(f))                       # [B, T, classes]
            return steps.mean(1)
        if self.head in ("lstm", "gru"):
            h = self.rnn(f)[0]                                         # [B, T, hidden]
            steps = self.hook_steps(self.fc(h))                       # [B, T, classes]
            return steps[:, -1]
        if self.head == "segments":
            chunks = torch.tensor_split(f, self.segments, dim=1)       # contiguous segments of frames
            last = torch.stack([rnn(c)[0][:, -1] for rnn, c in zip(self.rnns, chunks)], 0).mean(0)  # [B, hidden]
            return self.fc(last)
        z = torch.cat([conv(f.transpose(1, 2)) for conv in self.convs], dim=1)  # [B, channels * branches, T]
        if self.tconv_relu:
            z = torch.relu(z)
        return self.fc(z.mean(2))


class VideoClassifier(WorkbenchModel):
    def __init__(self, num_classes: int = 8, in_chans: int = 3, frames: int = 8, frame_size: int = 32,
                 head: str = "lstm", stream: str = "rgb", depth: int = 8, width: int = 16, hidden: int = 64,
                 segments: int = 2, kernel_sizes: tuple[int, ...] = (1, 3, 5), tconv_channels: int = 32,
                 tconv_relu: bool = True):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head is one of {', '.join(HEADS)}, got {head!r}")
        if stream not in STREAMS:
            raise ValueError(f"stream is one of {', '.join(STREAMS)}, got {stream!r}")
        if not (isinstance(frames, int) and frames >= 1):
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        self.in_chans, self.num_classes, self.frames, self.frame_size = in_chans, num_classes, frames, frame_size
        self.head_kind, self.stream = head, stream
        self.hook_features = HookPoint()
        n_streams = 2 if stream == "two" else 1
        self.trunks = nn.ModuleList(CifarResNet(depth, num_classes=1, in_chans=in_chans, width=width)
                                    for _ in range(n_streams))
        for t in self.trunks:
            t.fc = nn.Identity()  # the trunk gives pooled features
        self.heads = nn.ModuleList(TemporalHead(head, 4 * width, num_classes, hidden, segments, tuple(kernel_sizes),
                                                tconv_channels, tconv_relu, frames) for _ in range(n_streams))

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_chans:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} takes filmstrips [batch, {self.in_chans}, frames * H, W] "
                             f"(wb.load('motion')), got {got}")
        if x.shape[2] != self.frames * self.frame_size or x.shape[3] != self.frame_size:
            raise ValueError(f"{type(self).__name__} was built for {self.frames} frames of {self.frame_size}x"
                             f"{self.frame_size} (a strip of {self.frames * self.frame_size}x{self.frame_size}), got "
                             f"{x.shape[2]}x{x.shape[3]}; create it with frames= and frame_size= of the data")

    def frame_features(self, frames: torch.Tensor, trunk: nn.Module) -> torch.Tensor:
        b, t = frames.shape[:2]
        f = trunk(frames.reshape(b * t, *frames.shape[2:]).contiguous())   # [B*T, F]
        return f.view(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b, c, th, w = x.shape
        frames = x.reshape(b, c, self.frames, self.frame_size, w).transpose(1, 2)  # [B, T, C, H, W]
        inputs = {"rgb": [frames], "diff": [frame_differences(frames)],
                  "two": [frames, frame_differences(frames)]}[self.stream]
        logits = []
        for i, (inp, trunk, head) in enumerate(zip(inputs, self.trunks, self.heads)):
            f = self.frame_features(inp, trunk)                                  # [B, T, F]
            if i == 0:
                f = self.hook_features(f)
            logits.append(head(f))
        return torch.stack(logits, 0).mean(0)                                  # [B, classes]


@register_model
def video_net(num_classes: int = 8, in_chans: int = 3, frames: int = 8, frame_size: int = 32, head: str = "lstm",
              stream: str = "rgb", depth: int = 8, width: int = 16, hidden: int = 64, segments: int = 2,
              kernel_sizes: tuple[int, ...] = (1, 3, 5), tconv_channels: int = 32,
              tconv_relu: bool = True) -> VideoClassifier:
    """A clip classifier: a per-frame CIFAR ResNet trunk, then a temporal ``head`` (mean pooling, LRCN's LSTM or
    a GRU, TS-LSTM's segments, Temporal-Inception's convolutions) on the frames, their differences, or both."""
    return VideoClassifier(num_classes, in_chans, frames, frame_size, head, stream, depth, width, hidden, segments,
                           kernel_sizes, tconv_channels, tconv_relu)
