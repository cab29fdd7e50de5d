"""Plotly figures used across notebooks. Computing stays elsewhere; these only draw."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch


def to_rgb_array(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` images (1 or 3 channels) as ``[N, H, W, 3]`` NumPy arrays for ``go.Image``."""
    arr = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def image_grid(images: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
               classes: Sequence[str] | None = None, cols: int = 8, title: str | None = None,
               predictions: Sequence[int] | torch.Tensor | None = None, titles: Sequence[str] | None = None):
    """A grid of uint8 images ``[N, C, H, W]`` with their class names (and predictions) as titles,
    or with the given ``titles``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"image_grid takes uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    n = len(images)
    rows = -(-n // cols)
    names = []
    for i in range(n):
        t = ""
        if labels is not None:
            lab = int(labels[i])
            t = classes[lab] if classes is not None else str(lab)
        if predictions is not None:
            p = int(predictions[i])
            t += f" → {classes[p] if classes is not None else p}"
        names.append(titles[i] if titles is not None else t)
    fig = make_subplots(rows=rows, cols=min(cols, n), subplot_titles=names, horizontal_spacing=0.01,
                        vertical_spacing=0.06)
    arr = to_rgb_array(images)
    for i in range(n):
        fig.add_trace(go.Image(z=arr[i], hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=110 * rows + 40, width=min(cols, n) * 100 + 40, margin=dict(l=10, r=10, t=40, b=10),
                      title=title)
    return fig


def training_curves(history, metrics: Iterable[str] = ("loss", "acc"), title: str | None = None):
    """Train and test curves per epoch from a history table (``TrainResult.history``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = list(metrics)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m for m in metrics])
    for j, m in enumerate(metrics):
        for split, dash in (("train", None), ("test", "dash")):
            col = f"{split}_{m}"
            if col in history and history[col].notna().any():
                fig.add_trace(go.Scatter(x=history["epoch"], y=history[col], name=col, mode="lines+markers",
                                         line=dict(dash=dash)), row=1, col=j + 1)
        fig.update_xaxes(title_text="epoch", row=1, col=j + 1)
    fig.update_layout(height=320, title=title, margin=dict(l=40, r=10, t=50, b=40))
    return fig


def similarity_heatmap(matrix, title: str | None = None, zmax: float = 1.0):
    """A layer-by-layer similarity matrix (rows: model A's layers, columns: model B's)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.values, x=list(matrix.columns), y=list(matrix.index), zmin=0, zmax=zmax,
                               colorscale="Viridis", colorbar=dict(title="CKA")))
    fig.update_layout(height=420, title=title, yaxis_autorange="reversed", xaxis_tickangle=-45)
    return fig
