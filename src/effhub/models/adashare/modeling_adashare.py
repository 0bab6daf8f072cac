"""AdaShare (Sun, Panda, Feris, Saenko, "AdaShare: Learning What To Share For Efficient Deep Multi-Task Learning",
NeurIPS 2020, arXiv 1911.12423).

One DeepLab-style dilated ResNet is shared by all tasks. Every task owns a [L, 2] matrix of select/skip logits over the
L residual blocks and its own dense head. While the policy is learned, a Gumbel-softmax sample mixes each block's output
with its shortcut (so every block is computed); once a hard policy is fixed (after re-training), each task runs only
the blocks it selected, which is where the computation saving comes from. A skipped first block of a stage still
applies its 1x1 downsample projection, since later blocks expect the projected channels and resolution.
"""


import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...costs import MultiplyAddCounter
from ...errors import ConfigError, TaskError
from ...multitask import weighted_task_losses
from ..loading import CheckedLoadingMixin
from .configuration_adashare import BOTTLENECK_DEPTHS, AdaShareConfig

POLICY_MODES = ("shared", "gumbel", "fixed", "argmax")
# stage strides and dilations that give output stride 8 (the stem divides by 4, stage 2 by 2 more)
STAGE_STRIDES = (1, 2, 1, 1)
STAGE_DILATIONS = (1, 1, 2, 4)


@dataclass
class AdaShareModelOutput(ModelOutput):
    """Output of [`AdaShareModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): sum over tasks of lambda_k * task loss, when `labels`
            are given.
        logits (`dict[str, torch.FloatTensor]`): per task, predictions of shape `(batch, channels, H/8, W/8)`.
        policy (`dict[str, torch.FloatTensor]`): per task, the `[L, 2]` select/skip weights used in this pass (soft
            Gumbel samples while learning the policy, one-hot otherwise; all "select" in shared mode).
        task_losses (`dict[str, torch.FloatTensor]`, *optional*): unweighted loss per task that had labels.
        features (`dict[str, torch.FloatTensor]`, *optional*): per task, the backbone features fed to its head (only
            with `output_features=True`).
    """

    loss: torch.FloatTensor | None = None
    logits: dict[str, torch.FloatTensor] | None = None
    policy: dict[str, torch.FloatTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    features: dict[str, torch.FloatTensor] | None = None


class AdaShareBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm of the shared backbone with one set of running statistics per task (task-specific BN).

    The affine weight and bias are shared; `task_running_mean` / `task_running_var` (`[T, C]`) hold each task's
    statistics. When the backbone is run for a group of tasks (`active_tasks`, task indices) and
    `use_task_statistics` is set, training updates the statistics of every task of the group from the batch, and
    evaluation normalises with the first task's; the shared statistics keep tracking every pass, so a model can be
    evaluated either way. Otherwise the module is an ordinary `nn.BatchNorm2d`.

    Args:
        num_features (`int`): channels.
        num_tasks (`int`): tasks, one statistics row each.
    """

    def __init__(self, num_features: int, num_tasks: int):
        super().__init__(num_features)
        self.register_buffer("task_running_mean", torch.zeros(num_tasks, num_features))
        self.register_buffer("task_running_var", torch.ones(num_tasks, num_features))
        self.register_buffer("task_num_batches_tracked", torch.zeros(num_tasks, dtype=torch.long))
        self.active_tasks: list[int] | None = None
        self.use_task_statistics = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.use_task_statistics or not self.active_tasks:
            return super().forward(hidden_states)
        first = self.active_tasks[0]
        if not self.training:
            return F.batch_norm(hidden_states, self.task_running_mean[first], self.task_running_var[first],
                                self.weight, self.bias, False, 0.0, self.eps)
        output = F.batch_norm(hidden_states, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            values = hidden_states.detach().transpose(0, 1).flatten(1).float()
            mean, count = values.mean(dim=1), values.shape[1]
            var = values.var(dim=1, unbiased=count > 1)
            # the shared statistics keep tracking every pass (a mix over the tasks' paths, as without task BN)
            self.num_batches_tracked += 1
            shared = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), shared)
            self.running_var.lerp_(var.to(self.running_var.dtype), shared)
            for task in self.active_tasks:
                self.task_num_batches_tracked[task] += 1
                momentum = (1.0 / float(self.task_num_batches_tracked[task]) if self.momentum is None
                            else self.momentum)
                self.task_running_mean[task].lerp_(mean.to(self.task_running_mean.dtype), momentum)
                self.task_running_var[task].lerp_(var.to(self.task_running_var.dtype), momentum)
        return output


class AdaShareBasicBlock(nn.Module):
    """The residual branch of a ResNet BasicBlock (conv3x3-BN-ReLU-conv3x3-BN); the shortcut is added by the stage."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1, num_tasks: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = AdaShareBatchNorm2d(channels, num_tasks)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = AdaShareBatchNorm2d(channels, num_tasks)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)))
        return self.bn2(self.conv2(hidden_states))


class AdaShareBottleneck(nn.Module):
    """The residual branch of a ResNet Bottleneck (1x1 reduce, dilated 3x3, 1x1 expand by 4), without the shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1, num_tasks: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, stride, bias=False)
        self.bn1 = AdaShareBatchNorm2d(channels, num_tasks)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = AdaShareBatchNorm2d(channels, num_tasks)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = AdaShareBatchNorm2d(channels * self.expansion, num_tasks)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)))
        hidden_states = F.relu(self.bn2(self.conv2(hidden_states)))
        return self.bn3(self.conv3(hidden_states))


class AdaShareDownsample(nn.Module):
    """1x1 convolution + BN projecting the shortcut of a stage's first block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_tasks: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        self.bn = AdaShareBatchNorm2d(out_channels, num_tasks)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(hidden_states))


class AdaShareStem(nn.Module):
    """conv7x7/2 - BN - ReLU - maxpool3x3/2: the input layer, always executed."""

    def __init__(self, num_channels: int, out_channels: int, num_tasks: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(num_channels, out_channels, 7, 2, padding=3, bias=False)
        self.bn = AdaShareBatchNorm2d(out_channels, num_tasks)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(pixel_values))))


class AdaShareStage(nn.Module):
    """The residual blocks of one ResNet stage, with the optional shortcut projection of its first block."""

    def __init__(self, block_class, in_channels: int, channels: int, num_blocks: int, stride: int, dilation: int,
                 num_tasks: int = 1):
        super().__init__()
        out_channels = channels * block_class.expansion
        # the authors also project when the stage is dilated, so each dilated stage starts with a learned shortcut
        needs_projection = stride != 1 or in_channels != out_channels or dilation in (2, 4)
        self.downsample = AdaShareDownsample(in_channels, out_channels, stride, num_tasks) if needs_projection else None
        self.blocks = nn.ModuleList(
            [block_class(in_channels if i == 0 else out_channels, channels, stride if i == 0 else 1, dilation,
                         num_tasks)
             for i in range(num_blocks)]
        )
        self.out_channels = out_channels


class AdaShareBackbone(nn.Module):
    """Dilated ResNet of output stride 8 whose residual blocks can be mixed (soft policy) or skipped (hard policy)."""

    def __init__(self, config: AdaShareConfig):
        super().__init__()
        block_class = AdaShareBottleneck if config.backbone_depth in BOTTLENECK_DEPTHS else AdaShareBasicBlock
        self.stem = AdaShareStem(config.num_channels, config.base_width, len(config.tasks))
        stages, in_channels = [], config.base_width
        for index, num_blocks in enumerate(config.stage_blocks):
            stage = AdaShareStage(block_class, in_channels, config.base_width * 2**index, num_blocks,
                                  STAGE_STRIDES[index], STAGE_DILATIONS[index], len(config.tasks))
            stages.append(stage)
            in_channels = stage.out_channels
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_channels

    def task_norms(self) -> list[AdaShareBatchNorm2d]:
        """The backbone's BatchNorm modules that can hold per-task running statistics."""
        return [module for module in self.modules() if isinstance(module, AdaShareBatchNorm2d)]

    def forward(
        self,
        pixel_values: torch.Tensor,
        soft_policy: torch.Tensor | None = None,
        execute: list[bool] | None = None,
        task_indices: list[int] | None = None,
    ) -> torch.Tensor:
        """Run the backbone.

        Args:
            soft_policy (`torch.Tensor` of shape `[L, 2]`, *optional*): weights of the block output (column 0) and of
                the shortcut (column 1); every block is computed.
            execute (`list[bool]`, *optional*): hard plan; blocks marked False are never called.
            task_indices (`list[int]`, *optional*): the tasks (config order) this pass serves; their own BatchNorm
                running statistics are used (evaluation: the first's) and updated (training: all of them).
        Without `soft_policy` or `execute`, every block runs (hard parameter sharing).
        """
        if task_indices is None:
            return self._forward(pixel_values, soft_policy, execute)
        norms = self.task_norms()
        for norm in norms:
            norm.active_tasks, norm.use_task_statistics = list(task_indices), True
        try:
            return self._forward(pixel_values, soft_policy, execute)
        finally:
            for norm in norms:
                norm.active_tasks, norm.use_task_statistics = None, False

    def _forward(self, pixel_values, soft_policy, execute):
        hidden_states = self.stem(pixel_values)
        index = 0
        for stage in self.stages:
            for position, block in enumerate(stage.blocks):
                if position == 0 and stage.downsample is not None:
                    shortcut = stage.downsample(hidden_states)
                else:
                    shortcut = hidden_states
                if execute is not None and not execute[index]:
                    hidden_states = shortcut
                else:
                    block_output = F.relu(shortcut + block(hidden_states))
                    if soft_policy is not None:
                        block_output = block_output * soft_policy[index, 0] + shortcut * soft_policy[index, 1]
                    hidden_states = block_output
                index += 1
        return hidden_states


class AdaShareASPPBranch(nn.Module):
    """One DeepLab-v2 ASPP branch: dilated conv3x3 - ReLU - dropout - conv1x1 - ReLU - dropout - conv1x1."""

    def __init__(self, in_channels: int, hidden_size: int, out_channels: int, rate: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_size, 3, padding=rate, dilation=rate)
        self.conv2 = nn.Conv2d(hidden_size, hidden_size, 1)
        self.conv3 = nn.Conv2d(hidden_size, out_channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(F.relu(self.conv1(features)))
        hidden_states = self.dropout(F.relu(self.conv2(hidden_states)))
        return self.conv3(hidden_states)


class AdaShareASPPHead(nn.Module):
    """The paper's task head: ASPP branches at several rates whose outputs are summed."""

    def __init__(self, in_channels: int, out_channels: int, config: AdaShareConfig):
        super().__init__()
        self.branches = nn.ModuleList(
            [AdaShareASPPBranch(in_channels, config.head_hidden_size, out_channels, rate, config.head_dropout)
             for rate in config.aspp_rates]
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return sum(branch(features) for branch in self.branches)


class AdaShareLightHead(nn.Module):
    """A light task head (conv3x3 - BN - ReLU - conv1x1) for small configurations."""

    def __init__(self, in_channels: int, out_channels: int, config: AdaShareConfig):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, config.head_hidden_size, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(config.head_hidden_size)
        self.classifier = nn.Conv2d(config.head_hidden_size, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.bn(self.conv(features))))


class AdaSharePolicy(nn.ParameterDict):
    """Per-task select/skip logits: `policy[task]` has shape `[L, 2]`, column 0 = execute, column 1 = skip."""

    def __init__(self, config: AdaShareConfig):
        super().__init__({task: nn.Parameter(torch.empty(config.num_blocks, 2)) for task in config.task_names})


class AdaSharePreTrainedModel(CheckedLoadingMixin, PreTrainedModel):
    """Weight initialisation and loading for AdaShare."""

    config: AdaShareConfig
    base_model_prefix = "adashare"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["AdaShareBackbone"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            # N(0, 0.01) as in the authors' code: the paper's networks are trained from scratch
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
            if isinstance(module, AdaShareBatchNorm2d):
                init.zeros_(module.task_running_mean)
                init.ones_(module.task_running_var)
                init.zeros_(module.task_num_batches_tracked)
        elif isinstance(module, AdaSharePolicy):
            for logits in module.values():
                if self.config.policy_init == "equal":
                    init.constant_(logits, 0.5)
                elif self.config.policy_init == "random":
                    init.normal_(logits, mean=0.0, std=1e-3)
                else:  # all_chosen: strongly prefer executing every block
                    init.copy_(logits, torch.tensor([[0.0, self.config.init_neg_logits]]).expand_as(logits))


class AdaShareModel(AdaSharePreTrainedModel):
    """AdaShare with its task heads: `model(pixel_values)` runs every task, `model(pixel_values, task="depth")` one.

    Policy modes (`policy_mode`):
        - `"shared"`: every block, one backbone pass for all tasks (the warm-up phase; hard parameter sharing).
        - `"gumbel"`: a Gumbel-softmax sample of each task's logits at `temperature` (soft, or straight-through hard
          when `config.hard_sampling`), used while learning the policy; the first `L - num_train_blocks` blocks are
          forced to "execute" (the curriculum grows from the deepest block up).
        - `"fixed"`: the hard policy stored in `config.policy`; skipped blocks are never run.
        - `"argmax"`: the most likely decision per block; skipped blocks are never run.
    The default is `"fixed"` once `config.policy` is set (after re-training), else `"argmax"` with a one-time warning.
    """

    def __init__(self, config: AdaShareConfig):
        super().__init__(config)
        self.backbone = AdaShareBackbone(config)
        head_class = AdaShareASPPHead if config.head_type == "aspp" else AdaShareLightHead
        self.heads = nn.ModuleDict(
            {task: head_class(self.backbone.out_channels, channels, config) for task, channels in config.tasks.items()}
        )
        self.policy = AdaSharePolicy(config)
        self._warned_argmax = False
        self.post_init()

    # -- policy helpers ---------------------------------------------------------------------------------------------
    def _check_tasks(self, task) -> list[str]:
        if task is None:
            return self.config.task_names
        requested = [task] if isinstance(task, str) else list(task)
        unknown = [name for name in requested if name not in self.config.tasks]
        if unknown or not requested:
            raise TaskError(
                f"unknown task(s) {unknown or requested} for this AdaShare model",
                f"use task=None (every task) or one of {self.config.task_names}",
            )
        return requested

    def argmax_policy(self) -> dict[str, list[int]]:
        """The most likely hard policy: task -> L values, 1 where "execute" has the larger logit (ties execute)."""
        return {task: (logits[:, 0] >= logits[:, 1]).long().tolist() for task, logits in self.policy.items()}

    def sample_policy(self, generator: torch.Generator | None = None) -> dict[str, list[int]]:
        """Sample a hard policy, each block independently with P(execute) = softmax(logits)[:, 0] (re-training)."""
        policy = {}
        for task, logits in self.policy.items():
            probability = torch.softmax(logits.detach().float().cpu(), dim=-1)[:, 0]
            draws = torch.rand(probability.shape, generator=generator)
            policy[task] = (draws < probability).long().tolist()
        return policy

    def set_policy(self, policy: dict[str, list[int]] | None) -> None:
        """Fix (or clear with None) the hard policy stored in the config; validated against tasks and L."""
        self.config.policy = None if policy is None else self.config.validate_policy(policy)

    def select_probabilities(self) -> dict[str, torch.Tensor]:
        """P(execute) per task and block, `[L]` each."""
        return {task: torch.softmax(logits.detach(), dim=-1)[:, 0] for task, logits in self.policy.items()}

    def sharing_weights(self) -> torch.Tensor:
        """Block weights w_l of the sharing loss: (l+1)/L (authors' code) or (L-l)/L (paper), l counted from input."""
        num_blocks = self.config.num_blocks
        position = torch.arange(num_blocks, dtype=torch.float32)
        if self.config.sharing_weight_schedule == "code":
            return (position + 1) / num_blocks
        return (num_blocks - position) / num_blocks

    def sparsity_loss(self, num_train_blocks: int | None = None) -> torch.Tensor:
        """Sum over tasks of the mean -log P(skip) over the learnable (deepest `num_train_blocks`) blocks, each task's
        term times its `config.task_sparsity_weights` factor (1 unless set)."""
        count = self._clamp_train_blocks(num_train_blocks)
        factors = getattr(self.config, "task_sparsity_weights", None) or {}
        total = 0.0
        for task, logits in self.policy.items():
            total = total - factors.get(task, 1.0) * F.log_softmax(logits[-count:], dim=-1)[:, 1].mean()
        return total

    def sharing_loss(self) -> torch.Tensor:
        """sum_{i<j} sum_l w_l |logit_i[l, 0] - logit_j[l, 0]| on the raw "execute" logits (authors' definition)."""
        logits = list(self.policy.values())
        weights = self.sharing_weights().to(logits[0].device, logits[0].dtype)
        total = logits[0].new_zeros(())
        for i in range(len(logits)):
            for j in range(i + 1, len(logits)):
                total = total + (weights * (logits[i][:, 0] - logits[j][:, 0]).abs()).sum()
        return total

    def _clamp_train_blocks(self, num_train_blocks: int | None) -> int:
        if num_train_blocks is None:
            return self.config.num_blocks
        if num_train_blocks < 1:
            raise ConfigError(f"num_train_blocks must be >= 1, got {num_train_blocks}", "pass at least 1")
        return min(int(num_train_blocks), self.config.num_blocks)

    def execution_plan(self, task: str, policy_mode: str | None = None) -> list[bool]:
        """Which blocks `task` executes at inference (from `config.policy`, else the argmax policy)."""
        self._check_tasks(task)
        mode = policy_mode or ("fixed" if self.config.policy is not None else "argmax")
        if mode == "fixed":
            if self.config.policy is None:
                raise ConfigError("policy_mode 'fixed' needs config.policy", "call model.set_policy(...) first")
            return [bool(v) for v in self.config.policy[task]]
        if mode == "argmax":
            return [bool(v) for v in self.argmax_policy()[task]]
        if mode == "shared":
            return [True] * self.config.num_blocks
        raise ConfigError(f"policy_mode '{mode}' has no fixed execution plan", "use 'fixed', 'argmax' or 'shared'")

    # -- forward ----------------------------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        task: str | list[str] | None = None,
        labels: dict[str, torch.Tensor] | None = None,
        label_mask: torch.Tensor | dict[str, torch.Tensor] | None = None,
        policy_mode: str | None = None,
        temperature: float | None = None,
        num_train_blocks: int | None = None,
        output_features: bool = False,
        return_dict: bool | None = None,
    ) -> AdaShareModelOutput:
        r"""Predict the requested tasks.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, 3, H, W)`): normalised images.
            task (`str` or `list[str]`, *optional*): the task(s) to run; `None` runs every task.
            labels (`dict[str, torch.Tensor]`, *optional*): per task: segmentation `(B, H, W)` long (ignore_index
                ignored), depth `(B, 1, H, W)` (0 = invalid), normals `(B, 3, H, W)` (zero vector = invalid),
                regression `(B, C, H, W)` (ignore_index = invalid). Resized (nearest) to the prediction size.
            label_mask (`torch.BoolTensor` of shape `(B, T)` in config task order, or `dict[str, (B,)]`, *optional*):
                which images carry which task's label; unlabeled images contribute nothing to that task's loss.
            policy_mode (`str`, *optional*): `"shared"`, `"gumbel"`, `"fixed"` or `"argmax"` (see the class doc).
            temperature (`float`, *optional*): Gumbel-softmax temperature (defaults to `config.gumbel_tau_init`).
            num_train_blocks (`int`, *optional*): curriculum: only the deepest blocks use the learned policy.
            output_features (`bool`, *optional*): also return the backbone features per task.
        """
        tasks = self._check_tasks(task)
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ConfigError(
                f"pixel_values has shape {tuple(pixel_values.shape)}, expected (batch, {self.config.num_channels}, H, W)",
                "pass a batch of images, e.g. from AdaShareImageProcessor",
            )
        mode = policy_mode or ("fixed" if self.config.policy is not None else "argmax")
        if mode not in POLICY_MODES:
            raise ConfigError(f"policy_mode '{mode}' is unknown", f"use one of {list(POLICY_MODES)}")
        if mode == "argmax" and policy_mode is None and not self._warned_argmax:
            self._warned_argmax = True
            warnings.warn(
                "This AdaShare model has no fixed policy yet (it was not re-trained): inference uses the argmax of "
                "the select/skip logits. Re-train the sampled architecture (effhub train adashare) to fix one.",
                UserWarning,
                stacklevel=2,
            )

        features: dict[str, torch.Tensor] = {}
        used_policy: dict[str, torch.Tensor] = {}
        num_blocks = self.config.num_blocks
        if mode == "gumbel":
            tau = self.config.gumbel_tau_init if temperature is None else float(temperature)
            learnable = self._clamp_train_blocks(num_train_blocks)
            for name in tasks:
                sample = F.gumbel_softmax(self.policy[name], tau=tau, hard=self.config.hard_sampling)
                forced = sample.new_tensor([1.0, 0.0]).expand(num_blocks - learnable, 2)
                soft_policy = torch.cat([forced, sample[num_blocks - learnable:]], dim=0)
                used_policy[name] = soft_policy
                features[name] = self.backbone(pixel_values, soft_policy=soft_policy)
        else:
            # tasks with the same plan share one backbone pass (in shared mode: all of them)
            # (with task-specific BN the pass updates the running statistics of every task of its group)
            task_bn = self.config.task_specific_bn and mode in ("fixed", "argmax")
            plans = {name: tuple(self.execution_plan(name, mode)) for name in tasks}
            by_plan: dict[tuple[bool, ...], torch.Tensor] = {}
            for name in tasks:
                plan = plans[name]
                if plan not in by_plan:
                    group = [self.config.task_names.index(other) for other in tasks if plans[other] == plan]
                    by_plan[plan] = self.backbone(pixel_values, execute=None if all(plan) else list(plan),
                                                  task_indices=group if task_bn else None)
                features[name] = by_plan[plan]
                one_hot = torch.tensor([[1.0, 0.0] if run else [0.0, 1.0] for run in plan], device=pixel_values.device)
                used_policy[name] = one_hot

        logits = {name: self.heads[name](features[name]) for name in tasks}

        loss, task_losses = None, None
        if labels is not None:
            loss, task_losses = self.compute_loss(logits, labels, label_mask)

        return AdaShareModelOutput(
            loss=loss,
            logits=logits,
            policy=used_policy,
            task_losses=task_losses,
            features=features if output_features else None,
        )

    # -- losses -----------------------------------------------------------------------------------------------------
    def compute_loss(
        self,
        logits: dict[str, torch.Tensor],
        labels: dict[str, torch.Tensor],
        label_mask: torch.Tensor | dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the task losses over the tasks that have both predictions and labels
        (`effhub.multitask.weighted_task_losses`)."""
        task_types = {name: self.config.task_types[name] for name in self.config.task_names}
        return weighted_task_losses(logits, labels, task_types, self.config.task_loss_weights, label_mask,
                                    self.config.ignore_index, self.config.segmentation_class_weights)

    # -- accounting -------------------------------------------------------------------------------------------------
    def count_parameters(self) -> dict[str, int]:
        """Parameter counts: backbone, heads (all tasks), policy logits."""
        def total(module):
            return sum(p.numel() for p in module.parameters())

        return {"backbone": total(self.backbone), "heads": total(self.heads), "policy": total(self.policy)}

    @torch.no_grad()
    def multiply_adds(self, image_size: tuple[int, int], task: str, policy_mode: str | None = None) -> dict[str, int]:
        """Multiply-adds of one image through the backbone and the head of `task`, with its execution plan.

        Counted on convolutions (the rest is negligible) by running a zero image under `effhub.costs`'s counter;
        the blocks the plan skips are not run, so they count nothing.
        """
        self._check_tasks(task)
        was_training = self.training
        try:
            self.eval()
            probe = torch.zeros(1, self.config.num_channels, *image_size, device=self.device, dtype=self.dtype)
            plan = self.execution_plan(task, policy_mode)
            parts = {"backbone": self.backbone, "head": self.heads[task]}
            with MultiplyAddCounter(parts, module_types=(nn.Conv2d,)) as counter:
                features = self.backbone(probe, execute=plan)
                self.heads[task](features)
        finally:
            self.train(was_training)
        return counter.counts


@torch.no_grad()
def recalibrate_task_batchnorm(model: AdaShareModel, batches, policy_mode: str | None = None) -> AdaShareModel:
    """Recompute every task's BatchNorm running statistics by forward passes (weights untouched); turns
    `config.task_specific_bn` on. For models trained with shared statistics; returns `model`.

    Args:
        model (`AdaShareModel`): a model with a hard policy (`config.policy`, else the argmax policy).
        batches (iterable): batches of `pixel_values` tensors, or mappings holding `pixel_values` (training images).
        policy_mode (`str`, *optional*): `"fixed"` or `"argmax"` (default: as `forward`).
    """
    norms = model.backbone.task_norms()
    momenta = [norm.momentum for norm in norms]
    shared = [(norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.clone()) for norm in norms]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for norm in norms:
            norm.momentum = None  # cumulative average over the batches
            norm.task_running_mean.zero_()
            norm.task_running_var.fill_(1.0)
            norm.task_num_batches_tracked.zero_()
            norm.train()
        plans = {task: model.execution_plan(task, policy_mode) for task in model.config.task_names}
        for batch in batches:
            pixel_values = batch["pixel_values"] if isinstance(batch, dict) else batch
            pixel_values = pixel_values.to(model.device, model.dtype)
            for index, task in enumerate(model.config.task_names):
                model.backbone(pixel_values, execute=plans[task], task_indices=[index])
            seen += 1
    finally:
        for norm, momentum, (mean, var, count) in zip(norms, momenta, shared):
            norm.momentum = momentum
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(count)
        model.train(was_training)
    if seen == 0:
        raise ConfigError("recalibrate_task_batchnorm got no batches", "pass at least one batch of training images")
    model.config.task_specific_bn = True
    return model


class AdaShareSingleTaskDefault(AdaShareModel):
    """[`AdaShareModel`] whose `forward` runs one task by default, the config's `<default_task_kind>_task`: what a
    task pipeline loads (same weights, so any AdaShare checkpoint with such a task loads into it)."""

    default_task_kind: str = ""

    def forward(self, pixel_values: torch.Tensor, task: str | list[str] | None = None, **kwargs):
        if task is None:
            task = getattr(self.config, f"{self.default_task_kind}_task")
            if task is None:
                raise TaskError(f"this AdaShare model has no {self.default_task_kind} task",
                                f"load it with AutoModel and pick one of {self.config.task_names}")
        return super().forward(pixel_values, task=task, **kwargs)


class AdaShareForSemanticSegmentation(AdaShareSingleTaskDefault):
    """[`AdaShareModel`] that runs only its segmentation task by default: what the image-segmentation pipeline loads."""

    default_task_kind = "segmentation"


class AdaShareForDepthEstimation(AdaShareSingleTaskDefault):
    """[`AdaShareModel`] that runs only its depth task by default: what the depth-estimation pipeline loads."""

    default_task_kind = "depth"


__all__ = [
    "AdaShareModelOutput",
    "AdaSharePreTrainedModel",
    "AdaShareModel",
    "AdaShareForSemanticSegmentation",
    "AdaShareForDepthEstimation",
    "AdaShareBackbone",
    "AdaShareBasicBlock",
    "AdaShareBottleneck",
    "AdaShareASPPHead",
    "AdaShareLightHead",
    "AdaSharePolicy",
    "AdaShareBatchNorm2d",
    "recalibrate_task_batchnorm",
]
