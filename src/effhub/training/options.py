"""Typed options of effhub's entry points: what a run, an evaluation, a conversion or a demo is asked to do.

`effhub.cli` is the only place that turns command-line flags into these; demos, benchmarks, tests and user code build
them directly. They hold plain values only (no torch), so that importing them is instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
# the precision of runs whose options do not name one (benchmarks, demos), e.g. bf16 for a GPU check
MIXED_PRECISION_VARIABLE = "EFFHUB_MIXED_PRECISION"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}.{name}={value!r} is invalid", f"pass an integer >= {minimum}")


@dataclass
class RunOptions:
    """How to run one training run: where it writes, its seed, its data, precision, logging, checkpoints, the Hub.

    Args:
        output_dir (`str` or `Path`): the run folder (model, card, `run_info.json`, `logs/`, `checkpoints/`).
        seed (`int`, *optional*): overrides the recipe's seed; seeds Python, NumPy and torch at the start of every
            stage, and the shuffling of every data stream.
        data_dir (`str` or `Path`, *optional*): the data set's root for recipes that read a real data set.
        resume (`bool`): continue an interrupted run: finished stages are skipped, the interrupted one continues
            from its latest checkpoint.
        overwrite (`bool`): replace the run that `output_dir` holds (another method, recipe or a finished run):
            its files are removed first; files the run did not write are left alone. Without it such a folder is
            refused.
        mixed_precision (`str`, *optional*): `"no"`, `"fp16"` (GPU) or `"bf16"` (GPU or CPU); when not given, the
            environment variable `EFFHUB_MIXED_PRECISION`, else `"no"` (`scripts/gpu_check.sh` runs the benchmarks
            in bf16 this way).
        grad_accum (`int`): micro-batches accumulated into each optimizer step.
        log_with (`list[str]`): extra Accelerate trackers such as `["tensorboard"]`; `logs/metrics.jsonl` is always
            written.
        checkpoint_every (`int`): optimizer steps between resumable checkpoints; 0 saves at phase ends only.
        checkpoints_total_limit (`int`): how many of the newest checkpoints of a stage are kept.
        progress (`bool`): show a progress bar per phase on the main process (when stderr is a terminal).
        dataloader_workers (`int`): worker processes per data loader (exact resume of random transforms needs 0).
        cpu (`bool`): force the CPU (also set by `ACCELERATE_USE_CPU=true`).
        push_to_hub (`str`, *optional*): a repo id to push the finished run to.
        hub_endpoint (`str`, *optional*): the Hub URL for `push_to_hub` (default: `HF_ENDPOINT` or the Hub).
        extra (`dict`): values of the method's own training options (`MethodOption`s of `effhub train <method>`).
    """

    output_dir: str | Path
    seed: int | None = None
    data_dir: str | Path | None = None
    resume: bool = False
    overwrite: bool = False
    mixed_precision: str | None = None
    grad_accum: int = 1
    log_with: list[str] = field(default_factory=list)
    checkpoint_every: int = 0
    checkpoints_total_limit: int = 2
    progress: bool = True
    dataloader_workers: int = 0
    cpu: bool = False
    push_to_hub: str | None = None
    hub_endpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.output_dir is None or str(self.output_dir) == "":
            raise ConfigError("RunOptions.output_dir is empty", "pass the run folder, e.g. output_dir='runs/x'")
        self.output_dir = Path(self.output_dir)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.mixed_precision is None:
            self.mixed_precision = os.environ.get(MIXED_PRECISION_VARIABLE, "").strip().lower() or "no"
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ConfigError(
                f"mixed_precision={self.mixed_precision!r} is not supported",
                f"use one of {', '.join(MIXED_PRECISION_CHOICES)} (bf16 also works on the CPU)",
            )
        for name, minimum in (("grad_accum", 1), ("checkpoint_every", 0), ("checkpoints_total_limit", 1),
                              ("dataloader_workers", 0)):
            _check_int("RunOptions", name, getattr(self, name), minimum)
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"RunOptions.seed={self.seed!r} is not an integer", "pass an integer seed")
        if self.log_with is None:
            self.log_with = []
        elif isinstance(self.log_with, str):
            self.log_with = [self.log_with]
        self.log_with = [str(name) for name in self.log_with]
        self.cpu = bool(self.cpu) or _env_flag("ACCELERATE_USE_CPU")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite were both asked", "pass --resume to continue the run in the "
                              "folder, or --overwrite to replace it, not both")

    def seed_or(self, recipe_seed: int) -> int:
        """The run's seed: this option when set, else the recipe's."""
        return recipe_seed if self.seed is None else self.seed

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class EvalOptions:
    """How to evaluate a trained run folder (`effhub eval`).

    Args:
        data_dir (`str` or `Path`, *optional*): the data set's root for real-data recipes.
        split (`str`): the split to evaluate.
        zero_shot (`bool`): zero-shot evaluation, where the method has one.
    """

    data_dir: str | Path | None = None
    split: str = "test"
    zero_shot: bool = False


@dataclass
class ConvertOptions:
    """How to convert an authors' checkpoint into an effhub model folder (`effhub convert`).

    Args:
        recipe (`str`): the recipe (name or YAML path) that describes the checkpoint's model.
        output (`str` or `Path`): the model folder to write.
        overrides (`list[str]`): `key=value` recipe overrides.
        extra (`dict`): method-specific conversion settings (e.g. a policy file).
    """

    recipe: str
    output: str | Path
    overrides: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.output = Path(self.output)


@dataclass
class DemoOptions:
    """How to run a method's end-to-end demo (`effhub demo`).

    Args:
        output_dir (`str` or `Path`): the demo's folder (its run, its local hub).
        overrides (`list[str]`): `key=value` overrides of the demo recipe, e.g. for a quicker run.
    """

    output_dir: str | Path = Path("runs/demo")
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)


__all__ = ["RunOptions", "EvalOptions", "ConvertOptions", "DemoOptions", "MIXED_PRECISION_CHOICES",
           "MIXED_PRECISION_VARIABLE"]
