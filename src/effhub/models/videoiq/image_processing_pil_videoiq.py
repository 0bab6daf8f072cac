"""Video processor of VideoIQ on the PIL backend (transformers' torchvision-based video processors need torchvision,
which effhub does without): frame sampling, resize, rescale, ImageNet normalisation; the one place pixels are
normalised, for training (`normalize_pixels`) as for inference (`__call__`)."""

from __future__ import annotations

import numpy as np
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs, Unpack

from ...errors import ConfigError, DatasetError


class VideoIQImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    num_frames (`int`, *optional*, defaults to `self.num_frames`):
        Frames per clip; a video with another number of frames is sampled uniformly (TSN's centre-of-segment rule).
    """

    num_frames: int


def sample_frame_indices(total: int, num_frames: int) -> list[int]:
    """TSN's evaluation sampling: the centre frame of each of `num_frames` equal segments of `total` frames
    (frames repeat when the video is shorter than `num_frames`)."""
    if total < 1:
        raise DatasetError("the video has no frames", "pass a video with at least one decodable frame")
    tick = total / num_frames
    return [min(int(tick / 2 + tick * index), total - 1) for index in range(num_frames)]


class VideoIQImageProcessorPil(PilBackend):
    """Prepares clips for [`VideoIQForVideoClassification`]: `processor(video)` or `processor([video, ...])`, where a
    video is a list of frames (PIL images or `(H, W, C)` arrays) or one `(T, H, W, C)` array, returns
    `pixel_values` of shape `(batch, num_frames, 3, height, width)`."""

    model_input_names = ["pixel_values"]
    valid_kwargs = VideoIQImageProcessorKwargs
    resample = PILImageResampling.BILINEAR
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.485, 0.456, 0.406]
    image_std = [0.229, 0.224, 0.225]
    do_convert_rgb = True
    num_frames = 16

    def __init__(self, **kwargs: Unpack[VideoIQImageProcessorKwargs]):
        num_frames = kwargs.pop("num_frames", None)
        super().__init__(**kwargs)
        if num_frames is not None:
            if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
                raise ConfigError(f"num_frames={num_frames!r}", "pass a positive number of frames per clip")
            self.num_frames = num_frames

    def to_dict(self):
        output = super().to_dict()
        output["num_frames"] = self.num_frames
        return output

    @staticmethod
    def _is_frame(value) -> bool:
        return hasattr(value, "getpixel") or (hasattr(value, "ndim") and value.ndim in (2, 3))

    def _videos(self, videos) -> list[list]:
        """Normalise the input to a list of videos, each a list of frames."""
        if hasattr(videos, "ndim") and videos.ndim == 5:
            return [list(video) for video in videos]
        if hasattr(videos, "ndim") and videos.ndim == 4:
            return [list(videos)]
        if isinstance(videos, (list, tuple)):
            if not videos:
                raise DatasetError("no video was given (an empty list)", "pass a video: a list of frames")
            if all(self._is_frame(item) for item in videos):
                return [list(videos)]
            result = []
            for video in videos:
                if hasattr(video, "ndim") and video.ndim == 4 or isinstance(video, (list, tuple)) and all(self._is_frame(item) for item in video):
                    result.append(list(video))
                else:
                    raise ConfigError(f"cannot read a {type(video).__name__} as a video",
                                      "pass each video as a list of frames or a (T, H, W, C) array")
            return result
        raise ConfigError(f"cannot read a {type(videos).__name__} as a video or a batch of videos",
                          "pass a list of frames (PIL images or HxWxC arrays), or a list of such lists")

    def preprocess(self, images, return_tensors=None, num_frames: int | None = None, **kwargs) -> BatchFeature:
        """Sample, resize and normalise each video; `pixel_values` is `(batch, num_frames, 3, H, W)`."""
        num_frames = num_frames or self.num_frames
        videos = self._videos(images)
        frames = []
        for video in videos:
            if len(video) == 0:
                raise DatasetError("a video has no frames", "pass videos with at least one frame")
            frames += [video[index] for index in sample_frame_indices(len(video), num_frames)]
        processed = super().preprocess(frames, return_tensors="pt", **kwargs)["pixel_values"]
        pixel_values = processed.reshape(len(videos), num_frames, *processed.shape[1:])
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def normalize_pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalise frames as `__call__` does, without resizing: what the training collator calls.

        Args:
            frames (`torch.Tensor` of shape `(..., H, W, 3)` or `(..., 3, H, W)`): uint8-valued (0-255), RGB.

        Returns:
            `torch.Tensor` of shape `(..., 3, H, W)`, float32: `(frames * rescale_factor - mean) / std`.
        """
        frames = torch.as_tensor(frames)
        if frames.shape[-1] == 3 and frames.shape[-3] != 3:
            frames = frames.movedim(-1, -3)
        frames = frames.float()
        factor = self.rescale_factor if self.do_rescale else 1.0
        mean = torch.tensor(self.image_mean if self.do_normalize else [0.0] * 3)[:, None, None]
        std = torch.tensor(self.image_std if self.do_normalize else [1.0] * 3)[:, None, None]
        # contiguous in (..., 3, H, W): a channels-last view reaches oneDNN's convolution backward with strides that
        # corrupted the heap on some CPUs (torch 2.13, one thread, AVX2)
        return ((frames * factor - mean) / std).contiguous()


def frames_to_uint8(frames) -> np.ndarray:
    """Frames `(T, H, W, 3)` as a uint8 array (floats in [0, 1] are scaled)."""
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array * 255 if array.max() <= 1.0 else array), 0, 255).astype(np.uint8)
    return array


__all__ = ["VideoIQImageProcessorPil", "frames_to_uint8", "sample_frame_indices"]
