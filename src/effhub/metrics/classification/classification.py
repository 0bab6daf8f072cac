"""`evaluate` module: accuracy and top-k accuracy from running counts."""

import datasets
import evaluate
import numpy as np

from effhub.citations import bibtex
from effhub.errors import ConfigError
from effhub.metrics.classification.statistics import classification_scores, classification_statistics
from effhub.metrics.running import RunningStatisticsMetric

_DESCRIPTION = """Accuracy and top-k accuracy, accumulated as counts of correct predictions batch by batch."""

_CITATION = bibtex("russakovsky2015imagenet")

_INPUTS = """
Args:
    predictions: class scores or logits (N, C), or predicted labels (N,) when top_k is (1,).
    references: labels (N,).
Config (at load time):
    top_k (tuple of int, defaults to (1,)): the k of the reported top-k accuracies.
Returns:
    accuracy (top-1) and top_<k>_accuracy for every other k, in [0, 1].
Example:
    >>> metric = effhub.metrics.load_metric("classification", top_k=(1, 2))
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], references=[1, 2])
    {'accuracy': 0.5, 'top_2_accuracy': 1.0}
"""


class Classification(RunningStatisticsMetric):
    """Accuracy and top-k accuracy from running counts."""

    def __init__(self, top_k=(1,), **kwargs):
        top_k = (top_k,) if isinstance(top_k, int) else tuple(top_k)
        if not top_k or any(not isinstance(k, int) or k < 1 for k in top_k):
            raise ConfigError(f"top_k must hold positive ints, got {top_k!r}", "pass e.g. top_k=(1, 5)")
        self.top_k = top_k
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _empty_statistics(self):
        return {"correct": np.zeros(len(self.top_k), dtype=np.int64), "count": np.zeros((), dtype=np.int64)}

    def _batch_statistics(self, predictions, references, **kwargs):
        return classification_statistics(predictions, references, self.top_k)

    def _scores(self, statistics):
        return classification_scores(statistics, self.top_k)
