"""`evaluate` module: surface normal angle errors (mean, median, % within 11.25/22.5/30 degrees) from running
sums and a fine angle histogram."""

import evaluate
import numpy as np

from effhub.citations import bibtex
from effhub.metrics.running import RunningStatisticsMetric, map_features
from effhub.metrics.surface_normals.statistics import (
    DEFAULT_BIN_WIDTH,
    normals_scores,
    normals_statistics,
    num_angle_bins,
)

_DESCRIPTION = """Surface normal angle errors over valid pixels (non-zero reference normal, optionally restricted by
a mask): mean, median and RMS angle in degrees, and the fraction of pixels within 11.25, 22.5 and 30 degrees. The
median is read from a histogram with `bin_width` degrees per bin (default 0.01): within bin_width (plus half the gap
between the two middle angles) of the exact median."""

_CITATION = bibtex("eigen2015predicting", "sun2020adashare")

_INPUTS = """
Args:
    predictions: predicted normals (B, 3, H, W), any length (a zero vector counts as 90 degrees off).
    references: reference normals (B, 3, H, W); zero vectors mark invalid pixels.
    mask (optional): boolean (B, H, W) restricting the valid pixels further.
Config (at load time):
    bin_width (float, defaults to 0.01): angle histogram bin width in degrees.
Returns:
    mean_angle, median_angle, rmse_angle (degrees, lower is better); within_11.25, within_22.5, within_30
    (fractions in [0, 1], higher is better).
"""


class SurfaceNormals(RunningStatisticsMetric):
    """Surface normal angle errors from running sums and an angle histogram."""

    def __init__(self, bin_width: float = DEFAULT_BIN_WIDTH, **kwargs):
        self.num_bins = num_angle_bins(bin_width)
        self.bin_width = float(bin_width)
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=map_features("float32", channels=True),
        )

    def _empty_statistics(self):
        return {
            "count": np.zeros((), dtype=np.int64),
            "angle_sum": np.zeros((), dtype=np.float64),
            "squared_angle_sum": np.zeros((), dtype=np.float64),
            "within_count": np.zeros(3, dtype=np.int64),
            "histogram": np.zeros(self.num_bins, dtype=np.int64),
        }

    def _batch_statistics(self, predictions, references, mask=None, **kwargs):
        return normals_statistics(predictions, references, mask=mask, bin_width=self.bin_width)

    def _scores(self, statistics):
        return normals_scores(statistics, self.bin_width)
