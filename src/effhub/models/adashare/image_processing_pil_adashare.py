"""Image processor of AdaShare (PIL backend): resize, scale, normalise, and the authors' BGR mean subtraction for
checkpoints converted from their code; post-processing for the image-segmentation and depth-estimation pipelines."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs, Unpack

# the authors' images are BGR with this per-channel (B, G, R) mean subtracted and no scaling (0-255 range)
AUTHORS_BGR_MEAN = [104.00698793, 116.66876762, 122.67891434]


class AdaShareImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_flip_channel_order (`bool`, *optional*, defaults to `self.do_flip_channel_order`):
        Reverse the channels (RGB -> BGR) before normalising, as the authors' checkpoints expect.
    """

    do_flip_channel_order: bool


class AdaShareImageProcessorPil(PilBackend):
    """Prepares images for [`AdaShareModel`] and turns its outputs into segmentation maps and depth maps.

    The default normalisation is ImageNet's RGB mean/std on [0, 1] pixels; [`for_authors_checkpoint`] gives the
    authors' convention (BGR, 0-255, mean subtraction only).
    """

    valid_kwargs = AdaShareImageProcessorKwargs
    resample = PILImageResampling.BILINEAR
    size = {"height": 321, "width": 321}
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.485, 0.456, 0.406]
    image_std = [0.229, 0.224, 0.225]
    do_flip_channel_order = False
    # the task whose logits `post_process_semantic_segmentation` / `post_process_depth_estimation` read by default
    segmentation_task = "segmentation"
    depth_task = "depth"

    def __init__(self, **kwargs: Unpack[AdaShareImageProcessorKwargs]):
        segmentation_task = kwargs.pop("segmentation_task", None)
        depth_task = kwargs.pop("depth_task", None)
        super().__init__(**kwargs)
        if segmentation_task is not None:
            self.segmentation_task = segmentation_task
        if depth_task is not None:
            self.depth_task = depth_task

    @classmethod
    def for_authors_checkpoint(cls, size: dict[str, int] | None = None, **kwargs) -> "AdaShareImageProcessorPil":
        """The preprocessing the authors' released checkpoints were trained with (BGR, 0-255, mean subtracted)."""
        return cls(
            do_flip_channel_order=True,
            do_rescale=False,
            image_mean=list(AUTHORS_BGR_MEAN),
            image_std=[1.0, 1.0, 1.0],
            size=size or {"height": 321, "width": 321},
            **kwargs,
        )

    def to_dict(self):
        output = super().to_dict()
        output["segmentation_task"] = self.segmentation_task
        output["depth_task"] = self.depth_task
        return output

    def _preprocess(self, images, do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
                    do_normalize, image_mean, image_std, do_pad, pad_size, return_tensors,
                    do_flip_channel_order=None, **kwargs):
        flip = self.do_flip_channel_order if do_flip_channel_order is None else do_flip_channel_order
        if flip:
            # channel order must change before normalising, since the mean is given in BGR order
            images = [np.ascontiguousarray(image[::-1]) for image in images]
        return super()._preprocess(images, do_resize, size, resample, do_center_crop, crop_size, do_rescale,
                                   rescale_factor, do_normalize, image_mean, image_std, do_pad, pad_size,
                                   return_tensors, **kwargs)

    def normalize_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalise one image tensor as `__call__` does, without resizing: what the training collator calls.

        Args:
            pixels (`torch.Tensor` of shape `(3, H, W)`): float32, uint8-valued (0-255), RGB order.

        Returns:
            `torch.Tensor` of shape `(3, H, W)`: channels reversed when `do_flip_channel_order`, then
            `(pixels * rescale_factor - image_mean) / image_std` (factor 1 without `do_rescale`, mean 0 and std 1
            without `do_normalize`), in float32.
        """
        if self.do_flip_channel_order:
            pixels = pixels.flip(0)
        factor = self.rescale_factor if self.do_rescale else 1.0
        mean = self.image_mean if self.do_normalize else (0.0, 0.0, 0.0)
        std = self.image_std if self.do_normalize else (1.0, 1.0, 1.0)
        mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        return (pixels * factor - mean) / std

    # -- post-processing ----------------------------------------------------------------------------------------------
    def _task_logits(self, outputs, task: str) -> torch.Tensor:
        logits = outputs["logits"] if not hasattr(outputs, "logits") else outputs.logits
        if isinstance(logits, dict):
            if task not in logits:
                from ...errors import TaskError

                raise TaskError(f"the model outputs have no task '{task}' (have {list(logits)})",
                                "run the model with that task, or set the processor's task name")
            return logits[task]
        return logits

    def post_process_semantic_segmentation(self, outputs, target_sizes=None, task: str | None = None):
        """Class-id maps per image, upsampled (bilinear on the logits) to `target_sizes` when given."""
        logits = self._task_logits(outputs, task or self.segmentation_task)
        maps = []
        for index in range(logits.shape[0]):
            scores = logits[index : index + 1]
            if target_sizes is not None:
                scores = F.interpolate(scores, size=tuple(int(s) for s in target_sizes[index]), mode="bilinear",
                                       align_corners=False)
            maps.append(scores[0].argmax(dim=0))
        return maps

    def post_process_depth_estimation(self, outputs, target_sizes=None, task: str | None = None):
        """`[{"predicted_depth": (H, W)}]` per image, upsampled (bilinear) to `target_sizes` when given."""
        depth = self._task_logits(outputs, task or self.depth_task)
        results = []
        for index in range(depth.shape[0]):
            prediction = depth[index : index + 1]
            if target_sizes is not None:
                prediction = F.interpolate(prediction, size=tuple(int(s) for s in target_sizes[index]),
                                           mode="bilinear", align_corners=False)
            results.append({"predicted_depth": prediction[0, 0]})
        return results


__all__ = ["AdaShareImageProcessorPil", "AUTHORS_BGR_MEAN"]
