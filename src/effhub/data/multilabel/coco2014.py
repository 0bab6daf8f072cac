"""MS-COCO 2014 for multi-label recognition: `annotations/instances_{train2014,val2014}.json` (COCO's instances
format) and images at `<split>/<file_name>`, read as the multi-label literature does (the format facts in the
authors' loader of Sun et al., NeurIPS 2022): a class is present when the image has an annotation of it, crowd
annotations (`iscrowd=1`) included; images without annotations are left out; category ids map to class indices in
ascending id order (the 80 official ids -> 0..79).

Zero-shot 48/17 split (Bansal et al., ECCV 2018): `annotations/instances_train2014_seen_48_17.json`,
`instances_val2014_gzsi_48_17.json` and `instances_val2014_unseen_48_17.json` hold the same format with only the
seen, all 65, or unseen categories; :func:`load_coco_zero_shot_split` reads one and maps its categories into the
80-class index space.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...errors import DatasetError

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
                     31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
                     56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
                     85, 86, 87, 88, 89, 90)
# the 17 unseen classes of the 48/17 split, by index into COCO_CLASSES
COCO_UNSEEN_17 = (4, 5, 15, 16, 19, 20, 25, 27, 31, 36, 41, 43, 55, 57, 66, 71, 76)
COCO_SPLITS = ("train2014", "val2014")
ZERO_SHOT_FILES = {"seen": "instances_train2014_seen_48_17.json", "gzsl": "instances_val2014_gzsi_48_17.json",
                   "unseen": "instances_val2014_unseen_48_17.json"}
ZERO_SHOT_IMAGES = {"seen": "train2014", "gzsl": "val2014", "unseen": "val2014"}


def _read_instances(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"no COCO instances file at '{path}'", "pass the COCO root holding annotations/")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"'{path}' is not valid JSON ({error})", "restore it from the COCO archive") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"'{path}' has no '{key}' list", "pass a COCO instances file")
    return data


def _dataset(data: dict, image_folder: Path, source: Path):
    import datasets

    by_category = dict(zip(COCO_CATEGORY_IDS, range(len(COCO_CLASSES))))
    unknown = sorted({c["id"] for c in data["categories"]} - set(by_category))
    if unknown:
        raise DatasetError(f"'{source}' has category ids {unknown[:5]} outside COCO's 80", "pass a COCO 2014 file")
    files = {image["id"]: image["file_name"] for image in data["images"]}
    labels: dict[int, set] = {}
    for annotation in data["annotations"]:
        image_id, category = annotation.get("image_id"), annotation.get("category_id")
        if image_id not in files:
            raise DatasetError(f"'{source}': an annotation names image {image_id}, which is not listed",
                               "restore the instances file")
        if category not in by_category:
            raise DatasetError(f"'{source}': an annotation has category {category}", "pass a COCO 2014 file")
        labels.setdefault(image_id, set()).add(by_category[category])
    ids = list(labels)  # images with at least one annotation, in order of appearance
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "labels": datasets.List(datasets.ClassLabel(names=list(COCO_CLASSES)))})
    return datasets.Dataset.from_dict({"id": [str(i) for i in ids],
                                       "image": [str(image_folder / files[i]) for i in ids],
                                       "labels": [sorted(labels[i]) for i in ids]}, features=features)


def load_coco2014(root: str | os.PathLike, split: str = "train2014"):
    """COCO-2014 `split` as a `datasets.Dataset` (`id`, `image`, `labels` over the 80 classes)."""
    root = Path(root)
    if split not in COCO_SPLITS:
        raise DatasetError(f"COCO split {split!r}", f"use one of {list(COCO_SPLITS)}")
    source = root / "annotations" / f"instances_{split}.json"
    return _dataset(_read_instances(source), root / split, source)


def load_coco_zero_shot_split(root: str | os.PathLike, part: str = "seen"):
    """One file of the 48/17 zero-shot split (`"seen"` training, `"gzsl"` or `"unseen"` test): `(dataset, class
    indices of the file's categories)`; labels stay in the 80-class index space."""
    root = Path(root)
    if part not in ZERO_SHOT_FILES:
        raise DatasetError(f"zero-shot part {part!r}", f"use one of {list(ZERO_SHOT_FILES)}")
    source = root / "annotations" / ZERO_SHOT_FILES[part]
    data = _read_instances(source)
    by_category = dict(zip(COCO_CATEGORY_IDS, range(len(COCO_CLASSES))))
    classes = sorted(by_category[c["id"]] for c in data["categories"] if c["id"] in by_category)
    expected = {"seen": 48, "gzsl": 65, "unseen": 17}[part]
    if len(classes) != expected:
        raise DatasetError(f"'{source}' lists {len(classes)} categories, the 48/17 split's {part} file has {expected}",
                           "pass the split files of Bansal et al. (ECCV 2018)")
    return _dataset(data, root / ZERO_SHOT_IMAGES[part], source), classes


__all__ = ["COCO_CLASSES", "COCO_CATEGORY_IDS", "COCO_UNSEEN_17", "COCO_SPLITS", "ZERO_SHOT_FILES",
           "load_coco2014", "load_coco_zero_shot_split"]
