"""The clip-teacher's optional first stage: its vision tower trained supervised on the world's classes, then locked.

A ViT trained from scratch by the contrastive loss alone on the caption world learns colours within a few hundred
steps and shapes not at all within the budget of a CPU (see `docs/clip-teacher.md`): a batch is matched by colours,
sizes and positions first, and the few shape-discriminating pairs give too weak a signal. Like LiT (Zhai et al.,
"LiT: Zero-Shot Transfer with Locked-image text Tuning", CVPR 2022), which starts from a supervised image tower and
trains only the text side contrastively, the teacher's recipe can first train the vision tower as a classifier of
single-object images (the 64 colour-shape classes), then lock it and align the text tower to it. The result is
still a plain `transformers.CLIPModel`; the class head of this stage is dropped.

Mean pooling: CLIP pools the class token of the last layer. With the last layer's query projection fixed at zero,
that layer's attention is uniform, so the class token adds the mean of every token's value vector to itself: the
pooled feature becomes a (learned) mean over the patches, which learns shapes several times faster than a class
token that must first learn where to attend (`fix_mean_pooling`). The weights stay those of a standard CLIP layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mean_pooling_query(model) -> list[nn.Parameter]:
    """The query projection (weight, bias) of the last vision layer of `model` (anything with a `vision_model`)."""
    attention = model.vision_model.encoder.layers[-1].self_attn
    return [attention.q_proj.weight, attention.q_proj.bias]


def fix_mean_pooling(model) -> list[nn.Parameter]:
    """Zero the query projection of the last vision layer of a `CLIPModel` and freeze it; returns those parameters.

    The last layer then attends uniformly, so its class token (CLIP's pooled output) collects the mean of the value
    vectors of all tokens. The parameters must stay out of every optimiser (they are frozen here).
    """
    params = mean_pooling_query(model)
    with torch.no_grad():
        for param in params:
            param.zero_()
            param.requires_grad_(False)
    return params


def is_mean_pooling(model) -> bool:
    """Whether the last vision layer's query projection is all zeros (a teacher pooled by `fix_mean_pooling`)."""
    return not any(param.any() for param in mean_pooling_query(model))


class ClipTeacherVisionClassifier(nn.Module):
    """The vision tower of a `CLIPModel` with a linear class head on its pooled output (the first stage's model).

    Args:
        vision_model (`CLIPVisionTransformer`): the tower, shared with the `CLIPModel` (trained in place).
        num_outputs (`int`): outputs of the head (`head_outputs`).
    """

    def __init__(self, vision_model: nn.Module, num_outputs: int):
        super().__init__()
        self.vision_model = vision_model
        self.head = nn.Linear(vision_model.config.hidden_size, num_outputs)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.vision_model(pixel_values=pixel_values).pooler_output)


class ClipLabelledImages:
    """Single-object images and their class index, held as uint8 pixels (a map-style dataset).

    Args:
        flipped_copies (`bool`): add every image mirrored left-right as well (index `len(pixels) + i`): twice the
            samples, deterministic (so a resumed run sees the same batches). Shapes and colours survive a mirror;
            the captions' positions do not, so only this labelled stage uses it.
    """

    def __init__(self, pixels: np.ndarray, labels, flipped_copies: bool = False):
        self.pixels = pixels
        self.labels = np.asarray(labels, dtype=np.int64)
        self.flipped_copies = flipped_copies

    def __len__(self) -> int:
        return len(self.labels) * (2 if self.flipped_copies else 1)

    def __getitem__(self, index: int) -> dict:
        image, flipped = index % len(self.labels), index >= len(self.labels)
        pixels = self.pixels[image][:, ::-1] if flipped else self.pixels[image]
        return {"pixels": pixels, "label": int(self.labels[image])}


def collate_labelled_images(items: list[dict]) -> dict:
    """Batch `ClipLabelledImages` items: CLIP-normalised `pixel_values` and `labels`."""
    from .processing import pixel_values_from_uint8

    return {"pixel_values": pixel_values_from_uint8(np.stack([item["pixels"] for item in items])),
            "labels": torch.tensor([item["label"] for item in items], dtype=torch.long)}


def class_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, colours: int, shapes: int) -> torch.Tensor:
    """The first stage's loss on the head's `logits` for colour-shape class indices `labels`.

    Classes are ordered colour-major (`index = colour * shapes + shape`, as `CaptionWorld.class_names`).

    Args:
        kind (`str`): `"colour-shape"`: the head has `colours + shapes` outputs, a colour head and a shape head, each
            trained by its own cross-entropy; `"classes"`: one cross-entropy over the `colours * shapes` classes.

    One shape head shared by every colour learns shapes several times faster than 64 class vectors: in a 64-way
    softmax each colour's shapes are separated by their own vectors, which see an eighth of the images each, and
    the colours (separating 56 of the 63 wrong classes) dominate the loss (measured in `docs/clip-teacher.md`).
    """
    if kind == "classes":
        return F.cross_entropy(logits, labels)
    colour_loss = F.cross_entropy(logits[:, :colours], labels // shapes)
    return colour_loss + F.cross_entropy(logits[:, colours:], labels % shapes)


def head_outputs(kind: str, colours: int, shapes: int) -> int:
    """Outputs of the first stage's head for loss `kind` (see `class_loss`)."""
    return colours + shapes if kind == "colour-shape" else colours * shapes


__all__ = [
    "mean_pooling_query",
    "fix_mean_pooling",
    "is_mean_pooling",
    "ClipTeacherVisionClassifier",
    "ClipLabelledImages",
    "collate_labelled_images",
    "class_loss",
    "head_outputs",
]
