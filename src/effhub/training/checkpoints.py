"""Resumable checkpoints of a stage: `checkpoints/<stage>/checkpoint-<global_step>/` folders, written atomically.

A checkpoint is Accelerate's `save_state` output (model, optimisers, schedulers, gradient scaler, every process's RNG
states) plus `trainer_state.json` (phase, step, global step, the method's `state` dict, data positions). It is
written into `.tmp-checkpoint-<step>/` beside them and renamed only when complete, so a run killed while saving
leaves a temp folder that resume ignores (and the next save removes).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .layout import TRAINER_STATE_FILE, read_json_record

logger = logging.getLogger(__name__)

TRAINER_STATE_FORMAT = 1
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TEMP_PREFIX = ".tmp-checkpoint-"


def checkpoint_dirs(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root` (the `checkpoints/` folder) as `(global_step, path)`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and (child / TRAINER_STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    """The `trainer_state.json` of a checkpoint folder."""
    path = Path(checkpoint) / TRAINER_STATE_FILE
    try:
        state = read_json_record(path, "delete this checkpoint folder so that resume takes the previous one")
    except FileNotFoundError:
        raise CheckpointError(f"'{checkpoint}' has no {TRAINER_STATE_FILE}",
                              "pick a checkpoint folder written by effhub's PhasedTrainer") from None
    if not isinstance(state, dict) or state.get("format") != TRAINER_STATE_FORMAT:
        raise CheckpointError(f"'{path}' is not a trainer state of format {TRAINER_STATE_FORMAT}",
                              "resume with the effhub version that wrote it, or start a fresh run")
    return state


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint whose trainer state reads back, or None."""
    for step, path in reversed(checkpoint_dirs(root)):
        try:
            read_trainer_state(path)
        except CheckpointError as error:
            logger.warning("skipping unreadable checkpoint %s: %s", path, error)
            continue
        return path
    return None


def temp_checkpoint_dir(root: str | Path, global_step: int) -> Path:
    return Path(root) / f"{TEMP_PREFIX}{global_step}"


def commit_checkpoint(temporary: Path, final: Path) -> None:
    """Move a fully written temp checkpoint into place (replacing an older folder of the same name)."""
    if final.exists():
        displaced = final.with_name(f"{TEMP_PREFIX}displaced-{final.name}")
        shutil.rmtree(displaced, ignore_errors=True)
        os.replace(final, displaced)
        os.replace(temporary, final)
        shutil.rmtree(displaced, ignore_errors=True)
    else:
        os.replace(temporary, final)


def prune_checkpoints(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and any leftover temp folders; returns the removed."""
    root = Path(root)
    removed = []
    complete = checkpoint_dirs(root)
    for _, path in complete[: max(0, len(complete) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(TEMP_PREFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


__all__ = ["checkpoint_dirs", "latest_checkpoint", "read_trainer_state",
           "commit_checkpoint", "prune_checkpoints", "temp_checkpoint_dir"]
