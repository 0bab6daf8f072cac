"""`evaluate` module: depth estimation errors (abs/rel error, RMSE, delta thresholds) from running sums."""

import evaluate
import numpy as np

from effhub.citations import bibtex
from effhub.metrics.depth_estimation.statistics import depth_scores, depth_statistics
from effhub.metrics.running import RunningStatisticsMetric, map_features

_DESCRIPTION = """Depth estimation errors over valid pixels (reference depth > 0, optionally restricted by a mask),
accumulated as sums and counts: absolute error, relative error (as in the NYU-v2 protocol of Sun et al., NeurIPS
2020), RMSE, and the fraction of pixels with max(pred/gt, gt/pred) below 1.25, 1.25^2, 1.25^3."""

_CITATION = bibtex("eigen2014depth", "sun2020adashare")

_INPUTS = """
Args:
    predictions: predicted depth (B, H, W) or (B, 1, H, W).
    references: reference depth, same shape; pixels with depth <= 0 are invalid.
    mask (optional): boolean (B, H, W); a pixel counts when the mask is true and its reference depth is positive.
Returns:
    abs_err, rel_err, rmse (lower is better), delta_1, delta_2, delta_3 (fractions in [0, 1], higher is better).
Example:
    >>> metric = effhub.metrics.load_metric("depth_estimation")
    >>> metric.compute(predictions=[[[1.0, 2.0]]], references=[[[1.0, 4.0]]])["abs_err"]
    1.0
"""


class DepthEstimation(RunningStatisticsMetric):
    """Depth estimation errors from running sums and counts."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=map_features("float32"),
        )

    def _empty_statistics(self):
        return {
            "count": np.zeros((), dtype=np.int64),
            "abs_error_sum": np.zeros((), dtype=np.float64),
            "rel_error_sum": np.zeros((), dtype=np.float64),
            "squared_error_sum": np.zeros((), dtype=np.float64),
            "delta_count": np.zeros(3, dtype=np.int64),
        }

    def _batch_statistics(self, predictions, references, mask=None, **kwargs):
        return depth_statistics(predictions, references, mask=mask)

    def _scores(self, statistics):
        return depth_scores(statistics)
