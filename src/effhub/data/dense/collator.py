"""The dense collator: samples of the dense schema to a batch of tensors, pixels normalised by the model's processor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError, DatasetError
from .augmentation import DenseAugmentation
from .schema import DENSE_TASKS, INVALID_VALUES, LABEL_CHANNELS, check_tasks


@dataclass
class DenseCollator:
    """Turn dense samples into a batch of tensors for a multi-task model.

    Returns `pixel_values` float [B, 3, H, W] (each image as `normalize` returns it), `labels` `{task: tensor}`
    (segmentation long [B, H, W]; depth, keypoints, edges float [B, 1, H, W]; normals float [B, 3, H, W]),
    `label_mask` bool [B, T] in the order of `tasks`, and `ids`.

    The collator holds no mean or std: the model's image processor is the one place pixels are normalised, in
    training and at inference, and `normalize` is that processor's tensor method.

    Args:
        tasks (`Sequence[str]`): the tasks to batch, in the order of `label_mask`'s columns.
        normalize (`Callable`): takes one image as a float32 torch tensor [3, H, W] of uint8 values in RGB order and
            returns the model's input (e.g. an image processor's `normalize_pixels`).
        augmentation (`DenseAugmentation`, *optional*): random scale/flip/crop for training, applied after
            `normalize` (padding is 0, the mean colour).
        generator (`torch.Generator`, *optional*): the source of the augmentation's randomness (the global torch
            generator otherwise, which `DataLoader` seeds per worker).
    """

    tasks: Sequence[str]
    normalize: Callable[[Any], Any]
    augmentation: DenseAugmentation | None = None
    generator: Any = field(default=None, repr=False)

    def __post_init__(self):
        self.tasks = check_tasks(self.tasks, DENSE_TASKS, "DenseCollator")
        if not callable(self.normalize):
            raise ConfigError(
                f"DenseCollator's normalize is {self.normalize!r}, not a callable",
                "pass the image processor's tensor normaliser, e.g. `processor.normalize_pixels`",
            )

    def _label_tensor(self, task: str, value, height: int, width: int):
        import torch

        channels = LABEL_CHANNELS[task]
        if value is None:
            dtype = torch.uint8 if task == "segmentation" else torch.float32
            return torch.full((channels, height, width), INVALID_VALUES[task], dtype=dtype)
        array = np.asarray(value)
        if array.shape[:2] != (height, width):
            raise DatasetError(
                f"Label '{task}' has shape {array.shape}, the image {(height, width)}",
                "give labels the image's height and width",
            )
        tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))  # copies read-only arrays only
        return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        images, labels, masks = [], {task: [] for task in self.tasks}, []
        for sample in samples:
            image = np.asarray(sample["image"])
            if image.ndim != 3 or image.shape[2] != 3:
                raise DatasetError(
                    f"Image of sample '{sample.get('id')}' has shape {image.shape}", "give (H, W, 3) RGB images"
                )
            height, width = image.shape[:2]
            pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float()
            pixels = self.normalize(pixels)
            sample_mask = sample.get("label_mask") or {}
            row_mask, sample_labels = [], {}
            for task in self.tasks:
                value = sample.get(task)
                present = value is not None and bool(sample_mask.get(task, True))
                row_mask.append(present)
                sample_labels[task] = self._label_tensor(task, value if present else None, height, width)
            if self.augmentation is not None:
                pixels, sample_labels = self.augmentation(pixels, sample_labels, generator=self.generator)
            images.append(pixels)
            masks.append(row_mask)
            for task in self.tasks:
                labels[task].append(sample_labels[task])
        sizes = {tuple(image.shape[-2:]) for image in images}
        if len(sizes) > 1:
            raise DatasetError(
                f"Images in the batch have different sizes {sorted(sizes)}",
                "pass `augmentation=DenseAugmentation(crop_size=...)` or resize the data to one size",
            )
        batch_labels = {}
        for task in self.tasks:
            stacked = torch.stack(labels[task])
            batch_labels[task] = stacked[:, 0].long() if task == "segmentation" else stacked.float()
        return {
            "pixel_values": torch.stack(images),
            "labels": batch_labels,
            "label_mask": torch.tensor(masks, dtype=torch.bool).reshape(len(samples), len(self.tasks)),
            "ids": [str(sample.get("id")) for sample in samples],
        }


__all__ = ["DenseCollator"]
