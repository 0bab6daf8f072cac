"""Random scale, flip and pad-and-crop of a dense sample (image and every task's label together)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from .schema import INVALID_VALUES

@dataclass(frozen=True)
class DenseAugmentation:
    """Random scale, horizontal flip, then pad-and-crop, as in the authors' dense multi-task training loaders.

    The image is resized bilinearly and the labels by nearest neighbour with one factor drawn from
    U[`scale_range`); the flip negates the normals' x component (the x axis points right in the image); padding is
    centred and uses each task's invalid value (the image is padded with 0 after normalisation, i.e. the mean colour).

    Args:
        crop_size (`tuple[int, int]`): (height, width) of the output.
        scale_range (`tuple[float, float]`, defaults to (0.5, 1.5)): the range of the random scale factor.
        flip_probability (`float`, defaults to 0.5): probability of a horizontal flip.
    """

    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip_probability: float = 0.5

    def __post_init__(self):
        size = (self.crop_size,) * 2 if isinstance(self.crop_size, int) else self.crop_size
        crop = tuple(int(value) for value in size)
        if len(crop) != 2 or min(crop) < 1:
            raise ConfigError(
                f"crop_size={self.crop_size} is not a (height, width) pair of positive ints", "pass e.g. (321, 321)"
            )
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ConfigError(f"scale_range={self.scale_range} is not 0 < low <= high", "pass e.g. (0.5, 1.5)")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ConfigError(f"flip_probability={self.flip_probability} is outside [0, 1]", "pass e.g. 0.5")
        object.__setattr__(self, "crop_size", crop)

    def __call__(self, image, labels: dict[str, Any], generator=None):
        """Augment one normalised image [3, H, W] and its labels {task: [C, H, W]} (torch tensors)."""
        import torch
        import torch.nn.functional as F

        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        height, width = image.shape[-2:]
        new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
        if (new_h, new_w) != (height, width):
            image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
            labels = {
                task: F.interpolate(label[None].float(), size=(new_h, new_w), mode="nearest")[0].to(label.dtype)
                for task, label in labels.items()
            }
        if float(torch.rand((), generator=generator)) < self.flip_probability:
            image = image.flip(-1)
            labels = {task: label.flip(-1) for task, label in labels.items()}
            if "normals" in labels:
                normals = labels["normals"].clone()
                normals[0] = -normals[0]
                labels["normals"] = normals
        crop_h, crop_w = self.crop_size
        pad_h, pad_w = max(crop_h - new_h, 0), max(crop_w - new_w, 0)
        if pad_h or pad_w:
            padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
            image = F.pad(image, padding, value=0.0)
            labels = {task: F.pad(label, padding, value=INVALID_VALUES[task]) for task, label in labels.items()}
        full_h, full_w = image.shape[-2:]
        top = int(torch.randint(0, full_h - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, full_w - crop_w + 1, (), generator=generator))
        image = image[:, top : top + crop_h, left : left + crop_w]
        labels = {task: label[:, top : top + crop_h, left : left + crop_w] for task, label in labels.items()}
        return image, labels


__all__ = ["DenseAugmentation"]
