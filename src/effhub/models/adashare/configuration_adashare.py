"""Configuration of AdaShare (Sun et al., "AdaShare: Learning What To Share For Efficient Deep Multi-Task Learning",
NeurIPS 2020, arXiv 1911.12423): one dilated ResNet shared by every task, and a learned select/skip decision per task
and residual block."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...errors import ConfigError, TaskError
from ..loading import CheckedConfigMixin, check_field, check_list, check_mapping

# residual blocks per stage of each supported ResNet depth
RESNET_STAGE_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
# ResNet-18/34 use BasicBlocks, deeper networks Bottlenecks (channel expansion 4)
BOTTLENECK_DEPTHS = (50, 101)
# how each task is trained and evaluated; task names outside this table must be given a type in `task_types`
KNOWN_TASK_TYPES = {
    "segmentation": "segmentation",
    "semantic_segmentation": "segmentation",
    "seg": "segmentation",
    "normals": "normals",
    "surface_normals": "normals",
    "sn": "normals",
    "depth": "depth",
    "keypoint": "regression",
    "keypoints": "regression",
    "edge": "regression",
    "edges": "regression",
}
TASK_TYPES = ("segmentation", "normals", "depth", "regression")
DEFAULT_TASKS = {"segmentation": 40, "normals": 3, "depth": 1}


class AdaShareConfig(CheckedConfigMixin, PreTrainedConfig):
    r"""Configuration of [`AdaShareModel`]: the backbone, the per-task heads and the policy over residual blocks.

    Args:
        tasks (`dict[str, int]`, *optional*): task name -> output channels (classes for segmentation, 3 for surface
            normals, 1 for depth). Defaults to NYU-v2's three tasks.
        task_types (`dict[str, str]`, *optional*): task name -> one of `segmentation`, `normals`, `depth`,
            `regression` (L1); inferred from the usual names (`segmentation`, `normals`, `depth`, `keypoint`, `edge`).
        backbone_depth (`int`, *optional*, defaults to 18): ResNet depth, one of 18, 34 (BasicBlock), 50, 101
            (Bottleneck). The backbone is dilated to output stride 8 (stage strides 1,2,1,1; dilations 1,1,2,4).
        base_width (`int`, *optional*, defaults to 64): channels of the stem and first stage; stages use
            `base_width * (1, 2, 4, 8)`. Small values make configs that train in seconds on a CPU.
        head_type (`str`, *optional*, defaults to `"aspp"`): `"aspp"` (the paper's DeepLab-v2 head: one branch per
            rate, summed) or `"light"` (conv3x3-BN-ReLU-conv1x1).
        aspp_rates (`list[int]`, *optional*, defaults to `[6, 12, 18, 24]`): dilation rates of the ASPP branches.
        head_hidden_size (`int`, *optional*, defaults to 1024): hidden channels of each head branch.
        head_dropout (`float`, *optional*, defaults to 0.5): dropout inside the ASPP branches.
        policy_init (`str`, *optional*, defaults to `"equal"`): select/skip logits init: `"equal"` (0.5 both),
            `"random"` (1e-3 * N(0, 1)) or `"all_chosen"` (select 0, skip `init_neg_logits`).
        init_neg_logits (`float`, *optional*, defaults to -10.0): skip logit of the `"all_chosen"` init.
        gumbel_tau_init (`float`, *optional*, defaults to 5.0): initial Gumbel-softmax temperature.
        gumbel_tau_decay (`float`, *optional*, defaults to 0.965): temperature factor applied after each policy epoch.
        hard_sampling (`bool`, *optional*, defaults to `False`): straight-through hard Gumbel samples while learning
            the policy (the authors use soft samples).
        curriculum_speed (`int`, *optional*, defaults to 3): policy epochs per extra block made learnable, from the
            deepest block up.
        task_loss_weights (`dict[str, float]`, *optional*): lambda per task (default 1 each).
        reg_w_sparsity (`float`, *optional*, defaults to 0.05): weight of the sparsity loss.
        task_sparsity_weights (`dict[str, float]`, *optional*): a factor per task on its term of the sparsity loss
            (default 1 each, the paper's); below 1 a task keeps more blocks (effhub's option).
        reg_w_sharing (`float`, *optional*, defaults to 0.05): weight of the sharing loss.
        sharing_weight_schedule (`str`, *optional*, defaults to `"code"`): block weights of the sharing loss:
            `"code"` = (l+1)/L as in the authors' released code (it produced the published numbers), `"paper"` =
            (L-l)/L as written in the paper.
        policy (`dict[str, list[int]]`, *optional*): the hard policy fixed after re-training, task -> one 0/1 per
            block (1 = execute). When set, inference runs only the selected blocks of each task.
        task_specific_bn (`bool`, *optional*, defaults to `True`): with a hard policy (`fixed`/`argmax` modes),
            every backbone BatchNorm keeps one set of running statistics per task (a block after a task-specific
            skip sees a different input distribution per task). effhub's deviation from the paper's MTL model; the
            warm-up (`shared`) and policy (`gumbel`) modes use the shared statistics.
        segmentation_class_weights (`dict[str, list[float]]`, *optional*): per segmentation task, one cross-entropy
            weight per class (e.g. from `effhub.multitask.balanced_class_weights`); unweighted when absent.
        ignore_index (`int`, *optional*, defaults to 255): segmentation label ignored by the loss.
        initializer_range (`float`, *optional*, defaults to 0.01): std of the normal init of conv weights (authors'
            value; no ImageNet pre-training is used in the paper's experiments).
    """

    model_type = "effhub_adashare"

    def __init__(
        self,
        tasks: dict[str, int] | None = None,
        task_types: dict[str, str] | None = None,
        backbone_depth: int = 18,
        base_width: int = 64,
        num_channels: int = 3,
        head_type: str = "aspp",
        aspp_rates: list[int] | None = None,
        head_hidden_size: int = 1024,
        head_dropout: float = 0.5,
        policy_init: str = "equal",
        init_neg_logits: float = -10.0,
        gumbel_tau_init: float = 5.0,
        gumbel_tau_decay: float = 0.965,
        hard_sampling: bool = False,
        curriculum_speed: int = 3,
        task_loss_weights: dict[str, float] | None = None,
        reg_w_sparsity: float = 0.05,
        task_sparsity_weights: dict[str, float] | None = None,
        reg_w_sharing: float = 0.05,
        sharing_weight_schedule: str = "code",
        policy: dict[str, list[int]] | None = None,
        task_specific_bn: bool = True,
        segmentation_class_weights: dict[str, list[float]] | None = None,
        ignore_index: int = 255,
        initializer_range: float = 0.01,
        **kwargs,
    ):
        tasks = check_mapping("AdaShareConfig", "tasks", DEFAULT_TASKS if tasks is None else tasks, "int", 1)
        # config.json is written with sorted keys: the saved task order restores the user's order on load
        task_order = kwargs.pop("task_order", None)
        if task_order is not None and sorted(task_order) == sorted(tasks):
            tasks = {name: tasks[name] for name in task_order}
        self.tasks = {str(name): int(channels) for name, channels in tasks.items()}
        self.task_order = list(self.tasks)
        self.backbone_depth = _field("backbone_depth", backbone_depth, "int", choices=tuple(RESNET_STAGE_BLOCKS))
        self.base_width = _field("base_width", base_width, "int", 1)
        self.num_channels = _field("num_channels", num_channels, "int", 1)
        self.head_type = _field("head_type", head_type, "str", choices=("aspp", "light"))
        self.aspp_rates = check_list("AdaShareConfig", "aspp_rates", [6, 12, 18, 24] if aspp_rates is None
                                     else aspp_rates, "int", 1)
        self.head_hidden_size = _field("head_hidden_size", head_hidden_size, "int", 1)
        self.head_dropout = _field("head_dropout", head_dropout, "float", 0.0, 1.0)
        self.policy_init = _field("policy_init", policy_init, "str", choices=("equal", "random", "all_chosen"))
        self.init_neg_logits = _field("init_neg_logits", init_neg_logits, "float")
        self.gumbel_tau_init = _field("gumbel_tau_init", gumbel_tau_init, "float", 0.0, exclusive_minimum=True)
        self.gumbel_tau_decay = _field("gumbel_tau_decay", gumbel_tau_decay, "float", 0.0, 1.0,
                                       exclusive_minimum=True)
        self.hard_sampling = _field("hard_sampling", hard_sampling, "bool")
        self.curriculum_speed = _field("curriculum_speed", curriculum_speed, "int", 1)
        self.reg_w_sparsity = _field("reg_w_sparsity", reg_w_sparsity, "float", 0.0)
        self.reg_w_sharing = _field("reg_w_sharing", reg_w_sharing, "float", 0.0)
        self.sharing_weight_schedule = _field("sharing_weight_schedule", sharing_weight_schedule, "str",
                                              choices=("code", "paper"))
        self.task_specific_bn = _field("task_specific_bn", task_specific_bn, "bool")
        self.ignore_index = _field("ignore_index", ignore_index, "int")
        self.initializer_range = _field("initializer_range", initializer_range, "float", 0.0)
        if task_types is not None:
            check_mapping("AdaShareConfig", "task_types", task_types, "str")
        if task_loss_weights is not None:
            check_mapping("AdaShareConfig", "task_loss_weights", task_loss_weights, "float", 0.0)
        self._validate_architecture()
        self.task_types = self._resolve_task_types(task_types or {})
        self.task_loss_weights = self._per_task_factors("task_loss_weights", task_loss_weights, "loss weights")
        if task_sparsity_weights is not None:
            check_mapping("AdaShareConfig", "task_sparsity_weights", task_sparsity_weights, "float", 0.0)
        self.task_sparsity_weights = self._per_task_factors("task_sparsity_weights", task_sparsity_weights,
                                                            "sparsity weights")
        self.policy = None if policy is None else self.validate_policy(policy)
        self.segmentation_class_weights = self._check_class_weights(segmentation_class_weights)
        segmentation = self.segmentation_task
        if segmentation is not None and "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["num_labels"] = self.tasks[segmentation]
        super().__init__(**kwargs)

    # -- derived values -------------------------------------------------------------------------------------------
    @property
    def stage_blocks(self) -> list[int]:
        """Residual blocks per stage."""
        return list(RESNET_STAGE_BLOCKS[self.backbone_depth])

    @property
    def num_blocks(self) -> int:
        """L, the number of policy-able residual blocks."""
        return sum(self.stage_blocks)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    @property
    def segmentation_task(self) -> str | None:
        """The first task trained as semantic segmentation (served by the image-segmentation pipeline)."""
        return next((t for t, kind in getattr(self, "task_types", {}).items() if kind == "segmentation"), None)

    @property
    def depth_task(self) -> str | None:
        """The first depth task (served by the depth-estimation pipeline)."""
        return next((t for t, kind in getattr(self, "task_types", {}).items() if kind == "depth"), None)

    # -- validation -----------------------------------------------------------------------------------------------
    def _per_task_factors(self, field: str, values: dict | None, what: str) -> dict[str, float]:
        """`values` for every configured task (1.0 where missing); `TaskError` when it names an unknown task."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.tasks))
        if unknown:
            raise TaskError(f"{field} names unknown task(s) {unknown} (tasks: {list(self.tasks)})",
                            f"give {what} only for the configured tasks")
        return {name: float(values.get(name, 1.0)) for name in self.tasks}

    def _validate_architecture(self) -> None:
        if not self.tasks:
            raise TaskError("AdaShareConfig has no tasks", "pass tasks={'segmentation': 40, 'depth': 1, ...}")
        for name, channels in self.tasks.items():
            if channels <= 0:
                raise ConfigError(f"task '{name}' has {channels} output channels", "give every task at least 1")
        if self.backbone_depth not in RESNET_STAGE_BLOCKS:
            raise ConfigError(
                f"backbone_depth {self.backbone_depth} is not supported",
                f"use one of {sorted(RESNET_STAGE_BLOCKS)}",
            )
        if self.base_width <= 0 or self.head_hidden_size <= 0:
            raise ConfigError("base_width and head_hidden_size must be positive", "set them to at least 1")
        if self.head_type not in ("aspp", "light"):
            raise ConfigError(f"head_type '{self.head_type}' is unknown", "use 'aspp' or 'light'")
        if self.head_type == "aspp" and not self.aspp_rates:
            raise ConfigError("head_type 'aspp' needs at least one rate in aspp_rates", "e.g. aspp_rates=[6,12,18,24]")
        if self.policy_init not in ("equal", "random", "all_chosen"):
            raise ConfigError(f"policy_init '{self.policy_init}' is unknown", "use 'equal', 'random' or 'all_chosen'")
        if self.sharing_weight_schedule not in ("code", "paper"):
            raise ConfigError(
                f"sharing_weight_schedule '{self.sharing_weight_schedule}' is unknown",
                "use 'code' ((l+1)/L, the authors' code) or 'paper' ((L-l)/L)",
            )
        if self.gumbel_tau_init <= 0 or not 0 < self.gumbel_tau_decay <= 1:
            raise ConfigError("gumbel_tau_init must be > 0 and gumbel_tau_decay in (0, 1]", "e.g. 5.0 and 0.965")
        if self.curriculum_speed <= 0:
            raise ConfigError(f"curriculum_speed must be >= 1, got {self.curriculum_speed}", "e.g. 3")

    def _check_class_weights(self, weights):
        if not weights:
            return None
        if not isinstance(weights, dict) or any(
                not isinstance(values, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                             for v in values) for values in weights.values()):
            raise ConfigError(f"AdaShareConfig field 'segmentation_class_weights' is {weights!r}",
                              "give {segmentation task: [one weight per class]} (numbers)")
        checked = {}
        for name, values in weights.items():
            if self.task_types.get(name) != "segmentation":
                raise TaskError(f"segmentation_class_weights names '{name}', not a segmentation task",
                                f"give weights only for the segmentation tasks of {self.task_names}")
            if len(values) != self.tasks[name] or any(float(v) < 0 for v in values):
                raise ConfigError(f"segmentation_class_weights of '{name}' has {len(values)} value(s), expected "
                                  f"{self.tasks[name]} non-negative ones", "give one weight >= 0 per class")
            checked[name] = [float(v) for v in values]
        return checked

    def _resolve_task_types(self, given: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(given) - set(self.tasks))
        if unknown:
            raise TaskError(f"task_types names unknown task(s) {unknown}", f"use the configured tasks {self.task_names}")
        resolved = {}
        for name in self.tasks:
            kind = given.get(name, KNOWN_TASK_TYPES.get(name))
            if kind not in TASK_TYPES:
                raise TaskError(
                    f"task '{name}' has no known type (got {kind!r})",
                    f"pass task_types={{'{name}': one of {list(TASK_TYPES)}}}",
                )
            resolved[name] = kind
        return resolved

    def validate_policy(self, policy: dict[str, list[int]]) -> dict[str, list[int]]:
        """Check a hard policy (task -> L values in {0, 1}) against this config and return it as plain lists."""
        if not isinstance(policy, dict):
            raise ConfigError(f"policy must map task names to lists of 0/1, got {type(policy).__name__}",
                              "pass {'task': [1, 0, ...]} with one value per residual block")
        unknown = sorted(set(policy) - set(self.tasks))
        missing = sorted(set(self.tasks) - set(policy))
        if unknown or missing:
            raise TaskError(
                f"policy tasks differ from the model's (unknown: {unknown}, missing: {missing})",
                f"give exactly one policy per task of {self.task_names}",
            )
        checked = {}
        for name in self.tasks:
            values = policy[name]
            values = values.tolist() if hasattr(values, "tolist") else list(values)
            if len(values) != self.num_blocks or any(isinstance(v, list) for v in values):
                raise ConfigError(
                    f"policy of task '{name}' has shape {_shape_of(values)}, expected [{self.num_blocks}] "
                    f"(one value per residual block of ResNet-{self.backbone_depth})",
                    "give one 0/1 value per residual block",
                )
            if any(v not in (0, 1) for v in values):
                raise ConfigError(
                    f"policy of task '{name}' holds values other than 0/1: {values}",
                    "use 1 to execute a block and 0 to skip it (sample or argmax the logits first)",
                )
            checked[name] = [int(v) for v in values]
        return checked


def _field(name: str, value, kind: str, minimum=None, maximum=None, choices=None, exclusive_minimum=False):
    return check_field("AdaShareConfig", name, value, kind, minimum, maximum, choices, exclusive_minimum)


def _shape_of(values) -> list[int]:
    shape = [len(values)]
    if values and isinstance(values[0], (list, tuple)):
        shape.append(len(values[0]))
    return shape


__all__ = ["AdaShareConfig"]
