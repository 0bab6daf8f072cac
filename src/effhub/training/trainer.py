"""The phased trainer: the engine of one stage of a run, running its phases of alternating, partly frozen updates.

A method describes a stage's training as `Phase`s made of `Update`s (data, loss, trainable parameters, optimiser,
schedule); the trainer owns what they share within the stage: gradient accumulation, DDP with parameters unused in a
pass, per-dataset endless data streams, step logging, progress bars, atomic checkpoints and exact resume. The run
(`effhub.training.run.Run`) owns what stages share: the folder, the `Accelerator` and its process group, trackers,
`run_info.json` and the record of finished stages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import nn

from ..atomic import atomic_write_json
from ..errors import CheckpointError, ConfigError
from .checkpoints import (
    TRAINER_STATE_FORMAT,
    commit_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    temp_checkpoint_dir,
)
from .layout import TRAINER_STATE_FILE
from .options import RunOptions
from .phases import Phase, Update, validate_phases
from .sampling import DataStream, ShardedEpochBatchSampler, stream_seed
from .tracking import plain_value

logger = logging.getLogger(__name__)

@dataclass
class StepContext:
    """What losses and hooks see of the run: where training is, the method's `state`, and a logger.

    Attributes:
        accelerator (`Accelerator`): the run's accelerator (devices, processes, `print`, `gather`).
        model (`nn.Module`): the prepared model (DDP-wrapped under several processes); call it as `model(...)`.
        unwrapped_model (`nn.Module`): the model itself, for attributes and methods other than `forward`.
        phase (`str`): name of the current phase; `phase_index` its position.
        step (`int`): 0-based step within the phase; `global_step` 0-based step over the whole run. The checkpoint
            taken after a step is named `checkpoint-<global_step + 1>`.
        update (`str`, *optional*): the update being computed (None in `on_step_end` and `on_phase_start`).
        micro_step (`int`): index of the micro-batch within a gradient-accumulation step.
        state (`dict`): plain values the method owns (e.g. `{"temperature": 5.0}`); saved with every checkpoint and
            restored on resume. Keep it JSON-serialisable.
    """

    accelerator: Accelerator
    model: nn.Module
    unwrapped_model: nn.Module
    state: dict[str, Any]
    phase: str = ""
    phase_index: int = 0
    step: int = 0
    global_step: int = 0
    update: str | None = None
    micro_step: int = 0
    _logs: dict[str, Any] = field(default_factory=dict, repr=False)

    def log(self, values: dict[str, Any]) -> None:
        """Add values to this step's log record (tensors become numbers; logged on the main process)."""
        for key, value in values.items():
            self._logs[str(key)] = plain_value(value)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process


class PhasedTrainer:
    """Trains one model through a list of phases on the run's `accelerate.Accelerator` (one stage of a run).

    Every update's parameters are selected on the unwrapped model once, at construction; their union is what DDP
    synchronises (parameters in no update are frozen and left out of DDP). Before each update only its parameters
    require gradients and all gradients are cleared, so nothing leaks from one update into the next and the other
    updates' optimisers are not stepped. DDP runs with `find_unused_parameters=True` (set by the run), so a pass that
    leaves trainable parameters unused (frozen groups, skipped blocks, per-bit-width layers) neither fails nor lets
    ranks drift; accumulation micro-batches other than the last run under `no_sync`.

    Methods do not build it: `Run.train_stage` does, and releases it when the stage ends.

    Args:
        model (`nn.Module`): the model to train (a `PreTrainedModel`, a `PeftModel`, or any module).
        phases (`list[Phase]`): the phases, run in order.
        datasets (`dict[str, Dataset]`): map-style datasets by the keys the updates name.
        accelerator (`Accelerator`): the run's accelerator.
        options (`RunOptions`): run-wide settings (accumulation, checkpoint interval, progress, workers).
        seed (`int`): seeds the data streams.
        checkpoint_dir (`Path`): where this stage's checkpoints go.
        collate_fn (`Callable` or `dict[str, Callable]`, *optional*): batch collation, one for all datasets or one
            per dataset key (torch's default collation otherwise).
        initial_state (`dict`, *optional*): the starting `state` dict handed to losses and hooks.
        step_offset (`int`): optimizer steps of the run's earlier stages (logs and checkpoint names count on).
        phase_end_checkpoints (`bool`): checkpoint at the end of every phase (off for many short trainings).
    """

    def __init__(self, model: nn.Module, phases: list[Phase], datasets: dict[str, Any], *, accelerator,
                 options: RunOptions, seed: int, checkpoint_dir: Path,
                 collate_fn: Callable | dict[str, Callable] | None = None, initial_state: dict | None = None,
                 step_offset: int = 0, phase_end_checkpoints: bool = True):
        if not isinstance(options, RunOptions):
            raise ConfigError(f"options is a {type(options).__name__}", "pass effhub.training.RunOptions(...)")
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model is a {type(model).__name__}, not a torch.nn.Module", "pass the model to train")
        validate_phases(phases, datasets)
        if initial_state is not None and not isinstance(initial_state, dict):
            raise ConfigError("initial_state is not a dict", "pass a dict of plain values, e.g. {'temperature': 5.0}")
        self.options = options
        self.seed = seed
        self.phases = list(phases)
        self.datasets = dict(datasets)
        self.collate_fn = collate_fn
        self.state: dict[str, Any] = dict(initial_state or {})
        self._check_json(self.state, "initial_state")
        self.checkpoint_root = Path(checkpoint_dir)
        self.phase_end_checkpoints = phase_end_checkpoints
        self.accelerator = accelerator

        self._unwrapped = model
        self._update_params: dict[tuple[int, int], list[nn.Parameter]] = {}
        self._select_parameters(model)
        optimizers, schedulers, self._slots = self._build_optimizers()
        prepared = self.accelerator.prepare(model, *optimizers, *[s for s in schedulers if s is not None])
        self.model = prepared[0]
        prepared_optimizers = list(prepared[1:1 + len(optimizers)])
        prepared_schedulers = iter(prepared[1 + len(optimizers):])
        self._optimizers: dict[tuple[int, int], Any] = {}
        self._schedulers: dict[tuple[int, int], Any] = {}
        for slot, optimizer, scheduler in zip(self._slots, prepared_optimizers, schedulers):
            self._optimizers[slot] = optimizer
            self._schedulers[slot] = next(prepared_schedulers) if scheduler is not None else None
        self._streams: dict[str, DataStream] = {}
        self.step_offset = step_offset
        self.global_step = step_offset
        self._should_stop: Callable[..., bool] | None = None

    # ------------------------------------------------------------------------------------------------ set-up
    def _select_parameters(self, model: nn.Module) -> None:
        known = {id(p): name for name, p in model.named_parameters()}
        union: dict[int, nn.Parameter] = {}
        for phase_index, phase in enumerate(self.phases):
            for update_index, update in enumerate(phase.updates):
                where = f"update '{update.name}' of phase '{phase.name}'"
                selected = update.parameters(model)
                if isinstance(selected, (nn.Parameter, torch.Tensor)):
                    selected = [selected]
                params, seen = [], set()
                for param in selected:
                    if not isinstance(param, nn.Parameter) or id(param) not in known:
                        raise ConfigError(
                            f"{where} selected {type(param).__name__} that is not a parameter of the model",
                            "return parameters of the model passed to `parameters` (e.g. model.head.parameters())",
                        )
                    if id(param) not in seen:
                        seen.add(id(param))
                        params.append(param)
                if not params:
                    raise ConfigError(f"{where} selected no parameters",
                                      "make `parameters(model)` return the parameters this update trains")
                if any(not p.is_floating_point() for p in params):
                    raise ConfigError(f"{where} selected integer parameters", "select floating-point parameters")
                self._update_params[(phase_index, update_index)] = params
                union.update((id(p), p) for p in params)
        # Parameters no update trains stay frozen; DDP ignores them because they do not require grad when it wraps.
        self._trainable_ids = set(union)
        self._trainable = list(union.values())
        for param in model.parameters():
            param.requires_grad_(id(param) in self._trainable_ids)

    def _build_optimizers(self):
        optimizers, schedulers, slots = [], [], []
        for phase_index, phase in enumerate(self.phases):
            for update_index, update in enumerate(phase.updates):
                where = f"update '{update.name}' of phase '{phase.name}'"
                params = self._update_params[(phase_index, update_index)]
                optimizer = update.optimizer(params)
                if not isinstance(optimizer, torch.optim.Optimizer):
                    raise ConfigError(f"{where}: optimizer(params) returned {type(optimizer).__name__}",
                                      "return a torch.optim.Optimizer, e.g. lambda p: torch.optim.Adam(p, lr=1e-3)")
                scheduler = None
                if update.scheduler is not None:
                    scheduler = update.scheduler(optimizer, update.total_steps(phase.steps))
                    if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
                        raise ConfigError(f"{where}: scheduler(...) returned {type(scheduler).__name__}",
                                          "return a torch.optim.lr_scheduler.LRScheduler")
                optimizers.append(optimizer)
                schedulers.append(scheduler)
                slots.append((phase_index, update_index))
        return optimizers, schedulers, slots

    def _collate_for(self, dataset: str):
        if isinstance(self.collate_fn, dict):
            return self.collate_fn.get(dataset)
        return self.collate_fn

    def _open_streams(self, phase_index: int) -> None:
        self._close_streams()
        phase = self.phases[phase_index]
        device = self.accelerator.device
        for name in phase.dataset_names():
            sampler = ShardedEpochBatchSampler(
                len(self.datasets[name]), phase.batch_size_of(name), num_shards=self.accelerator.num_processes,
                shard_index=self.accelerator.process_index, seed=stream_seed(self.seed, phase_index, name),
            )
            self._streams[name] = DataStream(
                self.datasets[name], sampler, collate_fn=self._collate_for(name),
                num_workers=self.options.dataloader_workers, pin_memory=device.type == "cuda",
                to_device=lambda batch: send_to_device(batch, device, non_blocking=device.type == "cuda"),
            )

    def _close_streams(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams = {}

    @property
    def unwrapped_model(self) -> nn.Module:
        return self._unwrapped

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def _context(self, phase_index: int, step: int) -> StepContext:
        return StepContext(accelerator=self.accelerator, model=self.model, unwrapped_model=self._unwrapped,
                           state=self.state, phase=self.phases[phase_index].name, phase_index=phase_index,
                           step=step, global_step=self.global_step)

    def _phase_fingerprints(self) -> list[dict]:
        return [phase.fingerprint() for phase in self.phases]

    @staticmethod
    def _check_json(state: dict, what: str) -> None:
        try:
            json.dumps(state)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{what} holds a value that JSON cannot store ({error})",
                              "keep only plain numbers, strings, lists and dicts in the state") from None

    # ------------------------------------------------------------------------------------------------ training
    def train(self, resume_from: Path | None = None, should_stop: Callable[..., bool] | None = None) -> nn.Module:
        """Run every phase, or continue from the checkpoint `resume_from`; returns the unwrapped model.

        Args:
            resume_from (`Path`, *optional*): a checkpoint of this stage to continue from.
            should_stop (`Callable`, *optional*): asked after every step (on every process: any process asking
                stops all); when it says so, a checkpoint of that step is saved, `should_stop(checkpoint=path)` is
                told where, and training returns early.
        """
        self._should_stop = should_stop
        start_phase, start_step = 0, 0
        if resume_from is not None:
            saved = self._check_resumable(resume_from)
            start_phase, start_step = saved["phase_index"], saved["step_in_phase"]
            self.global_step = saved["global_step"]
            if start_step >= self.phases[start_phase].steps:  # the checkpoint closed its phase
                start_phase, start_step = start_phase + 1, 0
        mid_phase = resume_from is not None and start_step > 0
        if resume_from is not None and not mid_phase:
            self._restore(resume_from, streams=False)
        for phase_index in range(start_phase, len(self.phases)):
            phase = self.phases[phase_index]
            self._open_streams(phase_index)
            # train mode once per phase, so that a hook may put parts of the model in eval mode for the whole phase
            self._unwrapped.train()
            if phase.on_phase_start is not None:
                phase.on_phase_start(self._unwrapped, self._context(phase_index, 0 if not mid_phase else start_step))
            if mid_phase:
                # after on_phase_start, so that the checkpoint's weights, state and RNG win over its effects
                self._restore(resume_from, streams=True)
            first_step = start_step if mid_phase else 0
            mid_phase = False
            stopped = self._run_phase(phase_index, first_step)
            self._close_streams()
            if stopped:
                break
        self.accelerator.wait_for_everyone()
        return self._unwrapped

    @property
    def total_steps(self) -> int:
        """Optimizer steps of all phases of this stage."""
        return sum(phase.steps for phase in self.phases)

    def phase_fingerprints(self) -> list[dict]:
        return self._phase_fingerprints()

    def _check_resumable(self, checkpoint: Path) -> dict:
        saved = read_trainer_state(checkpoint)
        if saved.get("phases") != self._phase_fingerprints():
            raise CheckpointError(
                f"checkpoint '{checkpoint}' was written by a different set of phases "
                f"({[p['name'] for p in saved.get('phases', [])]} with their steps, batch sizes and updates)",
                "resume with the recipe that started the run, or train into a fresh --output-dir",
            )
        if saved.get("world_size") != self.accelerator.num_processes:
            raise CheckpointError(
                f"checkpoint '{checkpoint}' was written by {saved.get('world_size')} processes, this run has "
                f"{self.accelerator.num_processes}",
                f"resume with --num_processes {saved.get('world_size')} (data positions and RNG states are per rank)",
            )
        if saved.get("grad_accum") != self.options.grad_accum:
            raise CheckpointError(
                f"checkpoint '{checkpoint}' used grad_accum={saved.get('grad_accum')}, this run "
                f"{self.options.grad_accum}",
                f"resume with --grad-accum {saved.get('grad_accum')}",
            )
        return saved

    def _run_phase(self, phase_index: int, first_step: int) -> bool:
        from tqdm.auto import tqdm

        phase = self.phases[phase_index]
        show = self.options.progress and self.accelerator.is_main_process and sys.stderr.isatty()
        bar = tqdm(total=phase.steps, initial=first_step, desc=phase.name, disable=not show, dynamic_ncols=True)
        try:
            for step in range(first_step, phase.steps):
                context = self._context(phase_index, step)
                record: dict[str, Any] = {}
                local_losses: list[torch.Tensor] = []
                loss_keys: list[str] = []
                for update_index, update in enumerate(phase.updates):
                    if not update.runs_at(step):
                        continue
                    loss, lr = self._run_update(phase_index, update_index, update, context)
                    local_losses.append(loss)
                    loss_keys.append(f"{phase.name}/{update.name}/loss")
                    record[f"{phase.name}/{update.name}/lr"] = lr
                if local_losses:
                    # one collective per step: the loss averaged over processes
                    mean_losses = self.accelerator.reduce(torch.stack(local_losses), reduction="mean")
                    record.update(zip(loss_keys, mean_losses.tolist()))
                context.update = None
                if phase.on_step_end is not None:
                    phase.on_step_end(context)
                self._check_json(self.state, "the trainer state (ctx.state)")
                self.global_step += 1
                record.update(context._logs)
                record["phase"] = phase.name
                record["phase_step"] = step + 1
                self.accelerator.log(record, step=self.global_step)
                bar.update(1)
                if show and loss_keys:
                    bar.set_postfix({key.rsplit("/", 2)[-2]: f"{record[key]:.4g}" for key in loss_keys})
                last = step + 1 == phase.steps
                every = self.options.checkpoint_every
                saved = None
                if (last and self.phase_end_checkpoints) or (every and self.global_step % every == 0):
                    saved = self.save_checkpoint(phase_index, step + 1)
                if self._stop_requested():
                    if saved is None:
                        saved = self.save_checkpoint(phase_index, step + 1)
                    self._should_stop(checkpoint=saved)
                    return True
        finally:
            bar.close()
        return False

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (one collective per step only under several processes)."""
        if self._should_stop is None:
            return False
        local = bool(self._should_stop())
        if self.accelerator.num_processes == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _set_trainable(self, params: list[nn.Parameter]) -> None:
        active = {id(p) for p in params}
        for param in self._trainable:
            param.requires_grad_(id(param) in active)

    def _run_update(self, phase_index: int, update_index: int, update: Update,
                    context: StepContext) -> tuple[torch.Tensor, float]:
        accelerator = self.accelerator
        phase = self.phases[phase_index]
        slot = (phase_index, update_index)
        params = self._update_params[slot]
        optimizer, scheduler = self._optimizers[slot], self._schedulers[slot]
        self._set_trainable(params)
        self._unwrapped.zero_grad(set_to_none=True)
        context.update = update.name
        accum = self.options.grad_accum
        total = torch.zeros((), device=accelerator.device)
        extras: dict[str, float] = {}
        for micro in range(accum):
            if isinstance(update.dataset, str):
                batch = next(self._streams[update.dataset])
            else:  # independent streams, one batch each (e.g. images and texts for unpaired distillation)
                batch = {name: next(self._streams[name]) for name in update.dataset}
            context.micro_step = micro
            # gradients are synchronised once, on the last micro-batch
            sync = micro == accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(self.model):
                output = update.loss(self.model, batch, context)
                loss, logs = self._split_loss(output, update, phase)
                accelerator.backward(loss / accum)
            total += loss.detach().float() / accum
            for key, value in logs.items():
                if isinstance(value, torch.Tensor) and value.numel() != 1:
                    continue  # e.g. logits of a returned ModelOutput: only scalars are logged
                value = plain_value(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    extras[key] = extras.get(key, 0.0) + value / accum
        if phase.max_grad_norm is not None:
            accelerator.unscale_gradients(optimizer=optimizer)
            torch.nn.utils.clip_grad_norm_(params, phase.max_grad_norm)
        lr = float(optimizer.param_groups[0]["lr"])  # the rate this step used (the scheduler moves it next)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        self._unwrapped.zero_grad(set_to_none=True)
        for key, value in extras.items():
            context._logs[f"{phase.name}/{update.name}/{key}"] = value
        return total, lr

    @staticmethod
    def _split_loss(output: Any, update: Update, phase: Phase) -> tuple[torch.Tensor, dict]:
        where = f"the loss of update '{update.name}' (phase '{phase.name}')"
        logs: dict = {}
        if isinstance(output, dict) or (hasattr(output, "keys") and hasattr(output, "__getitem__")):
            if "loss" not in output:
                raise ConfigError(f"{where} returned a dict without 'loss'", "return {'loss': tensor, ...}")
            logs = {key: value for key, value in output.items() if key != "loss"}
            output = output["loss"]
        if not isinstance(output, torch.Tensor) or output.numel() != 1:
            raise ConfigError(f"{where} returned {type(output).__name__} instead of a scalar tensor",
                              "return a 0-dimensional loss tensor (e.g. criterion(...).mean())")
        if not output.requires_grad:
            raise ConfigError(f"{where} does not depend on the parameters this update trains",
                              "compute the loss from model(...) outputs that involve the update's parameters")
        return output.reshape(()), logs

    # ------------------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, phase_index: int, step_in_phase: int) -> Path:
        """Save a resumable checkpoint of the current position (called by `train`; all processes must call it)."""
        accelerator = self.accelerator
        final = self.checkpoint_root / f"checkpoint-{self.global_step}"
        temporary = temp_checkpoint_dir(self.checkpoint_root, self.global_step)
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        accelerator.wait_for_everyone()  # every rank's RNG file is on disk
        if accelerator.is_main_process:
            trainer_state = {
                "format": TRAINER_STATE_FORMAT,
                "global_step": self.global_step,
                "phase_index": phase_index,
                "phase_name": self.phases[phase_index].name,
                "step_in_phase": step_in_phase,
                "phases": self._phase_fingerprints(),
                "state": self.state,
                "data_positions": {name: stream.position for name, stream in self._streams.items()},
                "schedulers": {f"{self.phases[p].name}/{self.phases[p].updates[u].name}": s.state_dict().get(
                    "last_epoch") for (p, u), s in self._schedulers.items() if s is not None},
                "world_size": accelerator.num_processes,
                "grad_accum": self.options.grad_accum,
                "seed": self.seed,
            }
            atomic_write_json(temporary / TRAINER_STATE_FILE, trainer_state)
            commit_checkpoint(temporary, final)
            prune_checkpoints(self.checkpoint_root, self.options.checkpoints_total_limit)
        accelerator.wait_for_everyone()
        return final

    def _restore(self, checkpoint: Path, streams: bool) -> None:
        saved = read_trainer_state(checkpoint)
        self.accelerator.load_state(str(checkpoint))
        self.state.clear()
        self.state.update(saved.get("state") or {})
        if streams:
            positions = saved.get("data_positions") or {}
            for name, stream in self._streams.items():
                if name in positions:
                    stream.restore(positions[name])
        logger.info("resumed from %s (global step %d)", checkpoint, self.global_step)

    # ------------------------------------------------------------------------------------------------ end
    def release(self) -> None:
        """Release the prepared model, optimisers and streams from the accelerator (the stage is over)."""
        self._close_streams()
        self.model = None
        self._optimizers = {}
        self._schedulers = {}
        self.accelerator.wait_for_everyone()
        self.accelerator.free_memory()


def untie_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory: clone all but the first of each shared storage."""
    seen: set = set()
    result = {}
    for key, tensor in tensors.items():
        pointer = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        result[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return result


__all__ = ["PhasedTrainer", "StepContext", "untie_tensors"]
