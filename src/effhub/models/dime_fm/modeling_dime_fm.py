"""The DIME-FM student (Sun et al., ICCV 2023, arXiv 2303.18232): a CLIP dual encoder with a small vision tower that
projects into a teacher's joint space and, by default, the teacher's own text tower, frozen (or, after the paper's
second stage, a smaller distilled one).

`DimeFmModel` is a `transformers.CLIPModel` subclass: module and weight names are CLIP's, so
`get_image_features` / `get_text_features` / the zero-shot pipeline work unchanged and `export_clip` writes a plain
`CLIPModel` folder with identical embeddings. What it adds: its own config and model type (Auto classes), a frozen
text tower, optional mean pooling of the vision tower, `from_teacher` (a student that inherits the teacher's text
tower, or gets a smaller one to distil, and the teacher's learned logit scale) and an output dataclass.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...errors import ConfigError
from ..loading import CheckedLoadingMixin
from .configuration_dime_fm import DimeFmConfig

TEXT_PREFIXES = ("text_model.", "text_projection.")
VISION_PREFIXES = ("vision_model.", "visual_projection.")


@dataclass
class DimeFmOutput(ModelOutput):
    """Output of [`DimeFmModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): CLIP's contrastive loss, with `return_loss=True` and
            both modalities given (the distillation losses live in `losses_dime_fm`, they need teacher embeddings).
        logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`, *optional*): scaled
            cosine similarities of images to texts (both modalities given).
        logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`, *optional*): the
            transpose.
        image_embeds (`torch.FloatTensor` of shape `(image_batch_size, projection_dim)`, *optional*): L2-normalised
            image embeddings in the teacher's joint space.
        text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`, *optional*): L2-normalised text
            embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def _normalise(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings / embeddings.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)


def _pooled(output):
    # transformers 5 returns a model output whose pooler_output is the projected embedding; older versions a tensor
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class DimeFmModel(CheckedLoadingMixin, CLIPModel):
    """A DIME-FM student: CLIP's dual encoder with a small vision tower projecting into the teacher's joint space.

    The text tower (and its projection) is frozen when `config.freeze_text_tower` (the default) and it is the
    teacher's (`config.text_tower == "teacher"`; a distilled tower is trained by the second stage); with
    `config.vision_pooling == "mean"` the last vision layer's query projection is held at zero (and frozen), so the
    pooled class token is a learned mean over the patches.
    """

    config: DimeFmConfig

    def __init__(self, config: DimeFmConfig):
        super().__init__(config)
        if config.freeze_text_tower and config.text_tower == "teacher":
            for param in self.text_parameters():
                param.requires_grad_(False)
        if config.vision_pooling == "mean":
            for param in self.mean_pooling_query():
                param.requires_grad_(False)

    # ------------------------------------------------------------------------------------------------ weights
    @classmethod
    def is_custom_code(cls) -> bool:
        """`False`: this class initialises through `transformers.initialization` like the library's own models.

        transformers treats classes defined outside it as custom code and then skips `_init_weights` for modules
        without parameters of their own; for CLIP those are the attention and MLP blocks, whose scaled inits would be
        lost whenever `from_pretrained` initialises missing weights.
        """
        return False

    def mean_pooling_query(self) -> list[nn.Parameter]:
        """The query projection (weight, bias) of the last vision layer (held at zero under mean pooling)."""
        attention = self.vision_model.encoder.layers[-1].self_attn
        return [attention.q_proj.weight, attention.q_proj.bias]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    @torch.no_grad()
    def initialize_weights(self):
        """Initialise as CLIP does, then hold the mean-pooling query at zero (the vision tower is a sub-model that
        transformers initialises with its own `_init_weights`, so the zeros are set here, after it)."""
        super().initialize_weights()
        if self.config.vision_pooling == "mean":
            for param in self.mean_pooling_query():
                if not param.is_meta:
                    param.zero_()

    def text_parameters(self) -> list[nn.Parameter]:
        """The text tower's and text projection's parameters."""
        return [p for name, p in self.named_parameters() if name.startswith(TEXT_PREFIXES)]

    def vision_parameters(self, trainable_only: bool = True) -> list[nn.Parameter]:
        """The vision tower's and visual projection's parameters (without the frozen mean-pooling query)."""
        frozen = {id(p) for p in self.mean_pooling_query()} if self.config.vision_pooling == "mean" else set()
        return [p for name, p in self.named_parameters()
                if name.startswith(VISION_PREFIXES) and not (trainable_only and id(p) in frozen)]

    def num_vision_parameters(self) -> int:
        """Parameters of the vision tower and its projection (the figure DIME-FM shrinks)."""
        return sum(p.numel() for p in self.vision_parameters(trainable_only=False))

    # ------------------------------------------------------------------------------------------------ forward
    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings `(batch, projection_dim)`."""
        return _normalise(_pooled(self.get_image_features(pixel_values=pixel_values)))

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text embeddings `(batch, projection_dim)`."""
        return _normalise(_pooled(self.get_text_features(input_ids=input_ids, attention_mask=attention_mask)))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> DimeFmOutput:
        r"""Embed images, texts, or both (then with CLIP's scaled similarities, as the zero-shot pipeline reads).

        input_ids (`torch.LongTensor` of shape `(text_batch_size, sequence_length)`, *optional*): tokenised texts.
        pixel_values (`torch.FloatTensor` of shape `(image_batch_size, 3, image_size, image_size)`, *optional*):
            processed images.
        return_loss (`bool`, *optional*): return CLIP's symmetric contrastive loss (paired batches only).
        """
        if input_ids is None and pixel_values is None:
            raise ConfigError("DimeFmModel got neither input_ids nor pixel_values", "pass images, texts or both")
        image_embeds = self.image_embeddings(pixel_values) if pixel_values is not None else None
        text_embeds = None
        if input_ids is not None:
            text = self.get_text_features(input_ids=input_ids, attention_mask=attention_mask,
                                          position_ids=position_ids)
            text_embeds = _normalise(_pooled(text))
        logits_per_image = logits_per_text = loss = None
        if image_embeds is not None and text_embeds is not None:
            logits_per_image = image_embeds @ text_embeds.T * self.logit_scale.exp()
            logits_per_text = logits_per_image.T
            if return_loss:
                target = torch.arange(len(logits_per_image), device=logits_per_image.device)
                loss = (nn.functional.cross_entropy(logits_per_image, target)
                        + nn.functional.cross_entropy(logits_per_text, target)) / 2
        return DimeFmOutput(loss=loss, logits_per_image=logits_per_image, logits_per_text=logits_per_text,
                            image_embeds=image_embeds, text_embeds=text_embeds)

    # ------------------------------------------------------------------------------------------------ teacher, export
    @classmethod
    def from_teacher(cls, teacher: CLIPModel, vision_config: dict, *, teacher_name_or_path: str | None = None,
                     freeze_text_tower: bool = True, vision_pooling: str = "class-token",
                     logit_scale: float | None = None, projection_dim: int | None = None,
                     text_config: dict | None = None) -> "DimeFmModel":
        """A student whose text tower, text projection and logit scale are copies of `teacher`'s, with a freshly
        initialised vision tower of `vision_config` projecting into the teacher's joint space.

        Args:
            teacher (`CLIPModel`): any CLIP-style teacher (`text_model`, `text_projection`, `logit_scale`).
            vision_config (`dict`): `CLIPVisionConfig` values of the student's tower (its `image_size` should be the
                teacher's, so that one processor serves both).
            logit_scale (`float`, *optional*): the student's (fixed) similarity scale; default the teacher's learned
                one (the paper's 100 assumes OpenAI CLIP's similarity spread).
            projection_dim (`int`, *optional*): only to check: a width other than the teacher's joint space is refused.
            text_config (`dict`, *optional*): `CLIPTextConfig` values of a smaller text tower to distil (the second
                stage): it is freshly initialised instead of copied, keeps the teacher's vocabulary, positions and
                special tokens (so the teacher's tokenizer serves it), and is not frozen.

        Raises:
            `ConfigError`: `projection_dim` differs from the teacher's joint space.
        """
        import math

        teacher_dim = teacher.config.projection_dim
        teacher_text = teacher.config.text_config.to_dict()
        distilled = text_config is not None
        if distilled:  # the tokenizer's side of the config stays the teacher's
            shared = ("vocab_size", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
                      "hidden_act", "layer_norm_eps")
            text_config = {**dict(text_config), **{key: teacher_text[key] for key in shared if key in teacher_text},
                           "projection_dim": teacher_dim}
        config = DimeFmConfig(
            text_config=text_config if distilled else teacher_text,
            vision_config={**dict(vision_config), "projection_dim": teacher_dim},
            projection_dim=teacher_dim if projection_dim is None else projection_dim,
            teacher_projection_dim=teacher_dim,
            logit_scale_init_value=float(teacher.logit_scale.detach()) if logit_scale is None else math.log(logit_scale),
            freeze_text_tower=freeze_text_tower and not distilled,
            teacher_name_or_path=teacher_name_or_path,
            vision_pooling=vision_pooling,
            text_tower="distilled" if distilled else "teacher",
        )
        student = cls(config)
        if not distilled:
            student.text_model.load_state_dict(teacher.text_model.state_dict())
            student.text_projection.load_state_dict(teacher.text_projection.state_dict())
        return student

    def clip_config(self) -> CLIPConfig:
        """The plain `CLIPConfig` of this student (same towers, projection and logit scale)."""
        values = self.config.to_dict()
        return CLIPConfig(text_config=values["text_config"], vision_config=values["vision_config"],
                          projection_dim=values["projection_dim"],
                          logit_scale_init_value=values["logit_scale_init_value"],
                          initializer_factor=values.get("initializer_factor", 1.0))

    def to_clip(self) -> CLIPModel:
        """A plain `transformers.CLIPModel` holding this student's weights (identical embeddings)."""
        clip = CLIPModel(self.clip_config())
        missing, unexpected = clip.load_state_dict(self.state_dict(), strict=False)
        if missing or unexpected:
            raise ConfigError(f"the student's weights do not fit CLIPModel (missing {missing}, unexpected "
                              f"{unexpected})", "export a DimeFmModel built by effhub")
        return clip.eval()


__all__ = ["DimeFmOutput", "DimeFmModel"]
