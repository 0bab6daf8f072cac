"""AdaShare's recipe: the typed form of `effhub/models/adashare/recipes/<name>.yaml` (defaults from the authors'
yamls, Sun et al., NeurIPS 2020; see each shipped recipe for the per-setting values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .configuration_adashare import AdaShareConfig


@dataclass
class AdaShareModelRecipe:
    """The model part of a recipe (fields of [`AdaShareConfig`])."""

    tasks: dict[str, int] = field(default_factory=lambda: {"segmentation": 40, "normals": 3, "depth": 1})
    task_types: dict[str, str] | None = None
    backbone_depth: int = 18
    base_width: int = 64
    head_type: Literal["aspp", "light"] = "aspp"
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18, 24])
    head_hidden_size: int = 1024
    head_dropout: float = 0.5
    policy_init: Literal["equal", "random", "all_chosen"] = "equal"
    init_neg_logits: float = -10.0
    hard_sampling: bool = False
    task_specific_bn: bool = True
    ignore_index: int = 255


@dataclass
class AdaShareRecipe:
    """A full AdaShare run: data, model, the three phases and their optimisers.

    Args:
        description: one line shown by `effhub recipes list`.
        dataset: `scenes` (generated, no download), `nyuv2`, `cityscapes` or `taskonomy` (need `--data-dir`).
        dataset_options: passed to the reader (e.g. the frozen scene generator parameters, CityScapes `num_classes`).
        crop_size: training crop (height, width); scenes are used at their size.
        augment: random scale/flip/crop during training (the authors' loaders).
        input_convention: `imagenet` (RGB, [0,1], ImageNet mean/std) or `caffe_bgr` (the authors': BGR, 0-255).
        model: see [`AdaShareModelRecipe`].
        task_loss_weights: lambda per task.
        reg_w_sparsity, reg_w_sharing: weights of the sparsity and sharing losses (policy updates only).
        task_sparsity_weights: a factor per task on its sparsity term (default 1 each; below 1 keeps more blocks).
        sharing_weight_schedule: `code` = (l+1)/L (authors' code, produced the published numbers) or `paper` = (L-l)/L.
        gumbel_tau_init, gumbel_tau_decay: Gumbel temperature and its decay after every policy epoch.
        curriculum_speed: policy epochs per extra learnable block (from the deepest block up).
        batch_size: per process.
        warmup_steps: phase 1 (all blocks, hard sharing), Adam.
        policy_epochs: phase 2 length in policy epochs; each epoch = `weight_steps_per_epoch` weight updates on train1
            then `policy_steps_per_epoch` policy updates on train2 (the trainer interleaves them in that ratio).
        weight_steps_per_epoch, policy_steps_per_epoch: 0 means one pass over train1 / train2.
        retrain_steps: phase 3 length (re-training a sampled architecture from the saved initial weights).
        retrain_samples: architectures sampled for re-training; the best on the validation split is kept.
        lr, backbone_lr: learning rates of the heads and of the backbone (Adam in warm-up and re-training, SGD
            momentum 0.9 for weights during policy learning).
        weight_decay: of the weight optimisers.
        lr_decay_steps, lr_decay_rate: StepLR of the warm-up and re-training phases.
        policy_lr, policy_weight_decay: Adam on the select/skip logits.
        val_fraction: share of train carved out (seeded) for model selection; the rest is halved into train1/train2.
        seed: run seed (split, initial weights, sampling).
        eval_batch_size: evaluation batch size.
        single_task_references: also train one single-task model per task with the same recipe (the Delta_T
            references, saved with the run); they are trained before the candidates, whose validation scores are
            then normalised by theirs for model selection.
        architecture: `sample` (the paper: `retrain_samples` architectures sampled from the learned logits, each
            re-trained, the best on validation kept), `argmax` (the most likely decision per block, re-trained once)
            or `argmax_and_samples` (the most likely policy and `retrain_samples - 1` distinct sampled ones, the best
            on validation kept).
        segmentation_class_weighting: `none` or `balanced` (per-class cross-entropy weights from the training
            labels' class frequencies, `frequency ** -class_weight_power`; the authors weight classes on Taskonomy).
        class_weight_power: the exponent of the balanced weights (1 = inverse frequency, 0.5 = its square root).
    """

    description: str = ""
    dataset: Literal["scenes", "nyuv2", "cityscapes", "taskonomy"] = "scenes"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    crop_size: list[int] | None = None
    augment: bool = False
    input_convention: Literal["imagenet", "caffe_bgr"] = "imagenet"
    model: AdaShareModelRecipe = field(default_factory=AdaShareModelRecipe)
    task_loss_weights: dict[str, float] = field(default_factory=dict)
    reg_w_sparsity: float = 0.05
    task_sparsity_weights: dict[str, float] = field(default_factory=dict)
    reg_w_sharing: float = 0.05
    sharing_weight_schedule: Literal["code", "paper"] = "code"
    gumbel_tau_init: float = 5.0
    gumbel_tau_decay: float = 0.965
    curriculum_speed: int = 3
    batch_size: int = 16
    warmup_steps: int = 4000
    policy_epochs: int = 30
    weight_steps_per_epoch: int = 0
    policy_steps_per_epoch: int = 0
    retrain_steps: int = 20000
    retrain_samples: int = 8
    lr: float = 1e-3
    backbone_lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay_steps: int = 4000
    lr_decay_rate: float = 0.5
    policy_lr: float = 0.01
    policy_weight_decay: float = 5e-4
    val_fraction: float = 0.1
    seed: int = 0
    eval_batch_size: int = 16
    single_task_references: bool = False
    architecture: Literal["sample", "argmax", "argmax_and_samples"] = "sample"
    segmentation_class_weighting: Literal["none", "balanced"] = "none"
    class_weight_power: float = 0.5

    def model_config(self, **overrides) -> AdaShareConfig:
        """The [`AdaShareConfig`] this recipe trains."""
        values = dict(vars(self.model))
        values.update(
            task_loss_weights=dict(self.task_loss_weights) or None,
            reg_w_sparsity=self.reg_w_sparsity,
            task_sparsity_weights=dict(self.task_sparsity_weights) or None,
            reg_w_sharing=self.reg_w_sharing,
            sharing_weight_schedule=self.sharing_weight_schedule,
            gumbel_tau_init=self.gumbel_tau_init,
            gumbel_tau_decay=self.gumbel_tau_decay,
            curriculum_speed=self.curriculum_speed,
        )
        values.update(overrides)
        return AdaShareConfig(**values)


__all__ = ["AdaShareRecipe", "AdaShareModelRecipe"]
