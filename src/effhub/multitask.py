"""Dense multi-task pieces shared by every method that trains or scores several dense tasks at once.

One table of metric directions (:data:`LOWER_IS_BETTER`) and, per task type, the metrics a run selects models on,
shows as its headline and reports in a model card (:data:`TASK_TYPE_METRICS`); the per-task losses that honour a
per-image label mask; the per-sample sufficient statistics of every task and the scores computed from their sums;
Delta_T against single-task references. Task types are `segmentation`, `depth`, `normals` and `regression` (the
dense readers' keypoints and edges).

Nothing here knows a model class: a caller hands logits, labels and the task description
(`task_types`: `{task: type}` in task order, `num_classes`: `{task: output channels}`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError

LOWER_IS_BETTER: dict[str, bool] = {
    "mean_iou": False,
    "pixel_accuracy": False,
    "mean_accuracy": False,
    "accuracy": False,
    "abs_err": True,
    "rel_err": True,
    "rmse": True,
    "delta_1": False,
    "delta_2": False,
    "delta_3": False,
    "mean_angle": True,
    "median_angle": True,
    "rmse_angle": True,
    "within_11.25": False,
    "within_22.5": False,
    "within_30": False,
    "map": False,
    "cf1": False,
    "of1": False,
}
"""The direction of every metric effhub's modules report (True: lower is better): the one table of directions."""


@dataclass(frozen=True)
class TaskTypeMetrics:
    """Which metrics stand for one task type.

    Args:
        hub_task (`str`): the Hub's task type in a card's `model-index`.
        headline (`str`): the one metric a comparison table shows and model selection uses.
        card (`dict[str, str]`): the metrics a card reports, with their display names.
        delta_t (`tuple[str, ...]`): the metrics Delta_T averages (the paper's full set; the card's when empty).
    """

    hub_task: str
    headline: str
    card: dict[str, str]
    delta_t: tuple[str, ...] = ()

    @property
    def delta_t_metrics(self) -> tuple[str, ...]:
        """The metrics Delta_T averages over for this task type."""
        return self.delta_t or tuple(self.card)

    @property
    def lower_is_better(self) -> bool:
        """The direction of the headline metric."""
        return LOWER_IS_BETTER[self.headline]


TASK_TYPE_METRICS: dict[str, TaskTypeMetrics] = {
    "segmentation": TaskTypeMetrics("image-segmentation", "mean_iou",
                                    {"mean_iou": "mIoU", "pixel_accuracy": "Pixel accuracy"}),
    "depth": TaskTypeMetrics("depth-estimation", "abs_err",
                             {"abs_err": "Abs. error", "rel_err": "Rel. error", "delta_1": "delta < 1.25"},
                             ("abs_err", "rel_err", "delta_1", "delta_2", "delta_3")),
    "normals": TaskTypeMetrics("surface-normal-estimation", "mean_angle",
                               {"mean_angle": "Mean angle error", "median_angle": "Median angle error",
                                "within_11.25": "Within 11.25 deg"},
                               ("mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30")),
    "regression": TaskTypeMetrics("image-to-image", "abs_err", {"abs_err": "Abs. error"}),
}
"""Per task type: the Hub task, the headline (and selection) metric and the card's metrics."""


# -- losses ----------------------------------------------------------------------------------------------------------
def resize_nearest(labels, size: tuple[int, int]):
    """Nearest-neighbour resize of `(B, H, W)` or `(B, C, H, W)` labels to `size` (unchanged when already that size)."""
    import torch.nn.functional as F

    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    squeeze = labels.dim() == 3
    resized = F.interpolate((labels[:, None] if squeeze else labels).float(), size=size, mode="nearest")
    resized = resized[:, 0] if squeeze else resized
    return resized.to(labels.dtype)


def task_loss(prediction, labels, task_type: str, image_mask=None, ignore_index: int = 255, class_weights=None):
    """Masked mean of one task's per-pixel loss (labels resized to the prediction by nearest neighbour).

    Args:
        prediction (`torch.Tensor` of shape `(B, C, h, w)`): head output.
        labels (`torch.Tensor`): segmentation `(B, H, W)`, or `(B, C, H, W)` dense targets.
        task_type (`str`): `segmentation` (cross-entropy), `depth` (L1 where depth > 0), `normals` (1 - cosine where
            the target is non-zero), `regression` (L1 where the target is not `ignore_index`).
        image_mask (`torch.BoolTensor` of shape `(B,)`, *optional*): images whose label counts.
        ignore_index (`int`, defaults to 255): the invalid label value of segmentation and regression targets.
        class_weights (`torch.Tensor` of shape `(C,)`, *optional*): segmentation: per-class weights; the loss is the
            weighted mean over valid pixels (weights of their true classes).
    """
    import torch.nn.functional as F

    size = tuple(prediction.shape[-2:])
    pixel_weight = None
    if task_type == "segmentation":
        if labels.dim() == 4 and labels.shape[1] == 1:
            labels = labels[:, 0]
        target = resize_nearest(labels.long(), size)
        valid = target != ignore_index
        safe_target = target.masked_fill(~valid, 0)
        per_pixel = F.cross_entropy(prediction, safe_target, reduction="none")
        if class_weights is not None:
            pixel_weight = class_weights.to(prediction.device, per_pixel.dtype)[safe_target]
    else:
        if labels.dim() == 3:
            labels = labels[:, None]
        target = resize_nearest(labels.to(prediction.dtype), size)
        if target.shape[1] != prediction.shape[1]:
            raise ConfigError(
                f"{task_type} labels have {target.shape[1]} channels, predictions {prediction.shape[1]}",
                "give labels with the task's number of channels",
            )
        if task_type == "depth":
            valid = target[:, 0] > 0
            per_pixel = (prediction - target).abs().mean(dim=1)
        elif task_type == "normals":
            valid = target.norm(dim=1) > 0
            cosine = F.cosine_similarity(F.normalize(prediction, dim=1), F.normalize(target, dim=1), dim=1)
            per_pixel = 1 - cosine
        elif task_type == "regression":
            valid = (target != ignore_index).all(dim=1)
            per_pixel = (prediction - target).abs().mean(dim=1)
        else:
            raise ConfigError(f"task type '{task_type}' has no loss", "use segmentation, depth, normals or regression")
    if image_mask is not None:
        valid = valid & image_mask.view(-1, 1, 1)
    weight = valid.to(per_pixel.dtype)
    if pixel_weight is not None:
        weight = weight * pixel_weight
    # a batch without a valid pixel keeps the graph but contributes exactly zero
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0 if pixel_weight is None else 1e-6)


def task_image_mask(label_mask, task_names: Sequence[str], task: str, batch: int, device=None):
    """The `(B,)` image mask of `task` from a label mask, or None when every image counts.

    Args:
        label_mask (`torch.BoolTensor` of shape `(B, T)` in `task_names` order, or `dict[str, (B,)]`, *optional*):
            which images carry which task's label.
        task_names (`Sequence[str]`): the tasks in column order.
        task (`str`): the task whose column is returned.
        batch (`int`): the batch size the mask must cover.
        device (`torch.device`, *optional*): where the mask goes.
    """
    import torch

    if label_mask is None:
        return None
    if isinstance(label_mask, dict):
        mask = label_mask.get(task)
        if mask is None:
            return None
    else:
        if label_mask.dim() != 2 or label_mask.shape[1] != len(task_names):
            raise ConfigError(
                f"label_mask has shape {tuple(label_mask.shape)}, expected (batch, {len(task_names)})",
                f"give one column per task in the order {list(task_names)}",
            )
        mask = label_mask[:, list(task_names).index(task)]
    if mask.shape[0] != batch:
        raise ConfigError(f"label_mask covers {mask.shape[0]} images, the batch has {batch}", "align them")
    return mask.to(device=device, dtype=torch.bool)


def weighted_task_losses(logits: Mapping, labels: Mapping, task_types: Mapping[str, str],
                         task_loss_weights: Mapping[str, float], label_mask=None, ignore_index: int = 255,
                         class_weights: Mapping | None = None):
    """`(sum over tasks of weight * task loss, {task: unweighted loss})` over the tasks with logits and labels.

    Args:
        logits (`dict[str, torch.Tensor]`): the predictions per task (summed in this order).
        labels (`dict[str, torch.Tensor]`): the targets per task.
        task_types (`dict[str, str]`): every task's type, in task order (the label mask's column order).
        task_loss_weights (`dict[str, float]`): every task's loss weight.
        label_mask (*optional*): see :func:`task_image_mask`.
        ignore_index (`int`, defaults to 255): the invalid label value.
        class_weights (`dict[str, list[float]]`, *optional*): per segmentation task, the per-class loss weights.
    """
    import torch

    from .errors import TaskError

    task_names = list(task_types)
    unknown = sorted(set(labels) - set(task_types))
    if unknown:
        raise TaskError(f"labels hold unknown task(s) {unknown}", f"label only the tasks {task_names}")
    task_losses = {}
    total = None
    for name, prediction in logits.items():
        if name not in labels:
            continue
        image_mask = task_image_mask(label_mask, task_names, name, prediction.shape[0], prediction.device)
        weights = (class_weights or {}).get(name)
        weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        value = task_loss(prediction, labels[name], task_types[name], image_mask, ignore_index, weights)
        task_losses[name] = value
        weighted = task_loss_weights[name] * value
        total = weighted if total is None else total + weighted
    if total is None:
        raise TaskError(
            f"labels give none of the tasks run in this pass ({list(logits)})",
            "pass labels for at least one of the tasks being run",
        )
    return total, task_losses


def balanced_class_weights(labels, num_classes: int, ignore_index: int = 255, power: float = 0.5) -> list[float]:
    """Class-balanced segmentation loss weights: `frequency ** -power`, scaled to a pixel-weighted mean of 1.

    Args:
        labels (iterable of arrays): segmentation label maps (any shape); `ignore_index` pixels are not counted.
        num_classes (`int`): the number of classes.
        ignore_index (`int`, defaults to 255): the invalid label value.
        power (`float`, defaults to 0.5): 1 = inverse frequency, 0.5 = inverse square root (milder), 0 = none.
    """
    import numpy as np

    counts = np.zeros(num_classes, dtype=np.float64)
    for label in labels:
        values = np.asarray(label).reshape(-1)
        values = values[(values != ignore_index) & (values >= 0) & (values < num_classes)]
        counts += np.bincount(values.astype(np.int64), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        raise ConfigError("no valid segmentation pixel to count classes from", "pass labelled training images")
    frequency = counts / counts.sum()
    weights = np.where(frequency > 0, np.power(np.maximum(frequency, 1e-12), -power), 0.0)
    weights = weights / float((weights * frequency).sum())
    return [float(w) for w in weights]


# -- statistics and scores -------------------------------------------------------------------------------------------
def task_statistics(logits: Mapping, labels: Mapping, task_types: Mapping[str, str], num_classes: Mapping[str, int],
                    label_mask=None, ignore_index: int = 255) -> dict:
    """Per-sample sufficient statistics of every task, keyed `task/statistic` (for gather + sum).

    Predictions are resized (bilinear) to the labels; images whose label mask is off count for nothing.

    Args:
        logits (`dict[str, torch.Tensor]`): the predictions per task.
        labels (`dict[str, torch.Tensor]`): the targets per task (the dense collator's `labels`).
        task_types (`dict[str, str]`): every task's type, in the label mask's column order.
        num_classes (`dict[str, int]`): the number of classes of each segmentation task.
        label_mask (`torch.BoolTensor` of shape `(B, T)`, *optional*): which images carry which task's label.
        ignore_index (`int`, defaults to 255): the invalid segmentation label.
    """
    import torch.nn.functional as F

    from .metrics import depth_statistics, normals_statistics, segmentation_statistics

    task_names = list(task_types)
    stats = {}
    for task, prediction in logits.items():
        reference = labels[task]
        size = tuple(reference.shape[-2:])
        prediction = F.interpolate(prediction.float(), size=size, mode="bilinear", align_corners=False)
        kind = task_types[task]
        mask = label_mask[:, task_names.index(task)] if label_mask is not None else None
        if kind == "segmentation":
            reference = reference.clone()
            if mask is not None:
                reference[~mask] = ignore_index
            values = segmentation_statistics(prediction, reference, num_classes[task], ignore_index, per_sample=True)
        elif kind == "normals":
            pixel_mask = None if mask is None else mask.view(-1, 1, 1).expand(-1, *size)
            values = normals_statistics(prediction, reference, mask=pixel_mask, per_sample=True)
        else:
            pixel_mask = None if mask is None else mask.view(-1, 1, 1, 1).expand_as(reference)
            values = depth_statistics(prediction, reference, mask=pixel_mask, per_sample=True)
        stats.update({f"{task}/{key}": value for key, value in values.items()})
    return stats


def scores_from_statistics(task_types: Mapping[str, str], totals: Mapping) -> dict[str, dict[str, float]]:
    """`{task: {metric: value}}` from the summed statistics of :func:`task_statistics` (tasks without any left out).

    Args:
        task_types (`dict[str, str]`): every task's type, in task order.
        totals (`dict[str, torch.Tensor]`): statistics keyed `task/statistic`, summed over the data set.
    """
    from .metrics import depth_scores, normals_scores, segmentation_scores

    results = {}
    for task, kind in task_types.items():
        stats = {key.split("/", 1)[1]: value.cpu().numpy() for key, value in totals.items()
                 if key.startswith(task + "/")}
        if not stats:
            continue
        scorer = {"segmentation": segmentation_scores, "normals": normals_scores}.get(kind, depth_scores)
        scores = scorer(stats)
        results[task] = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
    return results


def selection_score(results: Mapping[str, Mapping[str, float]],
                    references: Mapping[str, Mapping[str, float]] | None = None) -> float:
    """Mean over tasks of the signed headline metric (higher is better); relative to `references` when given.

    A task's headline metric is the first of the table's headline metrics (in :data:`TASK_TYPE_METRICS` order) that
    its results hold.
    """
    values = []
    for task, metrics in results.items():
        for kind in TASK_TYPE_METRICS.values():
            if kind.headline in metrics:
                value = metrics[kind.headline]
                if references and task in references and references[task].get(kind.headline):
                    value = value / references[task][kind.headline]
                values.append(-value if kind.lower_is_better else value)
                break
    return sum(values) / max(len(values), 1)


def delta_t(task_types: Mapping[str, str], scores: Mapping, references: Mapping) -> dict:
    """Delta_T (%) of `scores` against the single-task `references` over the full metric set of every task (the
    paper's: mIoU and pixel accuracy; depth errors and delta_1..3; normals angles and the 11.25/22.5/30 degree shares).

    Uses `effhub.metrics.multitask_delta`; a metric whose single-task value is 0 (possible after very short runs) is
    left out: its relative change is undefined.

    Args:
        task_types (`dict[str, str]`): every task's type, in task order.
        scores (`dict[str, dict[str, float]]`): the multi-task model's `{task: {metric: value}}`.
        references (`dict[str, dict[str, float]]`): the single-task models' scores.

    Returns:
        `{"delta_t": percent, "per_task": {task: percent}}`.
    """
    from .metrics import multitask_delta

    chosen = {task: {metric: scores[task][metric] for metric in TASK_TYPE_METRICS[kind].delta_t_metrics
                     if metric in scores[task] and references.get(task, {}).get(metric)}
              for task, kind in task_types.items()}
    result = multitask_delta({task: metrics for task, metrics in chosen.items() if metrics}, references)
    return {"delta_t": float(result["delta_t"]), "per_task": {k: float(v) for k, v in result["per_task"].items()}}


__all__ = ["LOWER_IS_BETTER", "TaskTypeMetrics", "TASK_TYPE_METRICS", "resize_nearest", "task_loss",
           "task_image_mask", "weighted_task_losses", "balanced_class_weights", "task_statistics",
           "scores_from_statistics", "selection_score",
           "delta_t"]
