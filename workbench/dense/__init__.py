"""Dense prediction, restoration and generation (issue 25): image-quality metrics, the effective receptive
field, restoration as a ``wb.fit`` task, residual vector quantization, generating residual-VQ code stacks
(ResGen's collective prediction against predicting each code), and diffusion's schedule, samplers and loss.

The data live in :mod:`wb.data` (``degrade``, ``paired`` and ``PairLoader`` for ``(degraded, clean)`` pairs;
``make_scenes`` for segmentation masks).
"""
from .compare import *  # noqa: F401,F403
from .derain import *  # noqa: F401,F403
from .dimr import *  # noqa: F401,F403
from .diffusion import *  # noqa: F401,F403
from .gan import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .resgen import *  # noqa: F401,F403
from .segment import *  # noqa: F401,F403
from .spectrum import *  # noqa: F401,F403
from ..models.rvq import ResidualVQ, residual_quantize
from .tasks import *  # noqa: F401,F403
from .tokens import *  # noqa: F401,F403
from . import compare, derain, diffusion, dimr, gan, metrics, resgen, segment, spectrum, tasks, tokens

__all__ = [*metrics.__all__, *tasks.__all__, "ResidualVQ", "residual_quantize", *diffusion.__all__,
           *gan.__all__, *tokens.__all__, *compare.__all__, *spectrum.__all__, *segment.__all__,
           *resgen.__all__, *derain.__all__, *dimr.__all__]
