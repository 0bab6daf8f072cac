"""What a method hands the phased trainer: its `Phase`s made of `Update`s (data, loss, parameters, optimiser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import ConfigError

if TYPE_CHECKING:  # keep `import effhub.training` light: torch is only needed for the annotations
    import torch
    from torch import nn

    from .trainer import StepContext

LossFn = Callable[["nn.Module", dict, "StepContext"], Any]


@dataclass
class Update:
    """One kind of optimiser step within a phase: which data, which loss, which parameters, which optimiser.

    Args:
        name (`str`): names the update in logs (`<phase>/<update>/loss`).
        dataset (`str` or `tuple[str, ...]`): key into the trainer's `datasets` dict; several keys draw one batch
            from each of those independent streams per micro-step, and the loss then gets `{key: batch}` (e.g. an
            image batch and a text batch for unpaired distillation).
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
    dataset: str | tuple[str, ...]
    loss: LossFn
    parameters: Callable[["nn.Module"], Iterable["nn.Parameter"]]
    optimizer: Callable[[list], "torch.optim.Optimizer"]
    scheduler: Callable[["torch.optim.Optimizer", int], Any] | None = None
    every: int = 1
    offset: int = 0

    @property
    def dataset_names(self) -> tuple[str, ...]:
        """The dataset keys this update draws from."""
        return (self.dataset,) if isinstance(self.dataset, str) else tuple(self.dataset)

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
        batch_size (`int` or `dict[str, int]`): samples per micro-batch on each process; a dict gives each dataset
            key its own batch size.
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
    batch_size: int | dict[str, int]
    on_step_end: Callable[["StepContext"], None] | None = None
    on_phase_start: Callable[["nn.Module", "StepContext"], None] | None = None
    max_grad_norm: float | None = None

    def dataset_names(self) -> list[str]:
        """The dataset keys this phase draws from, in first-use order."""
        names: list[str] = []
        for update in self.updates:
            for name in update.dataset_names:
                if name not in names:
                    names.append(name)
        return names

    def batch_size_of(self, dataset: str) -> int:
        """The micro-batch size of `dataset` in this phase."""
        return self.batch_size[dataset] if isinstance(self.batch_size, dict) else self.batch_size

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint records to recognise this phase on resume."""
        return {
            "name": self.name,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "updates": [{"name": u.name, "dataset": u.dataset if isinstance(u.dataset, str) else list(u.dataset),
                         "every": u.every, "offset": u.offset}
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
        sizes = phase.batch_size.values() if isinstance(phase.batch_size, dict) else [phase.batch_size]
        if not sizes or not all(_positive_int(size) for size in sizes):
            raise ConfigError(
                f"phase '{phase.name}' has batch_size={phase.batch_size!r}",
                "give every phase a batch_size >= 1 (or a dict of them by dataset key)"
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
            if not update.dataset_names:
                raise ConfigError(f"{where} names no dataset", "give the update a dataset key (or a tuple of them)")
            for name in update.dataset_names:
                if name not in datasets:
                    raise ConfigError(
                        f"{where} uses dataset '{name}', which is not among the datasets "
                        f"({', '.join(sorted(map(str, datasets)))})",
                        f"add '{name}' to the trainer's datasets or fix the Update's dataset key",
                    )
                if isinstance(phase.batch_size, dict) and name not in phase.batch_size:
                    raise ConfigError(f"phase '{phase.name}' gives no batch size for dataset '{name}'",
                                      f"add '{name}' to the phase's batch_size dict")
            if not _positive_int(update.every):
                raise ConfigError(f"{where} has every={update.every!r}", "use every >= 1")
            if not isinstance(update.offset, int) or not 0 <= update.offset < update.every:
                raise ConfigError(f"{where} has offset={update.offset!r}", f"use 0 <= offset < every ({update.every})")
            for attribute in ("loss", "parameters", "optimizer"):
                if not callable(getattr(update, attribute)):
                    raise ConfigError(f"{where}: {attribute} is not callable", f"pass a function as {attribute}")
            if update.scheduler is not None and not callable(update.scheduler):
                raise ConfigError(f"{where}: scheduler is not callable", "pass scheduler(optimizer, total_steps)")


__all__ = ["Update", "Phase", "validate_phases"]
