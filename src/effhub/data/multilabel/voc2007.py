"""PASCAL VOC2007 for multi-label recognition, as the partial-label literature reads it (the format facts in the
authors' loader of Sun et al., NeurIPS 2022): `ImageSets/Main/<split>.txt` (one image id per line),
`JPEGImages/<id>.jpg` and `Annotations/<id>.xml`. Each `<object>` contributes its lower-cased `<name>` (one of the
20 classes) unless its `<difficult>` is 1; a class seen only as difficult is a negative, not unknown; `<truncated>`
is ignored. Splits: `trainval` and `test`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from ...errors import DatasetError

VOC2007_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                   "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
                   "tvmonitor")
VOC2007_SPLITS = ("trainval", "test")


def read_voc2007_annotation(path: str | os.PathLike) -> list[int]:
    """Sorted class indices with at least one non-difficult object in one annotation XML."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise DatasetError(f"cannot read VOC annotation '{path}' ({error})",
                           "restore the file from the VOC2007 archive") from None
    present = set()
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        difficult = obj.findtext("difficult")
        if difficult is None:
            raise DatasetError(f"an object of '{path}' has no <difficult> element",
                               "use the VOC2007 annotations, where every object has one")
        if name not in VOC2007_CLASSES:
            raise DatasetError(f"'{path}' names the unknown class {name!r}", "use the 20 VOC2007 class names")
        if difficult.strip() != "1":
            present.add(VOC2007_CLASSES.index(name))
    return sorted(present)


def load_voc2007(root: str | os.PathLike, split: str = "trainval"):
    """VOC2007 `split` as a `datasets.Dataset` (`id`, `image`, `labels`); `root` is the `VOC2007` folder."""
    import datasets

    root = Path(root)
    if split not in VOC2007_SPLITS:
        raise DatasetError(f"VOC2007 split {split!r}", f"use one of {list(VOC2007_SPLITS)}")
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"no VOC2007 split file at '{listing}'",
                           "pass the VOC2007 folder (holding ImageSets/, JPEGImages/, Annotations/) as the root")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    images, labels = [], []
    for image_id in ids:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        if not image.is_file():
            raise DatasetError(f"VOC2007 image '{image}' is missing", "restore JPEGImages/ from the archive")
        images.append(str(image))
        labels.append(read_voc2007_annotation(root / "Annotations" / f"{image_id}.xml"))
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "labels": datasets.List(datasets.ClassLabel(names=list(VOC2007_CLASSES)))})
    return datasets.Dataset.from_dict({"id": ids, "image": images, "labels": labels}, features=features)


__all__ = ["VOC2007_CLASSES", "VOC2007_SPLITS", "read_voc2007_annotation", "load_voc2007"]
