"""Quantization: number formats as data, fake-quantized layers, calibration and mixed precision.

>>> import workbench as wb
>>> q = wb.quant.quantize(wb.create_model("resnet8"), "w4a8")   # a copy; the float model is untouched
>>> wb.quant.cost(q).attrs["weight_mb"] < wb.quant.cost(wb.create_model("resnet8")).attrs["weight_mb"]
True
"""
from .formats import FLOAT_FORMATS, FloatFormat, Format, IntFormat, TernaryFormat, get_format, list_formats
from .layers import (QAT, LayerSpec, act_ranges, QuantConv2d, QuantLinear, Quantizer, calibrate, cost, fold_bn, quant_layers,
                     quantize, quantize_, resolve_config, set_quant_enabled, ste_round)
from .ptq import (ptq, adaquant, bias_correction, bn_match, bn_statistics, check_calibration_data, distill_data, layer_errors,
                  reestimate_bn, sensitivity)
from .search import RandomFormats, get_policy, policy_search, random_policy, set_policy
from .mixed import allocate, allocate_brute_force, dominators, hypervolume, option_costs, pareto_front, policy_cost
from .study import qat_compare, ternary_scales, train_supernet
from .nas import RandomArch, arch_cost, arch_space, compare_fronts, evaluate_arch, get_arch, joint_search, quantize_front, set_arch

__all__ = ["FLOAT_FORMATS", "FloatFormat", "Format", "IntFormat", "TernaryFormat", "get_format", "list_formats",
           "QAT", "quantize_", "act_ranges", "LayerSpec", "QuantConv2d", "QuantLinear", "Quantizer", "calibrate", "cost", "fold_bn", "quant_layers",
           "quantize", "resolve_config", "set_quant_enabled", "ste_round", "ptq", "adaquant", "bias_correction", "layer_errors", "bn_match", "bn_statistics",
           "check_calibration_data", "distill_data", "reestimate_bn", "sensitivity", "allocate", "allocate_brute_force",
           "option_costs", "pareto_front", "dominators", "hypervolume", "policy_cost", "RandomFormats", "get_policy", "policy_search", "random_policy", "set_policy",
           "qat_compare", "ternary_scales", "train_supernet",
           "RandomArch", "arch_cost", "arch_space", "compare_fronts", "evaluate_arch", "get_arch", "joint_search",
           "quantize_front", "set_arch"]
