"""What the dense multi-task datasets share: the sample schema, lazy decoding, the seeded train split and the collator.

Every dense data set in effhub (the generated scenes, NYU-v2, CityScapes, Taskonomy) yields samples of one schema, so
that a model, a trainer or a label-budget simulation never needs to know where pixels came from:

| key | value | invalid / missing |
| --- | --- | --- |
| `id` | `str`, unique within the data set | |
| `image` | `uint8` (H, W, 3), **RGB** | |
| `segmentation` | `uint8` (H, W) class ids | `255` (:data:`IGNORE_INDEX`) |
| `depth` | `float32` (H, W), units per data set (metres for the scenes and NYU-v2) | `0` |
| `normals` | `float32` (H, W, 3) unit vectors | `(0, 0, 0)` |
| `keypoints`, `edges` | `float32` (H, W) in [-1, 1] (Taskonomy) | `255` |
| `label_mask` | `dict[str, bool]`: does this image carry a label for the task | |

A task whose label is missing for an image has the value `None` and `label_mask[task] == False`; the collator then
fills it with the invalid value, so a loss that honours either the mask or the invalid value drops it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError, DatasetError

IGNORE_INDEX = 255
"""Segmentation value of unlabeled pixels in every effhub dense data set (the loss's `ignore_index`)."""

DENSE_TASKS = ("segmentation", "depth", "normals", "keypoints", "edges")
"""Every task name the dense readers know, in a fixed order."""

INVALID_VALUES: dict[str, float] = {
    "segmentation": IGNORE_INDEX,
    "depth": 0.0,
    "normals": 0.0,
    # Taskonomy's keypoints and edges lie in [-1, 1]; AdaShare marks padding with 255, which no real value reaches
    "keypoints": 255.0,
    "edges": 255.0,
}
"""Value of an invalid pixel per task (used for padding, missing labels and in the losses' masks)."""

LABEL_CHANNELS = {"segmentation": 1, "depth": 1, "normals": 3, "keypoints": 1, "edges": 1}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
"""Per-channel mean (B, G, R order, 0-255 scale) the AdaShare authors subtract from every image; no std is applied."""


def check_tasks(tasks: Iterable[str], available: Sequence[str], dataset_name: str) -> tuple[str, ...]:
    """Return `tasks` as a tuple after checking each is one of `available` and none repeats."""
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    unknown = [task for task in tasks if task not in available]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ConfigError(
            f"{dataset_name} has no task(s) {unknown or list(tasks)} (known tasks: {list(available)})",
            f"pass distinct task names among {list(available)}",
        )
    return tasks


def check_root(root: str | os.PathLike, dataset_name: str, expected_layout: str) -> Path:
    """Return `root` as a `Path`, or raise a `DatasetError` explaining the expected layout when it is not a folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{dataset_name} folder '{path}' does not exist or is not a folder",
            f"download the data and pass the folder laid out as: {expected_layout}",
        )
    return path


def read_split_file(json_path: Path, split: str, entry_length: int, dataset_name: str, how_to: str) -> list[list[str]]:
    """Read one split of an AdaShare-style split JSON (`{split: [[relative path, ...], ...]}`)."""
    if not json_path.is_file():
        raise DatasetError(f"{dataset_name} split file '{json_path}' is missing", how_to)
    try:
        splits = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{dataset_name} split file '{json_path}' is not valid JSON ({error})", how_to) from error
    if not isinstance(splits, dict):
        raise DatasetError(f"{dataset_name} split file '{json_path}' is not a JSON object of splits", how_to)
    if split not in splits:
        raise DatasetError(
            f"{dataset_name} split file '{json_path}' has no split '{split}' (it has {sorted(splits)})",
            f"pass one of {sorted(splits)} as the split",
        )
    entries = splits[split]
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) != entry_length:
            raise DatasetError(
                f"{dataset_name} split '{split}' in '{json_path}' has an entry {entry!r} that is not a list of "
                f"{entry_length} relative paths",
                how_to,
            )
    return [list(entry) for entry in entries]


def check_files_exist(root: Path, relative_paths: Iterable[str | None], dataset_name: str, how_to: str) -> None:
    """Raise a `DatasetError` naming the first listed file that is missing under `root`."""
    for relative in relative_paths:
        if relative and not (root / relative).is_file():
            raise DatasetError(f"{dataset_name} file '{root / relative}' listed in the split is missing", how_to)


def nearest_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes, sampling source pixel floor(i * source / target) like OpenCV."""
    rows = (np.arange(height) * array.shape[0] // height).clip(0, array.shape[0] - 1)
    cols = (np.arange(width) * array.shape[1] // width).clip(0, array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


def unit_normals(vectors: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Normalise (H, W, 3) vectors to unit length; zero vectors and pixels outside `valid` become (0, 0, 0)."""
    vectors = vectors.astype(np.float32, copy=False)
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    ok = norm[..., 0] > 1e-6
    if valid is not None:
        ok &= valid
    out = np.zeros_like(vectors)
    out[ok] = vectors[ok] / norm[ok]
    return out


class DenseDecoder:
    """Decode rows of file paths into dense samples on access (the transform of a lazily decoded reader).

    Subclasses implement :meth:`decode_image` and :meth:`decode_task`; the rows carry `id`, `image_path` and one
    `<task>_path` column per task (an empty string where the image has no label for the task). Instances are plain
    picklable objects so that `DataLoader` workers can use them.

    Args:
        root (`str`): the data set folder the relative paths are joined to.
        tasks (`tuple[str, ...]`): the tasks to decode.
    """

    dataset_name = "dense data set"

    def __init__(self, root: str, tasks: tuple[str, ...]):
        self.root = str(root)
        self.tasks = tuple(tasks)

    def path(self, relative: str) -> str:
        full = os.path.join(self.root, relative)
        if not os.path.isfile(full):
            raise DatasetError(
                f"{self.dataset_name} file '{full}' is missing",
                "restore the file, or remove its entry from the split file",
            )
        return full

    def decode_image(self, relative: str) -> np.ndarray:
        raise NotImplementedError

    def decode_task(self, task: str, relative: str, row: Mapping[str, str]) -> np.ndarray:
        raise NotImplementedError

    def decode_row(self, row: Mapping[str, str]) -> dict[str, Any]:
        sample: dict[str, Any] = {"id": row["id"], "image": self.decode_image(row["image_path"])}
        mask = {}
        for task in self.tasks:
            relative = row.get(f"{task}_path") or ""
            sample[task] = self.decode_task(task, relative, row) if relative else None
            mask[task] = bool(relative)
        sample["label_mask"] = mask
        return sample

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        keys = list(batch)
        rows = [dict(zip(keys, values)) for values in zip(*(batch[key] for key in keys))]
        samples = [self.decode_row(row) for row in rows]
        out_keys = ["id", "image", *self.tasks, "label_mask"]
        return {key: [sample[key] for sample in samples] for key in out_keys}


def lazy_dataset(
    ids: Sequence[str],
    image_paths: Sequence[str],
    task_paths: Mapping[str, Sequence[str | None]],
    decoder: DenseDecoder,
    description: str,
):
    """A `datasets.Dataset` of relative paths whose rows `decoder` decodes on access (no pixel is loaded here)."""
    import datasets

    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if list(ids).count(i) > 1})[:5]
        raise DatasetError(
            f"{decoder.dataset_name} split lists the same image id more than once ({duplicates})",
            "remove the duplicate entries from the split file",
        )
    columns = {"id": list(ids), "image_path": list(image_paths)}
    for task, paths in task_paths.items():
        columns[f"{task}_path"] = [path or "" for path in paths]
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    info = datasets.DatasetInfo(description=description, features=features)
    dataset = datasets.Dataset.from_dict(columns, features=features, info=info)
    dataset.set_transform(decoder)
    return dataset


def dataset_ids(dataset) -> list[str]:
    """The `id` column of a data set without decoding any pixel (works on lazily decoded readers too)."""
    if isinstance(dataset, Sequence) and not hasattr(dataset, "column_names"):
        return [str(i) for i in dataset]
    if "id" not in dataset.column_names:
        raise DatasetError("The data set has no 'id' column", "use an effhub dense data set or add an 'id' column")
    return [str(i) for i in dataset.with_format(None)["id"]]


# ------------------------------------------------------------------------------------------------------------------
# seeded train / validation split
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitIds:
    """The image ids of AdaShare's three training subsets, carved from one training set.

    Weights are trained on `train1`, the policy on `train2` (Sun et al., NeurIPS 2020, Sec. 3.3), and `val` serves
    model selection, so that no decision looks at the test split. Saved with a run as JSON.

    Args:
        train1 (`tuple[str, ...]`): ids of the weight-update subset.
        train2 (`tuple[str, ...]`): ids of the policy-update subset (disjoint from `train1`).
        val (`tuple[str, ...]`): ids of the validation subset (disjoint from both).
        val_fraction (`float`): the fraction of the training set carved out for validation.
        seed (`int`): the seed of the permutation.
    """

    train1: tuple[str, ...]
    train2: tuple[str, ...]
    val: tuple[str, ...]
    val_fraction: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "train1": list(self.train1),
            "train2": list(self.train2),
            "val": list(self.val),
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> SplitIds:
        missing = {"train1", "train2", "val", "val_fraction", "seed"} - set(mapping)
        if missing:
            raise DatasetError(f"Split record lacks {sorted(missing)}", "save it with `SplitIds.save`")
        return cls(
            train1=tuple(mapping["train1"]),
            train2=tuple(mapping["train2"]),
            val=tuple(mapping["val"]),
            val_fraction=float(mapping["val_fraction"]),
            seed=int(mapping["seed"]),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON, atomically (temporary file in the same folder, then `os.replace`)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitIds:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Split file '{path}' does not exist", "pass the split.json saved with the run")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except ValueError as error:
            raise DatasetError(f"Split file '{path}' is not valid JSON ({error})", "re-create it") from error

    def select(self, dataset) -> tuple[Any, Any, Any]:
        """Return the (train1, train2, val) subsets of `dataset` (which must hold every id of this split)."""
        position = {identifier: index for index, identifier in enumerate(dataset_ids(dataset))}
        subsets = []
        for name in ("train1", "train2", "val"):
            wanted = getattr(self, name)
            missing = [identifier for identifier in wanted if identifier not in position]
            if missing:
                raise DatasetError(
                    f"The data set lacks {len(missing)} id(s) of the saved '{name}' split (e.g. {missing[:3]})",
                    "select from the same training set the split was made from",
                )
            subsets.append(dataset.select([position[identifier] for identifier in wanted]))
        return subsets[0], subsets[1], subsets[2]


def split_ids(dataset_or_ids, val_fraction: float = 0.1, seed: int = 0) -> SplitIds:
    """Carve a seeded validation set out of a training set and halve the rest into disjoint `train1` / `train2`.

    The ids are sorted before the seeded permutation, so the split depends on the set of ids and the seed only, not on
    the order of the rows. The AdaShare authors do not say how their train1/train2 were cut (their issues #7 and #15);
    a random disjoint halving is the natural reading of the paper.

    Args:
        dataset_or_ids: a data set with an `id` column, or a sequence of ids.
        val_fraction (`float`, defaults to 0.1): share of the ids kept for validation, in [0, 1).
        seed (`int`, defaults to 0): seed of the permutation.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} is outside [0, 1)", "pass a fraction such as 0.1")
    ids = sorted(dataset_ids(dataset_or_ids))
    if len(set(ids)) != len(ids):
        raise DatasetError("The data set's ids are not unique", "give every sample a distinct id")
    if len(ids) < 2 + (val_fraction > 0):
        raise DatasetError(
            f"Cannot split {len(ids)} sample(s) into train1/train2" + ("/val" if val_fraction > 0 else ""),
            "use a training set with at least 3 samples",
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[index] for index in order]
    num_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0:
        num_val = min(max(num_val, 1), len(ids) - 2)
    rest = shuffled[num_val:]
    half = (len(rest) + 1) // 2
    return SplitIds(
        train1=tuple(rest[:half]),
        train2=tuple(rest[half:]),
        val=tuple(shuffled[:num_val]),
        val_fraction=float(val_fraction),
        seed=int(seed),
    )


def split_train(dataset, val_fraction: float = 0.1, seed: int = 0):
    """The (train1, train2, val) subsets of `dataset`: `split_ids(dataset, val_fraction, seed).select(dataset)`."""
    return split_ids(dataset, val_fraction, seed).select(dataset)


# ------------------------------------------------------------------------------------------------------------------
# collation and augmentation
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseAugmentation:
    """Random scale, horizontal flip, then pad-and-crop, as in the AdaShare training loaders.

    The image is resized bilinearly and the labels by nearest neighbour with one factor drawn from
    U[`scale_range`); the flip negates the normals' x component (the x axis points right in the image); padding is
    centred and uses each task's invalid value (the image is padded with 0 after normalisation, i.e. the mean colour).

    Args:
        crop_size (`tuple[int, int]`): (height, width) of the output.
        scale_range (`tuple[float, float]`, defaults to (0.5, 1.5)): the range of the random scale factor.
        flip_probability (`float`, defaults to 0.5): probability of a horizontal flip.
    """

    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip_probability: float = 0.5

    def __post_init__(self):
        size = (self.crop_size,) * 2 if isinstance(self.crop_size, int) else self.crop_size
        crop = tuple(int(value) for value in size)
        if len(crop) != 2 or min(crop) < 1:
            raise ConfigError(
                f"crop_size={self.crop_size} is not a (height, width) pair of positive ints", "pass e.g. (321, 321)"
            )
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ConfigError(f"scale_range={self.scale_range} is not 0 < low <= high", "pass e.g. (0.5, 1.5)")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ConfigError(f"flip_probability={self.flip_probability} is outside [0, 1]", "pass e.g. 0.5")
        object.__setattr__(self, "crop_size", crop)

    def __call__(self, image, labels: dict[str, Any], generator=None):
        """Augment one normalised image [3, H, W] and its labels {task: [C, H, W]} (torch tensors)."""
        import torch
        import torch.nn.functional as F

        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        height, width = image.shape[-2:]
        new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
        if (new_h, new_w) != (height, width):
            image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
            labels = {
                task: F.interpolate(label[None].float(), size=(new_h, new_w), mode="nearest")[0].to(label.dtype)
                for task, label in labels.items()
            }
        if float(torch.rand((), generator=generator)) < self.flip_probability:
            image = image.flip(-1)
            labels = {task: label.flip(-1) for task, label in labels.items()}
            if "normals" in labels:
                normals = labels["normals"].clone()
                normals[0] = -normals[0]
                labels["normals"] = normals
        crop_h, crop_w = self.crop_size
        pad_h, pad_w = max(crop_h - new_h, 0), max(crop_w - new_w, 0)
        if pad_h or pad_w:
            padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
            image = F.pad(image, padding, value=0.0)
            labels = {task: F.pad(label, padding, value=INVALID_VALUES[task]) for task, label in labels.items()}
        full_h, full_w = image.shape[-2:]
        top = int(torch.randint(0, full_h - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, full_w - crop_w + 1, (), generator=generator))
        image = image[:, top : top + crop_h, left : left + crop_w]
        labels = {task: label[:, top : top + crop_h, left : left + crop_w] for task, label in labels.items()}
        return image, labels


@dataclass
class DenseCollator:
    """Turn dense samples into a batch of tensors for a multi-task model.

    Returns `pixel_values` float [B, 3, H, W] (`(image * rescale_factor - mean) / std`, channels in `channel_order`),
    `labels` `{task: tensor}` (segmentation long [B, H, W]; depth, keypoints, edges float [B, 1, H, W]; normals float
    [B, 3, H, W]), `label_mask` bool [B, T] in the order of `tasks`, and `ids`.

    Args:
        tasks (`Sequence[str]`): the tasks to batch, in the order of `label_mask`'s columns.
        image_mean (`Sequence[float]`, defaults to ImageNet's): per-channel mean after rescaling.
        image_std (`Sequence[float]`, defaults to ImageNet's): per-channel std after rescaling.
        rescale_factor (`float`, defaults to 1/255): applied to the uint8 image first.
        channel_order (`str`, defaults to `"RGB"`): `"BGR"` reverses the channels (checkpoints converted from the
            AdaShare authors; see :meth:`adashare_caffe`).
        augmentation (`DenseAugmentation`, *optional*): random scale/flip/crop for training.
        generator (`torch.Generator`, *optional*): the source of the augmentation's randomness (the global torch
            generator otherwise, which `DataLoader` seeds per worker).
    """

    tasks: Sequence[str]
    image_mean: Sequence[float] = IMAGENET_MEAN
    image_std: Sequence[float] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    channel_order: str = "RGB"
    augmentation: DenseAugmentation | None = None
    generator: Any = field(default=None, repr=False)

    def __post_init__(self):
        self.tasks = check_tasks(self.tasks, DENSE_TASKS, "DenseCollator")
        if self.channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order='{self.channel_order}' is neither 'RGB' nor 'BGR'", "pass 'RGB' or 'BGR'")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ConfigError(
                f"image_mean={self.image_mean} / image_std={self.image_std} are not 3 values (std > 0)",
                "pass one mean and one positive std per channel",
            )

    @classmethod
    def adashare_caffe(cls, tasks: Sequence[str], **kwargs) -> DenseCollator:
        """The AdaShare authors' input convention: BGR, 0-255 scale, Caffe mean subtracted, no std."""
        caffe = {"image_mean": CAFFE_BGR_MEAN, "image_std": (1.0, 1.0, 1.0), "rescale_factor": 1.0}
        return cls(tasks, channel_order="BGR", **caffe, **kwargs)

    def _label_tensor(self, task: str, value, height: int, width: int):
        import torch

        channels = LABEL_CHANNELS[task]
        if value is None:
            dtype = torch.uint8 if task == "segmentation" else torch.float32
            return torch.full((channels, height, width), INVALID_VALUES[task], dtype=dtype)
        array = np.asarray(value)
        if array.shape[:2] != (height, width):
            raise DatasetError(
                f"Label '{task}' has shape {array.shape}, the image {(height, width)}",
                "give labels the image's height and width",
            )
        tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))  # copies read-only arrays only
        return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        mean = torch.tensor(self.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.image_std, dtype=torch.float32)[:, None, None]
        images, labels, masks = [], {task: [] for task in self.tasks}, []
        for sample in samples:
            image = np.asarray(sample["image"])
            if image.ndim != 3 or image.shape[2] != 3:
                raise DatasetError(
                    f"Image of sample '{sample.get('id')}' has shape {image.shape}", "give (H, W, 3) RGB images"
                )
            height, width = image.shape[:2]
            pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float()
            if self.channel_order == "BGR":
                pixels = pixels.flip(0)
            pixels = (pixels * self.rescale_factor - mean) / std
            sample_mask = sample.get("label_mask") or {}
            row_mask, sample_labels = [], {}
            for task in self.tasks:
                value = sample.get(task)
                present = value is not None and bool(sample_mask.get(task, True))
                row_mask.append(present)
                sample_labels[task] = self._label_tensor(task, value if present else None, height, width)
            if self.augmentation is not None:
                pixels, sample_labels = self.augmentation(pixels, sample_labels, generator=self.generator)
            images.append(pixels)
            masks.append(row_mask)
            for task in self.tasks:
                labels[task].append(sample_labels[task])
        sizes = {tuple(image.shape[-2:]) for image in images}
        if len(sizes) > 1:
            raise DatasetError(
                f"Images in the batch have different sizes {sorted(sizes)}",
                "pass `augmentation=DenseAugmentation(crop_size=...)` or resize the data to one size",
            )
        batch_labels = {}
        for task in self.tasks:
            stacked = torch.stack(labels[task])
            batch_labels[task] = stacked[:, 0].long() if task == "segmentation" else stacked.float()
        return {
            "pixel_values": torch.stack(images),
            "labels": batch_labels,
            "label_mask": torch.tensor(masks, dtype=torch.bool).reshape(len(samples), len(self.tasks)),
            "ids": [str(sample.get("id")) for sample in samples],
        }


# ------------------------------------------------------------------------------------------------------------------
# one entry point for every dense data set
# ------------------------------------------------------------------------------------------------------------------

DENSE_DATASETS: dict[str, str] = {
    "scenes": "effhub.data.scenes:load_scenes",
    "nyuv2": "effhub.data.nyuv2:load_nyuv2",
    "cityscapes": "effhub.data.cityscapes:load_cityscapes",
    "taskonomy": "effhub.data.taskonomy:load_taskonomy",
}


def load_dense_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, **kwargs):
    """Load a dense multi-task data set by name (`scenes`, `nyuv2`, `cityscapes`, `taskonomy`).

    Args:
        name (`str`): the data set.
        split (`str`, defaults to `"train"`): the split (a key of the authors' split JSON for real data).
        root (`str`, *optional*): the data folder; required by every real data set, ignored by `scenes`.
        kwargs: passed to the reader (e.g. `tasks`, `num_classes`, `config`).
    """
    import importlib

    if name not in DENSE_DATASETS:
        known = sorted(DENSE_DATASETS)
        raise ConfigError(f"Unknown dense data set '{name}' (known: {known})", f"pass one of {known}")
    module_name, function_name = DENSE_DATASETS[name].split(":")
    loader: Callable = getattr(importlib.import_module(module_name), function_name)
    if name == "scenes":
        return loader(split=split, **kwargs)
    if root is None:
        raise DatasetError(f"Data set '{name}' needs its folder", "pass `root` (the CLI's --data-dir)")
    return loader(root, split=split, **kwargs)


__all__ = [
    "IGNORE_INDEX",
    "DENSE_TASKS",
    "INVALID_VALUES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CAFFE_BGR_MEAN",
    "DenseDecoder",
    "SplitIds",
    "split_ids",
    "split_train",
    "dataset_ids",
    "DenseAugmentation",
    "DenseCollator",
    "DENSE_DATASETS",
    "load_dense_dataset",
]
