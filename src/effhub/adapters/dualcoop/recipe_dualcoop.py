"""The recipe of the `dualcoop` method: data (which set, which setting, label ratio, input sizes), the adapter, the
optimisation (SGD over the contexts only, as Sun et al., NeurIPS 2022) and the loss weight per label ratio."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import RecipeError

SETTINGS = ("partial", "zero-shot")
DATASETS = ("caption-world", "voc2007", "coco2014")


@dataclass
class DualCoOpDataRecipe:
    """Data of a run.

    Args:
        dataset (`str`): `caption-world` (generated, offline), `voc2007` or `coco2014` (read from `--data-dir`).
        setting (`str`): `partial` (partial labels over every class) or `zero-shot` (train on the seen classes,
            test on the unseen ones (ZSL) and on all (GZSL)).
        label_ratio (`float`): fraction of training label entries kept (`--label-ratio`); 1 keeps all.
        mask_seed (`int`): seed of the partial-label mask (saved in the run folder as `partial_label_<r>.npz`).
        mask_file (`str`, *optional*): reuse a saved mask instead of drawing one.
        train_image_size / eval_image_size (`int`): input sizes in pixels, explicit (the README of the original
            code trained at 448 and evaluated at 224, which changes the model: a known reproduction trap).
        num_train_classes (`int`, *optional*): zero-shot training scores this many seen classes per batch, drawn at
            random (bounds the text tower's cost when there are many classes); default: all.
    """

    dataset: str = "caption-world"
    setting: str = "partial"
    world_version: int = 2
    world_seed: int = 0
    train_size: int = 2000
    test_size: int = 500
    label_ratio: float = 1.0
    mask_seed: int = 0
    mask_file: str | None = None
    train_image_size: int = 64
    eval_image_size: int = 64
    num_train_classes: int | None = None


@dataclass
class DualCoOpModelRecipe:
    """The base CLIP and the adapter (see `DualCoOpConfig`)."""

    base_model: str = "effhub-shipped:base"
    n_ctx: int = 16
    n_ctx_neg: int | None = None
    class_specific: bool = False
    ctx_init_pos: str | None = None
    ctx_init_neg: str | None = None
    dense_mode: str = "values"
    negative_prompt: str = "class"
    # a number, or "prior": the log-odds of the training labels' positive rate minus the mean untrained margin
    logit_offset: float | str = 0.0
    scale_source: str = "base_logit_scale"


@dataclass
class DualCoOpTrainRecipe:
    """SGD over the prompt contexts: a constant warm-up at `warmup_lr`, then cosine decay from `learning_rate`.

    Args:
        loss_weights (`dict[str, float]`): the ASL weight per label ratio (keys like "0.1"); the README of the
            original code says "larger loss_w for smaller pp" without values, so these are effhub's, recorded here.
        loss_weight (`float`): the weight for a ratio not in `loss_weights`.
    """

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_steps: int = 10
    warmup_lr: float = 0.00001
    loss_weight: float = 1.0
    loss_weights: dict[str, float] = field(default_factory=dict)
    eval_batch_size: int = 100
    top_k: int = 3
    threshold: float = 0.5


@dataclass
class DualCoOpRecipe:
    """A recipe of the `dualcoop` method (`effhub/adapters/dualcoop/recipes/<name>.yaml`)."""

    description: str = ""
    seed: int = 0
    data: DualCoOpDataRecipe = field(default_factory=DualCoOpDataRecipe)
    model: DualCoOpModelRecipe = field(default_factory=DualCoOpModelRecipe)
    train: DualCoOpTrainRecipe = field(default_factory=DualCoOpTrainRecipe)

    def __post_init__(self):
        if self.data.setting not in SETTINGS:
            raise RecipeError(f"data.setting is {self.data.setting!r}", f"use one of {list(SETTINGS)}")
        if self.data.dataset not in DATASETS:
            raise RecipeError(f"data.dataset is {self.data.dataset!r}", f"use one of {list(DATASETS)}")
        if not 0 < self.data.label_ratio <= 1:
            raise RecipeError(f"data.label_ratio is {self.data.label_ratio}", "use a fraction in (0, 1]")
        if self.data.setting == "zero-shot" and self.model.class_specific:
            raise RecipeError("zero-shot with class-specific contexts: unseen classes would have no contexts",
                              "set model.class_specific=false for data.setting=zero-shot")

    def loss_weight_for(self, ratio: float) -> float:
        """The ASL weight of a label ratio (`train.loss_weights`, else `train.loss_weight`)."""
        for key, value in self.train.loss_weights.items():
            if abs(float(key) - ratio) < 1e-9:
                return float(value)
        return float(self.train.loss_weight)


__all__ = ["DualCoOpRecipe", "DualCoOpDataRecipe", "DualCoOpModelRecipe", "DualCoOpTrainRecipe", "SETTINGS",
           "DATASETS"]
