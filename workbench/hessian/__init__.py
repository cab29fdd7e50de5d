"""Second-order analysis of a model's loss over a dataset: Hessian-vector products, top
eigenvalues by Lanczos, the trace by Hutchinson, the spectral density by stochastic Lanczos
quadrature.

The operator is the Hessian of the *mean* loss over all the given batches, whatever their
split: each batch's product is weighted by its size. BatchNorm uses its running statistics
(eval mode) by default; ``bn="train"`` uses each batch's own statistics instead, and the
running statistics are still left untouched. Dropout is always off. The model leaves exactly
as it came: parameters, buffers, ``requires_grad`` flags and the train/eval flag (tested, also
after an exception). Every result records the BatchNorm mode, because it matters: on a ResNet
the eval-mode and train-mode spectra differ by orders of magnitude.

Products reuse each batch's gradient graph when it fits in memory (about 2.5 gradients per
product on a CPU) and go through ``torch.func`` in vmapped blocks on a GPU; ``trace`` offers
Hutch++ beside Hutchinson; Lanczos starts from the gradient plus a random vector and stops on
a residual-based error estimate. ``benchmarks/bench_hessian.py`` measures all of this.

>>> res = wb.hessian.eigenvalues(model, F.cross_entropy, batches, top_k=5)   # doctest: +SKIP
>>> res.values, res.products, res.converged, res.bn                              # doctest: +SKIP
"""
from .core import HessianOperator, HessianResult, density, eigenvalues, trace

__all__ = ["HessianOperator", "HessianResult", "eigenvalues", "trace", "density"]
