"""Multi-label ImageNet re-evaluation: ReaL (Beyer et al. 2020), its rater scores, the
Mechanical Turk votes on suspected label errors, ImageNetV2 multi-labels, timm's tables.

Every metric aligns predictions with labels by file name, never by position.

>>> p = wb.multilabel.bundled_predictions()                     # doctest: +SKIP
>>> wb.multilabel.real_accuracy(p.labels, p.filenames)            # doctest: +SKIP
"""
from .files import FILES, locate
from .labels import (N_CLASSES, N_VAL, LabelSets, Predictions, bundled_predictions, class_names, imagenetv2_labels,
                     labels_from_scores, mturk_votes, original_labels, parse_imagenetv2, parse_mturk, parse_real,
                     parse_scores, parse_timm, real_labels, real_scores, timm_results, val_filename, val_filenames,
                     val_indices, wordnet_ids)
from .labelpool import crop_resize, label_maps, label_pooling, random_boxes, roi_pool_scores, sparse_to_dense, topk_sparse
from .predict import predict_imagenet, preprocess
from .metrics import (accuracy_by_class, accuracy_by_set_size, agreement, multilabel_topk, original_accuracy,
                      real_accuracy, variable_topk_accuracy)

__all__ = ["FILES", "locate", "LabelSets", "Predictions", "bundled_predictions", "labels_from_scores",
           "original_labels", "parse_real", "parse_scores", "real_labels", "real_scores", "val_filename",
           "val_filenames", "val_indices", "class_names", "imagenetv2_labels", "mturk_votes", "parse_imagenetv2",
           "parse_mturk", "parse_timm", "timm_results", "wordnet_ids", "accuracy_by_class", "accuracy_by_set_size", "agreement",
           "multilabel_topk", "crop_resize", "label_maps", "label_pooling", "random_boxes", "roi_pool_scores",
           "sparse_to_dense", "topk_sparse", "predict_imagenet", "preprocess", "original_accuracy", "real_accuracy", "variable_topk_accuracy", "N_CLASSES", "N_VAL"]
