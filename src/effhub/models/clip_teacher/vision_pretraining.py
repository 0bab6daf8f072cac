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

Objects (the optional `objects` phase): single-object images show large objects; multi-object scenes shrink them to
a patch or two, and a tower trained on single objects does not see their shapes. The `objects` phase continues the
first stage on single- and multi-object images with the same colour and shape heads: every object is named from the
patch tokens its silhouette covers (their cover-weighted mean through the post-layernorm and the head), a lone
object also from the pooled output (`objects_loss`). Patch tokens and the pooled output share the head, so the
projection the contrastive stage learns for the pooled feature also reads the patches. The pooled output of a crowded
scene learns which classes it holds from a second head, one output per colour-shape class (`presence_loss`): the
colour and shape heads alone let it say which colours and which shapes are there, not which goes with which, and a
multi-label probe or zero-shot multi-label recognition on the global embedding needs the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


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


@dataclass
class ClipTeacherVisionClassifierOutput(ModelOutput):
    """Logits of `ClipTeacherVisionClassifier` with `patch_logits=True`.

    Args:
        pooled (`torch.Tensor`): `(B, K)` class head logits of the pooled output.
        patches (`torch.Tensor`): `(B, P, K)` class head logits of every patch token.
        presence (`torch.Tensor`, *optional*): `(B, C)` presence head logits of the pooled output (one per
            colour-shape class), when the classifier has that head.
        patch_presence (`torch.Tensor`, *optional*): `(B, P, C)` presence head logits of every patch token.
    """

    pooled: torch.Tensor | None = None
    patches: torch.Tensor | None = None
    presence: torch.Tensor | None = None
    patch_presence: torch.Tensor | None = None


class ClipTeacherVisionClassifier(nn.Module):
    """The vision tower of a `CLIPModel` with a linear class head on its pooled output (the first stage's model).

    Args:
        vision_model (`CLIPVisionTransformer`): the tower, shared with the `CLIPModel` (trained in place).
        num_outputs (`int`): outputs of the class head (`head_outputs`).
        num_classes (`int`): outputs of the presence head on the pooled output (one per colour-shape class; 0: no
            presence head). Both heads are dropped when the first stage ends.
    """

    def __init__(self, vision_model: nn.Module, num_outputs: int, num_classes: int = 0):
        super().__init__()
        self.vision_model = vision_model
        self.head = nn.Linear(vision_model.config.hidden_size, num_outputs)
        self.presence_head = nn.Linear(vision_model.config.hidden_size, num_classes) if num_classes else None

    def forward(self, pixel_values: torch.Tensor, patch_logits: bool = False):
        """Class head logits of the pooled output `(B, K)`; with `patch_logits`, a
        `ClipTeacherVisionClassifierOutput` with those of every patch and the presence logits too."""
        output = self.vision_model(pixel_values=pixel_values)
        pooled = self.head(output.pooler_output)
        if not patch_logits:
            return pooled
        # the pooled output is the class token through the post-layernorm; the patch tokens take the same path
        tokens = self.vision_model.post_layernorm(output.last_hidden_state[:, 1:])
        presence = patch_presence = None
        if self.presence_head is not None:
            presence, patch_presence = self.presence_head(output.pooler_output), self.presence_head(tokens)
        return ClipTeacherVisionClassifierOutput(pooled=pooled, patches=self.head(tokens), presence=presence,
                                                 patch_presence=patch_presence)


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


class ClipObjectImages:
    """Images with every object they hold: uint8 pixels, and per object its class and the share of each patch that its
    silhouette covers (the targets of `objects_loss`).

    Args:
        world (`CaptionWorld`): the world the images were drawn from (class indices, object silhouettes).
        objects: the objects of each image (the records of a split's `objects` JSON column).
        grid (`int`): patches per side of the vision tower.
        flipped_copies (`bool`): add every image mirrored left-right (its patch covers mirrored too).
    """

    def __init__(self, world, pixels: np.ndarray, objects: list[list[dict]], grid: int, flipped_copies: bool = False):
        from .probing import patch_coverage

        most = max(len(records) for records in objects)
        self.pixels = pixels
        self.grid = grid
        self.labels = np.full((len(objects), most), -1, dtype=np.int64)
        self.covers = np.zeros((len(objects), most, grid * grid), dtype=np.float32)
        for row, records in enumerate(objects):
            self.labels[row, :len(records)] = [world.class_index(record["class_name"]) for record in records]
            self.covers[row, :len(records)] = patch_coverage(world, records, grid)
        self.flipped_copies = flipped_copies

    def __len__(self) -> int:
        return len(self.labels) * (2 if self.flipped_copies else 1)

    def __getitem__(self, index: int) -> dict:
        image, flipped = index % len(self.labels), index >= len(self.labels)
        pixels, covers = self.pixels[image], self.covers[image]
        if flipped:
            pixels = pixels[:, ::-1]
            covers = covers.reshape(len(covers), self.grid, self.grid)[:, :, ::-1].reshape(len(covers), -1)
        return {"pixels": pixels, "object_labels": self.labels[image], "object_covers": np.ascontiguousarray(covers)}


def collate_object_images(items: list[dict]) -> dict:
    """Batch `ClipObjectImages` items: `pixel_values`, `object_labels` `(B, O)` (-1: no object) and
    `object_covers` `(B, O, P)`."""
    from .processing import pixel_values_from_uint8

    return {"pixel_values": pixel_values_from_uint8(np.stack([item["pixels"] for item in items])),
            "object_labels": torch.from_numpy(np.stack([item["object_labels"] for item in items])),
            "object_covers": torch.from_numpy(np.stack([item["object_covers"] for item in items]))}


def object_region_logits(patch_logits: torch.Tensor, object_labels: torch.Tensor, object_covers: torch.Tensor):
    """`(region logits (B, O, K), valid (B, O))`: each object's logits as the cover-weighted mean of its patches'
    logits (the head is linear, so this is the head on the cover-weighted mean of the patch tokens); `valid` marks
    real objects that cover some patch."""
    area = object_covers.sum(dim=-1)
    valid = (object_labels >= 0) & (area > 0)
    regions = torch.einsum("bop,bpk->bok", object_covers, patch_logits) / area.clamp_min(1e-6).unsqueeze(-1)
    return regions, valid


def objects_loss(pooled_logits: torch.Tensor, patch_logits: torch.Tensor, object_labels: torch.Tensor,
                 object_covers: torch.Tensor, kind: str, colours: int, shapes: int) -> torch.Tensor:
    """The `objects` phase's loss: every object named from the patches it covers, a lone object also from the pooled
    output, each by `class_loss(kind)` through the same head.

    An object's logits are the head's logits of its patches averaged with the share of each patch its silhouette
    covers (the head is linear, so this is the head on the cover-weighted mean of the patch tokens).

    Args:
        pooled_logits (`torch.Tensor`): `(B, K)` head logits of the pooled output.
        patch_logits (`torch.Tensor`): `(B, P, K)` head logits of the patch tokens.
        object_labels (`torch.Tensor`): `(B, O)` class index of each object, -1 where an image has fewer objects.
        object_covers (`torch.Tensor`): `(B, O, P)` share of each patch covered by each object.
    """
    regions, valid = object_region_logits(patch_logits, object_labels, object_covers)
    loss = class_loss(regions[valid], object_labels[valid], kind, colours, shapes)
    alone = valid.sum(dim=1) == 1
    if alone.any():
        lone_labels = object_labels[alone].max(dim=1).values
        loss = loss + class_loss(pooled_logits[alone], lone_labels, kind, colours, shapes)
    return loss


def presence_loss(presence_logits: torch.Tensor, object_labels: torch.Tensor) -> torch.Tensor:
    """The multi-label term of the `objects` phase: binary cross-entropy of the presence head against the classes an
    image holds, summed over the classes and averaged over the images.

    Summed rather than averaged over the classes so that its scale matches the per-object cross-entropies: an image
    holds about one class in twenty, and the mean over all classes would leave the term too weak to matter.

    Args:
        presence_logits (`torch.Tensor`): `(B, C)` presence head logits.
        object_labels (`torch.Tensor`): `(B, O)` class index of each object, -1 where an image has fewer objects.
    """
    num_classes = presence_logits.shape[1]
    # padding objects (-1) go to an extra column that is dropped
    slots = torch.where(object_labels >= 0, object_labels, num_classes)
    targets = torch.zeros(len(object_labels), num_classes + 1, dtype=presence_logits.dtype,
                          device=presence_logits.device).scatter_(1, slots, 1.0)[:, :num_classes]
    return F.binary_cross_entropy_with_logits(presence_logits, targets, reduction="sum") / len(presence_logits)


def region_presence_loss(patch_presence_logits: torch.Tensor, object_labels: torch.Tensor,
                         object_covers: torch.Tensor) -> torch.Tensor:
    """Every object named through the presence head from the patches it covers: a cross-entropy over the classes of
    its cover-weighted region logits. It keeps the patch tokens in the presence head's code, which the pooled output
    (and so the joint space the contrastive stage aligns to text) speaks once the presence term trained it.

    Args:
        patch_presence_logits (`torch.Tensor`): `(B, P, C)` presence head logits of the patch tokens.
        object_labels (`torch.Tensor`): `(B, O)` class index of each object, -1 where an image has fewer objects.
        object_covers (`torch.Tensor`): `(B, O, P)` share of each patch covered by each object.
    """
    regions, valid = object_region_logits(patch_presence_logits, object_labels, object_covers)
    return F.cross_entropy(regions[valid], object_labels[valid])


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
    "ClipTeacherVisionClassifierOutput",
    "ClipTeacherVisionClassifier",
    "ClipLabelledImages",
    "collate_labelled_images",
    "ClipObjectImages",
    "collate_object_images",
    "object_region_logits",
    "objects_loss",
    "presence_loss",
    "region_presence_loss",
    "class_loss",
    "head_outputs",
]
