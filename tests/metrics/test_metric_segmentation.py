"""semantic_segmentation: exact against numpy on random masks, bounded state, per-sample statistics, bad input."""

import numpy as np
import pytest
import torch

import effhub.metrics as metrics
from effhub.errors import ConfigError

NUM_LABELS, IGNORE = 5, 255


def _random_batch(rng, batch_size=3, height=17, width=23):
    references = rng.integers(0, NUM_LABELS, (batch_size, height, width))
    references[rng.random(references.shape) < 0.1] = IGNORE
    # predictions agree with the references 60% of the time, so IoUs are neither 0 nor 1
    noise = rng.integers(0, NUM_LABELS, references.shape)
    predictions = np.where(rng.random(references.shape) < 0.6, references, noise)
    predictions[predictions == IGNORE] = 0
    return predictions, references


def _exact(predictions, references):
    predictions, references = np.concatenate(predictions).ravel(), np.concatenate(references).ravel()
    keep = references != IGNORE
    predictions, references = predictions[keep], references[keep]
    iou = []
    for c in range(NUM_LABELS):
        intersection = np.sum((predictions == c) & (references == c))
        union = np.sum((predictions == c) | (references == c))
        iou.append(intersection / union if union else np.nan)
    return np.nanmean(iou), np.mean(predictions == references), iou


@pytest.fixture(scope="module")
def metric():
    return metrics.load_metric("semantic_segmentation", num_labels=NUM_LABELS, ignore_index=IGNORE)


def test_matches_exact_numpy(metric):
    rng = np.random.default_rng(0)
    batches = [_random_batch(rng) for _ in range(4)]
    for predictions, references in batches:
        metric.add_batch(predictions=predictions, references=references)
    result = metric.compute()
    mean_iou, pixel_accuracy, iou = _exact([b[0] for b in batches], [b[1] for b in batches])
    assert result["mean_iou"] == pytest.approx(mean_iou, abs=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(pixel_accuracy, abs=1e-12)
    np.testing.assert_allclose(result["per_category_iou"], iou, atol=1e-12)
    assert 0.2 < result["mean_iou"] < 0.9


def test_logits_and_absent_classes(metric):
    rng = np.random.default_rng(1)
    references = rng.integers(0, 3, (2, 8, 8))  # classes 3 and 4 never appear
    logits = torch.from_numpy(rng.normal(size=(2, NUM_LABELS, 8, 8))).float()
    logits[:, 3:] -= 100.0  # nor are they predicted
    result = metric.compute(predictions=logits, references=references)
    mean_iou, pixel_accuracy, _ = _exact([logits.argmax(1).numpy()], [references])
    assert result["mean_iou"] == pytest.approx(mean_iou) and result["pixel_accuracy"] == pytest.approx(pixel_accuracy)
    assert np.isnan(result["per_category_iou"][3:]).all()


def test_state_does_not_grow_with_pixels(metric):
    size_before = metric.state_nbytes
    rng = np.random.default_rng(2)
    predictions, references = _random_batch(rng, batch_size=4, height=128, width=256)
    for _ in range(40):  # 5.2 M pixels in total
        metric.add_batch(predictions=torch.from_numpy(predictions), references=torch.from_numpy(references))
    assert metric.state_nbytes == size_before == NUM_LABELS * NUM_LABELS * 8
    assert len(metric) == 160
    assert metric.writer is None  # evaluate's Arrow cache of predictions was never opened
    assert metric.statistics["confusion_matrix"].sum() == 40 * np.sum(references != IGNORE)
    metric.compute()


def test_per_sample_statistics_fold_like_batches(metric):
    rng = np.random.default_rng(3)
    predictions, references = _random_batch(rng, batch_size=5)
    per_sample = metrics.segmentation_statistics(predictions, references, NUM_LABELS, IGNORE, per_sample=True)
    assert per_sample["confusion_matrix"].shape == (5, NUM_LABELS, NUM_LABELS)
    # as after accelerator.gather_for_metrics: per-sample rows of several ranks, concatenated
    metric.add_statistics({"confusion_matrix": per_sample["confusion_matrix"][:3]})
    metric.add_statistics({"confusion_matrix": per_sample["confusion_matrix"][3:]})
    from_statistics = metric.compute()
    from_batch = metric.compute(predictions=predictions, references=references)
    assert from_statistics["mean_iou"] == from_batch["mean_iou"] and from_statistics == from_batch


def test_bad_input(metric):
    with pytest.raises(ConfigError, match="num_labels"):
        metrics.load_metric("semantic_segmentation")
    with pytest.raises(ConfigError, match="num_labels is 5"):
        metric.add_batch(predictions=np.zeros((1, 2, 2), int), references=np.full((1, 2, 2), 7))
    with pytest.raises(ConfigError, match="shape"):
        metric.add_batch(predictions=np.zeros((1, 2, 2), int), references=np.zeros((1, 3, 2), int))
    with pytest.raises(ConfigError, match="outside"):
        metric.add_batch(predictions=np.full((1, 2, 2), 9), references=np.zeros((1, 2, 2), int))
    with pytest.raises(ConfigError, match="shape"):
        metric.add_statistics({"confusion_matrix": np.zeros((4, 4))})
    with pytest.raises(ConfigError, match="before any data"):
        metric.compute()


def test_accelerate_gather_for_metrics_flow():
    """The documented distributed pattern (one process here; tests/training runs real multi-process jobs)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    rng = np.random.default_rng(4)
    predictions, references = _random_batch(rng, batch_size=10)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(predictions), torch.from_numpy(references))
    accelerator = Accelerator(cpu=True)
    try:
        loader = accelerator.prepare(torch.utils.data.DataLoader(dataset, batch_size=4))  # 4 + 4 + 2
        metric = metrics.load_metric("semantic_segmentation", num_labels=NUM_LABELS)
        for batch_predictions, batch_references in loader:
            statistics = metrics.segmentation_statistics(
                batch_predictions, batch_references, NUM_LABELS, per_sample=True
            )
            gathered = accelerator.gather_for_metrics(statistics)
            if accelerator.is_main_process:
                metric.add_statistics(gathered, num_examples=len(gathered["confusion_matrix"]))
        assert len(metric) == 10
        result = metric.compute()
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    mean_iou, pixel_accuracy, _ = _exact([predictions], [references])
    assert result["mean_iou"] == pytest.approx(mean_iou) and result["pixel_accuracy"] == pytest.approx(pixel_accuracy)
