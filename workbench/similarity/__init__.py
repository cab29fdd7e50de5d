"""Representational similarity: CKA (linear, RBF, debiased, minibatch), the CCA family, Procrustes.

>>> wb.similarity.linear_cka(acts_a, acts_b)                  # doctest: +SKIP
>>> wb.similarity.similarity_matrix(model_a, model_b, test)    # doctest: +SKIP
"""
from .cka import (MinibatchCKA, cca_correlations, center_gram, cka, flatten_examples, gram_centered, gram_linear,
                  gram_rbf, hsic_unbiased, linear_cka, mean_squared_cca, procrustes_distance, pwcca, rbf_cka, svcca)
from .matrix import similarity_matrix

__all__ = ["linear_cka", "rbf_cka", "cka", "MinibatchCKA", "hsic_unbiased", "gram_linear", "gram_centered", "gram_rbf",
           "center_gram", "flatten_examples",
           "cca_correlations", "mean_squared_cca", "svcca", "pwcca", "procrustes_distance", "similarity_matrix"]
