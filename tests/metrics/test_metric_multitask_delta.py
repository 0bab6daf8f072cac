"""multitask_delta: the Delta_T formula on random values, declared directions, and errors."""

import numpy as np
import pytest

import effhub.metrics as metrics
from effhub.errors import ConfigError


def test_delta_t_matches_the_formula():
    rng = np.random.default_rng(0)
    directions = {"seg": {"mean_iou": False, "pixel_accuracy": False}, "depth": {"abs_err": True, "rel_err": True}}
    single = {task: {m: float(rng.uniform(0.2, 0.8)) for m in ms} for task, ms in directions.items()}
    multi = {task: {m: float(rng.uniform(0.2, 0.8)) for m in ms} for task, ms in directions.items()}
    def relative_change(task, metric, lower):
        return (-1 if lower else 1) * (multi[task][metric] - single[task][metric]) / single[task][metric]

    expected_per_task = {
        task: 100 * np.mean([relative_change(task, m, lower) for m, lower in ms.items()])
        for task, ms in directions.items()
    }
    result = metrics.load_metric("multitask_delta").compute(multi_task=multi, single_task=single)
    assert result["per_task"] == pytest.approx(expected_per_task)
    assert result["delta_t"] == pytest.approx(np.mean(list(expected_per_task.values())))
    # the same multi-task values against themselves: no change
    assert metrics.multitask_delta(single, single)["delta_t"] == 0.0


def test_directions_must_be_declared():
    multi, single = {"t": {"custom": 2.0}}, {"t": {"custom": 1.0}}
    with pytest.raises(ConfigError, match="direction of metric 'custom'"):
        metrics.multitask_delta(multi, single)
    assert metrics.multitask_delta(multi, single, {"custom": True})["delta_t"] == pytest.approx(-100.0)
    assert metrics.multitask_delta(multi, single, {"t": {"custom": False}})["delta_t"] == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="no single-task reference"):
        metrics.multitask_delta({"u": {"abs_err": 1.0}}, single)
    with pytest.raises(ConfigError, match="is 0"):
        metrics.multitask_delta({"t": {"abs_err": 1.0}}, {"t": {"abs_err": 0.0}})
    with pytest.raises(ConfigError, match="takes no batches"):
        metrics.load_metric("multitask_delta").add_batch(predictions=[1.0], references=[1.0])
