"""Error types raised by effhub's public entry points.

Every error names the problem and the fix: ``str(error)`` reads ``"<problem>. Fix: <fix>"``. Each type also derives
from the closest built-in exception so that callers who catch ``ValueError`` or ``FileNotFoundError`` keep working.
"""

from __future__ import annotations


class EffhubError(Exception):
    """Base class of every error effhub raises on purpose.

    Args:
        problem (`str`): what is wrong, with the offending value.
        fix (`str`, *optional*): what the user should do about it.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" if fix else problem)


class ConfigError(EffhubError, ValueError):
    """A model or training configuration holds an invalid value or shape."""


class RecipeError(ConfigError):
    """A recipe is unknown, or has an unknown key or a value of the wrong type."""


class UnknownMethodError(EffhubError, KeyError):
    """No effhub method is registered under the given name."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return Exception.__str__(self)


class TaskError(ConfigError):
    """A task name is unknown, or the tasks of two objects (checkpoint, recipe, data) differ."""


class DatasetError(EffhubError, FileNotFoundError):
    """A dataset folder or file is missing or does not follow the expected on-disk format."""


class CheckpointError(EffhubError, OSError):
    """A checkpoint or weight file is missing, truncated, corrupt, or belongs to another run."""


class TrainingInterrupted(EffhubError, KeyboardInterrupt):
    """Training stopped on SIGINT (Ctrl-C) or SIGTERM; the fix says how to resume."""


class HubError(EffhubError, OSError):
    """A Hub operation failed: repository missing, endpoint unreachable, or a conflicting write."""


class OfflineError(HubError):
    """A Hub repository was named but no network (or cache) can serve it."""


class DistributedError(EffhubError, RuntimeError):
    """A multi-process run is misconfigured (world size, ports, unsynchronised ranks)."""


class MissingDependencyError(EffhubError, ImportError):
    """An optional dependency (an extra such as `effhub[plots]`) is needed but not installed."""


__all__ = [
    "EffhubError",
    "ConfigError",
    "RecipeError",
    "UnknownMethodError",
    "TaskError",
    "DatasetError",
    "CheckpointError",
    "TrainingInterrupted",
    "HubError",
    "OfflineError",
    "DistributedError",
    "MissingDependencyError",
]
