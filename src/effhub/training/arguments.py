"""What a method hands the phased trainer: run-wide `TrainingArguments`, and its `Phase`s made of `Update`s."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

from ..errors import ConfigError

if TYPE_CHECKING:  # keep `import effhub.training` light: torch is only needed for the annotations
    import torch
    from torch import nn

    from .trainer import StepContext

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class TrainingArguments:
    """Run-wide settings of a phased training run (the flags every `effhub train <method>` shares).

    Args:
        output_dir (`str` or `Path`): the run folder; it also receives `checkpoints/`, `logs/` and `run_info.json`.
        seed (`int`): seeds Python, NumPy and torch on every process, and the per-epoch shuffling of every dataset.
        mixed_precision (`str`): `"no"`, `"fp16"` (GPU) or `"bf16"` (GPU or CPU).
        grad_accum (`int`): micro-batches accumulated into each optimizer step.
        log_with (`list[str]`): extra Accelerate trackers such as `["tensorboard"]`; a JSON-lines log
            (`output_dir/logs/metrics.jsonl`) is always written.
        checkpoint_every (`int`): optimizer steps between resumable checkpoints; 0 saves at phase ends only.
        checkpoints_total_limit (`int`): how many of the newest checkpoints are kept.
        resume (`bool`): continue from the latest complete checkpoint in `output_dir/checkpoints`.
        progress (`bool`): show a tqdm bar per phase on the main process (only when stderr is a terminal).
        dataloader_workers (`int`): worker processes per data loader (exact resume of random data transforms
            needs 0, because worker RNG streams are not checkpointed).
        cpu (`bool`): force the CPU (also set by `ACCELERATE_USE_CPU=true`).
        method (`str`): the method name, recorded in `run_info.json` (`effhub eval` reads it).
        recipe (`dict`, *optional*): the recipe snapshot recorded in `run_info.json`.
        find_unused_parameters (`bool`): let DDP tolerate parameters that get no gradient in a pass (frozen groups,
            skipped blocks, per-bit-width layers). Keep it on unless every pass uses every trainable parameter.
    """

    output_dir: Union[str, Path]
    seed: int = 0
    mixed_precision: str = "no"
    grad_accum: int = 1
    log_with: list[str] = field(default_factory=list)
    checkpoint_every: int = 0
    checkpoints_total_limit: int = 2
    resume: bool = False
    progress: bool = True
    dataloader_workers: int = 0
    cpu: bool = False
    method: str = ""
    recipe: dict[str, Any] | None = None
    find_unused_parameters: bool = True

    def __post_init__(self):
        if self.output_dir is None or str(self.output_dir) == "":
            raise ConfigError("TrainingArguments.output_dir is empty", "pass the run folder, e.g. output_dir='runs/x'")
        self.output_dir = Path(self.output_dir)
        if self.mixed_precision is None:
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ConfigError(
                f"mixed_precision={self.mixed_precision!r} is not supported",
                f"use one of {', '.join(MIXED_PRECISION_CHOICES)} (bf16 also works on the CPU)",
            )
        for name, minimum in (("grad_accum", 1), ("checkpoint_every", 0), ("checkpoints_total_limit", 1),
                              ("dataloader_workers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"TrainingArguments.{name}={value!r} is invalid", f"pass an integer >= {minimum}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"TrainingArguments.seed={self.seed!r} is not an integer", "pass an integer seed")
        if self.log_with is None:
            self.log_with = []
        elif isinstance(self.log_with, str):
            self.log_with = [self.log_with]
        self.log_with = [str(name) for name in self.log_with]
        if self.recipe is not None and not isinstance(self.recipe, dict):
            raise ConfigError(
                f"TrainingArguments.recipe is a {type(self.recipe).__name__}, not a dict",
                "pass the recipe as a plain dict (effhub.recipes.recipe_to_dict)",
            )
        self.cpu = bool(self.cpu) or _env_flag("ACCELERATE_USE_CPU")

    @classmethod
    def from_cli_args(cls, cli_args: Any, **defaults: Any) -> "TrainingArguments":
        """Build from the flags of `effhub train <method>` (an `argparse.Namespace`); flags left unset (None) fall
        back to `defaults` (typically the recipe's values, plus `output_dir`, `method` and `recipe`)."""
        values = dict(defaults)
        flag_to_field = {"output_dir": "output_dir", "seed": "seed", "mixed_precision": "mixed_precision",
                         "grad_accum": "grad_accum", "log_with": "log_with", "checkpoint_every": "checkpoint_every",
                         "dataloader_workers": "dataloader_workers", "cpu": "cpu"}
        for flag, name in flag_to_field.items():
            value = getattr(cli_args, flag, None)
            if value is None or value is False:  # unset flag (store_true flags are False when absent)
                continue
            values[name] = value
        if getattr(cli_args, "resume", False):
            values["resume"] = True
        if getattr(cli_args, "no_progress", False):
            values["progress"] = False
        if values.get("output_dir") is None:
            raise ConfigError("no output folder was given", "pass --output-dir (or output_dir=... as a default)")
        return cls(**values)


LossFn = Callable[["nn.Module", dict, "StepContext"], Any]


@dataclass
class Update:
    """One kind of optimiser step within a phase: which data, which loss, which parameters, which optimiser.

    Args:
        name (`str`): names the update in logs (`<phase>/<update>/loss`).
        dataset (`str`): key into the trainer's `datasets` dict.
        loss (`Callable`): `loss(model, batch, ctx)` returns a scalar loss tensor, or a dict holding it under
            `"loss"` plus other values to log. `model` is the prepared (possibly DDP-wrapped) model: call it as
            `model(...)` so that gradients are synchronised; read attributes from `ctx.unwrapped_model`.
        parameters (`Callable`): `parameters(unwrapped_model)` returns the parameters this update trains.
        optimizer (`Callable`): `optimizer(params)` builds its optimiser, e.g. `lambda p: torch.optim.Adam(p, 1e-3)`.
        scheduler (`Callable`, *optional*): `scheduler(optimizer, total_steps)` builds an LR scheduler stepped once
            per optimizer step of this update; `total_steps` is how many times this update runs in its phase.
        every (`int`): run on the phase steps where `step % every == offset` (alternation between updates).
        offset (`int`): see `every`; `every=2, offset=1` runs on odd steps.
    """

    name: str
    dataset: str
    loss: LossFn
    parameters: Callable[["nn.Module"], Iterable["nn.Parameter"]]
    optimizer: Callable[[list], "torch.optim.Optimizer"]
    scheduler: Callable[["torch.optim.Optimizer", int], Any] | None = None
    every: int = 1
    offset: int = 0

    def runs_at(self, step: int) -> bool:
        """Whether this update runs on phase step `step` (0-based)."""
        return step % self.every == self.offset

    def total_steps(self, phase_steps: int) -> int:
        """How many times this update runs in a phase of `phase_steps` steps."""
        return sum(1 for step in range(phase_steps) if self.runs_at(step))


@dataclass
class Phase:
    """A stretch of training with its own updates, length, batch size and hooks.

    Args:
        name (`str`): unique among the run's phases; names the progress bar and the logs.
        steps (`int`): phase length in optimizer steps (each step runs every update scheduled on it once).
        updates (`list[Update]`): the kinds of optimiser steps of this phase.
        batch_size (`int`): samples per micro-batch on each process.
        on_step_end (`Callable`, *optional*): `on_step_end(ctx)` after each step, e.g. a temperature schedule
            writing `ctx.state["temperature"]`.
        on_phase_start (`Callable`, *optional*): `on_phase_start(unwrapped_model, ctx)` before the first step, e.g.
            reloading saved initial weights. The model is in train mode when it runs; it may put parts of the model
            in eval mode (e.g. a frozen backbone) for the whole phase. On a resume inside this phase it runs again before the checkpoint is
            restored, so it may set things up but anything it changes in weights or `ctx.state` is overwritten.
        max_grad_norm (`float`, *optional*): clip the gradient norm of each update's parameters to this value.
    """

    name: str
    steps: int
    updates: list[Update]
    batch_size: int
    on_step_end: Callable[["StepContext"], None] | None = None
    on_phase_start: Callable[["nn.Module", "StepContext"], None] | None = None
    max_grad_norm: float | None = None

    def dataset_names(self) -> list[str]:
        """The dataset keys this phase draws from, in first-use order."""
        names: list[str] = []
        for update in self.updates:
            if update.dataset not in names:
                names.append(update.dataset)
        return names

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint records to recognise this phase on resume."""
        return {
            "name": self.name,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "updates": [{"name": u.name, "dataset": u.dataset, "every": u.every, "offset": u.offset}
                        for u in self.updates],
        }


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_phases(phases: list[Phase], datasets: dict[str, Any]) -> None:
    """Raise `ConfigError` naming the problem when the phases or datasets cannot be trained."""
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError("no datasets were given to the trainer", "pass datasets={'train': dataset, ...}")
    for key, dataset in datasets.items():
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ConfigError(
                f"dataset '{key}' is a {type(dataset).__name__} without a length (an iterable or streaming dataset)",
                "pass a map-style dataset (a datasets.Dataset or a torch Dataset with __len__ and __getitem__)",
            )
        if len(dataset) == 0:
            raise ConfigError(f"dataset '{key}' is empty", "pass a dataset with at least one sample")
    if not isinstance(phases, (list, tuple)) or not phases:
        raise ConfigError("no phases were given to the trainer", "pass a list of effhub.training.Phase")
    seen_phases: set[str] = set()
    for phase in phases:
        if not isinstance(phase, Phase):
            raise ConfigError(f"{phase!r} is not a Phase", "build each phase with effhub.training.Phase(...)")
        if phase.name in seen_phases:
            raise ConfigError(f"two phases are named '{phase.name}'", "give every phase a unique name")
        seen_phases.add(phase.name)
        if not _positive_int(phase.steps):
            raise ConfigError(f"phase '{phase.name}' has steps={phase.steps!r}", "give every phase steps >= 1")
        if not _positive_int(phase.batch_size):
            raise ConfigError(
                f"phase '{phase.name}' has batch_size={phase.batch_size!r}", "give every phase a batch_size >= 1"
            )
        if phase.max_grad_norm is not None and not phase.max_grad_norm > 0:
            raise ConfigError(
                f"phase '{phase.name}' has max_grad_norm={phase.max_grad_norm!r}", "use a positive norm or None"
            )
        if not phase.updates:
            raise ConfigError(f"phase '{phase.name}' has no updates", "give the phase at least one Update")
        seen_updates: set[str] = set()
        for update in phase.updates:
            where = f"update '{update.name}' of phase '{phase.name}'"
            if not isinstance(update, Update):
                raise ConfigError(f"{update!r} in phase '{phase.name}' is not an Update",
                                  "build each update with effhub.training.Update(...)")
            if update.name in seen_updates:
                raise ConfigError(f"phase '{phase.name}' has two updates named '{update.name}'",
                                  "give every update of a phase a unique name")
            seen_updates.add(update.name)
            if update.dataset not in datasets:
                raise ConfigError(
                    f"{where} uses dataset '{update.dataset}', which is not among the datasets "
                    f"({', '.join(sorted(map(str, datasets)))})",
                    f"add '{update.dataset}' to the trainer's datasets or fix the Update's dataset key",
                )
            if not _positive_int(update.every):
                raise ConfigError(f"{where} has every={update.every!r}", "use every >= 1")
            if not isinstance(update.offset, int) or not 0 <= update.offset < update.every:
                raise ConfigError(f"{where} has offset={update.offset!r}", f"use 0 <= offset < every ({update.every})")
            for attribute in ("loss", "parameters", "optimizer"):
                if not callable(getattr(update, attribute)):
                    raise ConfigError(f"{where}: {attribute} is not callable", f"pass a function as {attribute}")
            if update.scheduler is not None and not callable(update.scheduler):
                raise ConfigError(f"{where}: scheduler is not callable", "pass scheduler(optimizer, total_steps)")


__all__ = ["TrainingArguments", "Update", "Phase", "validate_phases", "MIXED_PRECISION_CHOICES"]
