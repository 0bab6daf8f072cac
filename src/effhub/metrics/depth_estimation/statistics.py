"""Depth estimation errors from sums and counts over valid pixels: abs/rel error, RMSE, delta thresholds.

As in the NYU-v2 evaluation of Sun et al. (NeurIPS 2020): absolute error mean|pred - gt|, relative error
mean(|pred - gt| / gt), over valid pixels (gt > 0); plus the RMSE and the fraction of pixels with
max(pred/gt, gt/pred) below 1.25, 1.25^2 and 1.25^3 (Eigen et al., NeurIPS 2014).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ..tensors import accumulation_dtype, as_tensor, per_sample_or_total

DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)


def _match_shapes(predictions: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # a one-channel map (B, 1, H, W) and a plain one (B, H, W) describe the same pixels
    if predictions.dim() == references.dim() + 1 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if references.dim() == predictions.dim() + 1 and references.shape[1] == 1:
        references = references[:, 0]
    if predictions.shape != references.shape:
        raise ConfigError(
            f"depth predictions have shape {tuple(predictions.shape)} but references {tuple(references.shape)}",
            "predict depth at the references' resolution, as (B, H, W) or (B, 1, H, W)",
        )
    return predictions, references


def depth_statistics(
    predictions: Any, references: Any, mask: Any = None, per_sample: bool = False
) -> dict[str, torch.Tensor]:
    """Error sums and counts of one batch over valid pixels.

    Args:
        predictions: predicted depth `(B, H, W)` or `(B, 1, H, W)`.
        references: reference depth, same shape.
        mask: optional boolean map of the same shape; a pixel counts when the mask is true AND its reference depth
            is positive (relative errors and ratios are undefined at gt <= 0).
        per_sample (`bool`, *optional*): keep a leading batch dimension (for `gather_for_metrics`).

    Returns:
        `count` (int64), `abs_error_sum`, `rel_error_sum`, `squared_error_sum` (float64 where the device has it),
        and `delta_count` (3 int64: pixels under 1.25, 1.25^2, 1.25^3).
    """
    predictions = as_tensor(predictions, "predictions")
    dtype = accumulation_dtype(predictions.device)
    references = as_tensor(references, "references").to(predictions.device)
    predictions, references = _match_shapes(predictions.to(dtype), references.to(dtype))
    valid = (references > 0) & torch.isfinite(references)
    if mask is not None:
        mask = as_tensor(mask, "mask").to(predictions.device)
        if mask.dim() == valid.dim() + 1 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if mask.shape != valid.shape:
            raise ConfigError(
                f"depth mask has shape {tuple(mask.shape)} but the references {tuple(valid.shape)}",
                "pass a boolean mask with the references' shape",
            )
        valid = valid & mask.bool()
    batch_size = predictions.shape[0]
    predictions, references, valid = (t.reshape(batch_size, -1) for t in (predictions, references, valid))
    # invalid pixels are zeroed rather than dropped, so that sums keep their per-sample rows
    gt = torch.where(valid, references, torch.ones_like(references))
    error = torch.where(valid, (predictions - references).abs(), torch.zeros_like(references))
    # a non-positive prediction is as far from gt as it gets: its ratio is infinite, never under a threshold
    ratio = torch.maximum(predictions / gt, gt / predictions.clamp_min(torch.finfo(dtype).tiny))
    ratio = torch.where(predictions > 0, ratio, torch.full_like(ratio, float("inf")))
    within = torch.stack([(ratio < threshold) & valid for threshold in DELTA_THRESHOLDS], dim=1).sum(-1)
    statistics = {
        "count": valid.sum(1),
        "abs_error_sum": error.sum(1),
        "rel_error_sum": (error / gt).sum(1),
        "squared_error_sum": error.square().sum(1),
        "delta_count": within,
    }
    return {key: per_sample_or_total(value, per_sample) for key, value in statistics.items()}


def depth_scores(statistics: Mapping[str, Any]) -> dict[str, float]:
    """`abs_err`, `rel_err`, `rmse` (depth units) and `delta_1`, `delta_2`, `delta_3` (fractions in [0, 1])."""
    count = float(np.asarray(statistics["count"]))
    if not count:
        nan = float("nan")
        return {"abs_err": nan, "rel_err": nan, "rmse": nan, "delta_1": nan, "delta_2": nan, "delta_3": nan}
    delta = np.asarray(statistics["delta_count"], dtype=np.float64) / count
    return {
        "abs_err": float(np.asarray(statistics["abs_error_sum"]) / count),
        "rel_err": float(np.asarray(statistics["rel_error_sum"]) / count),
        "rmse": float(np.sqrt(np.asarray(statistics["squared_error_sum"]) / count)),
        "delta_1": float(delta[0]),
        "delta_2": float(delta[1]),
        "delta_3": float(delta[2]),
    }


__all__ = ["DELTA_THRESHOLDS", "depth_statistics", "depth_scores"]
