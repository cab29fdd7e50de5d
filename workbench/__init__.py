"""ResNet Paper Workbench: the thin package behind the notebooks.

>>> import workbench as wb
>>> wb.config.get_mode() in wb.config.MODES
True

The curated public API:

* :mod:`wb.config` — mode (smoke | laptop | paper), device, seed, folders.
* :mod:`wb.data` — ``load(name, split)``, ``Loader`` (batches with augmentation on tensors).
* :mod:`wb.models` — ``create_model(name)``, ``list_models()``, hook points.
* :mod:`wb.probe` — ``run_with_cache(model, x, names)``.
* :mod:`wb.train` — ``fit(...)`` over a task and algorithms at named events, ``evaluate``, recipes, checkpoints.
* :mod:`wb.transfer` — distillation (one teacher or an ensemble), dataset reinforcement, stitching, merging, continual learning.
* :mod:`wb.generate` — small image generators (VAE, DCGAN, PPCA mixture) trained in minutes, and sampling.
* :mod:`wb.dynamics` — training dynamics and theory: recipe switches, scaling a model family, gradient noise, statistics at initialization.
* :mod:`wb.sequence` — sequences and video: gradients through time, gradient clipping, sparse recurrent weights (models in ``wb.models``, clips in ``wb.data``).
* :mod:`wb.vl` — vision and language: contrastive and ranking tasks, zero-shot by prompts and descriptions, retrieval metrics, box IoU, NMS, RoIAlign.
* :mod:`wb.dense` — dense prediction and restoration: PSNR, SSIM, the effective receptive field, restoration as a task.
* :mod:`wb.shift` — shifted and poisoned data: test-time adaptation (BatchNorm re-estimation, TENT, EcoTTA) with its memory, and unlearnable training data.
* :mod:`wb.ssl` — self-supervised objectives (tasks of ``fit``), batched views, and the evaluation of a representation.
* :mod:`wb.bn_only` — BatchNorm-only training policies and their analysis.
* :mod:`wb.hessian` — Hessian eigenvalues, trace and spectral density of a model's loss.
* :mod:`wb.landscape` — loss-landscape directions, 1-D / 2-D slices, sharpness, plots.
* :mod:`wb.quant` — number formats, fake-quantized layers, calibration (AdaQuant, ZeroQ), mixed precision.
* :mod:`wb.prune` — pruning masks (random, ERK, magnitude, SNIP) and sparse training through ``fit``.
* :mod:`wb.attention` — multi-resolution training with scale consistency (ResFormer, a task of ``fit``),
  accuracy across resolutions, attention-map tools.
* :mod:`wb.nas` — search spaces as data, NASNet-cell and multi-stage-ViT supernets, ``SampleArch`` for ``fit``,
  random, evolutionary and Optuna search (the one search loop; ``wb.quant.joint_search`` runs on it).
* :mod:`wb.viz` — plotly figures, live plots, widget detection.
* :func:`wb.setup` — the first cell of every notebook.
* :func:`wb.cached` — expensive results on disk, keyed by configuration.
"""
__version__ = "0.1.0"

from . import attention, attribution, bn_only, catalog, config, data, dense, dynamics, exercises, generate, hessian, guidance, landscape, models, multilabel, nas, probe, prune, quant, results, sequence, shift, similarity, ssl, train, transfer, viz, vl
from .cache import cached
from .sweep import sweep, sweep_folder
from .config import by_mode, device, seed_everything
from .data import load
from .models import create_model, list_models
from .probe import run_with_cache
from .notebook import setup
from .train import evaluate, fit, train_model

__all__ = ["__version__", "attention", "dense", "dynamics", "sequence", "vl", "generate", "ssl", "shift", "transfer", "guidance", "hessian", "landscape", "multilabel", "nas", "prune", "quant", "attribution", "results", "similarity", "bn_only", "config", "data", "models", "probe", "train", "viz", "cached", "by_mode", "device",
           "seed_everything", "load", "create_model", "list_models", "run_with_cache", "fit", "evaluate", "train_model", "setup", "sweep", "sweep_folder"]
