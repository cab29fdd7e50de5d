"""Figures for the BN-only notebook."""
from __future__ import annotations

import pandas as pd
import torch

POLICY_COLORS = {"bn_only": "#1f77b4", "full": "#2ca02c", "random_per_channel": "#d62728",
                 "random_anywhere": "#ff7f0e", "bn_only+output": "#9467bd"}


def accuracy_by_depth(table: pd.DataFrame, x: str = "depth", title: str | None = None):
    """Test accuracy per policy against depth (``x="depth"``) or trainable parameters (``x="trainable"``)."""
    import plotly.express as px

    fig = px.line(table.sort_values(x), x=x, y="test_acc", color="policy", markers=True, log_x=(x == "trainable"),
                  color_discrete_map=POLICY_COLORS, hover_data=["depth", "trainable"],
                  labels={"test_acc": "test accuracy", "trainable": "trainable parameters"}, title=title)
    fig.add_hline(y=0.1, line_dash="dot", annotation_text="chance")
    fig.update_layout(height=360, yaxis_range=[0, 1])
    return fig


def gamma_histogram(gammas_by_policy: dict[str, torch.Tensor], bins: int = 60, title: str | None = None):
    """Overlaid histograms of BatchNorm gamma, one per policy."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for policy, g in gammas_by_policy.items():
        fig.add_trace(go.Histogram(x=g.numpy(), name=policy, nbinsx=bins, opacity=0.6, histnorm="probability",
                                   marker_color=POLICY_COLORS.get(policy)))
    fig.update_layout(barmode="overlay", height=340, title=title, xaxis_title="gamma", yaxis_title="fraction of channels")
    return fig


def disabled_by_layer(tables: dict[str, pd.DataFrame], title: str | None = None):
    """Fraction of disabled (always-zero) post-ReLU channels per layer, one bar group per policy."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for policy, df in tables.items():
        d = df[df.layer != "all"]
        fig.add_trace(go.Bar(x=d["layer"], y=d["fraction"], name=policy, marker_color=POLICY_COLORS.get(policy)))
    fig.update_layout(barmode="group", height=360, title=title, yaxis_title="fraction of channels disabled",
                      xaxis_tickangle=-45)
    return fig


def attribution_grid(images: torch.Tensor, maps: dict[str, torch.Tensor], classes: list[str] | None = None,
                     labels: torch.Tensor | None = None, title: str | None = None):
    """Rows: the images, then one row of attribution maps per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .figures import to_rgb_array

    n = len(images)
    rows = 1 + len(maps)
    names = [classes[int(labels[i])] if classes is not None and labels is not None else "" for i in range(n)]
    names += [f"{k}" if i == 0 else "" for k in maps for i in range(n)]
    fig = make_subplots(rows=rows, cols=n, subplot_titles=names, horizontal_spacing=0.01, vertical_spacing=0.05)
    arr = to_rgb_array(images)
    for i in range(n):
        fig.add_trace(go.Image(z=arr[i], hoverinfo="skip"), row=1, col=i + 1)
        for r, m in enumerate(maps.values()):
            fig.add_trace(go.Heatmap(z=m[i].cpu().numpy()[::-1], colorscale="Inferno", showscale=False, zmin=0, zmax=1),
                          row=r + 2, col=i + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=120 * rows + 60, width=100 * n + 60, title=title, margin=dict(l=10, r=10, t=60, b=10))
    return fig
