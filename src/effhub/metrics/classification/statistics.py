"""Classification accuracy and top-k accuracy from counts of correct predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ..tensors import as_tensor, per_sample_or_total


def classification_statistics(
    predictions: Any, references: Any, top_k: Sequence[int] = (1,), per_sample: bool = False
) -> dict[str, torch.Tensor]:
    """Counts of correct predictions at each k of one batch.

    Args:
        predictions: scores or logits `(N, C)`, or predicted labels `(N,)` (then only `top_k=(1,)` is possible).
        references: labels `(N,)`.
        top_k (`Sequence[int]`, *optional*, defaults to `(1,)`): the k of the top-k accuracies.
        per_sample (`bool`, *optional*): keep the leading sample dimension (for `gather_for_metrics`).

    Returns:
        `{"correct": (len(top_k),) int64, "count": () int64}` (with a leading `N` if `per_sample`).
    """
    predictions = as_tensor(predictions, "predictions")
    references = as_tensor(references, "references").to(predictions.device).long().reshape(-1)
    if predictions.dim() == 1:
        if tuple(top_k) != (1,):
            raise ConfigError(
                f"top_k={tuple(top_k)} needs class scores (N, C), got predicted labels of shape "
                f"{tuple(predictions.shape)}",
                "pass the scores/logits, or use top_k=(1,)",
            )
        correct = (predictions.long() == references)[:, None]
    elif predictions.dim() == 2:
        if max(top_k) > predictions.shape[1]:
            raise ConfigError(
                f"top_k={tuple(top_k)} exceeds the {predictions.shape[1]} classes of the scores",
                "use values of top_k no larger than the number of classes",
            )
        ranked = predictions.topk(max(top_k), dim=1).indices
        hits = ranked == references[:, None]
        correct = torch.stack([hits[:, :k].any(1) for k in top_k], dim=1)
    else:
        raise ConfigError(
            f"classification predictions must be (N,) labels or (N, C) scores, got shape {tuple(predictions.shape)}",
            "flatten extra dimensions or use the segmentation metric for dense predictions",
        )
    if correct.shape[0] != references.shape[0]:
        raise ConfigError(
            f"{correct.shape[0]} predictions but {references.shape[0]} references",
            "pass one reference label per prediction",
        )
    correct = correct.long()
    count = torch.ones(correct.shape[0], dtype=torch.long, device=correct.device)
    return {"correct": per_sample_or_total(correct, per_sample), "count": per_sample_or_total(count, per_sample)}


def classification_scores(statistics: Mapping[str, Any], top_k: Sequence[int] = (1,)) -> dict[str, float]:
    """`accuracy` (top-1, when 1 is in `top_k`) and `top_<k>_accuracy` for every other k, in [0, 1]."""
    correct = np.asarray(statistics["correct"], dtype=np.float64)
    count = float(np.asarray(statistics["count"]))
    scores = {}
    for k, hits in zip(top_k, correct):
        scores["accuracy" if k == 1 else f"top_{k}_accuracy"] = hits / count if count else float("nan")
    return {key: float(value) for key, value in scores.items()}


__all__ = ["classification_statistics", "classification_scores"]
