"""Multi-label ImageNet re-evaluation: ReaL (Beyer et al. 2020), its rater scores, the
Mechanical Turk votes on suspected label errors, ImageNetV2 multi-labels, timm's tables.

Every metric aligns predictions with labels by file name, never by position.

>>> p = wb.multilabel.bundled_predictions()                     # doctest: +SKIP
>>> wb.multilabel.real_accuracy(p.labels, p.filenames)            # doctest: +SKIP
"""
from .files import FILES, locate
from .labels import (N_CLASSES, N_VAL, LabelSets, Predictions, bundled_predictions, labels_from_scores,
                     original_labels, parse_real, parse_scores, real_labels, real_scores, val_filename,
                     val_filenames, val_indices)
from .metrics import (accuracy_by_class, accuracy_by_set_size, agreement, multilabel_topk, original_accuracy,
                      real_accuracy, variable_topk_accuracy)

__all__ = ["FILES", "locate", "LabelSets", "Predictions", "bundled_predictions", "labels_from_scores",
           "original_labels", "parse_real", "parse_scores", "real_labels", "real_scores", "val_filename",
           "val_filenames", "val_indices", "accuracy_by_class", "accuracy_by_set_size", "agreement",
           "multilabel_topk", "original_accuracy", "real_accuracy", "variable_topk_accuracy", "N_CLASSES", "N_VAL"]
