"""Knowledge between networks: distillation from one teacher or an ensemble (with MEAL V2's
discriminator), dataset reinforcement, stitching, merging by permutations and least squares, and
continual learning with hypernetworks.

>>> teacher = wb.train_model("resnet20", train, epochs=10).model                     # doctest: +SKIP
>>> student = wb.create_model("resnet8")                                              # doctest: +SKIP
>>> wb.fit(student, train, test, task=wb.transfer.Distillation(teacher, temperature=4))  # doctest: +SKIP
"""
from .continual import *  # noqa: F401,F403
from .distill import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .reinforce import *  # noqa: F401,F403
from .stitch import *  # noqa: F401,F403
from . import continual, distill, merge, reinforce, stitch

__all__ = [*continual.__all__, *distill.__all__, *merge.__all__, *reinforce.__all__, *stitch.__all__]
