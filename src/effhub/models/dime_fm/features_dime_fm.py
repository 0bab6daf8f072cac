"""DIME-FM's data: the teacher, the unpaired image and text sources, and the teacher-feature cache.

The authors pre-compute the teacher's image and text embeddings once and train the student from them, never running
the teacher during training. `cache_features` does the same with the run layer's `export_features` (shards, a
progress bar, resumable): a cache folder holds

```
<cache>/dime_fm_cache.json   the teacher (id, fingerprint, joint-space width) and both sources (spec, rows, fingerprint)
<cache>/images/              a datasets dataset: index, image_embeds (teacher, L2-normalised), in image-source order
<cache>/texts/               a datasets dataset: index, text_embeds (teacher, L2-normalised), in text-source order
```

Sources are named by a spec string: `world[:N]` (the generated caption world's image pool or text corpus, drawn from
the streams reserved for distillation), `world-single[:N]` (images only: one object each, classes balanced, from a
stream of their own; their captions are dropped), a `datasets` folder (`save_to_disk`), an image folder
(`imagefolder`), a text file (one text per line) or a TSV file (the authors' layout: the text in the last
tab-separated column).

Unpaired: the image and text sources are separate corpora. When both name the same (paired) dataset, images are
taken from its even rows and texts from its odd rows, so that no image is ever seen with its own caption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CheckpointError, ConfigError, DatasetError

CACHE_INFO_FILE = "dime_fm_cache.json"
IMAGES_DIR = "images"
TEXTS_DIR = "texts"
CACHE_FORMAT = 1
SHIPPED_TEACHER_ID = "effhub/clip-teacher-base"
SHIPPED_TEACHER_NAMES = ("base", "shipped", SHIPPED_TEACHER_ID)
WORLD_PREFIX = "world"
WORLD_SINGLE_PREFIX = "world-single"
DEFAULT_WORLD_SIZE = 4000


# ---------------------------------------------------------------------------------------------------- teacher
@dataclass
class Teacher:
    """A loaded CLIP teacher: the model (eval mode, frozen), its processor, its id and a fingerprint of its weights."""

    model: Any
    processor: Any
    teacher_id: str
    fingerprint: str

    @property
    def projection_dim(self) -> int:
        return int(self.model.config.projection_dim)


def weights_fingerprint(model) -> str:
    """sha256 of a model's config (without version fields) and its tensors, in name order (first 16 hex digits)."""
    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_teacher(spec: str | None) -> Teacher:
    """The teacher named by `spec`: `"base"` (or `None`: the clip-teacher shipped with effhub), a CLIP model folder
    (e.g. `runs/teacher`), or a Hub repository id of any `CLIPModel`."""
    from transformers import AutoProcessor, CLIPModel

    from ..loading import load_pretrained

    if spec is None or str(spec) in SHIPPED_TEACHER_NAMES:
        from ..clip_teacher.weights import load_base_teacher

        model, processor = load_base_teacher()
        teacher_id = SHIPPED_TEACHER_ID
    else:
        folder = Path(str(spec))
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise CheckpointError(f"teacher folder '{folder}' holds no config.json",
                                  "pass the --output-dir of `effhub train clip-teacher`, a CLIP model folder, or base")
        model = load_pretrained(CLIPModel, str(spec)).eval()
        processor = AutoProcessor.from_pretrained(str(spec))
        teacher_id = folder.name if folder.is_dir() else str(spec)
    for param in model.parameters():
        param.requires_grad_(False)
    return Teacher(model=model, processor=processor, teacher_id=teacher_id, fingerprint=weights_fingerprint(model))


# ---------------------------------------------------------------------------------------------------- sources
def _world_size(spec: str, prefix: str = WORLD_PREFIX) -> int | None:
    """N of a generated-world source `<prefix>[:N]` (None when `spec` is not one)."""
    if spec == prefix:
        return DEFAULT_WORLD_SIZE
    if spec.startswith(prefix + ":"):
        try:
            return int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"source '{spec}' has no number after '{prefix}:'",
                              f"write {prefix}:<N>, e.g. {prefix}:4000")
    return None


def _world():
    from ...data.captions import CaptionWorld, default_cache_dir

    return CaptionWorld(cache_dir=default_cache_dir())


def world_single_objects(size: int):
    """The `size` single-object images of the `world-single` stream, with their captions (which the image source
    drops; a paired baseline keeps them)."""
    from ...data.captions import SPLIT_NAMES

    return _world().single_object(size, seed=0, split=SPLIT_NAMES["distillation"]["single-images"])


def _load_disk_dataset(path: Path, what: str):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:
        raise DatasetError(f"{what} '{path}' cannot be read as a datasets folder ({error})",
                           "pass a folder written by Dataset.save_to_disk") from error
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded


def _is_disk_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (
        path / "state.json").is_file()


def load_image_source(spec: str, column: str = "image"):
    """`(dataset, description)` of an image source; the dataset has an image column named `column`.

    Raises:
        `DatasetError`: the source is missing, or has no image column `column`.
    """
    import datasets

    spec = str(spec)
    size, single_size = _world_size(spec), _world_size(spec, WORLD_SINGLE_PREFIX)
    if size is not None:
        from ...data.captions import CAPTION_WORLD_VERSION, SPLIT_NAMES

        dataset = _world().image_pool(size, seed=0, split=SPLIT_NAMES["distillation"]["images"])
        description = {"spec": spec, "kind": "world", "world_version": CAPTION_WORLD_VERSION}
    elif single_size is not None:
        from ...data.captions import CAPTION_WORLD_VERSION

        # one object per image, classes balanced; the captions are dropped (the texts come from their own corpus)
        dataset = world_single_objects(single_size).select_columns(["id", "image"])
        description = {"spec": spec, "kind": "world-single", "world_version": CAPTION_WORLD_VERSION}
    else:
        path = Path(spec)
        if not path.exists():
            raise DatasetError(f"image source '{spec}' does not exist",
                               "pass a datasets folder, an image folder, world[:N] or world-single[:N]")
        if path.is_dir() and _is_disk_dataset(path):
            dataset = _load_disk_dataset(path, "image source")
            kind = "datasets"
        elif path.is_dir():
            dataset = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
            kind = "imagefolder"
        else:
            raise DatasetError(f"image source '{spec}' is a file", "pass a datasets folder or an image folder")
        description = {"spec": spec, "kind": kind}
    feature = dataset.features.get(column)
    if not isinstance(feature, datasets.Image):
        found = [name for name, value in dataset.features.items() if isinstance(value, datasets.Image)]
        raise DatasetError(
            f"image source '{spec}' has no image column '{column}' (columns: {', '.join(dataset.column_names)})",
            f"pass --image-column {found[0]}" if found else "pass a dataset with a datasets.Image column")
    if len(dataset) == 0:
        raise DatasetError(f"image source '{spec}' holds no images", "pass a dataset with at least one image")
    description.update(column=column, rows=len(dataset), fingerprint=dataset._fingerprint)
    return dataset, description


def read_text_file(path: Path) -> list[str]:
    """Texts of a `.txt` file (one per line) or of the authors' TSV layout (`.tsv`: the last column of each row)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() == ".tsv":
        lines = [line.split("\t")[-1] for line in lines]
    return [line.strip() for line in lines if line.strip()]


def load_text_source(spec: str, column: str = "text"):
    """`(dataset with a "text" column, description)` of a text source.

    Raises:
        `DatasetError`: the source is missing, has no text column, or holds no text.
    """
    import datasets

    spec = str(spec)
    size = _world_size(spec)
    if size is not None:
        from ...data.captions import CAPTION_WORLD_VERSION, SPLIT_NAMES

        dataset = _world().text_corpus(size, seed=0, split=SPLIT_NAMES["distillation"]["texts"])
        description = {"spec": spec, "kind": "world", "world_version": CAPTION_WORLD_VERSION}
        column = "text"
    else:
        path = Path(spec)
        if not path.exists():
            raise DatasetError(f"text source '{spec}' does not exist",
                               "pass a .txt or .tsv file, a datasets folder, or world[:N]")
        if path.is_file():
            dataset = datasets.Dataset.from_dict({"text": read_text_file(path)})
            description = {"spec": spec, "kind": "tsv" if path.suffix.lower() == ".tsv" else "text-file",
                           "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
            column = "text"
        else:
            dataset = _load_disk_dataset(path, "text source")
            description = {"spec": spec, "kind": "datasets"}
            if column not in dataset.column_names:
                raise DatasetError(f"text source '{spec}' has no column '{column}' (columns: "
                                   f"{', '.join(dataset.column_names)})", "pass --text-column <the text column>")
    texts = [str(text).strip() if text is not None else "" for text in dataset[column]]
    if not any(texts):
        raise DatasetError(f"text source '{spec}' holds no text", "pass a corpus with at least one non-empty text")
    if column != "text" or len(texts) != sum(1 for t in texts if t):
        dataset = datasets.Dataset.from_dict({"text": [t for t in texts if t]})
    description.update(column=column, rows=len(dataset), fingerprint=dataset._fingerprint)
    return dataset, description


def unpaired_sources(images_spec: str, texts_spec: str, image_column: str = "image", text_column: str = "text"):
    """`(images, texts, image_description, text_description)`: the two sources, made disjoint when they are one
    dataset (images from the even rows, texts from the odd rows, so that no image meets its own caption)."""
    images, image_description = load_image_source(images_spec, image_column)
    if str(images_spec) == str(texts_spec) and _world_size(str(images_spec)) is None \
            and _world_size(str(images_spec), WORLD_SINGLE_PREFIX) is None:
        if text_column not in images.column_names:
            raise DatasetError(f"'{texts_spec}' has no text column '{text_column}'", "pass --text-column")
        if len(images) < 2:
            raise DatasetError(f"'{images_spec}' has {len(images)} row: too few to split into unpaired halves",
                               "pass separate image and text corpora")
        even, odd = range(0, len(images), 2), range(1, len(images), 2)
        texts = images.select(odd).select_columns([text_column]).rename_column(text_column, "text") \
            if text_column != "text" else images.select(odd).select_columns(["text"])
        images = images.select(even)
        image_description.update(rows=len(images), rows_taken="even")
        text_description = {"spec": str(texts_spec), "kind": "same-as-images", "column": text_column,
                            "rows": len(texts), "rows_taken": "odd", "fingerprint": texts._fingerprint}
        return images, texts, image_description, text_description
    texts, text_description = load_text_source(texts_spec, text_column)
    return images, texts, image_description, text_description


# ---------------------------------------------------------------------------------------------------- pixels
def image_size_of(processor) -> int:
    crop = getattr(processor.image_processor, "crop_size", None) or {}
    return int(crop.get("height") or processor.image_processor.size["shortest_edge"])


PRELOAD_BYTES = 512 * 2**20


class ImageRows:
    """Map-style view of an image source: `{"image": PIL image or (H, W, 3) uint8 array, "row": i}` for
    `PixelCollator`.

    Images already at the model's size are decoded once, up front, into one uint8 array when it fits in
    `preload_bytes` (a long distillation reads every image many times; decoding a PNG per read made the data path
    slower than the small student); otherwise each read decodes its image.
    """

    def __init__(self, dataset, processor, column: str = "image", extra: dict[str, np.ndarray] | None = None,
                 preload_bytes: int = PRELOAD_BYTES):
        self.dataset, self.processor, self.column = dataset, processor, column
        self.size = image_size_of(processor)
        self.extra = extra or {}
        self.pixels = None
        if len(dataset) and len(dataset) * self.size * self.size * 3 <= preload_bytes:
            first = dataset[0][column]
            if first.size == (self.size, self.size):
                decoded = [np.asarray(image.convert("RGB"), dtype=np.uint8)
                           for image in dataset.select_columns([column])[column]]
                if all(array.shape == (self.size, self.size, 3) for array in decoded):
                    self.pixels = np.stack(decoded)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.pixels is not None:
            image = self.pixels[int(index)]
        else:
            image = self.dataset[int(index)][self.column].convert("RGB")
        item = {"image": image, "row": int(index)}
        for key, values in self.extra.items():
            item[key] = values[int(index)]
        return item


class PixelCollator:
    """Batches `ImageRows` items into `pixel_values` (and stacks their other array fields)."""

    def __init__(self, processor):
        self.processor = processor
        self.size = image_size_of(processor)

    def pixel_values(self, images):
        """`(B, 3, H, W)` pixel values of PIL images or `(H, W, 3)` uint8 arrays (these at the model's size)."""
        import torch

        from ..clip_teacher.processing import pixel_values_from_uint8

        def at_size(image):
            if isinstance(image, np.ndarray):
                return image.shape[:2] == (self.size, self.size)
            return image.size == (self.size, self.size)

        if all(at_size(image) for image in images):
            mean, std = self.processor.image_processor.image_mean, self.processor.image_processor.image_std
            return pixel_values_from_uint8(np.stack([np.asarray(image, dtype=np.uint8) for image in images]),
                                           mean, std)
        from PIL import Image

        images = [Image.fromarray(image) if isinstance(image, np.ndarray) else image for image in images]
        return torch.as_tensor(self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"])

    def __call__(self, items: list[dict]) -> dict:
        import torch

        batch = {"pixel_values": self.pixel_values([item["image"] for item in items]),
                 "row": torch.tensor([item["row"] for item in items])}
        for key in items[0]:
            if key not in ("image", "row"):
                batch[key] = torch.as_tensor(np.stack([np.asarray(item[key]) for item in items]))
        return batch


class TextRows:
    """Map-style view of a text source: `{"text": str, "row": i}` (plus array fields of `extra`)."""

    def __init__(self, dataset, extra: dict[str, np.ndarray] | None = None):
        self.texts = list(dataset["text"])
        self.extra = extra or {}

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        item = {"text": self.texts[int(index)], "row": int(index)}
        for key, values in self.extra.items():
            item[key] = values[int(index)]
        return item


class TextCollator:
    """Batches `TextRows` items: tokenised texts (padding, truncation) plus their other array fields."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict:
        import torch

        tokens = self.tokenizer([item["text"] for item in items], padding=True, truncation=True, return_tensors="pt")
        batch = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                 "row": torch.tensor([item["row"] for item in items])}
        for key in items[0]:
            if key not in ("text", "row"):
                batch[key] = torch.as_tensor(np.stack([np.asarray(item[key]) for item in items]))
        return batch


# ---------------------------------------------------------------------------------------------------- the cache
def _image_step(model, batch):
    from .modeling_dime_fm import _normalise, _pooled

    return {"image_embeds": _normalise(_pooled(model.get_image_features(pixel_values=batch["pixel_values"])))}


def _text_step(model, batch):
    from .modeling_dime_fm import _normalise, _pooled

    output = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return {"text_embeds": _normalise(_pooled(output))}


def cache_info(teacher: Teacher, image_description: dict, text_description: dict) -> dict:
    """The record that keys a cache to its teacher and its two sources."""
    return {"format": CACHE_FORMAT, "teacher_id": teacher.teacher_id, "teacher_fingerprint": teacher.fingerprint,
            "projection_dim": teacher.projection_dim, "images": image_description, "texts": text_description}


def cache_features(teacher: Teacher | str | None, images: str, texts: str, output: str | Path,
                   image_column: str = "image", text_column: str = "text", batch_size: int = 256,
                   shard_size: int = 2048, progress: bool = True, accelerator=None) -> Path:
    """Compute the teacher's image and text embeddings once and store them in `output` (resumable).

    Args:
        teacher (`Teacher` or `str`): a loaded teacher or its spec (see `load_teacher`).
        images, texts (`str`): the source specs (see the module docstring).
        output (`str` or `Path`): the cache folder; an interrupted cache resumes, a folder holding the features of
            another teacher or other sources is refused.

    Raises:
        `ConfigError`: `output` holds another teacher's or other sources' features.
        `DatasetError`: a source is missing, empty, or lacks its column.
    """
    from ...atomic import atomic_write_json
    from ...training import export_features

    teacher = teacher if isinstance(teacher, Teacher) else load_teacher(teacher)
    image_set, text_set, image_description, text_description = unpaired_sources(images, texts, image_column,
                                                                                 text_column)
    output = Path(output)
    info = cache_info(teacher, image_description, text_description)
    info_path = output / CACHE_INFO_FILE
    if info_path.is_file():
        previous = json.loads(info_path.read_text())
        if previous != json.loads(json.dumps(info)):
            raise ConfigError(
                f"'{output}' holds the features of teacher '{previous.get('teacher_id')}' on other sources or "
                "weights than asked",
                "cache into a fresh folder, or delete this one to start again")
    else:
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(info_path, info)
    export_features(teacher.model, ImageRows(image_set, teacher.processor, image_column), _image_step,
                    output / IMAGES_DIR, batch_size=batch_size, shard_size=shard_size,
                    collate_fn=PixelCollator(teacher.processor), accelerator=accelerator, progress=progress,
                    description="teacher image features")
    export_features(teacher.model, TextRows(text_set), _text_step, output / TEXTS_DIR, batch_size=batch_size,
                    shard_size=shard_size, collate_fn=TextCollator(teacher.processor.tokenizer),
                    accelerator=accelerator, progress=progress, description="teacher text features")
    return output


def cache_features_command(values: dict) -> int:
    """`effhub dime-fm cache-features --teacher ... --images ... --texts ... --output ...`."""
    try:
        batch_size = int(values.get("batch_size") or 256)
    except ValueError:
        raise ConfigError(f"--batch-size {values.get('batch_size')!r} is not a number", "pass an integer")
    output = cache_features(values["teacher"], values["images"], values["texts"], values["output"],
                            values.get("image_column") or "image", values.get("text_column") or "text",
                            batch_size=batch_size, progress=not values.get("no_progress"))
    info = json.loads((output / CACHE_INFO_FILE).read_text())
    print(f"effhub: teacher features of {info['images']['rows']} images and {info['texts']['rows']} texts "
          f"(teacher {info['teacher_id']}, width {info['projection_dim']}) cached in {output}")
    return 0


@dataclass
class FeatureCache:
    """A cache folder read back: its record and the embeddings as float32 arrays in source order."""

    info: dict
    image_embeds: np.ndarray
    text_embeds: np.ndarray


def load_feature_cache(path: str | Path, teacher: Teacher | None = None,
                       projection_dim: int | None = None) -> FeatureCache:
    """Read a cache, checking that it belongs to `teacher` and to a joint space of width `projection_dim`.

    Raises:
        `DatasetError`: not a cache folder, or an incomplete one.
        `ConfigError`: another teacher's cache, or embeddings of another width.
    """
    from ...training import load_features

    path = Path(path)
    info_path = path / CACHE_INFO_FILE
    if not info_path.is_file():
        raise DatasetError(f"'{path}' is not a DIME-FM feature cache ({CACHE_INFO_FILE} is missing)",
                           "build one with: effhub dime-fm cache-features --teacher ... --images ... --texts ... "
                           f"--output {path}")
    info = json.loads(info_path.read_text())
    if teacher is not None and (info.get("teacher_fingerprint") != teacher.fingerprint):
        raise ConfigError(
            f"the feature cache '{path}' was computed by teacher '{info.get('teacher_id')}' "
            f"(fingerprint {info.get('teacher_fingerprint')}), not by '{teacher.teacher_id}' ({teacher.fingerprint})",
            "cache the features of this teacher (effhub dime-fm cache-features), or train with the cache's teacher")
    image_embeds = np.asarray(load_features(path / IMAGES_DIR).with_format("numpy")["image_embeds"], np.float32)
    text_embeds = np.asarray(load_features(path / TEXTS_DIR).with_format("numpy")["text_embeds"], np.float32)
    widths = {image_embeds.shape[-1], text_embeds.shape[-1], info.get("projection_dim")}
    expected = projection_dim if projection_dim is not None else (teacher.projection_dim if teacher else None)
    if len(widths) != 1 or (expected is not None and widths != {expected}):
        raise ConfigError(
            f"the feature cache '{path}' holds embeddings of width {sorted(w for w in widths if w is not None)}, "
            f"the teacher's joint space has {expected}",
            "rebuild the cache with this teacher (effhub dime-fm cache-features)")
    for name, embeds, rows in (("image", image_embeds, info["images"]["rows"]),
                               ("text", text_embeds, info["texts"]["rows"])):
        if len(embeds) != rows:
            raise DatasetError(f"the feature cache '{path}' holds {len(embeds)} {name} embeddings for {rows} rows",
                               "rebuild the cache (effhub dime-fm cache-features into a fresh folder)")
    return FeatureCache(info=info, image_embeds=image_embeds, text_embeds=text_embeds)


__all__ = [
    "CACHE_INFO_FILE",
    "SHIPPED_TEACHER_ID",
    "Teacher",
    "load_teacher",
    "weights_fingerprint",
    "load_image_source",
    "load_text_source",
    "read_text_file",
    "unpaired_sources",
    "world_single_objects",
    "ImageRows",
    "PixelCollator",
    "TextRows",
    "TextCollator",
    "cache_info",
    "cache_features",
    "cache_features_command",
    "FeatureCache",
    "load_feature_cache",
]
