"""Training only BatchNorm: freezing policies, random-parameter controls, disabled features.

Frankle, Schwab & Morcos, ICLR 2021, https://arxiv.org/abs/2003.00152.

>>> model = wb.create_model("resnet14")                               # doctest: +SKIP
>>> summary = wb.bn_only.configure(model, "bn_only")                   # doctest: +SKIP
>>> print(summary)                                                     # doctest: +SKIP
bn_only: 1,120 of 175,258 parameters train (0.639%)
>>> result = wb.fit(model, train, test, **summary.fit_kwargs())        # doctest: +SKIP
>>> wb.bn_only.gamma_fractions(result.model)                           # doctest: +SKIP
"""
from .experiment import compare
from .analysis import disabled_features, gamma_fractions, gammas, parameter_table, relu_outputs
from .policies import (POLICIES, PolicySummary, batchnorm_modules, configure, configure_packed, init_batchnorm,
                       output_layer)

__all__ = ["compare", "configure", "configure_packed", "POLICIES", "PolicySummary", "init_batchnorm", "batchnorm_modules", "output_layer",
           "gammas", "gamma_fractions", "disabled_features", "parameter_table", "relu_outputs"]
