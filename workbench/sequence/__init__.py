"""Sequences and video (issue 23): gradients through time, gradient clipping as a ``wb.fit`` algorithm,
sparse recurrent weights (magnitude pruning, random-graph structures), and the tasks of the long-memory
problems (a regression on the last step, a classification at every step).

The data live in :mod:`wb.data` (``wb.load("motion")``, clips of real images as filmstrips) and the models in
:mod:`wb.models` (``seq_rnn``: an image read as a sequence by an RNN, LSTM or GRU; ``video_net``: LRCN,
mean pooling, TS-LSTM and Temporal-Inception heads over per-frame ResNet features, one or two streams;
``rnn_sequence``: the same recurrences on float sequences) and the long-memory problems in
:mod:`wb.data.sequences` (``adding_problem``, ``copy_task``, ``SequenceLoader``).
"""
from .captioning import *  # noqa: F401,F403
from .gradients import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from .tasks import *  # noqa: F401,F403
from .features import *  # noqa: F401,F403
from . import captioning, features, gradients, sparse, tasks

__all__ = [*captioning.__all__, *gradients.__all__, *sparse.__all__, *tasks.__all__, *features.__all__]
