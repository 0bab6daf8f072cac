"""What the dense readers of the real formats share: folder and split-file checks, resizing, normals, lazy decoding."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetError

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
    """Read one split of a split JSON in the authors' format (`{split: [[relative path, ...], ...]}`)."""
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


def read_image(path: str | os.PathLike, dataset_name: str, convert: str | None = None,
               keep: tuple[str, ...] = ()) -> np.ndarray:
    """Decode an image file into an array, or raise a `DatasetError` naming the file when it is not a readable image.

    Args:
        path (`str`): the image file.
        dataset_name (`str`): named in the error.
        convert (`str`, *optional*): a PIL mode to convert to (e.g. `"RGB"`); `None` keeps the file's mode.
        keep (`tuple[str, ...]`): modes left as they are instead of converted (e.g. `("L", "P")` for labels).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if convert is not None and image.mode not in keep:
                image = image.convert(convert)
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise DatasetError(f"{dataset_name} file '{path}' is not a readable image ({error})",
                           "re-download or re-extract it (or remove its entry from the split file)") from error


def read_npy(path: str | os.PathLike, dataset_name: str) -> np.ndarray:
    """Load a `.npy` array (no pickles), or raise a `DatasetError` naming the file when it is not a readable array."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{dataset_name} file '{path}' is not a readable .npy array ({error})",
                           "re-download or re-extract it (or remove its entry from the split file)") from error


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

    def read_image(self, relative: str, convert: str | None = None, keep: tuple[str, ...] = ()) -> np.ndarray:
        """The decoded image at `relative` (see :func:`read_image`); a missing or garbage file is a `DatasetError`."""
        return read_image(self.path(relative), self.dataset_name, convert, keep)

    def read_npy(self, relative: str) -> np.ndarray:
        """The array at `relative` (see :func:`read_npy`); a missing or garbage file is a `DatasetError`."""
        return read_npy(self.path(relative), self.dataset_name)

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


__all__ = ["check_root", "read_split_file", "check_files_exist", "read_image", "read_npy", "nearest_resize",
           "unit_normals", "DenseDecoder", "lazy_dataset"]
