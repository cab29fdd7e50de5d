"""plotly views of loss landscapes: surface, contour, 1-D curves, and an explorer."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .slices import Landscape


def _z(land: Landscape, metric: str, log: bool):
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}")
    z = land.loss if metric == "loss" else 100 * land.acc
    return np.log10(np.maximum(z, 1e-12)) if (log and metric == "loss") else z


def surface(land: Landscape, metric: str = "loss", log: bool = False, title: str | None = None, zmax: float | None = None):
    """A 3-D surface of a 2-D slice (``log=True`` plots log10 of the loss)."""
    import plotly.graph_objects as go

    if land.ndim != 2:
        raise ValueError("surface needs a 2-D slice (wb.landscape.slice_2d)")
    z = _z(land, metric, log)
    if zmax is not None:
        z = np.minimum(z, zmax)
    fig = go.Figure(go.Surface(x=land.alphas, y=land.betas, z=z, colorscale="Viridis", showscale=False))
    ztitle = ("log10 " if log and metric == "loss" else "") + ("loss" if metric == "loss" else "accuracy (%)")
    fig.update_layout(title=title or land.label, height=460, margin=dict(l=0, r=0, t=40, b=0),
                      scene=dict(xaxis_title="α", yaxis_title="β", zaxis_title=ztitle))
    return fig


def contour(land: Landscape, metric: str = "loss", log: bool = False, title: str | None = None,
            path: np.ndarray | None = None, levels: int = 30):
    """Contours of a 2-D slice; ``path`` ``(n, 2)`` draws a trajectory on it (PCA coordinates)."""
    import plotly.graph_objects as go

    if land.ndim != 2:
        raise ValueError("contour needs a 2-D slice (wb.landscape.slice_2d)")
    z = _z(land, metric, log)
    fig = go.Figure(go.Contour(x=land.alphas, y=land.betas, z=z, ncontours=levels, colorscale="Viridis",
                               colorbar=dict(title="log10 loss" if log and metric == "loss" else metric)))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(symbol="x", size=10, color="red"),
                             name="the model"))
    if path is not None:
        path = np.asarray(path)
        fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name="trajectory",
                                 line=dict(color="white")))
    fig.update_layout(title=title or land.label, height=420, xaxis_title="α", yaxis_title="β",
                      margin=dict(l=50, r=20, t=40, b=40))
    return fig


def lines(lands: Mapping[str, Landscape] | Sequence[Landscape], metric: str = "loss", log: bool = False,
          title: str | None = None, beta: float | None = None):
    """1-D curves: 1-D slices, or the row of 2-D slices at ``beta`` (default 0, through the model)."""
    import plotly.graph_objects as go

    items = lands.items() if isinstance(lands, Mapping) else [(l.label, l) for l in lands]
    fig = go.Figure()
    for name, land in items:
        z = _z(land, metric, log)
        if land.ndim == 2:
            b = 0.0 if beta is None else beta
            z = z[int(np.argmin(np.abs(land.betas - b)))]
        fig.add_trace(go.Scatter(x=land.alphas, y=z, mode="lines+markers", name=name))
    ylab = ("log10 " if log and metric == "loss" else "") + ("loss" if metric == "loss" else "accuracy (%)")
    fig.update_layout(title=title or "", height=360, xaxis_title="α (filter-normalized distance)", yaxis_title=ylab,
                      margin=dict(l=50, r=20, t=40, b=40))
    return fig


def explorer(lands: Mapping[str, Landscape], log: bool = True):
    """An interactive view of several 2-D slices: choose the model, the view (contour, surface,
    the 1-D cut of every model) and the position of the cut (β from 0, through the models,
    outwards); without a widget frontend, the first view."""
    from ..viz import explorer as _explorer

    if not lands:
        raise ValueError("explorer needs at least one landscape, e.g. {'resnet20': land}")
    any_land = next(iter(lands.values()))
    betas = [round(float(b), 4) for b in any_land.betas]
    through_model = betas[len(betas) // 2:]   # 0 (through the model) first, then outwards

    def render(model: str, view: str, beta: float):
        land = lands[model]
        if view == "contour":
            return contour(land, log=log, title=f"{model}: loss contours")
        if view == "surface":
            return surface(land, log=log, title=f"{model}: loss surface")
        fig = lines(lands, log=log, beta=beta, title=f"1-D cut at β = {beta:g} (every model)")
        return fig

    return _explorer(render, model=list(lands), view=["contour", "surface", "cut at β"], beta=through_model)
