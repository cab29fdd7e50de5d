"""Knowledge between networks: distillation (and, with the group's issue, stitching, merging, continual learning).

>>> teacher = wb.train_model("resnet20", train, epochs=10).model                     # doctest: +SKIP
>>> student = wb.create_model("resnet8")                                              # doctest: +SKIP
>>> wb.fit(student, train, test, task=wb.transfer.Distillation(teacher, temperature=4))  # doctest: +SKIP
"""
from .distill import Distillation, distillation_loss

__all__ = ["Distillation", "distillation_loss"]
