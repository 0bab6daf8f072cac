"""The base class of effhub's `evaluate` modules: a metric that keeps running sufficient statistics.

`evaluate.Metric` stores every prediction and reference in an Arrow table until `compute()`; for dense outputs
(1000 segmentation masks of 1024x2048 are 2 G labels per side) that costs gigabytes. An effhub metric instead folds
each batch into fixed-size statistics (a confusion matrix, error sums, histograms) as soon as it arrives, so its
memory does not grow with the number of pixels or examples seen. The user API stays `evaluate`'s:
`add_batch(predictions=..., references=...)` then `compute()`. Under Accelerate, compute the statistics on the device
with the module's torch function, gather or reduce them, and fold them in with `add_statistics` (docs/metrics.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

import evaluate

from ..errors import ConfigError
from .tensors import fold_statistics


def map_features(value_type: str, channels: bool = False):
    """`datasets.Features` of dense prediction/reference maps: (H, W) per example, or (H, W, C) with `channels`."""
    import datasets

    feature = datasets.Value(value_type)
    for _ in range(3 if channels else 2):
        feature = datasets.Sequence(feature)
    return datasets.Features({"predictions": feature, "references": feature})


class RunningStatisticsMetric(evaluate.Metric, ABC):
    """An `evaluate.Metric` whose state is a dict of fixed-size numpy arrays (sufficient statistics).

    Subclasses set their configuration attributes before calling `super().__init__(**kwargs)` (evaluate calls
    `_info()` from its constructor) and implement `_empty_statistics()`, `_batch_statistics(predictions, references,
    **kwargs)` (returns summed statistics of one batch) and `_scores(statistics)`. The class is abstract, which
    also keeps `evaluate.load` (it takes the first concrete `EvaluationModule` of a script) from picking it.
    """

    def __init__(self, **kwargs: Any):
        if kwargs.get("num_process", 1) != 1:
            raise ConfigError(
                "effhub metrics do not use evaluate's file-based multi-process mode (num_process > 1)",
                "gather or reduce the statistics with Accelerate and fold them in with add_statistics "
                "on the main process (docs/metrics.md)",
            )
        super().__init__(**kwargs)
        self.reset()

    # what a subclass implements
    @abstractmethod
    def _empty_statistics(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @abstractmethod
    def _batch_statistics(self, predictions: Any, references: Any, **kwargs: Any) -> Mapping[str, torch.Tensor]:
        raise NotImplementedError

    @abstractmethod
    def _scores(self, statistics: Mapping[str, np.ndarray]) -> dict[str, Any]:
        raise NotImplementedError

    # the running state
    def reset(self) -> None:
        """Forget every statistic added so far."""
        self._statistics = self._empty_statistics()
        self._num_examples = 0

    @property
    def statistics(self) -> dict[str, np.ndarray]:
        """A copy of the running statistics."""
        return {key: value.copy() for key, value in self._statistics.items()}

    @property
    def state_nbytes(self) -> int:
        """Bytes held by the running statistics: fixed by the configuration, not by the data seen."""
        return int(sum(value.nbytes for value in self._statistics.values()))

    def __len__(self) -> int:
        return self._num_examples

    def add_statistics(self, statistics: Mapping[str, Any], num_examples: int | None = None) -> None:
        """Fold precomputed statistics (torch or numpy; summed, or per sample with a leading batch dimension) in.

        This is the path for distributed evaluation: compute the statistics of each batch on the device with the
        module's torch function, `accelerator.gather_for_metrics` (per sample) or `accelerator.reduce` (summed)
        them, and add them on the main process.
        """
        self._statistics = fold_statistics(self._statistics, statistics, self.name)
        if num_examples is not None:
            self._num_examples += int(num_examples)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Fold one batch of predictions and references into the running statistics (nothing else is stored)."""
        if predictions is None or references is None:
            raise ConfigError(
                f"'{self.name}'.add_batch needs both predictions and references",
                "call add_batch(predictions=..., references=...)",
            )
        self.add_statistics(self._batch_statistics(predictions, references, **kwargs))
        self._num_examples += len(predictions)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Fold one example into the running statistics."""

        def batched(value):
            if isinstance(value, (torch.Tensor, np.ndarray)):
                return value[None]
            return None if value is None else [value]

        self.add_batch(
            predictions=batched(prediction),
            references=batched(reference),
            **{key: batched(value) for key, value in kwargs.items()},
        )

    def compute(self, *, predictions=None, references=None, **kwargs) -> dict[str, Any]:
        """Fold the given batch (if any), compute the final values from the statistics, and reset the state."""
        if predictions is not None or references is not None:
            self.add_batch(predictions=predictions, references=references, **kwargs)
        if not self._num_examples and not any(value.any() for value in self._statistics.values()):
            raise ConfigError(
                f"'{self.name}'.compute was called before any data was added",
                "call add_batch(predictions=..., references=...) or add_statistics(...) first",
            )
        try:
            return self._scores(self.statistics)
        finally:
            self.reset()

    def compute_from_statistics(self, statistics: Mapping[str, Any]) -> dict[str, Any]:
        """The final values of given statistics, leaving the running state untouched."""
        return self._scores(fold_statistics(self._empty_statistics(), statistics, self.name))

    def _compute(self, predictions=None, references=None, **kwargs):
        # evaluate's abstract hook; `compute` is overridden, so this only serves callers that use it directly
        return self.compute(predictions=predictions, references=references, **kwargs)


__all__ = ["RunningStatisticsMetric"]
