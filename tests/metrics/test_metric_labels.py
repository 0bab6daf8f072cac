"""classification and multilabel: exact against numpy; histogram mAP within its computed bound of the exact mAP."""

import numpy as np
import pytest
import torch

import effhub.metrics as metrics
from effhub.errors import ConfigError


def test_classification_top_k_matches_numpy():
    rng = np.random.default_rng(0)
    metric = metrics.load_metric("classification", top_k=(1, 3))
    all_scores, all_labels = [], []
    for _ in range(4):
        scores, labels = rng.normal(size=(25, 7)), rng.integers(0, 7, 25)
        metric.add_batch(predictions=scores, references=labels)
        all_scores.append(scores)
        all_labels.append(labels)
    scores, labels = np.concatenate(all_scores), np.concatenate(all_labels)
    ranked = np.argsort(-scores, axis=1)
    expected_top1 = np.mean(ranked[:, 0] == labels)
    expected_top3 = np.mean((ranked[:, :3] == labels[:, None]).any(1))
    assert metric.compute() == pytest.approx({"accuracy": expected_top1, "top_3_accuracy": expected_top3})
    labels_only = metrics.load_metric("classification")
    assert labels_only.compute(predictions=[1, 2, 3, 3], references=[1, 2, 0, 3]) == {"accuracy": 0.75}
    with pytest.raises(ConfigError, match="scores"):
        metric.add_batch(predictions=[1, 2], references=[1, 2])
    with pytest.raises(ConfigError, match="exceeds"):
        metric.add_batch(predictions=np.zeros((2, 2)), references=[0, 1])


def _exact_average_precision(scores, positive):
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return precision_at_hit.mean()


def _exact_precision_recall(predicted, positive, negative):
    tp = (predicted & positive).sum(0).astype(float)
    fp = (predicted & negative).sum(0).astype(float)
    fn = (~predicted & positive).sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cp, cr = np.nanmean(tp / (tp + fp)), np.nanmean(tp / (tp + fn))
    op, orecall = tp.sum() / (tp.sum() + fp.sum()), tp.sum() / (tp.sum() + fn.sum())
    return cp, cr, 2 * cp * cr / (cp + cr), op, orecall, 2 * op * orecall / (op + orecall)


def test_multilabel_against_exact_computation():
    rng = np.random.default_rng(1)
    num_images, num_classes, top_k = 3000, 6, 2
    references = (rng.random((num_images, num_classes)) < 0.3).astype(int)
    # informative scores: positives score higher on average
    scores = 1 / (1 + np.exp(-(rng.normal(size=references.shape) + 1.5 * references - 0.7)))
    references[rng.random(references.shape) < 0.1] = -1  # unknown labels (partial annotation)
    metric = metrics.load_metric("multilabel", num_classes=num_classes, top_k=top_k)
    for start in range(0, num_images, 500):
        rows = slice(start, start + 500)
        metric.add_batch(predictions=torch.from_numpy(scores[rows]), references=references[rows])
    result = metric.compute()

    known = references != -1
    exact_ap = np.array(
        [_exact_average_precision(scores[known[:, c], c], references[known[:, c], c] == 1) for c in range(num_classes)]
    )
    # the bound is computed from the statistics; the tolerance this test states for 10,000 bins is 1e-3
    assert result["map_error_bound"] < 1e-3
    assert abs(result["map"] - exact_ap.mean()) <= result["map_error_bound"] + 1e-12
    np.testing.assert_allclose(result["per_class_ap"], exact_ap, atol=1e-3)
    assert 0.4 < result["map"] < 0.95

    positive, negative = references == 1, references == 0
    cp, cr, cf1, op, orecall, of1 = _exact_precision_recall(scores >= 0.5, positive, negative)
    assert [result[k] for k in ("cp", "cr", "cf1", "op", "or", "of1")] == pytest.approx([cp, cr, cf1, op, orecall, of1])
    top = np.zeros_like(positive)
    np.put_along_axis(top, np.argsort(-scores, axis=1)[:, :top_k], True, axis=1)
    expected_top = _exact_precision_recall(top, positive, negative)
    keys = [f"{k}_top{top_k}" for k in ("cp", "cr", "cf1", "op", "or", "of1")]
    assert [result[k] for k in keys] == pytest.approx(list(expected_top))


def test_multilabel_coarse_bins_bound_still_holds():
    rng = np.random.default_rng(2)
    references = (rng.random((400, 3)) < 0.4).astype(int)
    scores = rng.random((400, 3)) * 0.5 + 0.4 * references
    metric = metrics.load_metric("multilabel", num_classes=3, num_bins=20, top_k=1)
    result = metric.compute(predictions=scores, references=references)
    exact = np.mean([_exact_average_precision(scores[:, c], references[:, c] == 1) for c in range(3)])
    assert result["map_error_bound"] > 1e-3  # 20 bins: a loose bound, but a true one
    assert abs(result["map"] - exact) <= result["map_error_bound"]


def test_multilabel_bad_input_and_state():
    metric = metrics.load_metric("multilabel", num_classes=3, num_bins=100)
    assert metric.state_nbytes == 2 * 3 * 100 * 8 + 5 * 3 * 8
    with pytest.raises(ConfigError, match="from_logits"):
        metric.add_batch(predictions=[[2.0, 0.1, 0.3]], references=[[1, 0, 0]])
    with pytest.raises(ConfigError, match="ignore_value"):
        metric.add_batch(predictions=[[0.2, 0.1, 0.3]], references=[[2, 0, 0]])
    with pytest.raises(ConfigError, match="gather"):
        metrics.multilabel_statistics(np.zeros((1, 3)), np.zeros((1, 3)), per_sample=True)
    with pytest.raises(ConfigError, match="num_classes"):
        metrics.load_metric("multilabel")
    logits = metrics.load_metric("multilabel", num_classes=3, num_bins=100, from_logits=True)
    probabilities = metrics.load_metric("multilabel", num_classes=3, num_bins=100)
    raw = np.array([[2.0, -1.0, 0.3], [-0.5, 0.2, 1.0]])
    labels = [[1, 0, 0], [0, 1, 1]]
    assert logits.compute(predictions=raw, references=labels) == probabilities.compute(
        predictions=1 / (1 + np.exp(-raw)), references=labels
    )
