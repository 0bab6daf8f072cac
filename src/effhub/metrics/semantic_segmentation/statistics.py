"""Semantic segmentation from a confusion matrix: mIoU, pixel accuracy, per-class IoU and accuracy.

The confusion matrix (`num_labels x num_labels` counts, rows = reference class, columns = predicted class) is the
sufficient statistic: it is the same size for one image or a million, and adds across batches and ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ..tensors import as_tensor, per_sample_or_total


def _label_maps(predictions: Any, references: Any) -> tuple[torch.Tensor, torch.Tensor]:
    predictions = as_tensor(predictions, "predictions")
    references = as_tensor(references, "references").to(predictions.device)
    if predictions.is_floating_point() and predictions.dim() == references.dim() + 1:
        predictions = predictions.argmax(1)  # logits (B, C, H, W) -> label map (B, H, W)
    if predictions.shape != references.shape:
        raise ConfigError(
            f"segmentation predictions have shape {tuple(predictions.shape)} but references {tuple(references.shape)}",
            "pass label maps (B, H, W) or logits (B, C, H, W) at the references' resolution (upsample logits first)",
        )
    if predictions.dim() < 2:
        raise ConfigError(
            f"segmentation inputs need a batch dimension, got shape {tuple(predictions.shape)}",
            "pass a batch of label maps of shape (B, H, W)",
        )
    return predictions.long(), references.long()


def segmentation_statistics(
    predictions: Any, references: Any, num_labels: int, ignore_index: int = 255, per_sample: bool = False
) -> dict[str, torch.Tensor]:
    """Confusion matrix of one batch, computed where the inputs live (GPU tensors stay on the GPU).

    Args:
        predictions: label maps `(B, H, W)` (integers) or logits `(B, C, H, W)` (argmax over C is taken).
        references: reference label maps `(B, H, W)`; pixels equal to `ignore_index` are not counted.
        num_labels (`int`): number of classes.
        ignore_index (`int`, *optional*, defaults to 255): the reference value of unlabelled pixels.
        per_sample (`bool`, *optional*): keep a leading batch dimension (for `accelerator.gather_for_metrics`,
            which drops the samples duplicated to even out the last batch); otherwise sum over the batch.

    Returns:
        `{"confusion_matrix": (num_labels, num_labels) int64}` (or `(B, num_labels, num_labels)`).
    """
    predictions, references = _label_maps(predictions, references)
    batch_size = predictions.shape[0]
    predictions, references = predictions.reshape(batch_size, -1), references.reshape(batch_size, -1)
    valid = references != ignore_index
    # range checks and indices with elementwise ops only: boolean-mask indexing copies and is slow on large maps
    references, predictions = references.masked_fill(~valid, 0), predictions.masked_fill(~valid, 0)
    if (references < 0).any() or (references >= num_labels).any():
        raise ConfigError(
            f"reference labels span [{references.min().item()}, {references.max().item()}] but num_labels is "
            f"{num_labels} and ignore_index is {ignore_index}",
            "set num_labels to the number of classes and ignore_index to the value of unlabelled pixels",
        )
    if (predictions < 0).any() or (predictions >= num_labels).any():
        raise ConfigError(
            f"predicted labels span [{predictions.min().item()}, {predictions.max().item()}], outside "
            f"[0, {num_labels})",
            "predict class indices below num_labels (or pass logits with num_labels channels)",
        )
    cells = num_labels * num_labels
    sample = torch.arange(batch_size, device=predictions.device)[:, None] * cells
    # one bincount over (sample, reference, prediction) cells; ignored pixels go to one extra cell, dropped after
    flat = torch.where(valid, sample + references * num_labels + predictions, batch_size * cells)
    counts = torch.bincount(flat.reshape(-1), minlength=batch_size * cells + 1)[:-1]
    return {"confusion_matrix": per_sample_or_total(counts.view(batch_size, num_labels, num_labels), per_sample)}


def segmentation_scores(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU/accuracy from a confusion matrix.

    A class absent from both references and predictions has an undefined IoU (NaN in `per_category_iou`) and is
    left out of the means, as in the usual mIoU protocol.
    """
    confusion = np.asarray(statistics["confusion_matrix"], dtype=np.float64)
    true_positive = np.diag(confusion)
    reference_total = confusion.sum(1)
    union = reference_total + confusion.sum(0) - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        class_accuracy = np.where(reference_total > 0, true_positive / reference_total, np.nan)
    total = confusion.sum()
    return {
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
        "mean_accuracy": float(np.nanmean(class_accuracy)) if np.isfinite(class_accuracy).any() else float("nan"),
        "per_category_iou": iou.tolist(),
        "per_category_accuracy": class_accuracy.tolist(),
    }


__all__ = ["segmentation_statistics", "segmentation_scores"]
