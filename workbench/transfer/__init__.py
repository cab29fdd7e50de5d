"""Knowledge between networks: distillation and continual learning (and, with the group's issue, stitching,
merging and dataset reinforcement).

>>> teacher = wb.train_model("resnet20", train, epochs=10).model                     # doctest: +SKIP
>>> student = wb.create_model("resnet8")                                              # doctest: +SKIP
>>> wb.fit(student, train, test, task=wb.transfer.Distillation(teacher, temperature=4))  # doctest: +SKIP
"""
from .continual import *  # noqa: F401,F403
from .distill import Distillation, distillation_loss
from . import continual, distill

__all__ = ["Distillation", "distillation_loss", *continual.__all__]
