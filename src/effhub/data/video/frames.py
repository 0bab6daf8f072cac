"""Readers of the frame-folder + list-file video layout of ActivityNet-v1.3, FCVID, Mini-Kinetics and Mini-Sports1M,
as the VideoIQ authors' loaders read it (`sunxm2357/VideoIQ:utils/dataset_config.py` for the per-data-set table,
`utils/video_dataset.py` for the list-file parsing and frame sampling; the format is documented in
`IBM/action-recognition-pytorch:README.md`).

Format facts followed here:

- Every list file sits in the data folder; one line per video: `<video_dir>SEP<start_frame>SEP<end_frame>SEP<label>
  [SEP<label>...]`, split on the literal separator after stripping the line (space for ActivityNet and FCVID, `;` for
  Mini-Kinetics and Mini-Sports1M). `video_dir` is relative to the data folder; frame numbers are 1-based and
  inclusive (num_frames = end - start + 1); labels are 0-based class ids written as numbers (parsed as float, used as
  int). A line with more than 4 fields is multi-label (the first label is kept as the clip's label here, and all of
  them in `labels`). Test lists may omit the label (3 fields): the label is then -1.
- Frames are `<data folder>/<video_dir>/<template>`, `image_{:05d}.jpg` (ActivityNet, FCVID) or `{:05d}.jpg`
  (Mini-Kinetics, Mini-Sports1M); a sampled 1-based index k reads file number min(k + start - 1, num_frames).
- Videos with fewer than `filter_video` frames are dropped outside the test split (30 for Mini-Kinetics).
- `categories.txt` (ActivityNet, FCVID, Mini-Sports1M) holds one class name per line, blank lines skipped, the line
  order giving the class id.
- Evaluation sampling (TSN, one clip): with M frames and T wanted, tick = M / T and frame x is int(tick / 2 + tick x)
  + 1. (For M <= T the authors draw a seeded random choice; here the same centre-of-segment rule repeats frames, so
  that evaluation is deterministic.) Frames are resized (shorter side to size / 0.875) and centre-cropped to `size`.

The data set is a `datasets.Dataset` of the parsed list (`video`, `start_frame`, `num_frames`, `label`, `labels`) whose
rows decode their frames on access (`frames`: uint8, T x size x size x 3), so nothing is decoded ahead of use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DatasetError


@dataclass(frozen=True)
class FrameFolderFormat:
    """One data set's list files, separator, frame template and class count (the authors' dataset config)."""

    name: str
    num_classes: int
    lists: dict
    separator: str
    template: str
    filter_video: int = 0
    categories: str | None = "categories.txt"


FORMATS = {
    "activitynet": FrameFolderFormat("activitynet", 200, {"train": "train.txt", "val": "val.txt", "test": "val.txt"},
                                     " ", "image_{:05d}.jpg"),
    "fcvid": FrameFolderFormat("fcvid", 239, {"train": "train.txt", "val": "val.txt", "test": "val.txt"}, " ",
                               "image_{:05d}.jpg"),
    "mini-kinetics": FrameFolderFormat("mini-kinetics", 200, {"train": "mini_train.txt", "val": "mini_val.txt",
                                                              "test": "mini_test.txt"}, ";", "{:05d}.jpg", 30, None),
    "mini-sports1m": FrameFolderFormat("mini-sports1m", 487, {"train": "train.txt", "val": "val.txt",
                                                              "test": "val.txt"}, ";", "{:05d}.jpg"),
}


def read_categories(path: str | os.PathLike) -> list[str]:
    """Class names of a `categories.txt` (blank lines skipped; line order = class id)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"class list '{path}' does not exist", "put categories.txt (one class per line) in the "
                                                                   "data folder")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def parse_list_file(path: str | os.PathLike, separator: str, num_classes: int, allow_unlabelled: bool = False):
    """Parse a list file into rows `{video, start_frame, num_frames, label, labels}` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"list file '{path}' does not exist", "pass the data folder that holds the list files")
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(separator)
        where = f"{path.name}:{number}"
        if len(fields) < 3 or (len(fields) == 3 and not allow_unlabelled):
            raise DatasetError(f"{where}: expected <video>{separator!r}<start>{separator!r}<end>{separator!r}<label>, "
                               f"got {line!r}", f"fix the line (fields are separated by {separator!r})")
        try:
            start, end = int(fields[1]), int(fields[2])
            labels = [int(float(value)) for value in fields[3:]]
        except ValueError:
            raise DatasetError(f"{where}: frame numbers and labels must be numbers, got {line!r}",
                               "write <start> <end> as integers and labels as class ids") from None
        if end < start or start < 1:
            raise DatasetError(f"{where}: video '{fields[0]}' is empty (frames {start}..{end})",
                               "remove the line or give 1-based frame numbers with end >= start")
        unknown = [label for label in labels if not 0 <= label < num_classes]
        if unknown:
            raise DatasetError(f"{where}: class id(s) {unknown} outside the {num_classes} classes",
                               "use 0-based class ids below the data set's class count")
        rows.append({"video": fields[0], "start_frame": start, "num_frames": end - start + 1,
                     "label": labels[0] if labels else -1, "labels": labels})
    if not rows:
        raise DatasetError(f"list file '{path}' lists no video", "add one line per video")
    return rows


def sample_indices(num_frames: int, wanted: int) -> list[int]:
    """1-based frame indices of TSN's single-clip evaluation sampling (see the module docstring)."""
    total = max(1, num_frames)
    tick = total / wanted
    return [min(int(tick / 2 + tick * index), total - 1) + 1 for index in range(wanted)]


def load_frame(path: Path, size: int) -> np.ndarray:
    """One frame as uint8 `(size, size, 3)`: RGB, shorter side resized to size / 0.875, centre crop."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetError(f"frame '{path}' is missing", "extract every frame the list file names (1-based, "
                                                         "inclusive), or fix the frame range in the list")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = int(size / 0.875 + 0.5) / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), Image.BILINEAR)
            left, top = (width - size) // 2, (height - size) // 2
            return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"frame '{path}' cannot be read as an image ({error})",
                           "re-extract the frame as a JPEG") from None


def load_frame_folder_dataset(root: str | os.PathLike, format_name: str, split: str = "train", num_frames: int = 16,
                              image_size: int = 224, filter_video: int | None = None):
    """The videos of `split` as a `datasets.Dataset` whose rows decode their frames on access (`frames`, `label`).

    Args:
        root (`str` or `Path`): the data folder (list files, `categories.txt`, frame folders).
        format_name (`str`): one of :data:`FORMATS`.
        split (`str`): `train`, `val` or `test`.
        num_frames (`int`): frames sampled per video (T).
        image_size (`int`): side of the square frames.
        filter_video (`int`, *optional*): drop videos shorter than this outside `test` (the data set's default).
    """
    import datasets

    if format_name not in FORMATS:
        raise ConfigError(f"unknown frame-folder data set '{format_name}'", f"use one of {sorted(FORMATS)}")
    spec = FORMATS[format_name]
    if split not in spec.lists:
        raise ConfigError(f"unknown split '{split}' of {format_name}", f"use one of {sorted(spec.lists)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder '{root}' does not exist", "pass the folder holding the list files "
                                                                   "(--data-dir)")
    names = read_categories(root / spec.categories) if spec.categories else [str(i) for i in range(spec.num_classes)]
    rows = parse_list_file(root / spec.lists[split], spec.separator, len(names), allow_unlabelled=split == "test")
    minimum = spec.filter_video if filter_video is None else filter_video
    if split != "test":
        rows = [row for row in rows if row["num_frames"] >= minimum]
        if not rows:
            raise DatasetError(f"every video of {spec.lists[split]} is shorter than filter_video={minimum} frames",
                               "lower filter_video or check the frame ranges")
    features = datasets.Features({"video": datasets.Value("string"), "start_frame": datasets.Value("int64"),
                                  "num_frames": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(names=names) if rows[0]["label"] >= 0 else
                                  datasets.Value("int64"),
                                  "labels": datasets.Sequence(datasets.Value("int64"))})
    table = {key: [row[key] for row in rows] for key in features}
    dataset = datasets.Dataset.from_dict(table, features=features)

    def decode(batch):
        clips = []
        for video, start, count in zip(batch["video"], batch["start_frame"], batch["num_frames"]):
            folder = root / video
            if not folder.is_dir():
                raise DatasetError(f"frame folder '{folder}' of video '{video}' does not exist",
                                   "extract the video's frames into <data folder>/<video_dir>/")
            files = [min(k + start - 1, count) for k in sample_indices(count, num_frames)]
            clips.append(np.stack([load_frame(folder / spec.template.format(k), image_size) for k in files]))
        return {"frames": clips, "label": list(batch["label"]), "labels": list(batch["labels"])}

    dataset.set_transform(decode)
    return dataset


def _loader(format_name: str):
    def load(root, split: str = "train", **kwargs):
        return load_frame_folder_dataset(root, format_name, split, **kwargs)

    load.__doc__ = f"The {format_name} frame folders of `root` (see `load_frame_folder_dataset`)."
    return load


load_activitynet = _loader("activitynet")
load_fcvid = _loader("fcvid")
load_mini_kinetics = _loader("mini-kinetics")
load_mini_sports1m = _loader("mini-sports1m")

__all__ = [
    "FORMATS",
    "FrameFolderFormat",
    "load_activitynet",
    "load_fcvid",
    "load_frame",
    "load_frame_folder_dataset",
    "load_mini_kinetics",
    "load_mini_sports1m",
    "parse_list_file",
    "read_categories",
    "sample_indices",
]
