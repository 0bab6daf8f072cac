"""The teacher's tagging stage: class prompts scored against a scene's regions learn which classes the scene holds.

Why a teacher needs it (measured, docs/clip-teacher.md "The tagging stage"): after the contrastive stage the
teacher's joint space names a lone object well (zero-shot top-1 about 90%) but ranks crowded scenes poorly by class
prompt (multi-label mAP 55 with DualCoOp's region scoring against 57.5 for a linear probe on the frozen features),
and prompt learning on top of it cannot go past that joint space (docs/dualcoop.md, "Where the ceiling is"). A CLIP
trained on web data learns region-level naming from sheer scale; this world's 20,000 captions do not teach it. The
stage adds an image-tagging objective, as Tag2Text (Huang et al., "Tag2Text: Guiding Vision-Language Model via
Image Tagging", ICLR 2024) trains tags parsed from captions beside the image-text loss: every class prompt is
compared with every patch of the image (the class token's path through the last block, `"class_values"` in
`effhub.adapters.dualcoop.layer.region_features`), the patches are weighed by a spatial softmax of those
similarities (DualCoOp's class-specific region aggregation), and a binary cross-entropy says which classes the
scene holds. The vision tower stays locked; the text tower, both projections and the temperature keep learning
CLIP's loss on the captions too. The prompts vary in wording (one caption template per batch, colour and shape
synonyms per class), so that the text tower learns the classes, not one sentence.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ...data.captions.world import COLOURS, SHAPES

# single-object caption templates without a position: a tag names a class, not where it is
TAG_TEMPLATES = (
    "{np}.",
    "a photo of {np}.",
    "this is a photo of {np}.",
    "an image showing {np}.",
    "{np} on a dark background.",
)


def tag_prompts(class_names, rng: np.random.Generator) -> list[str]:
    """One prompt per colour-shape class: one template drawn from `TAG_TEMPLATES` for all classes (so that the
    classes of one batch are compared in the same sentence), a colour and a shape synonym drawn per class."""
    template = TAG_TEMPLATES[rng.integers(len(TAG_TEMPLATES))]
    prompts = []
    for name in class_names:
        colour, shape = name.split(" ")
        colour_words, shape_words = COLOURS[colour][1], SHAPES[shape]
        phrase = f"{colour_words[rng.integers(len(colour_words))]} {shape_words[rng.integers(len(shape_words))]}"
        article = "an" if phrase[0] in "aeiou" else "a"
        prompts.append(template.format(np=f"{article} {phrase}"))
    return prompts


class ClipTeacherTagger(nn.Module):
    """A `CLIPModel` with the three scalars of the tagging loss (dropped after the stage, as the first stage's heads).

    Args:
        clip (`CLIPModel`): the teacher; `tagger.clip` is the model that the stage trains and returns.
        region_temperature (`float`): initial scale of the patch-prompt cosines before the spatial softmax.
        logit_scale (`float`): initial scale of the aggregated cosine.
        bias (`float`): initial bias of every presence logit (about the log-odds of a class being in a scene).

    The three are learned (log-scales for the two scales): with the scales fixed, the loss can only calibrate by
    moving the embeddings and the ranking degrades instead (measured in a throwaway script that trained the image
    projection and free class vectors under fixed scales: DualCoOp's step-0 mAP on the full benchmark's test images
    49 -> 46, against 66 with learned scales and bias).
    """

    def __init__(self, clip, region_temperature: float = 5.0, logit_scale: float = 5.0, bias: float = -3.0):
        super().__init__()
        self.clip = clip
        self.tag_region_temperature_log = nn.Parameter(torch.tensor(math.log(region_temperature)))
        self.tag_logit_scale_log = nn.Parameter(torch.tensor(math.log(logit_scale)))
        self.tag_bias = nn.Parameter(torch.tensor(float(bias)))

    @property
    def logit_scale(self) -> nn.Parameter:
        """CLIP's learned temperature (clamped after every step as in the contrastive stage)."""
        return self.clip.logit_scale

    def tag_logits(self, pixel_values: torch.Tensor | None, tag_input_ids: torch.Tensor,
                   tag_attention_mask: torch.Tensor | None = None,
                   last_block_input: torch.Tensor | None = None) -> torch.Tensor:
        """Presence logits `[B, C]` of the C tag prompts for B images (before the sigmoid).

        Args:
            last_block_input (`torch.Tensor`, *optional*): the images' input to the last vision block (a CLIP
                forward's `vision_model_output.hidden_states[-2]`); given, `pixel_values` are not run again.
        """
        from ...adapters.dualcoop.layer import dual_logits, region_features, regions_from_last_block_input
        from .evaluation import _features

        text = _features(self.clip.get_text_features(input_ids=tag_input_ids, attention_mask=tag_attention_mask))
        regions = (region_features(self.clip, pixel_values, "class_values") if last_block_input is None
                   else regions_from_last_block_input(self.clip, last_block_input, "class_values"))
        logits, _ = dual_logits(regions, text, self.tag_region_temperature_log.exp(), self.tag_logit_scale_log.exp(),
                                image_threshold=True)
        return logits[:, 1] - logits[:, 0] + self.tag_bias


def tagging_loss(tag_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of presence logits `[B, C]` against multi-hot `labels` `[B, C]`, mean over entries."""
    return nn.functional.binary_cross_entropy_with_logits(tag_logits, labels.to(tag_logits.dtype))


__all__ = ["TAG_TEMPLATES", "tag_prompts", "ClipTeacherTagger", "tagging_loss"]
