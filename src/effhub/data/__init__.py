"""Data sets: readers of the real on-disk formats and generators of the embedded offline data.

Kept light: importing `effhub.data` loads nothing heavy; each name below is imported from its module on first use.
Dense multi-task data (AdaShare, label budget allocation) share one sample schema, described in `effhub.data.dense`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # dense multi-task data
    "IGNORE_INDEX": "dense",
    "DENSE_TASKS": "dense",
    "SplitIds": "dense",
    "split_ids": "dense",
    "split_train": "dense",
    "DenseAugmentation": "dense",
    "DenseCollator": "dense",
    "load_dense_dataset": "dense",
    "SceneConfig": "scenes",
    "SCENES_V1": "scenes",
    "load_scenes": "scenes",
    "render_scene": "scenes",
    "load_nyuv2": "nyuv2",
    "load_cityscapes": "cityscapes",
    "load_taskonomy": "taskonomy",
    "load_taskonomy_class_weights": "taskonomy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'effhub.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
