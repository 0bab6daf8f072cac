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

Objects (`loss="objects"`): single-object images teach the pooled feature one class; a teacher to adapt to
multi-label recognition (DualCoOp) must also name every object of a scene from its global feature, and its patch
features must say which object they lie on. This loss trains on single- and multi-object images at once: the pooled
feature predicts which classes, colours and shapes are present (a binary cross-entropy each), and every patch token,
through the same head, predicts the class, colour and shape of the object it lies on, or background (a
cross-entropy each). Sharing the head puts patch tokens and the pooled feature in one space, so the projection the
contrastive stage learns for the pooled feature also serves the patches (dense recognition, as MaskCLIP reads it).
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

    def forward(self, pixel_values: torch.Tensor, patch_logits: bool = False):
        """Head logits of the pooled output `(B, K)`; with `patch_logits`, also those of every patch `(B, P, K)`."""
        output = self.vision_model(pixel_values=pixel_values)
        pooled = self.head(output.pooler_output)
        if not patch_logits:
            return pooled
        # the pooled output is the class token through the post-layernorm; the patch tokens take the same path
        patches = self.head(self.vision_model.post_layernorm(output.last_hidden_state[:, 1:]))
        return pooled, patches


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


def patch_labels(world, objects: list[dict], grid: int, on_object: float = 0.3, background: float = 0.05):
    """The class index of the object each patch of a `grid x grid` image lies on, `(grid * grid,)` int64.

    A patch gets the class of the object covering most of it when that object covers at least `on_object` of it,
    `num_classes` (background) when all objects together cover less than `background` of it, and -1 (left out of
    the loss) otherwise: a patch on an object's edge is neither that object nor background.
    """
    from .probing import patch_coverage

    labels = np.full(grid * grid, -1, dtype=np.int64)
    if not objects:
        labels[:] = len(world.class_names)
        return labels
    cover = patch_coverage(world, objects, grid)
    best = cover.argmax(axis=0)
    best_cover = cover.max(axis=0)
    classes = np.array([world.class_index(record["class_name"]) for record in objects])
    labels[best_cover >= on_object] = classes[best[best_cover >= on_object]]
    labels[cover.sum(axis=0) < background] = len(world.class_names)
    return labels


class ClipObjectImages:
    """Images with every object they hold: uint8 pixels, multi-hot class targets and per-patch labels.

    Args:
        world (`CaptionWorld`): the world the images were drawn from (class indices, object silhouettes).
        objects: the objects of each image (the records of a split's `objects` JSON column).
        grid (`int`): patches per side of the vision tower.
        flipped_copies (`bool`): add every image mirrored left-right (its patch labels mirrored too).
    """

    def __init__(self, world, pixels: np.ndarray, objects: list[list[dict]], grid: int, flipped_copies: bool = False):
        self.pixels = pixels
        self.grid = grid
        self.targets = np.zeros((len(objects), len(world.class_names)), dtype=np.float32)
        for row, records in enumerate(objects):
            self.targets[row, [world.class_index(record["class_name"]) for record in records]] = 1
        self.patch_labels = np.stack([patch_labels(world, records, grid) for records in objects])
        self.flipped_copies = flipped_copies

    def __len__(self) -> int:
        return len(self.targets) * (2 if self.flipped_copies else 1)

    def __getitem__(self, index: int) -> dict:
        image, flipped = index % len(self.targets), index >= len(self.targets)
        pixels, patches = self.pixels[image], self.patch_labels[image]
        if flipped:
            pixels = pixels[:, ::-1]
            patches = patches.reshape(self.grid, self.grid)[:, ::-1].reshape(-1)
        return {"pixels": pixels, "targets": self.targets[image], "patch_labels": np.ascontiguousarray(patches)}


def collate_object_images(items: list[dict]) -> dict:
    """Batch `ClipObjectImages` items: `pixel_values`, `targets` `(B, C)` and `patch_labels` `(B, P)`."""
    from .processing import pixel_values_from_uint8

    return {"pixel_values": pixel_values_from_uint8(np.stack([item["pixels"] for item in items])),
            "targets": torch.from_numpy(np.stack([item["targets"] for item in items])),
            "patch_labels": torch.from_numpy(np.stack([item["patch_labels"] for item in items]))}


def objects_loss(pooled_logits: torch.Tensor, patch_logits: torch.Tensor, targets: torch.Tensor,
                 patch_labels: torch.Tensor, colours: int, shapes: int) -> torch.Tensor:
    """The `"objects"` loss: presence from the pooled output, the covering object (or background) per patch.

    The head's outputs are the `colours * shapes` classes (colour-major), the colours, the shapes and background.

    Args:
        pooled_logits (`torch.Tensor`): `(B, K)` head logits of the pooled output.
        patch_logits (`torch.Tensor`): `(B, P, K)` head logits of the patch tokens.
        targets (`torch.Tensor`): `(B, C)` 0/1 presence of each class.
        patch_labels (`torch.Tensor`): `(B, P)` class of the object under each patch, `C` for background, -1 to
            leave the patch out.
    """
    classes = colours * shapes
    colour_of = torch.arange(classes, device=targets.device) // shapes
    shape_of = torch.arange(classes, device=targets.device) % shapes
    colour_present = torch.zeros(len(targets), colours, device=targets.device).index_add_(1, colour_of, targets)
    shape_present = torch.zeros(len(targets), shapes, device=targets.device).index_add_(1, shape_of, targets)
    presence = torch.cat([targets, colour_present.clamp_max(1), shape_present.clamp_max(1)], dim=1)
    # summed over the outputs (a mean over 80 outputs of which 3-12 are positive would leave the pooled feature
    # almost no gradient next to the patch terms)
    loss = F.binary_cross_entropy_with_logits(pooled_logits[:, :classes + colours + shapes], presence,
                                              reduction="none").sum(dim=1).mean()

    logits = patch_logits.reshape(-1, patch_logits.shape[-1])
    labels = patch_labels.reshape(-1)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    if len(labels) == 0:
        return loss
    is_object = labels < classes
    object_labels = labels.clamp_max(classes - 1)
    background = logits[:, -1:]
    for start, count, target in ((0, classes, object_labels), (classes, colours, object_labels // shapes),
                                 (classes + colours, shapes, object_labels % shapes)):
        choice = torch.cat([logits[:, start:start + count], background], dim=1)
        loss = loss + F.cross_entropy(choice, torch.where(is_object, target, torch.full_like(target, count)))
    return loss


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
    """Outputs of the first stage's head for loss `kind` (see `class_loss` and `objects_loss`)."""
    if kind == "objects":
        return colours * shapes + colours + shapes + 1
    return colours + shapes if kind == "colour-shape" else colours * shapes


__all__ = [
    "mean_pooling_query",
    "fix_mean_pooling",
    "is_mean_pooling",
    "ClipTeacherVisionClassifier",
    "ClipLabelledImages",
    "collate_labelled_images",
    "patch_labels",
    "ClipObjectImages",
    "collate_object_images",
    "objects_loss",
    "class_loss",
    "head_outputs",
]
