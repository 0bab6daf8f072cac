"""Metrics shipped with effhub as `evaluate` modules (loaded from the package, no network), plus their torch-side
statistics functions.

Each metric lives in `effhub/metrics/<name>/`: `statistics.py` computes the sufficient statistics of one batch with
torch (on any device, no `evaluate` import) and the final values from accumulated statistics; `<name>.py` is the
`evaluate` module built on them. See docs/metrics.md for the pattern and its use under Accelerate.

    >>> import effhub.metrics
    >>> metric = effhub.metrics.load_metric("semantic_segmentation", num_labels=19)
"""

from __future__ import annotations

import importlib
import inspect
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .classification.statistics import classification_scores, classification_statistics
from .depth_estimation.statistics import depth_scores, depth_statistics
from .multilabel.statistics import multilabel_scores, multilabel_statistics
from .multitask_delta.statistics import multitask_delta
from .semantic_segmentation.statistics import segmentation_scores, segmentation_statistics
from .surface_normals.statistics import normals_scores, normals_statistics

if TYPE_CHECKING:  # evaluate imports datasets (seconds); only load_metric needs it
    import evaluate


def list_metrics() -> list[str]:
    """Names of the metrics shipped with effhub."""
    root = resources.files(__name__)
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith("_") and entry.joinpath(f"{entry.name}.py").is_file()
    )


def metric_path(name: str) -> Path:
    """Path of the `evaluate` module script of metric `name` (usable with `evaluate.load(str(path))`)."""
    if not isinstance(name, str) or name not in list_metrics():
        raise ConfigError(
            f"effhub ships no metric named {name!r}",
            f"use one of {', '.join(list_metrics())}",
        )
    script = resources.files(__name__).joinpath(name, f"{name}.py")
    return Path(str(script))


def load_metric(name: str, **config: Any) -> "evaluate.EvaluationModule":
    """Load an effhub metric as an `evaluate` module from the installed package (works offline).

    The module script `effhub/metrics/<name>/<name>.py` is imported as part of the package rather than through
    `evaluate.load`, which copies scripts into `HF_MODULES_CACHE` and cannot reload them once that folder changes
    within a process; `evaluate.load(str(metric_path(name)), **config)` gives the same module where that does not
    matter.

    Args:
        name (`str`): one of `list_metrics()`, e.g. `"semantic_segmentation"`.
        **config: the metric's configuration, e.g. `num_labels=19, ignore_index=255`; `evaluate` options
            (`experiment_id`, `seed`...) are accepted too.
    """
    import evaluate

    metric_path(name)  # validates the name
    script = importlib.import_module(f"{__name__}.{name}.{name}")
    # the module's own concrete EvaluationModule, picked as evaluate.load picks it
    main_class = next(
        obj
        for obj in vars(script).values()
        if isinstance(obj, type)
        and issubclass(obj, evaluate.EvaluationModule)
        and not inspect.isabstract(obj)
        and obj.__module__ == script.__name__
    )
    return main_class(**config)


__all__ = [
    "classification_scores",
    "classification_statistics",
    "depth_scores",
    "depth_statistics",
    "list_metrics",
    "load_metric",
    "metric_path",
    "multilabel_scores",
    "multilabel_statistics",
    "multitask_delta",
    "normals_scores",
    "normals_statistics",
    "segmentation_scores",
    "segmentation_statistics",
]
