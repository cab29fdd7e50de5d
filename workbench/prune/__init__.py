"""Pruning: masks as data, the criteria that choose them and sparse training through ``wb.fit``.

>>> import workbench as wb
>>> model = wb.create_model("resnet8")
>>> masks = wb.prune.magnitude_masks(model, 0.5)
>>> round(wb.prune.sparsity_report(wb.prune.apply_masks(model, masks)).attrs["sparsity"], 2)
0.5
"""
from .activation import TrackDeadNeurons, ap_masks, dead_neuron_rate, iterative_ap, relu_points
from .adaptive import LEVELS, adaptive_masks, allocate, joint_distortion, layer_distortion, layer_masks
from .dynamic import (GATING_MODES, ChannelGate, Comparison, GatedBasicBlock, GatedResNet, GateReport, MaskPrediction,
                      channel_costs, compare_equal_cost, finetune_dynamic, finetune_static, gate_report, gated_blocks,
                      load_dense, macs_for, mass_targets, match_sparsity, set_gating, static_macs, target_sweep)
from .masks import (Masked, apply_masks, erk_densities, magnitude_masks, prunable, random_masks, snip_masks,
                    sparsity_report)
from .n2n import (Controller, N2NResult, RandomPolicy, make_student, n2n_search, random_actions, random_policy,
                  student_params)
from .n2n import reward as n2n_reward
from .schedules import GradualMagnitude, IterativeResult, cubic_sparsity, iterative_magnitude, one_shot
from .structured import block_masks, channel_masks, compact
from .training import METHODS, initial_masks, sparse_run, train_sparse

__all__ = ["Masked", "apply_masks", "erk_densities", "magnitude_masks", "prunable", "random_masks", "snip_masks",
           "sparsity_report", "LEVELS", "adaptive_masks", "allocate", "joint_distortion", "layer_distortion",
           "layer_masks", "block_masks", "channel_masks", "compact", "GradualMagnitude", "IterativeResult", "cubic_sparsity",
           "iterative_magnitude", "one_shot", "relu_points", "dead_neuron_rate", "TrackDeadNeurons",
           "ap_masks", "iterative_ap", "Controller", "N2NResult", "RandomPolicy", "make_student",
           "n2n_search", "random_actions", "random_policy", "student_params", "n2n_reward",
           "GATING_MODES", "ChannelGate", "Comparison", "GatedBasicBlock", "GatedResNet", "GateReport",
           "MaskPrediction", "channel_costs", "compare_equal_cost", "finetune_dynamic", "finetune_static",
           "gate_report", "gated_blocks", "load_dense", "macs_for", "mass_targets", "match_sparsity", "set_gating",
           "static_macs", "target_sweep", "METHODS", "initial_masks", "sparse_run", "train_sparse"]
