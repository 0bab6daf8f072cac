"""CityScapes as formatted by the AdaShare authors: semantic segmentation (2, 7 or 19 classes) and depth.

Format facts, read in sunxm2357/AdaShare `dataloaders/cityscapes_dataloader.py` (class `CityScapes`), `train.py` and
`yamls/adashare/cityscapes_2task*.yml`, with sunxm2357/AdaShare#10 for the depth values:

- Layout: `<root>/cityscape.json` (singular "cityscape") and the `.npy` files it names, relative to `<root>`; the
  folders are not fixed by the code (the mtan-style preprocessing it follows uses e.g. `train/image/0.npy`,
  `train/depth/0.npy`, `train/label_7/0.npy`, `train/label_19/0.npy`).
- The JSON maps split names (`train`, `train1`, `train2`, `test`) to lists of `[image, depth, label2, label7, label19]`
  paths.
- `image`: float (H, W, 3), RGB in [0, 1] (the authors reverse it to BGR and multiply by 255); this reader returns it
  as uint8 RGB, `rint(255 * x)`.
- `depth`: float (H, W, 1); inverse depth as the mtan preprocessing stored it (not metres: values up to about 0.5),
  0 = invalid, valid where > 3e-5 as in the authors' losses. Returned as float32 (H, W) in the same units.
- `label_2` / `label_7` / `label_19`: integer (H, W) class ids, -1 = ignore. `num_classes` picks one (the released
  configs use 19, the Cityscapes *train ids*: see :data:`CITYSCAPES_19_CLASSES`); -1 becomes 255 here, the ignore
  value of every effhub data set. What the 2-class labels mean is not documented upstream.
- Resolution: 256x512 (128x256 for the authors' `small_res` copy); the loader never resizes.

The archive itself is a Google Drive link in the AdaShare README.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

from ...errors import ConfigError, DatasetError
from .reading import DenseDecoder, check_files_exist, check_root, lazy_dataset, read_split_file
from .schema import IGNORE_INDEX, check_tasks

CITYSCAPES_TASKS = {"segmentation": 19, "depth": 1}
"""Task name -> output channels of the AdaShare CityScapes setting (19-class segmentation)."""
CITYSCAPES_SPLIT_FILE = "cityscape.json"
CITYSCAPES_DEPTH_THRESHOLD = 3e-5
CITYSCAPES_19_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
"""The 19 evaluated Cityscapes classes in train-id order (Cordts et al., CVPR 2016; cityscapesScripts `labels.py`)."""
CITYSCAPES_7_CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
"""The 7 Cityscapes categories (void excluded), the usual meaning of the 7-class labels."""

# official Cityscapes label id -> train id (cityscapesScripts `labels.py`); every other id is ignored
_LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                         26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
# order of the paths in each split entry of the authors' JSON
_ENTRY_ORDER = ("image", "depth", "label_2", "label_7", "label_19")
_LABEL_COLUMN = {2: "label_2", 7: "label_7", 19: "label_19"}
_LAYOUT = (
    f"<root>/{CITYSCAPES_SPLIT_FILE} naming, per image, [image, depth, label2, label7, label19] .npy paths relative to "
    "<root> (e.g. train/image/0.npy, train/depth/0.npy, train/label_19/0.npy), as in the AdaShare-formatted CityScapes "
    "linked from the AdaShare README"
)


def cityscapes_label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map official Cityscapes label ids (`*_gtFine_labelIds.png`) to the 19 train ids, 255 elsewhere (uint8)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in _LABEL_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    label_ids = np.asarray(label_ids)
    out = np.full(label_ids.shape, IGNORE_INDEX, dtype=np.uint8)
    inside = (label_ids >= 0) & (label_ids < 256)
    out[inside] = table[label_ids[inside].astype(np.int64)]
    return out


class CityScapesDecoder(DenseDecoder):
    """Decode one AdaShare-formatted CityScapes row into an effhub dense sample.

    Args:
        root (`str`): the data folder.
        tasks (`tuple[str, ...]`): the tasks to decode.
        num_classes (`int`): 2, 7 or 19: which label file feeds `segmentation`.
    """

    dataset_name = "CityScapes"

    def __init__(self, root: str, tasks: tuple[str, ...], num_classes: int):
        super().__init__(root, tasks)
        self.num_classes = num_classes

    def _load(self, relative: str) -> np.ndarray:
        return self.read_npy(relative)

    def decode_image(self, relative: str) -> np.ndarray:
        image = self._load(relative)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise DatasetError(
                f"CityScapes image '{os.path.join(self.root, relative)}' has shape {image.shape}",
                "store images as float (H, W, 3) RGB arrays in [0, 1]",
            )
        return np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)

    def decode_task(self, task: str, relative: str, row: Mapping[str, str]) -> np.ndarray:
        array = self._load(relative)
        path = os.path.join(self.root, relative)
        if task == "depth":
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim != 2:
                raise DatasetError(f"CityScapes depth '{path}' has shape {array.shape}", "store depth as (H, W, 1)")
            depth = np.ascontiguousarray(array, dtype=np.float32)
            depth[~(depth > CITYSCAPES_DEPTH_THRESHOLD)] = 0.0
            return depth
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise DatasetError(f"CityScapes label '{path}' has shape {array.shape}", "store labels as (H, W) integers")
        labels = np.rint(array).astype(np.int64) if np.issubdtype(array.dtype, np.floating) else array.astype(np.int64)
        bad = ((labels < -1) | (labels >= self.num_classes)) & (labels != IGNORE_INDEX)
        if bad.any():
            raise DatasetError(
                f"CityScapes label '{path}' holds value(s) {sorted(np.unique(labels[bad]).tolist())[:5]} outside "
                f"-1..{self.num_classes - 1}",
                f"check that num_classes={self.num_classes} matches the label files",
            )
        labels[labels == -1] = IGNORE_INDEX
        return labels.astype(np.uint8)


def load_cityscapes(
    root: str | os.PathLike,
    split: str = "train",
    num_classes: int = 19,
    tasks: Iterable[str] = tuple(CITYSCAPES_TASKS),
    verify_files: bool = True,
):
    """Read a split of the AdaShare-formatted CityScapes as a lazily decoded `datasets.Dataset`.

    Rows follow the effhub dense schema (`effhub.data.dense`): `id` (the image path without its extension),
    `image`, `segmentation` (train ids, 255 = ignore), `depth` (inverse depth, 0 = invalid), `label_mask`.

    Args:
        root (`str`): the folder holding `cityscape.json`.
        split (`str`, defaults to `"train"`): a key of the JSON (`train`, `train1`, `train2`, `test`).
        num_classes (`int`, defaults to 19): 19 (train ids), 7 (categories) or 2; -1 means 19, as upstream.
        tasks (`Iterable[str]`, defaults to both): `segmentation` and/or `depth`.
        verify_files (`bool`, defaults to `True`): check at once that every listed file exists.
    """
    if num_classes == -1:
        num_classes = 19
    if num_classes not in _LABEL_COLUMN:
        raise ConfigError(f"CityScapes has no {num_classes}-class labels", "pass num_classes=19, 7 or 2")
    tasks = check_tasks(tasks, tuple(CITYSCAPES_TASKS), "CityScapes")
    root = check_root(root, "CityScapes", _LAYOUT)
    how_to = f"lay the data out as {_LAYOUT}"
    entries = read_split_file(root / CITYSCAPES_SPLIT_FILE, split, len(_ENTRY_ORDER), "CityScapes", how_to)
    columns = {name: [entry[position] for entry in entries] for position, name in enumerate(_ENTRY_ORDER)}
    task_columns = {"segmentation": columns[_LABEL_COLUMN[num_classes]], "depth": columns["depth"]}
    if verify_files:
        check_files_exist(root, columns["image"], "CityScapes", how_to)
        for task in tasks:
            check_files_exist(root, task_columns[task], "CityScapes", how_to)
    ids = [os.path.splitext(path)[0] for path in columns["image"]]
    return lazy_dataset(
        ids,
        columns["image"],
        {task: task_columns[task] for task in tasks},
        CityScapesDecoder(str(root), tasks, num_classes),
        description=f"CityScapes (AdaShare format), split {split}, {num_classes} classes, tasks {list(tasks)}",
    )


__all__ = [
    "CITYSCAPES_TASKS",
    "CITYSCAPES_SPLIT_FILE",
    "CITYSCAPES_19_CLASSES",
    "CITYSCAPES_7_CLASSES",
    "cityscapes_label_ids_to_train_ids",
    "CityScapesDecoder",
    "load_cityscapes",
]
