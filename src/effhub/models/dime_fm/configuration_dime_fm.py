"""Configuration of a DIME-FM student (Sun et al., "DIME-FM: DIstilling Multimodal and Efficient Foundation Models",
ICCV 2023, arXiv 2303.18232): a CLIP-style dual encoder whose small vision tower projects into the joint space of a
larger CLIP teacher, and whose text tower is, by default, the teacher's own, frozen (as in the released checkpoints),
or a smaller one distilled in a second stage (the paper's two-stage variant).

`DimeFmConfig` is a `transformers.CLIPConfig` with its own model type, so that the student registers with the Auto
classes on `import effhub` while its weights keep CLIP's names: `DimeFmModel.export_clip` writes a plain `CLIPModel`
folder that loads with transformers alone.
"""

from __future__ import annotations

from transformers import CLIPConfig

from ...errors import ConfigError
from ..loading import CheckedConfigMixin


class DimeFmConfig(CheckedConfigMixin, CLIPConfig):
    r"""Configuration of [`DimeFmModel`]: a `CLIPConfig` (`text_config`, `vision_config`, `projection_dim`,
    `logit_scale_init_value`) plus what the distillation needs to know about the teacher.

    Args:
        freeze_text_tower (`bool`, *optional*, defaults to `True`): keep the text tower and its projection frozen
            (`requires_grad=False`): the student's text tower is the teacher's, as in the authors' released models.
            A distilled text tower is never frozen.
        text_tower (`str`, *optional*, defaults to `"teacher"`): where the text tower comes from: `"teacher"` (a copy
            of the teacher's) or `"distilled"` (a smaller tower trained by DIME-FM's second stage).
        teacher_name_or_path (`str`, *optional*): the teacher the student was distilled from (a Hub id, a folder, or
            `"effhub/clip-teacher-base"` for the shipped offline teacher); recorded for cards and caches.
        teacher_projection_dim (`int`, *optional*): the width of the teacher's joint space; when given it must equal
            `projection_dim` (a student must project where the teacher's text embeddings live).
        vision_pooling (`str`, *optional*, defaults to `"class-token"`): `"class-token"` (CLIP's) or `"mean"` (the
            last vision layer's query projection held at zero, so the class token collects the mean of all tokens;
            the weights stay those of a standard CLIP layer).

    Example:
    ```python
    >>> from effhub.models.dime_fm import DimeFmConfig, DimeFmModel
    >>> config = DimeFmConfig(vision_config={"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
    ...                                      "intermediate_size": 192, "image_size": 64, "patch_size": 8},
    ...                       text_config={"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    ...                                    "intermediate_size": 384, "vocab_size": 736, "max_position_embeddings": 40},
    ...                       projection_dim=96)
    >>> model = DimeFmModel(config)
    ```
    """

    model_type = "effhub_dime_fm"

    freeze_text_tower: bool = True
    teacher_name_or_path: str | None = None
    teacher_projection_dim: int | None = None
    vision_pooling: str = "class-token"
    text_tower: str = "teacher"

    def __post_init__(self, **kwargs):
        if self.text_tower not in TEXT_TOWERS:
            raise ConfigError(f"text_tower is {self.text_tower!r}", f"use one of {', '.join(TEXT_TOWERS)}")
        if self.vision_pooling not in VISION_POOLINGS:
            raise ConfigError(f"vision_pooling is {self.vision_pooling!r}", f"use one of {', '.join(VISION_POOLINGS)}")
        if not isinstance(self.freeze_text_tower, bool):
            raise ConfigError(f"freeze_text_tower is {self.freeze_text_tower!r}", "pass true or false")
        if not isinstance(self.projection_dim, int) or isinstance(self.projection_dim, bool) or self.projection_dim < 1:
            raise ConfigError(f"projection_dim is {self.projection_dim!r}", "pass a positive joint-space width")
        if self.teacher_projection_dim is not None and self.teacher_projection_dim != self.projection_dim:
            raise ConfigError(
                f"the student projects into {self.projection_dim} dimensions but the teacher's joint space has "
                f"{self.teacher_projection_dim}",
                f"set projection_dim={self.teacher_projection_dim} (the student's embeddings must be comparable with "
                "the teacher's text embeddings)",
            )
        super().__post_init__(**kwargs)


VISION_POOLINGS = ("class-token", "mean")
TEXT_TOWERS = ("teacher", "distilled")

__all__ = ["DimeFmConfig", "VISION_POOLINGS", "TEXT_TOWERS"]
