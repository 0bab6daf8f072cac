"""Data sets: readers of the real on-disk formats and generators of the embedded offline data, by kind.

`effhub.data.dense` holds the dense multi-task data (one sample schema, collator, augmentation, the generated scenes
and the NYU-v2, CityScapes and Taskonomy readers), `effhub.data.captions` the generated image-caption world and
`effhub.data.classification` the generated classification images, `effhub.data.video` the generated clips
and the frame-folder video readers. :data:`DATASETS` names every data set that
:func:`load_dataset` reads by name.

Kept light: importing `effhub.data` loads nothing heavy; each name below is imported from its module on first use.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from ..errors import ConfigError, DatasetError
from ..lazy import lazy_attributes

_LAZY = {
    # dense multi-task data
    "IGNORE_INDEX": "dense.schema",
    "DENSE_TASKS": "dense.schema",
    "dataset_ids": "dense.schema",
    "DenseAugmentation": "dense.augmentation",
    "DenseCollator": "dense.collator",
    "SceneConfig": "dense.scenes",
    "SCENES_V1": "dense.scenes",
    "load_scenes": "dense.scenes",
    "render_scene": "dense.scenes",
    "load_nyuv2": "dense.nyuv2",
    "load_cityscapes": "dense.cityscapes",
    "load_taskonomy": "dense.taskonomy",
    "load_taskonomy_class_weights": "dense.taskonomy",
    "load_dense_dataset": "dense",
    # classification images
    "BlobsConfig": "classification.blobs",
    "build_blobs_dataset": "classification.blobs",
    # video clips
    "ClipConfig": "video.clips",
    "CLIPS_V1": "video.clips",
    "CLIPS_V2": "video.clips",
    "CLIPS_V3": "video.clips",
    "load_clips": "video.clips",
    "load_frame_folder_dataset": "video.frames",
    "read_video_file": "video.decode",
}


@dataclass(frozen=True)
class DatasetEntry:
    """Where a named data set is read from.

    Args:
        kind (`str`): the sample schema it follows (`"dense"`, `"captions"`, `"classification"`).
        loader (`str`): `"module:function"` of its reader, called as `loader(root, split=..., **kwargs)`, or
            `loader(split=..., **kwargs)` when `generated`.
        generated (`bool`, defaults to `False`): generated offline by effhub (no folder to read).
    """

    kind: str
    loader: str
    generated: bool = False


DATASETS: dict[str, DatasetEntry] = {
    "scenes": DatasetEntry("dense", "effhub.data.dense.scenes:load_scenes", generated=True),
    "nyuv2": DatasetEntry("dense", "effhub.data.dense.nyuv2:load_nyuv2"),
    "cityscapes": DatasetEntry("dense", "effhub.data.dense.cityscapes:load_cityscapes"),
    "taskonomy": DatasetEntry("dense", "effhub.data.dense.taskonomy:load_taskonomy"),
    "clips": DatasetEntry("video", "effhub.data.video.clips:load_clips", generated=True),
    "activitynet": DatasetEntry("video", "effhub.data.video.frames:load_activitynet"),
    "fcvid": DatasetEntry("video", "effhub.data.video.frames:load_fcvid"),
    "mini-kinetics": DatasetEntry("video", "effhub.data.video.frames:load_mini_kinetics"),
    "mini-sports1m": DatasetEntry("video", "effhub.data.video.frames:load_mini_sports1m"),
}
"""Every data set :func:`load_dataset` reads by name: name -> kind and reader."""


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, kind: str | None = None,
                 **kwargs):
    """Load a data set by name (a key of :data:`DATASETS`) as a `datasets.Dataset`.

    Args:
        name (`str`): the data set, e.g. `"scenes"` or `"nyuv2"`.
        split (`str`, defaults to `"train"`): the split (a key of the authors' split JSON for real data).
        root (`str`, *optional*): the data folder; required by every real data set, ignored by generated ones.
        kind (`str`, *optional*): the kind the caller expects (`"dense"`, ...); another kind is an error.
        kwargs: passed to the reader (e.g. `tasks`, `num_classes`, `config`).
    """
    known = sorted(name for name, entry in DATASETS.items() if kind is None or entry.kind == kind)
    if name not in known:
        what = f"{kind} data set" if kind else "data set"
        raise ConfigError(f"Unknown {what} '{name}' (known: {known})", f"pass one of {known}")
    entry = DATASETS[name]
    module_name, _, function_name = entry.loader.partition(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    if entry.generated:
        return loader(split=split, **kwargs)
    if root is None:
        raise DatasetError(f"Data set '{name}' needs its folder", "pass `root` (the CLI's --data-dir)")
    return loader(root, split=split, **kwargs)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

def data_version(name: str) -> str | None:
    """The version of a data set effhub generates, which changes whenever what the generator draws by default changes
    (`scenes`, `clips`, `caption-world`, `blobs`); `None` for a real data set (its files are the user's).

    The model zoo (`scripts/build_zoo.py`) records it to know when a model must be rebuilt.
    """
    import hashlib
    import json

    if name == "scenes":
        from .dense.scenes import SCENES_V1

        return f"scenes-{SCENES_V1.cache_key()}"
    if name in ("clips", "blobs"):
        from dataclasses import asdict

        if name == "clips":
            from .video.clips import CLIPS_V1 as config
        else:
            from .classification.blobs import BlobsConfig

            config = BlobsConfig()
        payload = json.dumps(asdict(config), sort_keys=True, default=list)
        return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
    if name == "caption-world":
        from .captions.world import CAPTION_WORLD_FINGERPRINT, CAPTION_WORLD_VERSION

        return f"caption-world-v{CAPTION_WORLD_VERSION}-{CAPTION_WORLD_FINGERPRINT[:16]}"
    if name in DATASETS and not DATASETS[name].generated:
        return None
    raise DatasetError(f"no data version is known for data set '{name}'",
                       f"use one of scenes, clips, caption-world, blobs or a real data set ({', '.join(DATASETS)})")


__all__ = [*_LAZY, "DATASETS", "DatasetEntry", "load_dataset", "data_version"]
