"""The sample schema every dense multi-task data set follows, its task names and invalid values.

Every dense data set in effhub (the generated scenes, NYU-v2, CityScapes, Taskonomy) yields samples of one schema, so
that a model, a trainer or a simulation never needs to know where pixels came from:

| key | value | invalid / missing |
| --- | --- | --- |
| `id` | `str`, unique within the data set | |
| `image` | `uint8` (H, W, 3), **RGB** | |
| `segmentation` | `uint8` (H, W) class ids | `255` (:data:`IGNORE_INDEX`) |
| `depth` | `float32` (H, W), units per data set (metres for the scenes and NYU-v2) | `0` |
| `normals` | `float32` (H, W, 3) unit vectors | `(0, 0, 0)` |
| `keypoints`, `edges` | `float32` (H, W) in [-1, 1] (Taskonomy) | `255` |
| `label_mask` | `dict[str, bool]`: does this image carry a label for the task | |

A task whose label is missing for an image has the value `None` and `label_mask[task] == False`; the collator then
fills it with the invalid value, so a loss that honours either the mask or the invalid value drops it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...errors import ConfigError, DatasetError

IGNORE_INDEX = 255
"""Segmentation value of unlabeled pixels in every effhub dense data set (the loss's `ignore_index`)."""

DENSE_TASKS = ("segmentation", "depth", "normals", "keypoints", "edges")
"""Every task name the dense readers know, in a fixed order."""

INVALID_VALUES: dict[str, float] = {
    "segmentation": IGNORE_INDEX,
    "depth": 0.0,
    "normals": 0.0,
    # Taskonomy's keypoints and edges lie in [-1, 1]; the authors' code marks padding with 255, which no value reaches
    "keypoints": 255.0,
    "edges": 255.0,
}
"""Value of an invalid pixel per task (used for padding, missing labels and in the losses' masks)."""

LABEL_CHANNELS = {"segmentation": 1, "depth": 1, "normals": 3, "keypoints": 1, "edges": 1}

def check_tasks(tasks: Iterable[str], available: Sequence[str], dataset_name: str) -> tuple[str, ...]:
    """Return `tasks` as a tuple after checking each is one of `available` and none repeats."""
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    unknown = [task for task in tasks if task not in available]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ConfigError(
            f"{dataset_name} has no task(s) {unknown or list(tasks)} (known tasks: {list(available)})",
            f"pass distinct task names among {list(available)}",
        )
    return tasks



def dataset_ids(dataset) -> list[str]:
    """The `id` column of a data set without decoding any pixel (works on lazily decoded readers too)."""
    if isinstance(dataset, Sequence) and not hasattr(dataset, "column_names"):
        return [str(i) for i in dataset]
    if "id" not in dataset.column_names:
        raise DatasetError("The data set has no 'id' column", "use an effhub dense data set or add an 'id' column")
    return [str(i) for i in dataset.with_format(None)["id"]]


__all__ = ["IGNORE_INDEX", "DENSE_TASKS", "INVALID_VALUES", "LABEL_CHANNELS", "check_tasks", "dataset_ids"]
