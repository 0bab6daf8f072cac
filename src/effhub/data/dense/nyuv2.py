"""NYU-v2 as formatted by the AdaShare authors: 40-class segmentation, surface normals and depth.

Format facts, read in sunxm2357/AdaShare `dataloaders/nyu_v2_dataloader.py` (classes `NYU_v2` and `NYU_v2_Customize`)
and the samples the repository ships (`nyu_v2_samples/`):

- Layout: `<root>/nyu_v2_3task.json` and the files it names, relative to `<root>`; the shipped samples use
  `img/NNNN.png`, `seg/NNNN.png`, `normal_mask/NNNN.png` and `depth/NNNN.npy` (NNNN a 4-digit id).
- The JSON maps split names (`train`, `train1`, `train2`, `test`) to lists of `[img, seg, normal, depth]` paths. When
  the JSON is absent, the authors' `NYU_v2_Customize` builds a `test` split from every `img/*.png` whose three label
  files exist; this reader does the same (without writing into the data folder).
- `img`: RGB PNG, 8 bit, 480x640. `seg`: single-channel 8-bit PNG, class ids 0..39, 255 = unlabeled.
- `normal_mask`: RGB PNG, a unit normal stored as (n + 1) / 2 * 255 per channel; (255, 255, 255) marks an invalid
  pixel. The authors keep the raw 0-255 BGR triplet; this reader decodes the PNG's R, G, B channels to x, y, z in
  [-1, 1], renormalises them, and writes (0, 0, 0) on invalid pixels. (Their normal metric normalises the raw triplet,
  so their angle numbers are not those of decoded normals; the axis convention of the archive is undocumented.)
- `depth`: float32 `.npy` (480, 640) in metres; the authors' losses count pixels with depth > 3e-5, so smaller values
  become 0 (invalid) here.

The archive itself is a Google Drive link in the AdaShare README.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ...errors import DatasetError
from .reading import DenseDecoder, check_files_exist, check_root, lazy_dataset, read_split_file, unit_normals
from .schema import IGNORE_INDEX, check_tasks

NYUV2_TASKS = {"segmentation": 40, "normals": 3, "depth": 1}
"""Task name -> output channels of AdaShare-formatted NYU-v2."""
NYUV2_SPLIT_FILE = "nyu_v2_3task.json"
NYUV2_DEPTH_THRESHOLD = 3e-5
# order of the paths in each split entry of the authors' JSON
_ENTRY_ORDER = ("image", "segmentation", "normals", "depth")
_FOLDERS = {"image": "img", "segmentation": "seg", "normals": "normal_mask", "depth": "depth"}
_LAYOUT = (
    f"<root>/{NYUV2_SPLIT_FILE}, <root>/img/NNNN.png, <root>/seg/NNNN.png, <root>/normal_mask/NNNN.png, "
    "<root>/depth/NNNN.npy (the AdaShare-formatted NYU-v2 linked from the AdaShare README)"
)


class NYUv2Decoder(DenseDecoder):
    """Decode one AdaShare-formatted NYU-v2 row into an effhub dense sample."""

    dataset_name = "NYU-v2"

    def decode_image(self, relative: str) -> np.ndarray:
        return np.asarray(self.read_image(relative, "RGB"), dtype=np.uint8)

    def decode_task(self, task: str, relative: str, row: Mapping[str, str]) -> np.ndarray:
        path = self.path(relative)
        if task == "segmentation":
            labels = np.asarray(self.read_image(relative, "L", keep=("L", "P")), dtype=np.uint8)
            bad = (labels >= NYUV2_TASKS["segmentation"]) & (labels != IGNORE_INDEX)
            if bad.any():
                raise DatasetError(
                    f"NYU-v2 label '{path}' holds class id(s) {sorted(np.unique(labels[bad]).tolist())[:5]} outside "
                    f"0..39 and 255",
                    "use the AdaShare-formatted 40-class labels",
                )
            return labels
        if task == "normals":
            encoded = np.asarray(self.read_image(relative, "RGB"), dtype=np.uint8)
            invalid = (encoded == 255).all(axis=-1)
            return unit_normals(encoded.astype(np.float32) / 255.0 * 2.0 - 1.0, ~invalid)
        depth = self.read_npy(relative)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise DatasetError(f"NYU-v2 depth '{path}' has shape {depth.shape}", "store depth as (H, W) metres")
        depth = np.ascontiguousarray(depth, dtype=np.float32)
        depth[~(depth > NYUV2_DEPTH_THRESHOLD)] = 0.0  # also zeroes NaN
        return depth


def _entries_from_folders(root: Path) -> list[list[str]]:
    """The `test` split `NYU_v2_Customize` builds when the JSON is missing: every image with all three labels."""
    entries = []
    for image in sorted((root / "img").glob("*.png")):
        stem = image.stem
        entry = [f"img/{image.name}", f"seg/{image.name}", f"normal_mask/{image.name}", f"depth/{stem}.npy"]
        if all((root / relative).is_file() for relative in entry):
            entries.append(entry)
    return entries


def load_nyuv2(
    root: str | os.PathLike,
    split: str = "train",
    tasks: Iterable[str] = tuple(NYUV2_TASKS),
    verify_files: bool = True,
):
    """Read a split of the AdaShare-formatted NYU-v2 as a lazily decoded `datasets.Dataset`.

    Rows follow the effhub dense schema (`effhub.data.dense`): `id` (the image file's stem), `image`, one key per
    task, `label_mask`. Pixels are decoded only when a row is accessed.

    Args:
        root (`str`): the folder holding `nyu_v2_3task.json` and the image/label folders.
        split (`str`, defaults to `"train"`): a key of the JSON (`train`, `train1`, `train2`, `test`).
        tasks (`Iterable[str]`, defaults to all three): any of `segmentation`, `normals`, `depth` (the 2-task setting
            is segmentation + normals).
        verify_files (`bool`, defaults to `True`): check at once that every listed file exists.
    """
    tasks = check_tasks(tasks, tuple(NYUV2_TASKS), "NYU-v2")
    root = check_root(root, "NYU-v2", _LAYOUT)
    json_path = root / NYUV2_SPLIT_FILE
    how_to = f"lay the data out as {_LAYOUT}"
    if json_path.is_file() or split != "test":
        if not json_path.is_file():
            raise DatasetError(
                f"NYU-v2 split file '{json_path}' is missing (without it only the 'test' split can be built from the "
                "img/, seg/, normal_mask/ and depth/ folders)",
                f"put the authors' {NYUV2_SPLIT_FILE} in the folder, or ask for split='test'",
            )
        entries = read_split_file(json_path, split, len(_ENTRY_ORDER), "NYU-v2", how_to)
    else:
        entries = _entries_from_folders(root)
        if not entries:
            raise DatasetError(
                f"NYU-v2 folder '{root}' has neither {NYUV2_SPLIT_FILE} nor complete img/seg/normal_mask/depth files",
                how_to,
            )
    columns = {name: [entry[position] for entry in entries] for position, name in enumerate(_ENTRY_ORDER)}
    if verify_files:
        check_files_exist(root, columns["image"], "NYU-v2", how_to)
        for task in tasks:
            check_files_exist(root, columns[task], "NYU-v2", how_to)
    stems = [Path(path).stem for path in columns["image"]]
    ids = stems if len(set(stems)) == len(stems) else [os.path.splitext(path)[0] for path in columns["image"]]
    return lazy_dataset(
        ids,
        columns["image"],
        {task: columns[task] for task in tasks},
        NYUv2Decoder(str(root), tasks),
        description=f"NYU-v2 (AdaShare format), split {split}, tasks {list(tasks)}",
    )


__all__ = ["NYUV2_TASKS", "NYUV2_SPLIT_FILE", "NYUv2Decoder", "load_nyuv2"]
