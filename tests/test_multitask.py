"""The shared dense multi-task pieces: the one direction table, losses with label masks, scores and Delta_T."""

import pytest
import torch

from effhub.metrics.multitask_delta.statistics import multitask_delta
from effhub.multitask import (
    LOWER_IS_BETTER,
    TASK_TYPE_METRICS,
    delta_t,
    scores_from_statistics,
    selection_score,
    task_statistics,
    weighted_task_losses,
)


def test_every_named_metric_has_a_direction():
    for kind in TASK_TYPE_METRICS.values():
        assert kind.headline in LOWER_IS_BETTER and set(kind.card) <= set(LOWER_IS_BETTER)
    # the Delta_T metric takes its directions from the same table
    result = multitask_delta({"d": {"abs_err": 0.9}}, {"d": {"abs_err": 1.0}})
    assert result["delta_t"] == pytest.approx(10.0)


def test_selection_score_and_delta_t():
    results = {"seg": {"mean_iou": 0.5}, "depth": {"abs_err": 0.25}}
    assert selection_score(results) == pytest.approx((0.5 - 0.25) / 2)
    references = {"seg": {"mean_iou": 0.4, "pixel_accuracy": 0.8}, "depth": {"abs_err": 0.5}}
    scores = {"seg": {"mean_iou": 0.44, "pixel_accuracy": 0.8}, "depth": {"abs_err": 0.25}}
    result = delta_t({"seg": "segmentation", "depth": "depth"}, scores, references)
    assert result["per_task"] == pytest.approx({"seg": 5.0, "depth": 50.0})


def test_label_mask_drops_unlabeled_images_from_losses_and_scores():
    torch.manual_seed(0)
    logits = {"seg": torch.randn(2, 3, 4, 4), "depth": torch.rand(2, 1, 4, 4)}
    labels = {"seg": torch.randint(0, 3, (2, 4, 4)), "depth": torch.rand(2, 1, 4, 4) + 0.1}
    types = {"seg": "segmentation", "depth": "depth"}
    mask = torch.tensor([[True, True], [True, False]])
    total, losses = weighted_task_losses(logits, labels, types, {"seg": 1.0, "depth": 2.0}, mask)
    alone, _ = weighted_task_losses({"depth": logits["depth"][:1]}, {"depth": labels["depth"][:1]}, types,
                                    {"seg": 1.0, "depth": 1.0})
    assert losses["depth"] == pytest.approx(alone.item())
    assert total.item() == pytest.approx(losses["seg"].item() + 2 * losses["depth"].item())
    stats = task_statistics(logits, labels, types, {"seg": 3}, mask)
    totals = {key: value.sum(dim=0) for key, value in stats.items()}
    scores = scores_from_statistics(types, totals)
    first = task_statistics({"depth": logits["depth"][:1]}, {"depth": labels["depth"][:1]}, {"depth": "depth"}, {})
    expected = scores_from_statistics({"depth": "depth"}, {k: v.sum(dim=0) for k, v in first.items()})
    assert scores["depth"] == pytest.approx(expected["depth"])
