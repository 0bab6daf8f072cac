"""The model budget allocation trains: one multi-task network on a partially labelled pool (label-masked losses).

Hard sharing by default: the AdaShare network (`effhub.models.adashare`) with every block executed by every task
(an all-ones policy), trained like AdaShare's re-training phase (its loss and parameter groups). The pilot model of
`taba` and every cell of a simulation are built here, so that all of them are the same network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetError

FIXED_CHANNELS = {"depth": 1, "normals": 3, "keypoints": 1, "edges": 1}


def task_channels(pool, tasks: Sequence[str], num_classes: int | None = None) -> dict[str, int]:
    """Output channels per task: segmentation classes from `num_classes`, else from the generated scenes' config or
    the largest class id among up to 200 labelled images of `pool`."""
    channels = {}
    for task in tasks:
        if task in FIXED_CHANNELS:
            channels[task] = FIXED_CHANNELS[task]
            continue
        if task != "segmentation":
            raise ConfigError(f"budget allocation has no model head for task '{task}'",
                              "use segmentation, depth, normals, keypoints or edges")
        if num_classes is None:
            num_classes = _infer_num_classes(pool)
        channels[task] = int(num_classes)
    return channels


def _infer_num_classes(pool) -> int:
    import json

    description = getattr(getattr(pool, "info", None), "description", "") or ""
    if "config {" in description:
        try:
            return int(json.loads(description.split("config ", 1)[1])["num_classes"])
        except (ValueError, KeyError):
            pass
    largest = -1
    for index in range(min(len(pool), 200)):
        value = pool[index].get("segmentation")
        if value is None:
            continue
        array = np.asarray(value)
        valid = array[array != 255]
        if valid.size:
            largest = max(largest, int(valid.max()))
    if largest < 0:
        raise DatasetError("no segmentation label found to count the classes from",
                           "pass num_classes (the CLI's --num-classes)")
    return largest + 1


def build_model(model_recipe, channels: Mapping[str, int], seed: int, task_loss_weights: Mapping | None = None,
                class_weights: Mapping | None = None):
    """The hard-sharing network: an `AdaShareModel` of `model_recipe` (an `AdaShareModelRecipe`) for `channels`
    with every block executed by every task."""
    import torch

    from ..models.adashare.configuration_adashare import AdaShareConfig
    from ..models.adashare.modeling_adashare import AdaShareModel

    values = dict(vars(model_recipe))
    values["tasks"] = dict(channels)
    values["task_types"] = None
    weights = {task: float((task_loss_weights or {}).get(task, 1.0)) for task in channels}
    torch.manual_seed(seed)
    config = AdaShareConfig(**values, task_loss_weights=weights,
                            segmentation_class_weights=dict(class_weights) if class_weights else None)
    model = AdaShareModel(config)
    model.set_policy({task: [1] * config.num_blocks for task in config.task_names})
    return model


def make_collator(tasks: Sequence[str]):
    """The dense collator of `tasks`, normalising pixels with AdaShare's image processor."""
    from ..data.dense.collator import DenseCollator
    from ..models.adashare.image_processing_pil_adashare import (
        AdaShareImageProcessorPil,
    )

    return DenseCollator(list(tasks), normalize=AdaShareImageProcessorPil().normalize_pixels)


def rows_with_columns(dataset, names):
    """Rows of `dataset` holding only the columns `names` (no image decoded); lazily decoded readers as they are."""
    if (dataset.format or {}).get("type") == "custom" or not all(n in dataset.column_names for n in names):
        return dataset
    return dataset.select_columns(names)


def class_weights_of(dataset, tasks: Sequence[str], num_classes: int, power: float) -> dict | None:
    """Balanced segmentation class weights counted on the images of `dataset` that carry a segmentation label."""
    from ..multitask import balanced_class_weights

    if "segmentation" not in tasks or power <= 0:
        return None
    labels = []
    for row in rows_with_columns(dataset, ["segmentation", "label_mask"]):
        if (row.get("label_mask") or {}).get("segmentation", True) and row.get("segmentation") is not None:
            labels.append(np.asarray(row["segmentation"]))
    if not labels:
        return None
    return {"segmentation": balanced_class_weights(labels, num_classes, power=power)}


def training_phase(model, steps: int, batch_size: int, lr: float, weight_decay: float = 1e-4, name: str = "train"):
    """One phase of Adam updates of every network weight with the label-masked multi-task loss (AdaShare's
    re-training loss with the fixed all-ones policy)."""
    import torch

    from ..models.adashare.training_adashare import network_parameters, retrain_loss
    from ..training import Phase, Update

    return Phase(name=name, steps=int(steps), batch_size=int(batch_size), updates=[Update(
        name="weights", dataset="train", loss=retrain_loss, parameters=network_parameters,
        optimizer=lambda p: torch.optim.Adam(p, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay),
        scheduler=lambda optimizer, total: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(total, 1)))])


def evaluate_scores(run, model, dataset, batch_size: int = 50) -> dict:
    """Test scores `{task: {metric: value}}` (on the run's processes, or alone when `run` is None)."""
    from ..models.adashare.training_adashare import evaluate_model

    return evaluate_model(run, model, dataset, make_collator(model.config.task_names), batch_size, "fixed")


def trivial_scores(train_data, test_data, channels: Mapping[str, int], batch_size: int = 50) -> dict:
    """Scores of constant predictions made from `train_data`'s labels: the majority class (segmentation), the mean
    depth, the mean normal. The floor that a trained model must beat for a comparison to mean anything."""
    import torch

    from ..multitask import scores_from_statistics, task_statistics

    tasks = list(channels)
    types = {task: ("regression" if task in ("keypoints", "edges") else task) for task in tasks}
    constants: dict[str, Any] = {}
    for task in tasks:
        values = [np.asarray(row[task]) for row in rows_with_columns(train_data, [task, "label_mask"])
                  if row.get(task) is not None and (row.get("label_mask") or {}).get(task, True)]
        if not values:
            raise DatasetError(f"no '{task}' label to build the trivial baseline from", "use a labelled pool")
        if task == "segmentation":
            stacked = np.concatenate([v.reshape(-1) for v in values])
            stacked = stacked[stacked != 255]
            constants[task] = int(np.bincount(stacked.astype(np.int64), minlength=channels[task]).argmax())
        elif task == "normals":
            stacked = np.concatenate([v.reshape(-1, 3) for v in values])
            stacked = stacked[np.linalg.norm(stacked, axis=1) > 0]
            mean = stacked.mean(axis=0)
            constants[task] = mean / max(np.linalg.norm(mean), 1e-8)
        else:
            stacked = np.concatenate([v.reshape(-1) for v in values])
            stacked = stacked[stacked > 0] if task == "depth" else stacked[stacked != 255]
            constants[task] = float(stacked.mean())
    collate = make_collator(tasks)
    totals: dict = {}
    loader = torch.utils.data.DataLoader(test_data, batch_size=batch_size, collate_fn=collate)
    for batch in loader:
        size = batch["pixel_values"].shape[0]
        height, width = batch["pixel_values"].shape[-2:]
        logits = {}
        for task in tasks:
            if task == "segmentation":
                logit = torch.zeros(size, channels[task], height, width)
                logit[:, constants[task]] = 1.0
            elif task == "normals":
                logit = torch.as_tensor(constants[task], dtype=torch.float32).view(1, 3, 1, 1).expand(
                    size, 3, height, width).clone()
            else:
                logit = torch.full((size, 1, height, width), constants[task])
            logits[task] = logit
        stats = task_statistics(logits, batch["labels"], types, channels, batch["label_mask"])
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value.sum(dim=0)
    return scores_from_statistics(types, totals)


def pooled_features(model, dataset, batch_size: int = 64):
    """`(N, C)` numpy array: the shared trunk's features of every image of `dataset`, averaged over space."""
    from ..training import evaluate

    def step(model, batch):
        output = model(batch["pixel_values"], policy_mode="fixed", output_features=True)
        first = model.config.task_names[0]
        return output.features[first].mean(dim=(2, 3))

    features = evaluate(model, dataset, step, batch_size, collate_fn=make_collator(model.config.task_names),
                        reduce=None)
    return features.cpu().numpy().astype(np.float32)


__all__ = [
    "build_model",
    "class_weights_of",
    "evaluate_scores",
    "make_collator",
    "pooled_features",
    "rows_with_columns",
    "task_channels",
    "training_phase",
    "trivial_scores",
]
