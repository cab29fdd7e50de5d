"""Self-supervised objectives (and, with the group's issue, their evaluation and structured representations).

>>> encoder = wb.create_model("resnet8", num_classes=64)          # its last layer is the projection   # doctest: +SKIP
>>> wb.fit(encoder, train, task=wb.ssl.Contrastive(temperature=0.5), augment=None)                    # doctest: +SKIP
"""
from .contrastive import Contrastive, nt_xent, two_views

__all__ = ["Contrastive", "nt_xent", "two_views"]
