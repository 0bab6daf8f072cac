"""depth_estimation and surface_normals: exact against numpy on random maps, masks, bounded state, bad input."""

import numpy as np
import pytest
import torch

import effhub.metrics as metrics
from effhub.errors import ConfigError


def _depth_batch(rng, batch_size=3, size=(11, 13)):
    references = rng.uniform(0.5, 10.0, (batch_size, *size))
    references[rng.random(references.shape) < 0.2] = 0.0  # missing depth
    predictions = references * rng.uniform(0.6, 1.6, references.shape) + rng.normal(0, 0.1, references.shape)
    predictions[0, 0, :3] = [-1.0, 0.0, 1e-9]  # non-positive and tiny predictions
    return predictions, references


def _exact_depth(predictions, references, mask):
    p, g = predictions[mask], references[mask]
    error = np.abs(p - g)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
    return {
        "abs_err": error.mean(),
        "rel_err": (error / g).mean(),
        "rmse": np.sqrt((error**2).mean()),
        "delta_1": (ratio < 1.25).mean(),
        "delta_2": (ratio < 1.25**2).mean(),
        "delta_3": (ratio < 1.25**3).mean(),
    }


def test_depth_matches_exact_numpy():
    rng = np.random.default_rng(0)
    metric = metrics.load_metric("depth_estimation")
    batches = [_depth_batch(rng) for _ in range(3)]
    extra_masks = [rng.random(b[1].shape) < 0.8 for b in batches]
    for (predictions, references), mask in zip(batches, extra_masks):
        # a (B, 1, H, W) prediction and an explicit mask, which further restricts gt > 0
        metric.add_batch(predictions=torch.from_numpy(predictions)[:, None], references=references, mask=mask)
    result = metric.compute()
    predictions = np.concatenate([b[0] for b in batches])
    references = np.concatenate([b[1] for b in batches])
    valid = np.concatenate(extra_masks) & (references > 0)
    expected = _exact_depth(predictions, references, valid)
    assert result == pytest.approx(expected, rel=1e-9)
    assert 0.2 < result["delta_1"] < 0.9


def test_depth_per_sample_and_state():
    rng = np.random.default_rng(1)
    metric = metrics.load_metric("depth_estimation")
    predictions, references = _depth_batch(rng, batch_size=4)
    per_sample = metrics.depth_statistics(predictions, references, per_sample=True)
    assert per_sample["count"].shape == (4,) and per_sample["delta_count"].shape == (4, 3)
    metric.add_statistics(per_sample)
    size = metric.state_nbytes
    for _ in range(20):
        metric.add_batch(predictions=predictions, references=references)
    assert metric.state_nbytes == size
    assert metric.compute() == pytest.approx(_exact_depth(predictions, references, references > 0), rel=1e-9)
    with pytest.raises(ConfigError, match="resolution"):
        metric.add_batch(predictions=np.ones((1, 4, 4)), references=np.ones((1, 4, 5)))
    with pytest.raises(ConfigError, match="mask"):
        metric.add_batch(predictions=np.ones((1, 4, 4)), references=np.ones((1, 4, 4)), mask=np.ones((1, 2, 2)))


def _normals_batch(rng, batch_size=2, size=(9, 10)):
    references = rng.normal(size=(batch_size, 3, *size))
    references /= np.linalg.norm(references, axis=1, keepdims=True)
    references[:, :, 0, :4] = 0.0  # invalid pixels
    predictions = references + rng.normal(0, 0.4, references.shape)
    predictions[0, :, 1, 1] = 0.0  # a zero prediction counts as 90 degrees
    return predictions, references


def _exact_angles(predictions, references, mask=None):
    valid = np.linalg.norm(references, axis=1) > 0
    if mask is not None:
        valid &= mask
    p = np.moveaxis(predictions, 1, -1)[valid]
    g = np.moveaxis(references, 1, -1)[valid]
    p_norm = np.linalg.norm(p, axis=1)
    cosine = np.sum(p * g, 1) / np.where(p_norm > 0, p_norm, 1) / np.linalg.norm(g, axis=1)
    return np.where(p_norm > 0, np.degrees(np.arccos(np.clip(cosine, -1, 1))), 90.0)


def test_normals_match_exact_numpy():
    rng = np.random.default_rng(2)
    metric = metrics.load_metric("surface_normals")
    batches = [_normals_batch(rng) for _ in range(3)]
    masks = [rng.random((2, 9, 10)) < 0.9 for _ in batches]
    for (predictions, references), mask in zip(batches, masks):
        metric.add_batch(predictions=torch.from_numpy(predictions).float(), references=references, mask=mask)
    result = metric.compute()
    angles = np.sort(
        np.concatenate([_exact_angles(p, r, m) for (p, r), m in zip(batches, masks)])
    )
    # float32 predictions: angles agree to about 1e-4 degrees
    assert result["mean_angle"] == pytest.approx(angles.mean(), abs=1e-3)
    assert result["rmse_angle"] == pytest.approx(np.sqrt((angles**2).mean()), abs=1e-3)
    for threshold in (11.25, 22.5, 30):
        assert result[f"within_{threshold:g}"] == pytest.approx((angles < threshold).mean(), abs=1.5 / angles.size)
    # the documented median bound: one bin width plus half the gap between the two middle angles
    middle = angles.size // 2
    gap = angles[middle] - angles[middle - 1] if angles.size % 2 == 0 else 0.0
    assert abs(result["median_angle"] - np.median(angles)) <= 0.01 + gap / 2 + 1e-4
    assert 5 < result["median_angle"] < 60


def test_normals_state_is_the_histogram_size():
    rng = np.random.default_rng(3)
    metric = metrics.load_metric("surface_normals", bin_width=0.05)
    predictions, references = _normals_batch(rng, batch_size=2, size=(32, 32))
    size = metric.state_nbytes
    for _ in range(25):
        metric.add_batch(predictions=predictions, references=references)
    assert metric.state_nbytes == size < 64 * 1024
    per_sample = metrics.normals_statistics(predictions, references, bin_width=0.05, per_sample=True)
    assert per_sample["histogram"].shape == (2, 3600)
    assert metric.compute()["mean_angle"] == pytest.approx(_exact_angles(predictions, references).mean(), abs=1e-9)
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        metric.add_batch(predictions=np.ones((1, 2, 4, 4)), references=np.ones((1, 2, 4, 4)))
    with pytest.raises(ConfigError, match="bin_width"):
        metrics.load_metric("surface_normals", bin_width=0)
