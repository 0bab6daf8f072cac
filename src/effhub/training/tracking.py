"""Trackers of a training run: a JSON-lines log that is always written, plus Accelerate's built-in trackers."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from numbers import Number
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker
from accelerate.utils import LoggerType

from ..errors import ConfigError
from .layout import METRICS_LOG_FILE

logger = logging.getLogger(__name__)



def plain_value(value: Any) -> Any:
    """A JSON-friendly scalar from a tensor, NumPy scalar or number (non-finite floats become strings)."""
    if hasattr(value, "detach") and hasattr(value, "numel"):
        value = value.detach().float().mean().item() if value.numel() != 1 else value.detach().item()
    elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bool, Number, str)) or value is None:
        return value
    return str(value)


class JsonlTracker(GeneralTracker):
    """Appends one JSON object per `log` call to `<logging_dir>/metrics.jsonl` (main process only).

    Each line is flushed at once, so a run killed at any moment leaves a readable log.

    Args:
        logging_dir (`str` or `Path`): the folder of the log file.
    """

    name = "jsonl"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, logging_dir: str | Path):
        super().__init__()
        self.path = Path(logging_dir) / METRICS_LOG_FILE

    @property
    def tracker(self) -> Path:
        return self.path

    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict):
        self._write({"event": "config", "config": {k: plain_value(v) for k, v in values.items()}})

    def log(self, values: dict, step: int | None = None, **kwargs):
        record: dict[str, Any] = {"step": step}
        record.update({key: plain_value(value) for key, value in values.items()})
        self._write(record)

    def _write(self, record: dict) -> None:
        record.setdefault("time", round(time.time(), 3))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
            stream.flush()


def truncate_metrics_log(path: str | Path, last_step: int) -> None:
    """Drop records logged after `last_step` (a resumed run re-logs the steps after its checkpoint); atomic."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill: drop it
            continue
        step = record.get("step")
        if isinstance(step, int) and step > last_step:
            continue
        kept.append(line)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(temporary, path)


def read_metrics_log(path: str | Path) -> list[dict]:
    """The records of a JSON-lines metrics log (lines cut by a kill are skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def build_trackers(log_with: list[str], logging_dir: str | Path) -> list:
    """The `log_with` list for `Accelerator`: the JSON-lines tracker first, then the requested built-in ones.

    A known tracker whose package is not installed is skipped with a warning; an unknown name is an error.
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    trackers: list = [JsonlTracker(logging_dir)]
    known = {str(member.value) for member in LoggerType}
    for name in log_with:
        lowered = name.lower()
        if lowered in ("jsonl", "json"):
            continue
        if lowered == "all":
            raise ConfigError("log_with='all' would start every installed tracker, including online services",
                              "name the trackers you want, e.g. --log-with tensorboard")
        if lowered not in known:
            raise ConfigError(
                f"unknown tracker '{name}'", f"use one of {', '.join(sorted(known - {'all'}))} (jsonl is always on)"
            )
        tracker_class = LOGGER_TYPE_TO_CLASS.get(lowered)
        available = _tracker_available(lowered)
        if tracker_class is None or not available:
            logger.warning("tracker '%s' is not installed; logging to %s only", name, METRICS_LOG_FILE)
            continue
        trackers.append(lowered)
    return trackers


def _tracker_available(name: str) -> bool:
    from accelerate.utils import imports

    check = getattr(imports, f"is_{name}_available", None)
    return bool(check()) if check is not None else True


__all__ = ["JsonlTracker", "build_trackers", "truncate_metrics_log", "read_metrics_log", "plain_value"]
