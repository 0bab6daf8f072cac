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


def test_selection_score_normalised_by_references_hand_computed():
    # raw metrics of different scales: mIoU 0.2, depth abs_err 2.0, normals mean angle 30 degrees
    results = {"seg": {"mean_iou": 0.2}, "depth": {"abs_err": 2.0}, "normals": {"mean_angle": 30.0}}
    references = {"seg": {"mean_iou": 0.25}, "depth": {"abs_err": 2.5}, "normals": {"mean_angle": 20.0}}
    # (0.2/0.25 - 2.0/2.5 - 30/20) / 3 = (0.8 - 0.8 - 1.5) / 3 = -0.5
    assert selection_score(results, references) == pytest.approx(-0.5)
    # unnormalised, the normals angle decides alone: (0.2 - 2.0 - 30) / 3
    assert selection_score(results) == pytest.approx(-31.8 / 3)
    # a candidate better on segmentation and depth but 1 degree worse on normals wins once normalised
    other = {"seg": {"mean_iou": 0.3}, "depth": {"abs_err": 1.5}, "normals": {"mean_angle": 31.0}}
    assert selection_score(other, references) > selection_score(results, references)
    assert selection_score(other) < selection_score(results)


def test_delta_t_uses_the_full_metric_set():
    references = {"d": {"abs_err": 1.0, "rel_err": 1.0, "delta_1": 0.5, "delta_2": 0.5, "delta_3": 0.5},
                  "n": {"mean_angle": 10.0, "median_angle": 10.0, "within_11.25": 0.5, "within_22.5": 0.5,
                        "within_30": 0.5}}
    scores = {"d": {**references["d"], "delta_3": 0.55}, "n": {**references["n"], "within_30": 0.45}}
    result = delta_t({"d": "depth", "n": "normals"}, scores, references)
    assert result["per_task"] == pytest.approx({"d": 2.0, "n": -2.0})


def test_balanced_class_weights_and_weighted_loss():
    import numpy as np
    import torch

    from effhub.multitask import balanced_class_weights, task_loss

    labels = [np.array([[0, 0, 0, 1], [0, 0, 0, 255]])]
    weights = balanced_class_weights(labels, 3, power=1.0)
    # frequencies 6/7 and 1/7; inverse frequency scaled to a pixel-weighted mean of 1: (7/12, 7/2); unseen class 0
    assert weights == pytest.approx([7 / 12, 3.5, 0.0])
    logits = torch.zeros(1, 3, 2, 4)
    target = torch.tensor(labels[0])[None]
    # uniform logits: every pixel's cross-entropy is log 3, whatever the weights
    value = task_loss(logits, target, "segmentation", class_weights=torch.tensor(weights))
    assert float(value) == pytest.approx(float(np.log(3)))


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
