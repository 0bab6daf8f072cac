"""A training run: a sequence of named stages in one run folder, on one `Accelerator` from the first to the last.

A stage is a model trained through its phases on its datasets (`PhasedTrainer`). The run owns what stages share:
the folder and its file names (`RunLayout`), the accelerator and its process group, the trackers and
`logs/metrics.jsonl` (steps count on across stages), `run_info.json`, and the record of finished stages: a finished
stage keeps its final weights and the outputs the method recorded (e.g. its validation scores), so `resume=True`
skips it and loads them, and continues the interrupted stage from its latest checkpoint.

```python
from effhub.training import Phase, Run, RunOptions, Update

with Run(RunOptions(output_dir="runs/x"), method="mine", seed=0) as run:
    teacher = run.train_stage("teacher", teacher, [Phase(...)], {"train": data}).model
    student = run.train_stage("student", student, [Phase(...)], {"train": data},
                              outputs=lambda model: {"val": score(model)})
    run.save_pretrained(student.model)
```
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..atomic import atomic_save_safetensors, atomic_write_json
from ..errors import CheckpointError, ConfigError, TrainingInterrupted
from .checkpoints import latest_checkpoint
from .layout import RunLayout, check_stage_name
from .options import RunOptions
from .phases import Phase, validate_phases
from .run_info import collect_run_info
from .tracking import build_trackers, truncate_metrics_log

logger = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What a stage leaves: the trained model, the trainer state, and the outputs recorded with it.

    Attributes:
        model (`nn.Module`): the trained (unwrapped) model.
        state (`dict`): the trainer state at the end (e.g. a temperature).
        outputs (`dict`): what the stage's `outputs` function returned (read from the record when skipped).
        skipped (`bool`): the stage had finished in an earlier, interrupted attempt of this run.
    """

    model: nn.Module
    state: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


def recipe_differences(recorded: dict | None, recipe: dict | None) -> list[str]:
    """`key: recorded -> new` for every dotted key where two recipe snapshots differ (compared as JSON, as
    `run_info.json` holds them); empty when either is unknown."""
    if recorded is None or recipe is None:
        return []
    recipe = json.loads(json.dumps(recipe))
    differences = []

    def compare(before, after, prefix):
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after), key=str):
                compare(before.get(key), after.get(key), f"{prefix}{key}.")
        elif before != after:
            differences.append(f"{prefix[:-1]}: {before!r} -> {after!r}")

    compare(recorded, recipe, "")
    return differences


class Run:
    """One training run (see the module docstring); use it as a context manager, or call `close()` at the end.

    Args:
        options (`RunOptions`): where and how to run.
        method (`str`): the method name, recorded in `run_info.json` (`effhub eval` reads it).
        seed (`int`): the run's seed (`options.seed_or(recipe.seed)`); every stage starts by seeding with it.
        recipe (`dict`, *optional*): the recipe snapshot recorded in `run_info.json`.
        find_unused_parameters (`bool`): let DDP tolerate parameters that get no gradient in a pass.
    """

    def __init__(self, options: RunOptions, method: str, seed: int, recipe: dict | None = None,
                 find_unused_parameters: bool = True):
        if not isinstance(options, RunOptions):
            raise ConfigError(f"options is a {type(options).__name__}", "pass effhub.training.RunOptions(...)")
        if recipe is not None and not isinstance(recipe, dict):
            raise ConfigError(f"the run's recipe is a {type(recipe).__name__}, not a dict",
                              "pass the recipe as a plain dict (effhub.recipes.recipe_to_dict)")
        self.options = options
        self.method = method
        self.seed = seed
        self.recipe = recipe
        self.find_unused_parameters = find_unused_parameters
        self.layout = RunLayout(options.output_dir)
        self._accelerator = None
        self._started = False
        self._closed = False
        self._stage_names: list[str] = []
        self.global_step = 0
        self._interrupted: str | None = None
        # every process looks at the folder before any process writes to it (a rank that looked late would take the
        # first rank's files for another run's)
        self.accelerator.wait_for_everyone()
        self._foreign = self._claim_folder()
        self.accelerator.wait_for_everyone()
        self._stages: dict[str, Any] = self.layout.read_stages() if options.resume else {}

    # ---------------------------------------------------------------------------------------------- the folder
    def _claim_folder(self) -> set[str]:
        """Refuse a folder that holds another run (unless resuming it, or asked to overwrite it); returns the
        entries that were there and are not this run's (never touched)."""
        root = self.layout.root
        if not root.exists():
            return set()
        if not root.is_dir():
            raise ConfigError(f"output folder '{root}' is a file", "pass a folder path as --output-dir")
        present = {entry.name for entry in root.iterdir()}
        if not present:
            return set()
        previous = self.layout.read_run_info() if self.layout.run_info.is_file() else None
        if previous is None:
            if self.options.resume:
                raise CheckpointError(f"'{root}' holds no effhub run to resume (no {self.layout.run_info.name})",
                                      "start without --resume, or point --output-dir at the interrupted run")
            if not self.options.overwrite:
                raise CheckpointError(f"output folder '{root}' is not empty and holds no effhub run",
                                      "pass a new or empty --output-dir (or --overwrite to write beside its files)")
            return present
        what = (f"a {'finished' if previous.get('finished') else 'unfinished'} '{previous.get('method')}' run "
                f"(recipe {(previous.get('recipe') or {}).get('description') or 'unnamed'!s:.60})")
        if self.options.resume:
            if previous.get("method") != self.method:
                raise CheckpointError(f"'{root}' holds {what}, not a '{self.method}' run",
                                      f"resume it with `effhub train {previous.get('method')} --resume`, or train "
                                      "into another --output-dir")
            changed = recipe_differences(previous.get("recipe"), self.recipe)
            if changed:
                shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
                raise CheckpointError(f"'{root}' was started with another recipe ({len(changed)} difference(s): "
                                      f"{shown}); its finished stages would not match what this resume records",
                                      "resume with the recipe and --set overrides that started the run (its "
                                      "run_info.json holds them), or train into a fresh --output-dir")
            return present - set(previous.get("files") or present)
        if not self.options.overwrite:
            raise CheckpointError(f"output folder '{root}' already holds {what}",
                                  "pass --resume to continue it, --overwrite to replace it, or another --output-dir")
        owned = set(previous.get("files") or ()) | {self.layout.run_info.name, self.layout.checkpoints.name,
                                                   self.layout.logs.name}
        if self.accelerator.is_main_process:
            for name in sorted(owned & present):
                path = root / name
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            logger.warning("--overwrite: removed the previous run's %d entries from %s", len(owned & present), root)
        self.accelerator.wait_for_everyone()
        return present - owned

    def _owned_entries(self) -> list[str]:
        root = self.layout.root
        return sorted(entry.name for entry in root.iterdir() if entry.name not in self._foreign) if root.is_dir() \
            else []

    # ---------------------------------------------------------------------------------------------- process group
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this run has been closed", "start a new Run for another run")

    @property
    def accelerator(self):
        """The run's `Accelerator` (created on first use; its process group lives until `close()`)."""
        if self._accelerator is None:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

            self._accelerator = Accelerator(
                cpu=self.options.cpu,
                mixed_precision=self.options.mixed_precision,
                # accumulation is done by the trainer (several data streams, several optimisers): Accelerate sees 1
                gradient_accumulation_steps=1,
                log_with=build_trackers(self.options.log_with, self.layout.logs),
                project_config=ProjectConfiguration(project_dir=str(self.layout.root),
                                                    logging_dir=str(self.layout.logs)),
                kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=self.find_unused_parameters)],
                # one scheduler step per optimizer step, whatever the number of processes
                step_scheduler_with_optimizer=False,
            )
        return self._accelerator

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def wait_for_everyone(self) -> None:
        self.accelerator.wait_for_everyone()

    def _start(self, stage: str, phases: list[Phase], resume_from: Path | None) -> None:
        """Write `run_info.json` (stage by stage: each stage's phases, each resume's checkpoint) and start the
        trackers when the first stage trains."""
        if self._started:
            if self.is_main_process:
                info = self.layout.read_run_info()
                info.setdefault("stages", {})[stage] = [phase.fingerprint() for phase in phases]
                if resume_from is not None and info.get("resumes"):
                    info["resumes"][-1].setdefault("checkpoints", {})[stage] = resume_from.name
                atomic_write_json(self.layout.run_info, info)
            self.wait_for_everyone()
            return
        self._started = True
        accelerator = self.accelerator
        resuming = self.options.resume and self.layout.run_info.is_file()
        if accelerator.is_main_process:
            self.layout.root.mkdir(parents=True, exist_ok=True)
            info = collect_run_info(method=self.method, seed=self.seed, recipe=self.recipe,
                                    world_size=accelerator.num_processes,
                                    mixed_precision=self.options.mixed_precision,
                                    grad_accum=self.options.grad_accum,
                                    stages={stage: [phase.fingerprint() for phase in phases]},
                                    device=str(accelerator.device))
            if resuming:
                previous = self.layout.read_run_info()
                resume = {"time": info["start_time"], "world_size": info["world_size"], "versions": info["versions"],
                          "git_sha": info["git_sha"]}
                if resume_from is not None:
                    resume["checkpoints"] = {stage: resume_from.name}
                previous.setdefault("resumes", []).append(resume)
                previous.setdefault("stages", {})[stage] = info["stages"][stage]
                info = previous
            info["finished"] = False
            info["files"] = sorted(set(info.get("files") or ()) | set(self._owned_entries()) | {
                self.layout.run_info.name, self.layout.checkpoints.name, self.layout.logs.name})
            atomic_write_json(self.layout.run_info, info)
        accelerator.wait_for_everyone()
        accelerator.init_trackers(self.method or "effhub",
                                  config={"method": self.method, "seed": self.seed,
                                          "mixed_precision": self.options.mixed_precision,
                                          "grad_accum": self.options.grad_accum,
                                          "world_size": accelerator.num_processes, "resumed": resuming})
        logger.info("rank %d of world size %d on %s", accelerator.process_index, accelerator.num_processes,
                    accelerator.device)

    # ---------------------------------------------------------------------------------------------- stages
    def stage_finished(self, name: str) -> bool:
        """Whether stage `name` finished in an earlier attempt of this run (only known with `resume=True`)."""
        return name in self._stages

    def train_stage(self, name: str, model: nn.Module, phases: list[Phase], datasets: dict[str, Any],
                    collate_fn: Callable | dict[str, Callable] | None = None, initial_state: dict | None = None,
                    outputs: Callable[[nn.Module], dict] | None = None,
                    phase_end_checkpoints: bool = True) -> StageResult:
        """Train `model` through `phases` as the stage `name`, or skip it when it finished in an earlier attempt.

        The stage starts by seeding every process with the run's seed. A finished stage's weights are saved to its
        folder and its record written last, so a kill at any point leaves either an unfinished stage (resumed from
        its latest checkpoint, or started afresh when it has none) or a finished one.

        Args:
            name (`str`): unique within the run; names the stage's folder under `checkpoints/`.
            model (`nn.Module`): the model, built by the method (weights loaded from the record when skipped).
            phases (`list[Phase]`), datasets (`dict`), collate_fn, initial_state: see `PhasedTrainer`.
            outputs (`Callable`, *optional*): `outputs(model)` after training returns a JSON-able dict recorded with
                the stage (e.g. its validation scores), so that a resumed run does not compute it again.
            phase_end_checkpoints (`bool`): checkpoint at every phase end (off for many short trainings).
        """
        from accelerate.utils import set_seed

        from .trainer import PhasedTrainer

        self._check_open()
        check_stage_name(name)
        if name in self._stage_names:
            raise ConfigError(f"two stages of the run are named '{name}'", "give every stage a unique name")
        self._stage_names.append(name)
        if name in self._stages:
            return self._skip_stage(name, model)
        validate_phases(phases, datasets)  # before anything is written to the run folder
        stage_dir = self.layout.stage_dir(name)
        resume_from = latest_checkpoint(stage_dir) if self.options.resume else None
        self._start(name, phases, resume_from)
        set_seed(self.seed)
        trainer = PhasedTrainer(model, phases, datasets, accelerator=self.accelerator, options=self.options,
                                seed=self.seed, checkpoint_dir=stage_dir, collate_fn=collate_fn,
                                initial_state=initial_state, step_offset=self.global_step,
                                phase_end_checkpoints=phase_end_checkpoints)
        if self.is_main_process:
            # a resumed run re-logs the steps after its checkpoint (or after the last finished stage)
            resumed_step = self.global_step
            if resume_from is not None:
                from .checkpoints import read_trainer_state

                resumed_step = read_trainer_state(resume_from)["global_step"]
            if self.options.resume:
                truncate_metrics_log(self.layout.metrics_log, resumed_step)
        try:
            with _StopOnSignals() as signals:
                trained = trainer.train(resume_from=resume_from, should_stop=signals.received)
            if signals.stopped_at is not None:
                raise TrainingInterrupted(
                    f"training stopped on {signals.stopped_at} in stage '{name}' at step {trainer.global_step}; "
                    f"checkpoint {signals.checkpoint or 'none (no step had finished)'} holds it",
                    "run the same command again with --resume (RunOptions(resume=True)) to continue from there")
            self.global_step = trainer.global_step
            state = dict(trainer.state)
        finally:
            trainer.release()
        recorded = outputs(trained) if outputs is not None else {}
        self._check_json(recorded, f"the outputs of stage '{name}'")
        self._stages[name] = {"steps": trainer.total_steps, "global_step": self.global_step, "state": state,
                              "outputs": recorded}
        if self.is_main_process:  # weights first, record last: a kill in between leaves the stage unfinished
            self._save_weights(trained, self.layout.stage_weights(name))
            self.layout.write_stages(self._stages)
        self.wait_for_everyone()
        return StageResult(model=trained, state=state, outputs=recorded)

    def _skip_stage(self, name: str, model: nn.Module) -> StageResult:
        from safetensors.torch import load_file

        record = self._stages[name]
        path = self.layout.stage_weights(name)
        if not path.is_file():
            raise CheckpointError(f"stage '{name}' is recorded as finished but '{path}' is missing",
                                  f"delete '{self.layout.stages_file}' to train every stage again")
        state_dict = load_file(str(path))
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if unexpected or [key for key in missing if key in dict(model.named_parameters())]:
            raise CheckpointError(f"'{path}' does not fit the model of stage '{name}' (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})",
                                  "resume with the recipe that started the run, or train into a fresh --output-dir")
        self.global_step = int(record.get("global_step", self.global_step + record.get("steps", 0)))
        logger.info("stage '%s' finished in an earlier attempt: skipped", name)
        return StageResult(model=model, state=dict(record.get("state") or {}),
                           outputs=dict(record.get("outputs") or {}), skipped=True)

    @staticmethod
    def _check_json(value: dict, what: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(f"{what} is a {type(value).__name__}, not a dict", "return a dict of plain values")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{what} hold a value that JSON cannot store ({error})",
                              "keep only plain numbers, strings, lists and dicts") from None

    @staticmethod
    def _save_weights(model: nn.Module, path: Path) -> None:
        from .trainer import untie_tensors

        atomic_save_safetensors(untie_tensors(dict(model.state_dict())), path)

    # ---------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, model: nn.Module, dataset, step_fn, batch_size: int, collate_fn=None, reduce: str | None = "sum"):
        """`effhub.training.evaluate` on this run's processes (see there)."""
        from .evaluation import evaluate

        self._check_open()
        return evaluate(model, dataset, step_fn, batch_size, collate_fn=collate_fn, accelerator=self.accelerator,
                        reduce=reduce, num_workers=self.options.dataloader_workers)

    # ---------------------------------------------------------------------------------------------- saving, end
    def save_pretrained(self, model: nn.Module, directory: str | Path | None = None, **kwargs) -> Path:
        """Save `model` into `directory` (default: the run folder) on the main process; every process calls it.

        Files are written into a temp folder beside them and moved into place one by one with `os.replace`, so a
        crash never leaves a half-written weight file.
        """
        self._check_open()
        directory = Path(directory) if directory is not None else self.layout.root
        self.wait_for_everyone()
        if self.is_main_process:
            save_model_atomically(model, directory, **kwargs)
        self.wait_for_everyone()
        return directory

    def close(self, finished: bool = True) -> None:
        """End the run on every process: record its files (and whether it finished) in `run_info.json`, release
        the accelerator's objects, finish trackers, end the process group.

        Without this sequence (references dropped, garbage collected, then `end_training()`), 2-process CPU runs
        abort with SIGABRT at exit in a fraction of runs. Safe to call twice.

        Args:
            finished (`bool`): the run completed (False when it ends on an error or an interruption).
        """
        if self._closed:
            return
        self._closed = True
        accelerator = self._accelerator
        if accelerator is None:
            return
        if self._started and accelerator.is_main_process and self.layout.run_info.is_file():
            info = self.layout.read_run_info()
            info["files"] = sorted(set(info.get("files") or ()) | set(self._owned_entries()))
            info["finished"] = bool(finished)
            atomic_write_json(self.layout.run_info, info)
        accelerator.wait_for_everyone()
        accelerator.free_memory()
        gc.collect()
        accelerator.end_training()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self.close(finished=exc_type is None)
        return False


class _StopOnSignals:
    """Turns the first SIGINT (Ctrl-C) or SIGTERM into a request to stop after the current step, with a checkpoint;
    a second one interrupts at once. Only in the main thread (signals cannot be caught elsewhere)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.stopped_at: str | None = None
        self.checkpoint: str | None = None
        self._requested: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopOnSignals":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        import signal

        self._requested = signal.Signals(number).name
        for known, handler in self._previous.items():  # a second signal acts at once
            signal.signal(known, handler)

    def received(self, checkpoint=None) -> bool:
        """Whether a signal asked to stop (the trainer asks after each step); called with the checkpoint it saved,
        it records that training stopped (on every process, also those that got no signal themselves)."""
        if checkpoint is not None:
            self.checkpoint = str(checkpoint)
            self.stopped_at = self._requested or "a signal to another process"
        return self._requested is not None

    def __exit__(self, *exc) -> bool:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False


def save_model_atomically(model: nn.Module, directory: str | Path, **kwargs) -> Path:
    """`save_pretrained` (or safetensors for a plain module) through a temp folder and `os.replace` per file."""
    from .trainer import untie_tensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".tmp-save-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(temporary, **kwargs)
        else:
            from safetensors.torch import save_file

            tensors = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
            save_file(untie_tensors(tensors), str(temporary / "model.safetensors"), metadata={"format": "pt"})
        for source in sorted(temporary.rglob("*")):
            if source.is_file():
                target = directory / source.relative_to(temporary)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return directory


__all__ = ["Run", "StageResult", "save_model_atomically"]
