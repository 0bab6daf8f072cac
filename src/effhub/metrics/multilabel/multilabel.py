"""`evaluate` module: multi-label mAP (from per-class score histograms, with an error bound) and exact
precision/recall/F1 at a threshold and for the top-k labels."""

import datasets
import evaluate
import numpy as np

from effhub.citations import bibtex
from effhub.errors import ConfigError
from effhub.metrics.multilabel.statistics import DEFAULT_NUM_BINS, multilabel_scores, multilabel_statistics
from effhub.metrics.running import RunningStatisticsMetric

_DESCRIPTION = """Multi-label recognition metrics accumulated batch by batch: mean average precision over classes
(computed from per-class histograms of scores, num_bins bins over [0, 1], with a computed bound `map_error_bound` on
its distance to the exact mAP), and exact per-class / overall precision, recall and F1 at a score threshold and for
the top-k labels of each image. Reference entries equal to `ignore_value` (unknown labels) are ignored."""

_CITATION = bibtex("sun2022dualcoop", "chen2019multi")

_INPUTS = """
Args:
    predictions: scores (N, C) in [0, 1], or logits with from_logits=True.
    references: (N, C) with 1 (positive), 0 (negative) or ignore_value (unknown).
Config (at load time):
    num_classes (int): number of classes C.
    num_bins (int, defaults to 10000): histogram bins per class (sets the mAP accuracy, see map_error_bound).
    threshold (float, defaults to 0.5), top_k (int, defaults to 3), from_logits (bool), ignore_value (int, -1).
Returns:
    map, map_error_bound, per_class_ap; cp, cr, cf1, op, or, of1 at the threshold; the same with suffix _top<k>.
"""


class Multilabel(RunningStatisticsMetric):
    """Multi-label mAP and precision/recall/F1 from running histograms and counts."""

    def __init__(
        self,
        num_classes=None,
        num_bins=DEFAULT_NUM_BINS,
        threshold=0.5,
        top_k=3,
        from_logits=False,
        ignore_value=-1,
        **kwargs,
    ):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(
                f"multilabel needs num_classes (a positive int), got {num_classes!r}",
                'load it with load_metric("multilabel", num_classes=<number of classes>)',
            )
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ConfigError(f"num_bins must be a positive int, got {num_bins!r}", "pass e.g. num_bins=10000")
        self.num_classes, self.num_bins, self.threshold = num_classes, num_bins, float(threshold)
        self.top_k, self.from_logits, self.ignore_value = int(top_k), bool(from_logits), int(ignore_value)
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _empty_statistics(self):
        histogram = np.zeros((self.num_classes, self.num_bins), dtype=np.int64)
        count_keys = ("true_positive", "false_positive", "false_negative")
        count_keys += ("top_k_true_positive", "top_k_false_positive")
        counts = {key: np.zeros(self.num_classes, dtype=np.int64) for key in count_keys}
        return {"positive_histogram": histogram, "negative_histogram": histogram.copy(), **counts}

    def _batch_statistics(self, predictions, references, **kwargs):
        return multilabel_statistics(
            predictions,
            references,
            num_bins=self.num_bins,
            threshold=self.threshold,
            top_k=self.top_k,
            from_logits=self.from_logits,
            ignore_value=self.ignore_value,
        )

    def _scores(self, statistics):
        return multilabel_scores(statistics, self.top_k)
