"""Multi-label recognition metrics from per-class score histograms and counts: mAP (approximate, with a computed
error bound), and exact precision/recall/F1 at a threshold and for the top-k labels of each image.

mAP needs every score of a class in rank order; instead each class keeps two histograms of its scores (references
positive / negative) over `num_bins` equal bins of [0, 1]. Average precision is computed by treating the scores of
one bin as tied. For the positives of bin b, with A images and T_A positives ranked above the bin, p_b positives and
n_b negatives inside it, both the exact precision (any order inside the bin) and the binned one lie in
[(T_A + 1) / (A + n_b + 1), (T_A + p_b) / (A + p_b)], so

    |AP_exact - AP_binned| <= (1 / P) * sum_b p_b * ((T_A + p_b) / (A + p_b) - (T_A + 1) / (A + n_b + 1)),

which is returned as `map_error_bound` (averaged over classes like the mAP); it is 0 when no bin holds two scores.
Precision/recall/F1 follow the per-class (CP, CR, CF1) and overall (OP, OR, OF1) definitions used by ML-GCN
(Chen et al., CVPR 2019), ASL and Sun et al. (NeurIPS 2022). Reference entries equal to `ignore_value`
(unknown labels of partially labelled data) are left out of every statistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ..tensors import as_tensor

DEFAULT_NUM_BINS = 10_000


def multilabel_statistics(
    predictions: Any,
    references: Any,
    num_bins: int = DEFAULT_NUM_BINS,
    threshold: float = 0.5,
    top_k: int = 3,
    from_logits: bool = False,
    ignore_value: int = -1,
    per_sample: bool = False,
) -> dict[str, torch.Tensor]:
    """Score histograms and exact counts of one batch, summed over the batch.

    Args:
        predictions: scores `(N, C)` in [0, 1] (or logits with `from_logits=True`, passed through a sigmoid).
        references: `(N, C)` with 1 (positive), 0 (negative) or `ignore_value` (unknown).
        num_bins (`int`): histogram bins per class over [0, 1] (bin width 1 / num_bins).
        threshold (`float`): a label is predicted when its score is >= threshold.
        top_k (`int`): the k of the top-k metrics.
        per_sample: not supported (a per-sample histogram is `C x num_bins` per image); gather the `(N, C)` scores
            and references with `accelerator.gather_for_metrics` instead and compute the statistics from them.
    """
    if per_sample:
        raise ConfigError(
            "multilabel statistics have no per-sample form (a histogram per image would be C x num_bins)",
            "gather the (N, C) scores and references with accelerator.gather_for_metrics and add them as a batch",
        )
    scores = as_tensor(predictions, "predictions")
    references = as_tensor(references, "references").to(scores.device)
    if scores.dim() != 2 or scores.shape != references.shape:
        raise ConfigError(
            f"multilabel predictions have shape {tuple(scores.shape)} and references {tuple(references.shape)}",
            "pass (N, C) scores and (N, C) references with 1, 0 or the ignore value",
        )
    scores = scores.float()
    # top-k ranks the scores as given: the float32 sigmoid of large logits ties just below 1
    ranking = scores
    if from_logits:
        scores = scores.sigmoid()
    elif scores.numel() and (scores.min() < 0 or scores.max() > 1):
        raise ConfigError(
            f"multilabel scores span [{scores.min().item():.4g}, {scores.max().item():.4g}], outside [0, 1]",
            "pass probabilities, or logits with from_logits=True",
        )
    references = references.long()
    known = references != ignore_value
    if (references[known] != 0).logical_and(references[known] != 1).any():
        raise ConfigError(
            f"multilabel references hold values other than 0, 1 and ignore_value={ignore_value}",
            "encode positives as 1, negatives as 0 and unknown labels as ignore_value",
        )
    num_classes = scores.shape[1]
    if not 1 <= top_k <= num_classes:
        raise ConfigError(f"top_k={top_k} is outside [1, {num_classes}]", "pass a top_k no larger than the classes")
    positive, negative = (references == 1), (references == 0)
    bin_index = (scores * num_bins).long().clamp_(0, num_bins - 1)
    class_offset = torch.arange(num_classes, device=scores.device)[None, :] * num_bins + bin_index

    def class_histogram(selected: torch.Tensor) -> torch.Tensor:
        return torch.bincount(class_offset[selected], minlength=num_classes * num_bins).view(num_classes, num_bins)

    predicted = scores >= threshold
    top = ranking.topk(top_k, dim=1).indices
    in_top = torch.zeros_like(known).scatter_(1, top, True)
    return {
        "positive_histogram": class_histogram(positive),
        "negative_histogram": class_histogram(negative),
        "true_positive": (predicted & positive).sum(0),
        "false_positive": (predicted & negative).sum(0),
        "false_negative": (~predicted & positive).sum(0),
        "top_k_true_positive": (in_top & positive).sum(0),
        "top_k_false_positive": (in_top & negative).sum(0),
    }


def histogram_average_precision(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """Average precision of one class from its score histograms (scores in one bin tied), and its error bound."""
    # highest scores first
    positive = np.asarray(positive, dtype=np.float64)[::-1]
    negative = np.asarray(negative, dtype=np.float64)[::-1]
    total_positive = positive.sum()
    if not total_positive:
        return float("nan"), float("nan")
    occupied = (positive + negative) > 0
    positive, negative = positive[occupied], negative[occupied]
    in_bin = positive + negative
    above = np.cumsum(in_bin) - in_bin  # A: images ranked above the bin
    positive_above = np.cumsum(positive) - positive  # T_A
    has_positive = positive > 0
    precision = (positive_above + positive) / (above + in_bin)
    average_precision = (positive * precision).sum() / total_positive
    upper = np.where(has_positive, (positive_above + positive) / np.maximum(above + positive, 1), 0.0)
    lower = np.where(has_positive, (positive_above + 1) / (above + negative + 1), 0.0)
    bound = (positive * (upper - lower)).sum() / total_positive
    return float(average_precision), float(max(bound, 0.0))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _precision_recall(true_positive, false_positive, false_negative, suffix: str) -> dict[str, float]:
    true_positive, false_positive, false_negative = (
        np.asarray(x, dtype=np.float64) for x in (true_positive, false_positive, false_negative)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        class_precision = true_positive / (true_positive + false_positive)
        class_recall = true_positive / (true_positive + false_negative)
    # a class never predicted (or never present) has an undefined precision (recall) and is left out of the mean
    cp = float(np.nanmean(class_precision)) if np.isfinite(class_precision).any() else 0.0
    cr = float(np.nanmean(class_recall)) if np.isfinite(class_recall).any() else 0.0
    tp, fp, fn = true_positive.sum(), false_positive.sum(), false_negative.sum()
    op = float(tp / (tp + fp)) if tp + fp else 0.0
    orecall = float(tp / (tp + fn)) if tp + fn else 0.0
    return {
        f"cp{suffix}": cp,
        f"cr{suffix}": cr,
        f"cf1{suffix}": _f1(cp, cr),
        f"op{suffix}": op,
        f"or{suffix}": orecall,
        f"of1{suffix}": _f1(op, orecall),
    }


def multilabel_scores(statistics: Mapping[str, Any], top_k: int = 3) -> dict[str, Any]:
    """mAP (with `map_error_bound`), per-class AP, and CP/CR/CF1/OP/OR/OF1 at the threshold and for the top k."""
    positive_histogram = np.asarray(statistics["positive_histogram"])
    negative_histogram = np.asarray(statistics["negative_histogram"])
    per_class = [histogram_average_precision(p, n) for p, n in zip(positive_histogram, negative_histogram)]
    ap = np.array([value for value, _ in per_class])
    bound = np.array([value for _, value in per_class])
    present = np.isfinite(ap)
    scores: dict[str, Any] = {
        "map": float(ap[present].mean()) if present.any() else float("nan"),
        "map_error_bound": float(bound[present].mean()) if present.any() else float("nan"),
        "per_class_ap": ap.tolist(),
    }
    scores.update(
        _precision_recall(statistics["true_positive"], statistics["false_positive"], statistics["false_negative"], "")
    )
    positives = positive_histogram.sum(1)
    top_true_positive = np.asarray(statistics["top_k_true_positive"])
    scores.update(
        _precision_recall(
            top_true_positive, statistics["top_k_false_positive"], positives - top_true_positive, f"_top{top_k}"
        )
    )
    return scores


__all__ = ["DEFAULT_NUM_BINS", "histogram_average_precision", "multilabel_scores", "multilabel_statistics"]
