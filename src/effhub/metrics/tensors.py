"""Conversions shared by the metric statistics: inputs to tensors, statistics to numpy, per-sample folding.

No `evaluate` or `datasets` import here, so trainers can compute statistics on a device without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError


def as_tensor(value: Any, name: str) -> torch.Tensor:
    """`value` (tensor, numpy array, nested list, PIL image) as a tensor; a clear error for anything else."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            return torch.stack(list(value))
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"`{name}` could not be read as an array ({type(value).__name__}: {error})",
            "pass a torch tensor, a numpy array, or a (nested) list of numbers of one shape",
        ) from None


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (sums of millions of errors lose digits in float32); float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def per_sample_or_total(values: torch.Tensor, per_sample: bool) -> torch.Tensor:
    """`values` has a leading batch dimension; keep it (for `gather_for_metrics`) or sum it (for `reduce`)."""
    return values if per_sample else values.sum(0)


def statistics_to_numpy(statistics: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Statistics (torch tensors on any device, numpy arrays or numbers) as numpy arrays on the host."""
    converted = {}
    for key, value in statistics.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        converted[key] = np.asarray(value)
    return converted


def fold_statistics(
    running: Mapping[str, np.ndarray], incoming: Mapping[str, Any], metric_name: str
) -> dict[str, np.ndarray]:
    """Add `incoming` statistics (summed, or with a leading per-sample dimension) to `running` ones.

    Raises:
        ConfigError: when a key is missing or unknown, or a shape does not match the metric's configuration.
    """
    incoming = statistics_to_numpy(incoming)
    missing, unknown = set(running) - set(incoming), set(incoming) - set(running)
    if missing or unknown:
        raise ConfigError(
            f"statistics for '{metric_name}' have missing keys {sorted(missing)} / unknown keys {sorted(unknown)}",
            f"pass the dict returned by the '{metric_name}' statistics function unchanged (keys {sorted(running)})",
        )
    folded = {}
    for key, total in running.items():
        value = incoming[key]
        if value.ndim == total.ndim + 1 and value.shape[1:] == total.shape:
            value = value.sum(0)  # per-sample statistics, e.g. after gather_for_metrics
        if value.shape != total.shape:
            raise ConfigError(
                f"statistic '{key}' of '{metric_name}' has shape {value.shape}, expected {total.shape} "
                f"(or a leading batch dimension)",
                "compute the statistics with the same configuration (num_labels, bins, top_k...) as the metric",
            )
        folded[key] = total + value.astype(total.dtype, copy=False)
    return folded


__all__ = ["as_tensor", "accumulation_dtype", "per_sample_or_total", "statistics_to_numpy", "fold_statistics"]
