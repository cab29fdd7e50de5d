"""Training dynamics and theory (issue 22): training-recipe switches for ``wb.fit``, scaling a model family
at an equal budget, annealed gradient noise, and the statistics of networks at initialization beside the
closed forms of effective theory.
"""
from .noise import *  # noqa: F401,F403
from .recipe import *  # noqa: F401,F403
from .largebatch import *  # noqa: F401,F403
from . import largebatch, noise, recipe, theory

__all__ = [*noise.__all__, *recipe.__all__, *largebatch.__all__, "theory"]
