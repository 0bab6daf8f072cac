"""Partial labels: a saved, reusable mask of the label entries kept at a label ratio.

As multi-label recognition with partial labels is simulated (Durand et al., CVPR 2019; Sun et al., NeurIPS 2022), each
(image, class) entry of the training labels is kept with probability `ratio`, once per data set and ratio; the others
become -1 (unknown) and are left out of the loss. The mask is drawn from its own seeded generator and saved, so a run
and every baseline compared with it see the same known labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DatasetError

UNKNOWN = -1


def multi_hot(label_lists, num_classes: int) -> np.ndarray:
    """`[N, C]` int64 0/1 targets from per-image lists of present class indices."""
    targets = np.zeros((len(label_lists), num_classes), dtype=np.int64)
    for row, labels in enumerate(label_lists):
        labels = list(labels)
        if labels and (min(labels) < 0 or max(labels) >= num_classes):
            raise DatasetError(f"image {row} has class indices {labels} outside [0, {num_classes})",
                               "check that the labels use the data set's class list")
        targets[row, labels] = 1
    return targets


def partial_label_mask(num_images: int, num_classes: int, ratio: float, seed: int = 0) -> np.ndarray:
    """`[N, C]` boolean mask: True where a label entry is kept (probability `ratio`, independently)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"label ratio is {ratio!r}", "pass a fraction of labels kept in (0, 1], e.g. 0.1")
    if ratio >= 1:
        return np.ones((num_images, num_classes), dtype=bool)
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(round(ratio * 10_000))]))
    return rng.random((num_images, num_classes)) < ratio


def partial_targets(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Targets with the entries outside `mask` set to -1 (unknown)."""
    if targets.shape != mask.shape:
        raise DatasetError(f"the partial-label mask has shape {mask.shape}, the labels {targets.shape}",
                           "use the mask saved for this data set (same images and classes), or draw a new one")
    return np.where(mask, targets, UNKNOWN)


def mask_file_name(ratio: float) -> str:
    """`partial_label_<ratio with 2 decimals>.npz`, e.g. `partial_label_0.10.npz`."""
    return f"partial_label_{ratio:.2f}.npz"


def save_partial_label_mask(path: str | os.PathLike, mask: np.ndarray, ratio: float, seed: int) -> Path:
    """Save a mask (with its ratio and seed) as `.npz`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(temporary, mask=np.asarray(mask, dtype=bool), ratio=np.float64(ratio), seed=np.int64(seed))
    os.replace(temporary, path)
    return path


def load_partial_label_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """`(mask, ratio)` from a saved mask; with `shape`, a mask of another shape is refused (`DatasetError`)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"partial-label mask '{path}' does not exist", "pass the file a run saved, or omit it")
    try:
        with np.load(path) as data:
            mask, ratio = data["mask"].astype(bool), float(data["ratio"])
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"'{path}' is not a partial-label mask ({error})", "pass a mask saved by effhub") from None
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise DatasetError(f"the mask in '{path}' has shape {tuple(mask.shape)}, the labels {tuple(shape)}",
                           "use the mask saved for this data set, or omit mask_file to draw one")
    return mask, ratio


__all__ = ["UNKNOWN", "multi_hot", "partial_label_mask", "partial_targets", "mask_file_name",
           "save_partial_label_mask", "load_partial_label_mask"]
