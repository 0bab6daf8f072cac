"""Data sets: readers of the real on-disk formats and generators of the embedded offline data.

Kept light: importing `effhub.data` loads nothing heavy; each name below is imported from its module on first use.
Dense multi-task data (AdaShare, label budget allocation) share one sample schema, described in `effhub.data.dense`.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
