"""Architecture search: search spaces as data, weight-sharing supernets, and search strategies.

>>> import workbench as wb
>>> space = wb.nas.cell_space(blocks=2, ops=("identity", "sep_conv_3x3"))
>>> space.size() == (2 * 2 * 2 * 2 * 3 * 3 * 2 * 2) ** 2      # per cell: inputs and ops of two blocks
True

* :mod:`~workbench.nas.space` — :class:`SearchSpace`: named choices; ``sample``, ``mutate``, ``key``, ``size``.
* :mod:`~workbench.nas.cells` — NASNet cells (Zoph et al. 2018, arXiv 1707.07012): :func:`cell_space`,
  :class:`CellSupernet`, :func:`cell_network`.
* :mod:`~workbench.nas.vit_stages` — multi-stage ViTs with residual spatial reduction (ViT-ResNAS, Liao et
  al. 2021, arXiv 2109.00642): :func:`vit_stage_space`, :class:`ViTStagesSupernet`, :func:`vit_stages_network`.
* :mod:`~workbench.nas.search` — :class:`SampleArch` (supernet training in ``wb.fit``), :func:`evaluate`,
  :func:`random_search`, :func:`evolution`, :func:`optuna_search`, :func:`rank_correlation`.
* :mod:`~workbench.nas.experiments` — the notebooks' runs: the networks registered for ``wb.train_model``,
  CIFAR-10 at a smaller size (``load_resized``), ``network_run`` (one cached run as a sweep record).
"""
from . import experiments  # noqa: F401  (registers nas_cell_supernet, nas_cell_network, nas_vit_supernet, nas_vit_stages)
from .cells import OPS, CellNetwork, CellSupernet, cell_network, cell_space, genotype
from .search import (SampleArch, cached_evaluator, evaluate, evolution, optuna_search, random_search, rank_correlation,
                     recalibrate_bn)
from .space import SearchSpace, as_generator
from .vit_stages import (ResidualReduction, ViTStages, ViTStagesSupernet, stages_of, vit_stage_space,
                         vit_stages_network, vit_tiny_arch)

__all__ = ["SearchSpace", "as_generator", "OPS", "cell_space", "genotype", "CellNetwork", "CellSupernet",
           "cell_network", "vit_stage_space", "vit_tiny_arch", "stages_of", "ResidualReduction", "ViTStages",
           "ViTStagesSupernet", "vit_stages_network", "SampleArch", "evaluate", "recalibrate_bn", "cached_evaluator",
           "random_search", "evolution", "optuna_search", "rank_correlation"]
