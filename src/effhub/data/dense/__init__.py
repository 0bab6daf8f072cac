"""Dense multi-task data: one sample schema (`schema`), the collator and augmentation, and the readers.

The generated scenes (`scenes`) and the readers of the real formats (`nyuv2`, `cityscapes`, `taskonomy`) all yield
samples of the schema in `effhub.data.dense.schema`; `effhub.data.load_dataset` finds a reader by its data set's name.
Importing this package loads nothing heavy: each name below is imported from its module on first use.
"""

from __future__ import annotations

from ...lazy import lazy_attributes

_LAZY = {
    "IGNORE_INDEX": "schema",
    "DENSE_TASKS": "schema",
    "INVALID_VALUES": "schema",
    "LABEL_CHANNELS": "schema",
    "check_tasks": "schema",
    "dataset_ids": "schema",
    "DenseAugmentation": "augmentation",
    "DenseCollator": "collator",
    "DenseDecoder": "reading",
    "lazy_dataset": "reading",
    "SceneConfig": "scenes",
    "SCENES_V1": "scenes",
    "load_scenes": "scenes",
    "render_scene": "scenes",
    "load_nyuv2": "nyuv2",
    "load_cityscapes": "cityscapes",
    "load_taskonomy": "taskonomy",
    "load_taskonomy_class_weights": "taskonomy",
}


def load_dense_dataset(name: str, split: str = "train", root=None, **kwargs):
    """Load a dense multi-task data set by name: `effhub.data.load_dataset` for the data sets of kind `dense`.

    Args:
        name (`str`): the data set (`scenes`, `nyuv2`, `cityscapes`, `taskonomy`).
        split (`str`, defaults to `"train"`): the split (a key of the authors' split JSON for real data).
        root (`str`, *optional*): the data folder; required by every real data set, ignored by generated ones.
        kwargs: passed to the reader (e.g. `tasks`, `num_classes`, `config`).
    """
    from .. import load_dataset

    return load_dataset(name, split, root, kind="dense", **kwargs)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [*_LAZY, "load_dense_dataset"]
