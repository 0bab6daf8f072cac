"""Surface normal angle errors from sums, counts and a fine histogram of angles.

As in the NYU-v2 / Taskonomy evaluation of Sun et al. (NeurIPS 2020, following Eigen & Fergus, ICCV 2015): the
angle between predicted and reference normals over valid pixels (reference normal non-zero), reported as mean and
median angle and the fraction of pixels within 11.25, 22.5 and 30 degrees.

The median comes from a histogram of angles with `bin_width` degrees per bin (default 0.01, i.e. 18,000 bins over
[0, 180]): the estimate interpolates inside the bin holding the middle pixel, so it is within `bin_width` of that
pixel's angle, and within `bin_width` plus half the gap between the two middle angles of the exact median (that gap
is zero for an odd count and negligible for dense maps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ..tensors import accumulation_dtype, as_tensor, per_sample_or_total

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
DEFAULT_BIN_WIDTH = 0.01


def num_angle_bins(bin_width: float = DEFAULT_BIN_WIDTH) -> int:
    """Number of histogram bins covering [0, 180] degrees."""
    if not bin_width > 0:
        raise ConfigError(f"bin_width must be positive, got {bin_width!r}", "pass e.g. bin_width=0.01 (degrees)")
    return int(math.ceil(180.0 / bin_width))


def normals_statistics(
    predictions: Any,
    references: Any,
    mask: Any = None,
    bin_width: float = DEFAULT_BIN_WIDTH,
    per_sample: bool = False,
) -> dict[str, torch.Tensor]:
    """Angle error sums, threshold counts and angle histogram of one batch.

    Args:
        predictions: predicted normals `(B, 3, H, W)` (need not be unit length; a zero vector counts as 90 degrees).
        references: reference normals `(B, 3, H, W)`; pixels whose reference is the zero vector are invalid.
        mask: optional boolean `(B, H, W)`, further restricting the valid pixels.
        bin_width (`float`, *optional*, defaults to 0.01): histogram bin width in degrees (sets the median's accuracy).
        per_sample (`bool`, *optional*): keep a leading batch dimension (for `gather_for_metrics`).
    """
    predictions = as_tensor(predictions, "predictions")
    dtype = accumulation_dtype(predictions.device)
    references = as_tensor(references, "references").to(predictions.device, dtype)
    predictions = predictions.to(dtype)
    if predictions.shape != references.shape or predictions.dim() < 2 or predictions.shape[1] != 3:
        raise ConfigError(
            f"normal predictions have shape {tuple(predictions.shape)} and references {tuple(references.shape)}",
            "pass both as (B, 3, H, W) at the same resolution",
        )
    # atan2(|a x b|, a . b) is accurate at every angle (acos of a float dot product is not near 0 and 180 degrees)
    # and needs no normalisation
    cross = torch.linalg.cross(predictions, references, dim=1).norm(dim=1)
    dot = (predictions * references).sum(1)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    angle = torch.where(predictions.norm(dim=1) > 0, angle, torch.full_like(angle, 90.0))
    valid = references.norm(dim=1) > 0
    if mask is not None:
        mask = as_tensor(mask, "mask").to(predictions.device)
        if mask.shape != valid.shape:
            raise ConfigError(
                f"normals mask has shape {tuple(mask.shape)}, expected {tuple(valid.shape)}",
                "pass a boolean mask of shape (B, H, W)",
            )
        valid = valid & mask.bool()
    batch_size, bins = angle.shape[0], num_angle_bins(bin_width)
    angle, valid = angle.reshape(batch_size, -1), valid.reshape(batch_size, -1)
    zero = torch.zeros_like(angle)
    within = torch.stack([(angle < threshold) & valid for threshold in ANGLE_THRESHOLDS], dim=1).sum(-1)
    bin_index = (angle / bin_width).long().clamp_(0, bins - 1)
    sample = torch.arange(batch_size, device=angle.device)[:, None].expand_as(bin_index)
    histogram = torch.bincount((sample * bins + bin_index)[valid], minlength=batch_size * bins).view(batch_size, bins)
    statistics = {
        "count": valid.sum(1),
        "angle_sum": torch.where(valid, angle, zero).sum(1),
        "squared_angle_sum": torch.where(valid, angle.square(), zero).sum(1),
        "within_count": within,
        "histogram": histogram,
    }
    return {key: per_sample_or_total(value, per_sample) for key, value in statistics.items()}


def histogram_median(histogram: np.ndarray, bin_width: float) -> float:
    """Median of the values counted in `histogram`, interpolating linearly inside the bin of the middle value."""
    histogram = np.asarray(histogram, dtype=np.float64)
    total = histogram.sum()
    if not total:
        return float("nan")
    cumulative = np.cumsum(histogram)
    half = total / 2.0
    index = int(np.searchsorted(cumulative, half, side="left"))
    before = cumulative[index - 1] if index else 0.0
    return float((index + (half - before) / histogram[index]) * bin_width)


def normals_scores(statistics: Mapping[str, Any], bin_width: float = DEFAULT_BIN_WIDTH) -> dict[str, float]:
    """`mean_angle`, `median_angle`, `rmse_angle` (degrees); `within_11.25`, `within_22.5`, `within_30` (fractions)."""
    count = float(np.asarray(statistics["count"]))
    if not count:
        return {key: float("nan") for key in ("mean_angle", "median_angle", "rmse_angle", *_within_keys())}
    within = np.asarray(statistics["within_count"], dtype=np.float64) / count
    scores = {
        "mean_angle": float(np.asarray(statistics["angle_sum"]) / count),
        "median_angle": histogram_median(statistics["histogram"], bin_width),
        "rmse_angle": float(np.sqrt(np.asarray(statistics["squared_angle_sum"]) / count)),
    }
    scores.update({key: float(value) for key, value in zip(_within_keys(), within)})
    return scores


def _within_keys() -> tuple[str, ...]:
    return tuple(f"within_{threshold:g}" for threshold in ANGLE_THRESHOLDS)


__all__ = [
    "ANGLE_THRESHOLDS",
    "DEFAULT_BIN_WIDTH",
    "histogram_median",
    "normals_scores",
    "normals_statistics",
    "num_angle_bins",
]
