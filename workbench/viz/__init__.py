"""Figures (plotly) and interactive explorers (ipywidgets), with static fallbacks."""
from .env import check_environment, frontend, widgets_available
from .explorer import explorer
from .bn_only import accuracy_by_depth, attribution_grid, disabled_by_layer, gamma_histogram
from .figures import image_grid, similarity_heatmap, to_rgb_array, training_curves
from .live import LivePlot

__all__ = ["explorer", "similarity_heatmap", "image_grid", "to_rgb_array", "training_curves", "accuracy_by_depth", "gamma_histogram", "disabled_by_layer",
           "attribution_grid", "LivePlot", "frontend", "widgets_available", "check_environment"]
