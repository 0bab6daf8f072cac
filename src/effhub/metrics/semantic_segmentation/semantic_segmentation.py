"""`evaluate` module: semantic segmentation (mIoU, pixel accuracy, per-class IoU) from a running confusion matrix."""

import evaluate
import numpy as np

from effhub.citations import bibtex
from effhub.errors import ConfigError
from effhub.metrics.running import RunningStatisticsMetric, map_features
from effhub.metrics.semantic_segmentation.statistics import segmentation_scores, segmentation_statistics

_DESCRIPTION = """Semantic segmentation metrics computed from a confusion matrix accumulated batch by batch: mean
intersection-over-union (mIoU), pixel accuracy, mean class accuracy, per-class IoU and accuracy. Memory is one
num_labels x num_labels matrix whatever the number or resolution of the images."""

_CITATION = bibtex("long2015fully", "sun2020adashare")

_INPUTS = """
Args:
    predictions: label maps (B, H, W) of class indices, or logits (B, C, H, W) (argmax over C is taken).
    references: reference label maps (B, H, W); pixels equal to `ignore_index` are not counted.
Config (at load time):
    num_labels (int): number of classes.
    ignore_index (int, defaults to 255): reference value of unlabelled pixels.
Returns:
    mean_iou, pixel_accuracy, mean_accuracy (floats in [0, 1]); per_category_iou, per_category_accuracy (lists,
    NaN for a class absent from references and predictions).
Example:
    >>> metric = effhub.metrics.load_metric("semantic_segmentation", num_labels=3)
    >>> metric.add_batch(predictions=[[[0, 1], [2, 2]]], references=[[[0, 1], [2, 1]]])
    >>> round(metric.compute()["pixel_accuracy"], 2)
    0.75
"""


class SemanticSegmentation(RunningStatisticsMetric):
    """Semantic segmentation metrics from a running confusion matrix."""

    def __init__(self, num_labels: int | None = None, ignore_index: int = 255, **kwargs):
        if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
            raise ConfigError(
                f"semantic_segmentation needs num_labels (a positive int), got {num_labels!r}",
                'load it with load_metric("semantic_segmentation", num_labels=<number of classes>)',
            )
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=map_features("int64"),
        )

    def _empty_statistics(self):
        return {"confusion_matrix": np.zeros((self.num_labels, self.num_labels), dtype=np.int64)}

    def _batch_statistics(self, predictions, references, **kwargs):
        return segmentation_statistics(predictions, references, self.num_labels, self.ignore_index)

    def _scores(self, statistics):
        return segmentation_scores(statistics)
