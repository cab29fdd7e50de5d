"""Figures (plotly) and interactive explorers (ipywidgets), with static fallbacks."""
from .env import check_environment, frontend, widgets_available
from .figures import image_grid, training_curves
from .live import LivePlot

__all__ = ["image_grid", "training_curves", "LivePlot", "frontend", "widgets_available", "check_environment"]
