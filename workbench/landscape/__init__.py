"""Loss landscapes: directions in weight space, 1-D and 2-D slices, sharpness, plots.

>>> dx, dy = wb.landscape.random_direction(model, 0), wb.landscape.random_direction(model, 1)  # doctest: +SKIP
>>> land = wb.landscape.slice_2d(model, dx, dy, batches)                                        # doctest: +SKIP
>>> wb.landscape.contour(land)                                                                  # doctest: +SKIP

Every slice passes through the model (its centre is the model's own loss) and leaves the model
untouched; the BatchNorm treatment (``bn="eval"`` running statistics, or ``"train"``) is
recorded with each result. References: Li et al., *Visualizing the Loss Landscape of Neural
Nets*, NeurIPS 2018 (filter normalization, PCA of trajectories); Foret et al., *Sharpness-Aware
Minimization*, ICLR 2021 (the epsilon-ball measure).
"""
from .directions import (check_direction, filter_normalize, hessian_directions, interpolation, norm,
                         pca_directions, random_direction)
from .plots import contour, explorer, lines, surface
from .sharpness import WorstCase, dominant_eigenvalue, worst_case_increase
from .slices import Landscape, evaluate_points, grid, slice_1d, slice_2d

__all__ = ["random_direction", "filter_normalize", "interpolation", "pca_directions", "hessian_directions",
           "check_direction", "norm", "Landscape", "grid", "evaluate_points", "slice_1d", "slice_2d",
           "dominant_eigenvalue", "worst_case_increase", "WorstCase", "surface", "contour", "lines", "explorer"]
