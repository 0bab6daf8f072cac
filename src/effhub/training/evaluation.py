"""Evaluation and feature extraction without a trainer: stream a dataset through a model on every process.

`evaluate` sums per-sample sufficient statistics (confusion matrices, error sums, counts) over the whole dataset, so
memory does not grow with it (the pattern of `effhub.metrics`). `export_features` writes model outputs (embeddings,
features) to a `datasets` dataset on disk, shard by shard, resumable, never holding all outputs in memory.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError, DatasetError


def default_accelerator():
    """An `Accelerator` for evaluation outside a run (one process, or every process of `accelerate launch`)."""
    from accelerate import Accelerator

    return Accelerator()


def _apply(value, function):
    if isinstance(value, dict):
        return {key: function(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(function(item) for item in value)
    return function(value)


def _combine(left, right, function):
    if isinstance(left, dict):
        return {key: function(left[key], right[key]) for key in left}
    if isinstance(left, (list, tuple)):
        return type(left)(function(a, b) for a, b in zip(left, right))
    return function(left, right)


class _EvalMode:
    """Puts a model in eval mode and restores every module's own mode afterwards (hooks may have frozen parts)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for module, training in self.modes:
            module.training = training
        return False


def _prepared_loader(accelerator, dataset, batch_size: int, collate_fn, num_workers: int):
    from torch.utils.data import DataLoader

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"evaluation batch_size={batch_size!r}", "use a batch size >= 1")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=num_workers)
    return accelerator.prepare_data_loader(loader)


def _forget_loader(accelerator, loader) -> None:
    registered = getattr(accelerator, "_dataloaders", None)
    if isinstance(registered, list) and loader in registered:
        registered.remove(loader)  # evaluation loaders have no state to checkpoint


def evaluate(model: nn.Module, dataset, step_fn: Callable[[nn.Module, Any], Any], batch_size: int,
             collate_fn: Callable | None = None, accelerator=None, reduce: str | None = "sum",
             num_workers: int = 0):
    """Run `step_fn(model, batch)` over `dataset`, split across processes; the result is the same on every process.

    Args:
        model (`nn.Module`): the model (unwrapped); it runs in eval mode under `torch.no_grad()` and the
            accelerator's autocast, and every module's mode is restored afterwards.
        dataset: a map-style dataset.
        step_fn (`Callable`): returns per-sample tensors (first dimension = batch), or a dict of them.
        batch_size (`int`): samples per batch on each process.
        collate_fn (`Callable`, *optional*): batch collation.
        accelerator (`Accelerator`, *optional*): the run's accelerator (a fresh one otherwise).
        reduce (`str`, *optional*, defaults to `"sum"`): `"sum"` adds the per-sample values over the whole dataset
            (sufficient statistics: memory stays constant); `None` concatenates them.
        num_workers (`int`): data-loader workers.
    """
    if reduce not in (None, "sum"):
        raise ConfigError(f"reduce={reduce!r} is not supported", "use reduce=None (concatenate) or 'sum'")
    accelerator = accelerator or default_accelerator()
    loader = _prepared_loader(accelerator, dataset, batch_size, collate_fn, num_workers)
    pieces: list = []
    running = None
    try:
        with _EvalMode(model), torch.no_grad(), accelerator.autocast():
            for batch in loader:
                # gather_for_metrics drops the samples repeated to even out the last batch across processes
                gathered = accelerator.gather_for_metrics(step_fn(model, batch))
                if reduce == "sum":
                    summed = _apply(gathered, lambda t: t.sum(dim=0))
                    running = summed if running is None else _combine(running, summed, torch.add)
                else:
                    pieces.append(_apply(gathered, lambda t: t.detach()))
    finally:
        _forget_loader(accelerator, loader)
    if reduce == "sum":
        return running
    if not pieces:
        return None
    if isinstance(pieces[0], dict):
        return {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}
    return torch.cat(pieces)


FEATURES_INFO_FILE = "features_info.json"
SHARD_PREFIX = "shard-"


def _shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def export_features(model: nn.Module, dataset, step_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
                    output_dir: str | Path, batch_size: int = 64, shard_size: int = 1024,
                    collate_fn: Callable | None = None, accelerator=None, progress: bool = True,
                    description: str = "features") -> Path:
    """Write `step_fn`'s outputs for every sample of `dataset` to a `datasets` dataset on disk, in shards.

    Shard `i` holds samples `[i * shard_size, (i + 1) * shard_size)` in dataset order plus an `index` column; shards
    are split across processes; each is written to a temporary folder and renamed when complete, so an interrupted
    export resumes by skipping the shards already on disk (a re-run with other settings is refused). Only one shard's
    outputs are in memory at a time. Read the result with :func:`load_features`.

    Args:
        model (`nn.Module`): runs in eval mode under `torch.no_grad()`.
        dataset: a map-style dataset.
        step_fn (`Callable`): `step_fn(model, batch)` returns `{column: tensor with one row per sample}`.
        output_dir (`str` or `Path`): the dataset folder.
        batch_size (`int`): samples per forward pass.
        shard_size (`int`): samples per shard (a multiple of `batch_size` keeps batches whole).
        collate_fn (`Callable`, *optional*): batch collation.
        accelerator (`Accelerator`, *optional*): splits shards across processes (a fresh one otherwise).
        progress (`bool`): a progress bar over samples on the main process.
        description (`str`): the progress bar's label.
    """
    from accelerate.utils import send_to_device
    from datasets import Dataset
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from ..atomic import atomic_write_json

    for name, value in (("shard_size", shard_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"export_features: {name}={value!r}", f"use a {name.replace('_', ' ')} >= 1")
    accelerator = accelerator or default_accelerator()
    output_dir = Path(output_dir)
    total = len(dataset)
    num_shards = max(1, -(-total // shard_size))
    info = {"format": 1, "num_samples": total, "shard_size": shard_size, "num_shards": num_shards}
    info_path = output_dir / FEATURES_INFO_FILE
    if accelerator.is_main_process:
        if info_path.is_file():
            previous = json.loads(info_path.read_text())
            if {k: previous.get(k) for k in info} != info:
                raise ConfigError(
                    f"'{output_dir}' holds features of another export ({previous.get('num_samples')} samples in "
                    f"shards of {previous.get('shard_size')})",
                    "export into a fresh folder, or delete this one to start again")
        else:
            output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(info_path, info)
    accelerator.wait_for_everyone()
    mine = [index for index in range(num_shards) if index % accelerator.num_processes == accelerator.process_index]
    show = progress and accelerator.is_main_process and sys.stderr.isatty()
    done = sum(min(shard_size, total - index * shard_size) for index in range(num_shards)
               if (output_dir / _shard_name(index)).is_dir())
    bar = tqdm(total=total, initial=done, desc=description, disable=not show, dynamic_ncols=True)
    try:
        with _EvalMode(model), torch.no_grad(), accelerator.autocast():
            for index in mine:
                final = output_dir / _shard_name(index)
                if final.is_dir():
                    continue
                start, stop = index * shard_size, min(total, (index + 1) * shard_size)
                loader = DataLoader(Subset(dataset, range(start, stop)), batch_size=batch_size, shuffle=False,
                                    collate_fn=collate_fn)
                columns: dict[str, list] = {"index": list(range(start, stop))}
                for batch in loader:
                    batch = send_to_device(batch, accelerator.device)
                    outputs = step_fn(model, batch)
                    if not isinstance(outputs, dict):
                        raise ConfigError("export_features: step_fn returned no dict",
                                          "return {column: tensor with one row per sample}")
                    for key, value in outputs.items():
                        columns.setdefault(key, []).extend(value.detach().float().cpu().numpy())
                    if show:
                        bar.update(len(next(iter(outputs.values()))) * accelerator.num_processes)
                temporary = output_dir / f".tmp-{_shard_name(index)}-{accelerator.process_index}"
                shutil.rmtree(temporary, ignore_errors=True)
                Dataset.from_dict(columns).save_to_disk(str(temporary))
                temporary.rename(final)
    finally:
        bar.close()
    accelerator.wait_for_everyone()
    return output_dir


def load_features(path: str | Path):
    """The `datasets.Dataset` written by :func:`export_features` (memory-mapped, in dataset order)."""
    from datasets import concatenate_datasets, load_from_disk

    path = Path(path)
    info_path = path / FEATURES_INFO_FILE
    if not info_path.is_file():
        raise DatasetError(f"'{path}' holds no exported features ({FEATURES_INFO_FILE} is missing)",
                           "pass the folder written by export_features / `effhub ... cache-features`")
    info = json.loads(info_path.read_text())
    missing = [_shard_name(i) for i in range(info["num_shards"]) if not (path / _shard_name(i)).is_dir()]
    if missing:
        raise DatasetError(f"'{path}' is incomplete: {len(missing)} of {info['num_shards']} shards are missing "
                           f"(first: {missing[0]})", "run the export again: it resumes where it stopped")
    return concatenate_datasets([load_from_disk(str(path / _shard_name(i))) for i in range(info["num_shards"])])


__all__ = ["evaluate", "export_features", "load_features", "default_accelerator"]
