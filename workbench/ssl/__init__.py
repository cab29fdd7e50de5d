"""Self-supervised and structured representations: pre-training objectives as tasks of ``fit``,
views made on whole batches, and the evaluation of a representation.

>>> encoder = wb.create_model("ssl_encoder", backbone="resnet20")                        # doctest: +SKIP
>>> wb.fit(encoder, train, task=wb.ssl.Contrastive(views="simclr"), augment=None)      # doctest: +SKIP
>>> wb.ssl.linear_probe(encoder, train, test)["test_acc"]                                # doctest: +SKIP
"""
from .contrastive import *  # noqa: F401,F403
from .detect import *  # noqa: F401,F403
from .encoder import *  # noqa: F401,F403
from .evaluate import *  # noqa: F401,F403
from .grassmann import *  # noqa: F401,F403
from .matryoshka import *  # noqa: F401,F403
from .selfie import *  # noqa: F401,F403
from .spark import *  # noqa: F401,F403
from .views import *  # noqa: F401,F403
from . import contrastive, detect, encoder, evaluate, grassmann, matryoshka, selfie, spark, views

__all__ = [*contrastive.__all__, *detect.__all__, *encoder.__all__, *evaluate.__all__, *grassmann.__all__,
           *matryoshka.__all__, *selfie.__all__, *spark.__all__, *views.__all__]
