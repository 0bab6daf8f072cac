"""Tiny-Taskonomy as the AdaShare authors read it: segmentation, normals, depth, 2-D keypoints and 2-D edges.

Format facts, read in sunxm2357/AdaShare `dataloaders/taskonomy_dataloader.py` (class `Taskonomy`), `envs/base_env.py`
and `yamls/adashare/taskonomy_5task.yml`, with StanfordVL/taskonomy `data/README.md` for the file encodings and
sunxm2357/AdaShare#7 for the split file:

- Layout: `<root>/taskonomy.json` (keys `train`, `train1`, `train2`, `test`, `test_small`; each entry a list of
  `[rgb, segment_semantic, normal, depth_zbuffer, keypoints2d, edge_texture]` paths relative to `<root>`) and
  `<root>/semseg_prior_factor.npy` (float64, 17 class weights, from the taskonomy taskbank). Taskonomy names files
  `point_<P>_view_<V>_domain_<domain>.png`.
- `rgb`: RGB PNG 512x512. All inputs and labels are resized by nearest neighbour to `image_size` (256 upstream).
- `segment_semantic`: 8-bit PNG; 0 = uncertain, 1 = background, 2..17 = 16 classes. Upstream maps it to 0..16 and
  gives uncertain pixels weight 0; here uncertain pixels become 255 (ignore) and the rest `value - 1`, which is the
  same loss. :func:`load_taskonomy_class_weights` returns the prior the authors weight the classes with.
- `normal`: RGB PNG, 127-centred: decoded as x / 255 * 2 - 1 per channel, renormalised, invalid where depth is.
- `depth_zbuffer`: 16-bit PNG in units of 1/512 m; raw >= 64500 is invalid (0 here). `depth_encoding="metres"` gives
  raw / 512; `"log"` gives the authors' log(1 + raw) / log(2**16).
- `keypoints2d`, `edge_texture`: 16-bit PNGs; raw / 2**16 clipped to [0, 0.005] (keypoints) or [0, 0.08] (edges),
  then rescaled to [-1, 1], as upstream.

Unlike the upstream loader, which prints an error and silently serves item 0 instead, a missing or unreadable file
raises a `DatasetError` naming it. The full data set is large: pass `verify_files=False` to skip the up-front check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DatasetError
from .reading import (
    DenseDecoder,
    check_files_exist,
    check_root,
    lazy_dataset,
    nearest_resize,
    read_npy,
    read_split_file,
    unit_normals,
)
from .schema import IGNORE_INDEX, check_tasks

TASKONOMY_TASKS = {"segmentation": 17, "normals": 3, "depth": 1, "keypoints": 1, "edges": 1}
"""Task name -> output channels of AdaShare's Taskonomy 5-task setting."""
TASKONOMY_SPLIT_FILE = "taskonomy.json"
TASKONOMY_PRIOR_FILE = "semseg_prior_factor.npy"
TASKONOMY_DEPTH_INVALID = 64500
TASKONOMY_DEPTH_SCALE = 512.0
_CLIP = {"keypoints": 0.005, "edges": 0.08}
# order of the paths in each split entry of the authors' JSON
_ENTRY_ORDER = ("image", "segmentation", "normals", "depth", "keypoints", "edges")
_LAYOUT = (
    f"<root>/{TASKONOMY_SPLIT_FILE} naming, per view, [rgb, segment_semantic, normal, depth_zbuffer, keypoints2d, "
    f"edge_texture] PNG paths relative to <root>, and <root>/{TASKONOMY_PRIOR_FILE} (taskonomy taskbank); see "
    "StanfordVL/taskonomy data/README.md and sunxm2357/AdaShare issue #7"
)


def load_taskonomy_class_weights(root: str | os.PathLike) -> np.ndarray:
    """The 17 segmentation class weights (`semseg_prior_factor.npy`) the AdaShare authors apply, as float64."""
    path = Path(root) / TASKONOMY_PRIOR_FILE
    if not path.is_file():
        raise DatasetError(
            f"Taskonomy class-weight file '{path}' is missing",
            "copy semseg_prior_factor.npy from StanfordVL/taskonomy taskbank/lib/data/ into the data folder",
        )
    weights = read_npy(path, "Taskonomy").astype(np.float64).reshape(-1)
    if weights.shape != (TASKONOMY_TASKS["segmentation"],):
        raise DatasetError(f"Taskonomy class weights '{path}' have shape {weights.shape}", "use the 17-entry prior")
    return weights


class TaskonomyDecoder(DenseDecoder):
    """Decode one Taskonomy row into an effhub dense sample.

    Args:
        root (`str`): the data folder.
        tasks (`tuple[str, ...]`): the tasks to decode.
        image_size (`int`, *optional*): side of the square output (nearest-neighbour resize); `None` keeps 512.
        depth_encoding (`str`): `metres` or `log` (the authors' encoding).
    """

    dataset_name = "Taskonomy"

    def __init__(self, root: str, tasks: tuple[str, ...], image_size: int | None, depth_encoding: str):
        super().__init__(root, tasks)
        self.image_size = image_size
        self.depth_encoding = depth_encoding

    def _read(self, relative: str) -> np.ndarray:
        array = self.read_image(relative)
        if self.image_size is not None:
            array = nearest_resize(array, self.image_size, self.image_size)
        return array

    def _raw_depth(self, relative: str) -> np.ndarray:
        raw = self._read(relative)
        if raw.ndim == 3:
            raw = raw[..., 0]
        return raw.astype(np.float64)

    def decode_image(self, relative: str) -> np.ndarray:
        array = self._read(relative)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        return np.ascontiguousarray(array[..., :3], dtype=np.uint8)

    def decode_task(self, task: str, relative: str, row: Mapping[str, str]) -> np.ndarray:
        if task == "segmentation":
            raw = self._read(relative)
            if raw.ndim == 3:
                raw = raw[..., 0]
            raw = raw.astype(np.int64)
            if raw.max(initial=0) > TASKONOMY_TASKS["segmentation"] or raw.min(initial=0) < 0:
                raise DatasetError(
                    f"Taskonomy label '{os.path.join(self.root, relative)}' holds values outside 0..17",
                    "use segment_semantic PNGs (0 = uncertain, 1 = background, 2..17 = classes)",
                )
            return np.where(raw == 0, IGNORE_INDEX, raw - 1).astype(np.uint8)
        if task == "depth":
            raw = self._raw_depth(relative)
            valid = raw < TASKONOMY_DEPTH_INVALID
            if self.depth_encoding == "log":
                depth = np.log1p(raw) / math.log(2.0**16)
            else:
                depth = raw / TASKONOMY_DEPTH_SCALE
            return np.where(valid, depth, 0.0).astype(np.float32)
        if task == "normals":
            encoded = self._read(relative)
            if encoded.ndim != 3:
                raise DatasetError(
                    f"Taskonomy normals '{os.path.join(self.root, relative)}' are not an RGB image",
                    "use the normal PNGs",
                )
            valid = None
            if row.get("depth_mask_path"):
                valid = self._raw_depth(row["depth_mask_path"]) < TASKONOMY_DEPTH_INVALID
            return unit_normals(encoded[..., :3].astype(np.float32) / 255.0 * 2.0 - 1.0, valid)
        raw = self._read(relative)
        if raw.ndim == 3:
            raw = raw[..., 0]
        clipped = np.clip(raw.astype(np.float64) / 2.0**16, 0.0, _CLIP[task]) / _CLIP[task]
        return (clipped * 2.0 - 1.0).astype(np.float32)


def load_taskonomy(
    root: str | os.PathLike,
    split: str = "train",
    tasks: Iterable[str] = tuple(TASKONOMY_TASKS),
    image_size: int | None = 256,
    depth_encoding: str = "metres",
    verify_files: bool = True,
):
    """Read a split of Tiny-Taskonomy (AdaShare's split file) as a lazily decoded `datasets.Dataset`.

    Rows follow the effhub dense schema (`effhub.data.dense`): `id` (the rgb path without its extension), `image`,
    one key per task, `label_mask`. Normals are invalid wherever depth is (the authors' normal mask), so the depth file
    is read for the normals even when depth is not a requested task.

    Args:
        root (`str`): the folder holding `taskonomy.json` and `semseg_prior_factor.npy`.
        split (`str`, defaults to `"train"`): a key of the JSON (`train`, `train1`, `train2`, `test`, `test_small`).
        tasks (`Iterable[str]`, defaults to all five): any of `segmentation`, `normals`, `depth`, `keypoints`, `edges`.
        image_size (`int`, *optional*, defaults to 256): side after the nearest-neighbour resize; `None` keeps 512.
        depth_encoding (`str`, defaults to `"metres"`): `metres` (raw / 512) or `log` (the authors' log(1 + raw) /
            log(2**16), what their losses and metrics saw).
        verify_files (`bool`, defaults to `True`): check at once that every listed file exists (slow on the full set).
    """
    if depth_encoding not in ("metres", "log"):
        raise ConfigError(f"depth_encoding='{depth_encoding}' is unknown", "pass 'metres' or 'log'")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size={image_size!r} is not a positive int", "pass e.g. 256, or None to keep 512")
    tasks = check_tasks(tasks, tuple(TASKONOMY_TASKS), "Taskonomy")
    root = check_root(root, "Taskonomy", _LAYOUT)
    how_to = f"lay the data out as {_LAYOUT}"
    entries = read_split_file(root / TASKONOMY_SPLIT_FILE, split, len(_ENTRY_ORDER), "Taskonomy", how_to)
    if "segmentation" in tasks:
        load_taskonomy_class_weights(root)  # fail now, not in the first training step
    columns = {name: [entry[position] for entry in entries] for position, name in enumerate(_ENTRY_ORDER)}
    task_paths = {task: columns[task] for task in tasks}
    if "normals" in tasks:
        task_paths["depth_mask"] = columns["depth"]
    if verify_files:
        check_files_exist(root, columns["image"], "Taskonomy", how_to)
        for paths in task_paths.values():
            check_files_exist(root, paths, "Taskonomy", how_to)
    ids = [os.path.splitext(path)[0] for path in columns["image"]]
    return lazy_dataset(
        ids,
        columns["image"],
        task_paths,
        TaskonomyDecoder(str(root), tasks, image_size, depth_encoding),
        description=f"Tiny-Taskonomy (AdaShare split), split {split}, tasks {list(tasks)}, depth in {depth_encoding}",
    )


__all__ = [
    "TASKONOMY_TASKS",
    "TASKONOMY_SPLIT_FILE",
    "TASKONOMY_PRIOR_FILE",
    "load_taskonomy_class_weights",
    "TaskonomyDecoder",
    "load_taskonomy",
]
