"""The recipe of a DIME-FM run (`effhub/models/dime_fm/recipes/<name>.yaml`): teacher, unpaired data, student,
losses, optimisation and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DimeFmDataRecipe:
    """The unpaired sources (`features_dime_fm`: `world[:N]`, `world-single[:N]` (images), a datasets folder, an image
    folder, a text file)."""

    images: str = "world:4000"
    texts: str = "world:4000"
    image_column: str = "image"
    text_column: str = "text"


@dataclass
class DimeFmStudentRecipe:
    """The student's vision tower (a CLIP ViT); it projects into the teacher's joint space.

    Args:
        projection_dim (`int`, *optional*): only a check: a width other than the teacher's joint space is refused.
        pooling (`str`): `"class-token"` or `"mean"` (see `DimeFmConfig.vision_pooling`).
        freeze_text_tower (`bool`): the teacher's text tower stays frozen (the released checkpoints' setting); a
            text stage (`text_stage.steps > 0`) replaces it with a smaller distilled one.
    """

    hidden_size: int = 48
    layers: int = 3
    heads: int = 4
    mlp_ratio: int = 4
    patch_size: int = 8
    pooling: str = "mean"
    projection_dim: int | None = None
    freeze_text_tower: bool = True


@dataclass
class DimeFmLossRecipe:
    """Loss weights and temperatures (the paper's defaults) and the similarity scale.

    Args:
        logit_scale (`float`, *optional*): the fixed scale of the cosine similarities; `None` takes the teacher's
            learned scale. The paper fixes 100, which assumes OpenAI CLIP's similarity spread (recipe `paper`).
    """

    vl: float = 0.7
    pvl: float = 0.3
    ud: float = 0.0
    vl_temperature: float = 1.0
    pvl_temperature: float = 3.0
    ud_temperature: float = 7.0
    logit_scale: float | None = None


@dataclass
class DimeFmTrainRecipe:
    """Optimisation: AdamW (no decay on 1-d parameters and embeddings), linear warm-up from `warmup_lr`, cosine decay
    to `min_lr`, per step.

    Args:
        teacher_features (`str`): `"cache"` (read the teacher's features, never run it: the authors' way) or
            `"online"` (run the frozen teacher on every batch: small setups).
    """

    steps: int = 300
    image_batch_size: int = 128
    text_batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_lr: float = 4e-6
    min_lr: float = 4e-5
    weight_decay: float = 0.05
    warmup_steps: int = 30
    max_grad_norm: float | None = 1.0
    teacher_features: str = "cache"


@dataclass
class DimeFmTextStageRecipe:
    """The paper's second stage: a smaller text tower distilled from the teacher's after the vision stage, with the
    same losses and the modalities swapped (student texts against the teacher's image embeddings, the teacher's text
    embeddings as pseudo images). `steps: 0` (the default) skips it: the student keeps the teacher's text tower,
    frozen, as the released checkpoints do. Warm-up start, final learning rate, weight decay and clipping are
    `train`'s.
    """

    steps: int = 0
    hidden_size: int = 48
    layers: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    image_batch_size: int = 64
    text_batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 50


@dataclass
class DimeFmEvalRecipe:
    """Evaluation sizes: the single-object zero-shot split, held-out retrieval pairs, linear-probe splits."""

    zero_shot_samples: int = 640
    retrieval_pairs: int = 1000
    probe_train: int = 2048
    probe_test: int = 640
    batch_size: int = 256


@dataclass
class DimeFmRecipe:
    """A recipe of the `dime-fm` method.

    Args:
        teacher (`str`): the teacher (`--teacher` overrides): `"base"` (the shipped clip-teacher), a CLIP folder,
            or a Hub id.
        features (`str`, *optional*): the teacher-feature cache (`--features` overrides); without one a cache is
            built beside the run folder (`<output_dir>-features`).
    """

    description: str = ""
    seed: int = 0
    teacher: str = "base"
    features: str | None = None
    data: DimeFmDataRecipe = field(default_factory=DimeFmDataRecipe)
    student: DimeFmStudentRecipe = field(default_factory=DimeFmStudentRecipe)
    loss: DimeFmLossRecipe = field(default_factory=DimeFmLossRecipe)
    train: DimeFmTrainRecipe = field(default_factory=DimeFmTrainRecipe)
    text_stage: DimeFmTextStageRecipe = field(default_factory=DimeFmTextStageRecipe)
    eval: DimeFmEvalRecipe = field(default_factory=DimeFmEvalRecipe)


__all__ = ["DimeFmRecipe", "DimeFmDataRecipe", "DimeFmStudentRecipe", "DimeFmLossRecipe", "DimeFmTrainRecipe",
           "DimeFmTextStageRecipe", "DimeFmEvalRecipe"]
