"""Multi-label recognition data: partial-label masks and readers of VOC2007 and COCO-2014 (with the 48/17
zero-shot split files). Every reader returns a `datasets.Dataset` with `id`, `image` (file path) and `labels` (the
present class indices), plus the class list."""

from __future__ import annotations

from ...lazy import lazy_attributes

_LAZY = {
    "partial_label_mask": "partial",
    "save_partial_label_mask": "partial",
    "load_partial_label_mask": "partial",
    "partial_targets": "partial",
    "multi_hot": "partial",
    "VOC2007_CLASSES": "voc2007",
    "read_voc2007_annotation": "voc2007",
    "load_voc2007": "voc2007",
    "COCO_CLASSES": "coco2014",
    "COCO_UNSEEN_17": "coco2014",
    "load_coco2014": "coco2014",
    "load_coco_zero_shot_split": "coco2014",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
