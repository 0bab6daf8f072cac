"""The asymmetric loss (ASL; Ridnik et al., ICCV 2021) on DualCoOp's dual logits, with partial labels.

As DualCoOp (Sun, Hu and Saenko, NeurIPS 2022, arXiv:2206.09541) applies it: the presence probability of a class is
the softmax over its (negative, positive) logit pair, so p_pos + p_neg = 1. Negatives get a probability margin
(`p_neg <- min(p_neg + clip, 1)`), both terms a focusing weight `(1 - p_t) ** gamma` computed without gradient
(gamma 1 for positives, 2 for negatives), and labels equal to -1 (unknown, partial labels) are left out. The loss is
summed over the known entries of the batch and multiplied by the loss weight (larger for smaller label ratios).
"""

from __future__ import annotations

import torch

from ...errors import ConfigError

UNKNOWN_LABEL = -1
ASL_EPS = 1e-6


def check_labels(labels: torch.Tensor, batch_size: int, num_classes: int) -> torch.Tensor:
    """`labels` as a long tensor `[B, C]` of 1, 0 and -1; anything else is a `ConfigError` naming the fix."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 2 or labels.shape[0] != batch_size:
        raise ConfigError(f"labels have shape {tuple(labels.shape)} for a batch of {batch_size} images",
                          "pass labels of shape [batch, num_classes] with 1, 0 or -1 (unknown)")
    if labels.shape[1] != num_classes:
        raise ConfigError(f"labels have {labels.shape[1]} classes but the adapter scores {num_classes}",
                          "pass one label column per class name, in the adapter's class order (or pass "
                          "class_names matching the label columns)")
    labels = labels.long()
    if ((labels != 1) & (labels != 0) & (labels != UNKNOWN_LABEL)).any():
        raise ConfigError("labels hold values other than 1, 0 and -1",
                          "encode positives as 1, negatives as 0 and unknown labels as -1")
    return labels


def asymmetric_loss(logits: torch.Tensor, labels: torch.Tensor, gamma_neg: float = 2.0, gamma_pos: float = 1.0,
                    clip: float = 0.05, weight: float = 1.0, eps: float = ASL_EPS) -> torch.Tensor:
    """ASL on dual logits `[B, 2, C]` (index 0 negative, 1 positive) against labels `[B, C]` in {1, 0, -1}.

    Returns the weighted sum over known entries (a scalar; 0 when no label is known).
    """
    if logits.dim() != 3 or logits.shape[1] != 2:
        raise ConfigError(f"dual logits have shape {tuple(logits.shape)}", "pass logits of shape [batch, 2, classes]")
    labels = check_labels(labels, logits.shape[0], logits.shape[2]).to(logits.device)
    probabilities = logits.float().softmax(dim=1)
    p_neg, p_pos = probabilities[:, 0], probabilities[:, 1]
    if clip > 0:
        p_neg = (p_neg + clip).clamp(max=1)
    known = labels != UNKNOWN_LABEL
    positive = (labels == 1).float()
    negative = (labels == 0).float()
    log_likelihood = positive * p_pos.clamp(min=eps).log() + negative * p_neg.clamp(min=eps).log()
    with torch.no_grad():
        p_true = p_pos * positive + p_neg * negative
        gamma = gamma_pos * positive + gamma_neg * negative
        focus = (1 - p_true).pow(gamma)
    return -(log_likelihood * focus * known.float()).sum() * weight


__all__ = ["asymmetric_loss", "check_labels", "UNKNOWN_LABEL", "ASL_EPS"]
