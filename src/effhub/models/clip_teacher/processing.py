"""The processor of the CLIP teacher: `CLIPImageProcessorPil` + the trained CLIP tokenizer in a `CLIPProcessor`.

The image processor uses transformers' PIL backend (no torchvision needed). Saved next to the model, the folder
loads with `AutoProcessor.from_pretrained` and serves `pipeline("zero-shot-image-classification", model=folder)`
without effhub. :func:`save_clip_processor` also writes CLIP's `vocab.json` and `merges.txt` next to
`tokenizer.json`, so tools that read CLIP's original two-file format work too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ...errors import ConfigError

# OpenAI CLIP's normalisation constants (the world's colours are far from ImageNet's statistics, but keeping CLIP's
# constants means a user's CLIP pipeline code runs unchanged on the teacher)
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def build_image_processor(image_size: int):
    """A `CLIPImageProcessorPil` that resizes the shortest edge to `image_size`, centre-crops a square, normalises."""
    from transformers import CLIPImageProcessorPil

    if not isinstance(image_size, int) or image_size <= 0:
        raise ConfigError(f"image_size is {image_size!r}", "pass a positive number of pixels")
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_IMAGE_MEAN),
        image_std=list(CLIP_IMAGE_STD),
    )


def build_clip_processor(tokenizer, image_size: int):
    """A `CLIPProcessor` joining the PIL image processor and `tokenizer`."""
    from transformers import CLIPProcessor

    return CLIPProcessor(image_processor=build_image_processor(image_size), tokenizer=tokenizer)


def save_clip_processor(processor, directory: str | Path) -> None:
    """`processor.save_pretrained(directory)` plus CLIP's `vocab.json` and `merges.txt` (written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(directory))
    write_vocab_and_merges(processor.tokenizer, directory)


def write_vocab_and_merges(tokenizer, directory: str | Path) -> list[Path]:
    """Write the BPE model of `tokenizer` as CLIP's `vocab.json` + `merges.txt` into `directory`."""
    directory = Path(directory)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".bpe-") as temporary:
        written = tokenizer.backend_tokenizer.model.save(temporary)
        paths = []
        for file in written:
            target = directory / Path(file).name
            os.replace(file, target)
            paths.append(target)
    return paths


def pixel_values_from_uint8(images: np.ndarray, mean=CLIP_IMAGE_MEAN, std=CLIP_IMAGE_STD):
    """Normalise a batch of `(N, H, W, 3)` uint8 images that already have the model's size, like the processor.

    Training uses this instead of the PIL processor for speed; a test checks it equals the processor's output.
    """
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


__all__ = [
    "CLIP_IMAGE_MEAN",
    "CLIP_IMAGE_STD",
    "build_image_processor",
    "build_clip_processor",
    "save_clip_processor",
    "write_vocab_and_merges",
    "pixel_values_from_uint8",
]
