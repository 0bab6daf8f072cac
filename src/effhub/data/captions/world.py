"""A generated image-caption world: coloured shapes on noisy backgrounds, described in varied words.

The world is effhub's offline stand-in for web image-text data, made so that a small CLIP-style model trained on it
is a meaningful teacher (imperfect, with room for students and adapters to be better or worse). It offers:

- **paired** image-caption data (1 to 4 objects per image) to train a CLIP-style model contrastively;
- a **class vocabulary** of colour-shape classes ("red circle", ...), split into seen and held-out unseen classes
  for zero-shot multi-label recognition with learned prompts (arXiv 2206.09541);
- **single-object** splits for zero-shot classification;
- **multi-label** splits (several objects, a label set per image);
- a separately seeded **text corpus** and **image pool** with no shared ids, for distillation from unpaired
  images and texts (arXiv 2303.18232).

Every split is deterministic in `(world parameters, split kind, split name, seed)` and is a `datasets.Dataset`;
split names (:data:`SPLIT_NAMES`) name independent random streams, and a split drawn again with another size is a
prefix (or an extension) of the same stream. The world's parameters are frozen per version: measured figures refer to
a version, and changing any parameter (colours, shapes, synonyms, templates, rendering, split streams) must bump
:data:`CAPTION_WORLD_VERSION` (a test guards the fingerprints). Older versions stay readable:
`CaptionWorld(CaptionWorldConfig.for_version(1))` draws exactly what version 1 drew.

Version 2 (the default) differs from version 1 in three ways: 64x64 images instead of 48x48, larger objects (a shape
must be legible to a model that sees 8x8-pixel patches), and split streams keyed by the split's kind as well as its
name, so that no split builder can re-derive another's data (in version 1 `pairs(split="image-pool")` returned the
image pool's pixels with captions, a leak for distillation from unpaired data).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ...errors import ConfigError, DatasetError

CAPTION_WORLD_VERSION = 2
CAPTION_WORLD_VERSIONS = (1, 2)
# sha256 of each version's frozen default parameters (`CaptionWorldConfig.for_version(v).fingerprint()`); tests
# compare against them so that a change of the world cannot go unnoticed (bump CAPTION_WORLD_VERSION and re-measure
# the figures that depend on it)
CAPTION_WORLD_FINGERPRINTS = {
    1: "fc2c43a5ff4d7c083436ceb5bbeed896a12d61dc798fdeaaa29cfad974f8c976",
    2: "a459399c7ccf49e0af4333f9197f2c4868a1e352a24d3e2371bd0157b5bd0c9c",
}
CAPTION_WORLD_FINGERPRINT = CAPTION_WORLD_FINGERPRINTS[CAPTION_WORLD_VERSION]

# name -> (RGB, synonyms used in captions); neighbours (red/orange/pink, blue/cyan/purple) are close on purpose
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((215, 40, 40), ("red", "scarlet")),
    "orange": ((240, 135, 30), ("orange",)),
    "yellow": ((230, 215, 45), ("yellow", "golden")),
    "green": ((50, 175, 65), ("green",)),
    "cyan": ((40, 200, 210), ("cyan", "turquoise")),
    "blue": ((45, 75, 220), ("blue",)),
    "purple": ((140, 55, 200), ("purple", "violet")),
    "pink": ((240, 115, 185), ("pink",)),
}
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
    "crescent": ("crescent", "moon shape"),
}
# size name -> (relative radius range as a fraction of the image side, synonyms)
SIZES: dict[str, tuple[tuple[float, float], tuple[str, ...]]] = {
    "small": ((0.10, 0.14), ("small", "tiny", "little")),
    "medium": ((0.15, 0.20), ("medium-sized", "mid-sized")),
    "large": ((0.21, 0.27), ("large", "big")),
}
TEXTURES: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "filled"),
    "striped": ("striped", "stripy"),
    "dotted": ("dotted", "spotted"),
    "outlined": ("outlined", "hollow"),
}
# per version: relative radius range of each size (fraction of the image side) and the radius factor of scenes with
# 1, 2, and 3 or more objects (crowded scenes shrink their objects so that they fit)
GEOMETRY: dict[int, dict] = {
    1: {"radius": {name: spec[0] for name, spec in SIZES.items()}, "shrink": (1.0, 0.8, 0.65)},
    2: {"radius": {"small": (0.14, 0.18), "medium": (0.19, 0.24), "large": (0.25, 0.30)}, "shrink": (1.0, 0.85, 0.7)},
}
# the kinds of split builders; from version 2 on a split's random stream is keyed by kind and name together
SPLIT_KINDS = ("pairs", "multilabel", "single-object", "text-corpus", "image-pool")
# the split names each use draws, by use (distinct names are independent streams; a test checks they are all distinct)
SPLIT_NAMES: dict[str, dict[str, str]] = {
    "teacher": {
        "train": "pairs-train", "test": "pairs-test", "zero-shot": "single-object-test",
        "single-train": "single-object-train", "multi-train": "multi-object-train",
    },
    "teacher-probes": {
        "probe-train": "probe-single-train", "probe-test": "probe-single-test",
        "multilabel-train": "probe-multilabel-train", "multilabel-test": "probe-multilabel-test",
    },
    "prompt-learning": {"train": "prompt-learning-train", "test": "prompt-learning-test"},
    "distillation": {"images": "distillation-images", "single-images": "distillation-single-images",
                     "texts": "distillation-texts", "test": "distillation-test"},
}
VERTICAL = ("top", "middle", "bottom")
HORIZONTAL = ("left", "center", "right")
SINGLE_TEMPLATES = (
    "{np}.",
    "a photo of {np}.",
    "this is a photo of {np}.",
    "an image showing {np}.",
    "there is {np} {pos}.",
    "{np} {pos}.",
    "{np} on a dark background.",
    "a picture of {np}, {pos}.",
)
MULTI_TEMPLATES = (
    "{list}.",
    "a photo of {list}.",
    "an image with {list}.",
    "{count} shapes: {list}.",
    "there are {count} objects: {list}.",
    "a scene showing {list}.",
)
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
# the prompt used for zero-shot classification with a class name (matches one of the caption templates)
ZERO_SHOT_TEMPLATE = "a photo of {}."

DEFAULT_CACHE_ENV = "EFFHUB_CACHE"


@dataclass(frozen=True)
class CaptionWorldConfig:
    """Parameters of the caption world (frozen: a run records them; changing a default bumps the version).

    Args:
        image_size (`int`): image side in pixels (48 in version 1, 64 from version 2).
        supersample (`int`): shapes are drawn this many times larger, then downsampled (anti-aliasing).
        num_unseen_classes (`int`): colour-shape classes held out as unseen for zero-shot multi-label recognition.
        max_objects (`int`): most objects in one image of the paired and multi-label splits.
        colour_jitter (`float`): std of the per-channel colour jitter of an object, in 0-255 units.
        noise (`float`): std of the Gaussian pixel noise, in 0-255 units.
        rotation (`float`): largest rotation of a shape in degrees (small, so squares and diamonds stay apart).
        p_size, p_texture, p_position (`float`): probability that a caption mentions an object's size, texture,
            position.
        p_colour (`float`): probability that a caption mentions an object's colour (captions are sometimes vague).
        p_synonym (`float`): probability of using a synonym instead of the canonical word.
        version (`int`): the world version whose geometry and split streams are used (see :data:`GEOMETRY`).
    """

    image_size: int = 64
    supersample: int = 2
    num_unseen_classes: int = 16
    max_objects: int = 4
    colour_jitter: float = 18.0
    noise: float = 8.0
    rotation: float = 15.0
    p_size: float = 0.5
    p_texture: float = 0.5
    p_position: float = 0.4
    p_colour: float = 0.95
    p_synonym: float = 0.3
    version: int = CAPTION_WORLD_VERSION

    @classmethod
    def for_version(cls, version: int, **overrides) -> "CaptionWorldConfig":
        """The frozen default parameters of world `version` (1 or 2), with `overrides` applied."""
        if version not in CAPTION_WORLD_VERSIONS:
            raise ConfigError(f"caption world version {version!r} does not exist",
                              f"use one of {list(CAPTION_WORLD_VERSIONS)}")
        defaults = {"image_size": 48} if version == 1 else {}
        return cls(**{**defaults, **overrides, "version": version})

    def __post_init__(self):
        if self.version not in CAPTION_WORLD_VERSIONS:
            raise ConfigError(f"caption world version {self.version!r} does not exist",
                              f"use one of {list(CAPTION_WORLD_VERSIONS)}")
        if self.image_size < 16:
            raise ConfigError(f"image_size is {self.image_size}, too small to draw shapes", "use 16 or more")
        if not 0 <= self.num_unseen_classes < len(COLOURS) * len(SHAPES):
            raise ConfigError(
                f"num_unseen_classes is {self.num_unseen_classes}", f"use 0 to {len(COLOURS) * len(SHAPES) - 1}"
            )
        if not 1 <= self.max_objects <= 6:
            raise ConfigError(f"max_objects is {self.max_objects}", "use 1 to 6")

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """sha256 of these parameters together with the word lists and templates (what "frozen" covers)."""
        config = self.to_dict()
        if self.version == 1:  # version 1 was fingerprinted before the version field existed
            del config["version"]
        spec = {
            "config": config,
            "colours": COLOURS,
            "shapes": SHAPES,
            "sizes": SIZES,
            "textures": TEXTURES,
            "single_templates": SINGLE_TEMPLATES,
            "multi_templates": MULTI_TEMPLATES,
            "zero_shot_template": ZERO_SHOT_TEMPLATE,
        }
        if self.version >= 2:
            spec["geometry"] = GEOMETRY[self.version]
            spec["split_kinds"] = SPLIT_KINDS
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@dataclass
class SceneObject:
    """One object of a scene: its class attributes and how it is drawn."""

    colour: str
    shape: str
    size: str
    texture: str
    centre: tuple[float, float]  # (x, y) in pixels
    radius: float
    angle: float
    rgb: tuple[int, int, int] = field(default=(0, 0, 0))

    @property
    def class_name(self) -> str:
        return f"{self.colour} {self.shape}"


def _split_seed(seed: int, split: str) -> np.random.SeedSequence:
    # each split draws from its own stream, so two splits with the same seed share nothing; the stream does not
    # depend on the split's size, so a split drawn with another size is a prefix (or extension) of the same stream
    digest = hashlib.sha256(split.encode()).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest[:4], "little")])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class CaptionWorld:
    """The caption world: class vocabulary, scene sampler, renderer, captioner and split builders.

    Args:
        config (`CaptionWorldConfig`, *optional*): the world's parameters (default: the frozen ones).
        cache_dir (`str` or `Path`, *optional*): where built splits are cached (`save_to_disk`); `None` disables the
            cache. Use :func:`default_cache_dir` for the user cache (`$EFFHUB_CACHE` or `~/.cache/effhub`).
    """

    def __init__(self, config: CaptionWorldConfig | None = None, cache_dir: str | Path | None = None):
        self.config = config or CaptionWorldConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.class_names: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
        self.unseen_classes: list[str] = self._held_out_classes()
        unseen = set(self.unseen_classes)
        self.seen_classes: list[str] = [name for name in self.class_names if name not in unseen]

    # ----------------------------------------------------------------------------------------------- vocabulary
    def _held_out_classes(self) -> list[str]:
        # a diagonal pattern, so every colour and every shape keeps seen classes (unseen ones are new combinations)
        colours, shapes = list(COLOURS), list(SHAPES)
        held, k = [], 0
        while len(held) < self.config.num_unseen_classes:
            offset, index = divmod(k, len(colours))
            held.append(f"{colours[index]} {shapes[(index * 3 + offset * 5) % len(shapes)]}")
            k += 1
            if k > len(colours) * len(shapes):  # pragma: no cover - guarded by the config check
                break
        return list(dict.fromkeys(held))

    def class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise ConfigError(f"Unknown class '{name}'", f"use one of the {len(self.class_names)} names in class_names")
        return self.class_names.index(name)

    @staticmethod
    def class_phrase(name: str) -> str:
        """A class name with its indefinite article ("an orange star")."""
        return f"{_article(name)} {name}"

    def zero_shot_prompts(self, class_names: Sequence[str] | None = None, template: str = ZERO_SHOT_TEMPLATE):
        """The text prompts of zero-shot classification, one per class."""
        return [template.format(self.class_phrase(name)) for name in (class_names or self.class_names)]

    # ----------------------------------------------------------------------------------------------- sampling
    def sample_object(self, rng: np.random.Generator, class_name: str | None = None) -> SceneObject:
        """Draw one object (of `class_name` if given); its position is set by :meth:`sample_scene`."""
        if class_name is None:
            class_name = self.class_names[rng.integers(len(self.class_names))]
        colour, shape = class_name.split(" ")
        size = list(SIZES)[rng.integers(len(SIZES))]
        texture = list(TEXTURES)[rng.integers(len(TEXTURES))]
        low, high = GEOMETRY[self.config.version]["radius"][size]
        radius = float(rng.uniform(low, high)) * self.config.image_size
        base = np.array(COLOURS[colour][0], dtype=np.float64)
        rgb = np.clip(base + rng.normal(0.0, self.config.colour_jitter, 3), 0, 255).astype(int)
        angle = float(rng.uniform(-self.config.rotation, self.config.rotation))
        return SceneObject(colour, shape, size, texture, (0.0, 0.0), radius, angle, tuple(int(v) for v in rgb))

    def sample_scene(
        self, rng: np.random.Generator, num_objects: int, class_pool: Sequence[str] | None = None
    ) -> list[SceneObject]:
        """Draw `num_objects` objects from `class_pool` (default: all classes), placed with little overlap."""
        pool = list(class_pool or self.class_names)
        side = self.config.image_size
        # shrink objects in crowded scenes so that they fit
        shrink = GEOMETRY[self.config.version]["shrink"][min(num_objects, 3) - 1]
        objects: list[SceneObject] = []
        for _ in range(num_objects):
            obj = self.sample_object(rng, pool[rng.integers(len(pool))])
            obj.radius *= shrink
            for attempt in range(30):
                margin = obj.radius
                centre = (float(rng.uniform(margin, side - margin)), float(rng.uniform(margin, side - margin)))
                overlap = any(
                    math.dist(centre, other.centre) < 0.85 * (obj.radius + other.radius) for other in objects
                )
                if not overlap or attempt == 29:
                    break
            obj.centre = centre
            objects.append(obj)
        return objects

    def position_phrase(self, obj: SceneObject) -> str:
        side = self.config.image_size
        row = VERTICAL[min(int(obj.centre[1] / side * 3), 2)]
        column = HORIZONTAL[min(int(obj.centre[0] / side * 3), 2)]
        if row == "middle" and column == "center":
            return "in the center"
        if row == "middle":
            return f"on the {column}"
        if column == "center":
            return f"at the {row}"
        return f"in the {row} {column} corner"

    # ----------------------------------------------------------------------------------------------- rendering
    def _shape_points(self, obj: SceneObject, scale: float) -> list[tuple[float, float]] | None:
        cx, cy = obj.centre[0] * scale, obj.centre[1] * scale
        r = obj.radius * scale
        theta = math.radians(obj.angle)

        def polygon(radii: Iterable[float], start: float, count: int):
            radii = list(radii)
            points = []
            for i in range(count):
                a = start + theta + 2 * math.pi * i / count
                rad = radii[i % len(radii)]
                points.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
            return points

        if obj.shape == "square":
            return polygon([r * 1.0], math.pi / 4, 4)
        if obj.shape == "diamond":
            return polygon([r * 1.05], 0.0, 4)
        if obj.shape == "triangle":
            return polygon([r * 1.1], -math.pi / 2, 3)
        if obj.shape == "hexagon":
            return polygon([r], 0.0, 6)
        if obj.shape == "star":
            return polygon([r * 1.1, r * 0.45], -math.pi / 2, 10)
        if obj.shape == "cross":
            w, points = r * 0.36, []
            outline = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w),
                       (-w, w), (-w, r)]
            for x, y in outline:
                points.append((cx + x * math.cos(theta) - y * math.sin(theta),
                               cy + x * math.sin(theta) + y * math.cos(theta)))
            return points
        return None  # circle and crescent are drawn with ellipses

    def _object_mask(self, obj: SceneObject, side: int, scale: float, outline: int = 0) -> np.ndarray:
        mask = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy, r = obj.centre[0] * scale, obj.centre[1] * scale, obj.radius * scale
        points = self._shape_points(obj, scale)
        kwargs = {"fill": None, "outline": 255, "width": outline} if outline else {"fill": 255}
        if points is not None:
            if outline:
                draw.line(points + [points[0]], fill=255, width=outline, joint="curve")
            else:
                draw.polygon(points, fill=255)
        else:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), **kwargs)
            if obj.shape == "crescent":
                shift = 0.55 * r
                dx, dy = shift * math.cos(math.radians(obj.angle)), shift * math.sin(math.radians(obj.angle))
                draw.ellipse((cx - r + dx, cy - r + dy, cx + r + dx, cy + r + dy), fill=0)
        return np.asarray(mask, dtype=np.float32) / 255.0

    def object_mask(self, obj: SceneObject | dict) -> np.ndarray:
        """The filled silhouette of one object at image resolution, `(image_size, image_size)` in [0, 1].

        Args:
            obj (`SceneObject` or `dict`): an object, or its record from a split's `objects` JSON column.
        """
        if isinstance(obj, dict):
            obj = SceneObject(obj["colour"], obj["shape"], obj["size"], obj["texture"], tuple(obj["centre"]),
                              float(obj["radius"]), float(obj["angle"]), tuple(obj["rgb"]))
        scale = self.config.supersample
        mask = self._object_mask(obj, self.config.image_size * scale, scale)
        side = self.config.image_size
        return mask.reshape(side, scale, side, scale).mean(axis=(1, 3))

    def render(self, objects: Sequence[SceneObject], rng: np.random.Generator) -> Image.Image:
        """Draw a scene as an RGB `PIL.Image` (background and noise drawn from `rng`)."""
        scale = self.config.supersample
        side = self.config.image_size * scale
        level = rng.uniform(20, 75)
        tint = rng.uniform(-10, 10, 3)
        canvas = np.broadcast_to(level + tint, (side, side, 3)).astype(np.float32).copy()
        for obj in objects:
            # composite inside the object's bounding box only (the rest of the canvas is untouched)
            reach = obj.radius * scale * 1.25 + 2
            x0, x1 = max(int(obj.centre[0] * scale - reach), 0), min(int(obj.centre[0] * scale + reach) + 1, side)
            y0, y1 = max(int(obj.centre[1] * scale - reach), 0), min(int(obj.centre[1] * scale + reach) + 1, side)
            rgb = np.array(obj.rgb, dtype=np.float32)
            if obj.texture == "outlined":
                width = max(2, int(round(obj.radius * scale * 0.28)))
                mask = self._object_mask(obj, side, scale, outline=width)[y0:y1, x0:x1]
                pattern = np.broadcast_to(rgb, mask.shape + (3,))
            else:
                mask = self._object_mask(obj, side, scale)[y0:y1, x0:x1]
                yy, xx = np.mgrid[y0:y1, x0:x1]
                if obj.texture == "striped":
                    period = max(4, int(round(obj.radius * scale * 0.55)))
                    on = ((xx + yy) // (period // 2)) % 2 == 0
                elif obj.texture == "dotted":
                    period = max(4, int(round(obj.radius * scale * 0.5)))
                    on = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 > (period * 0.3) ** 2
                else:
                    on = np.ones(mask.shape, dtype=bool)
                pattern = np.where(on[..., None], rgb, rgb * 0.35)
            region = canvas[y0:y1, x0:x1]
            canvas[y0:y1, x0:x1] = region * (1.0 - mask[..., None]) + pattern * mask[..., None]
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        if scale != 1:
            image = image.resize((self.config.image_size,) * 2, Image.BOX)
        shape = (self.config.image_size, self.config.image_size, 3)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, self.config.noise, shape)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    # ----------------------------------------------------------------------------------------------- captions
    def _word(self, rng: np.random.Generator, words: Sequence[str]) -> str:
        if len(words) > 1 and rng.random() < self.config.p_synonym:
            return words[1 + rng.integers(len(words) - 1)]
        return words[0]

    def noun_phrase(self, obj: SceneObject, rng: np.random.Generator, with_position: bool = False) -> str:
        """Describe one object in varied words ("a small striped scarlet disc in the top left corner")."""
        words = []
        if rng.random() < self.config.p_size:
            words.append(self._word(rng, SIZES[obj.size][1]))
        if rng.random() < self.config.p_texture:
            words.append(self._word(rng, TEXTURES[obj.texture]))
        if rng.random() < self.config.p_colour:
            words.append(self._word(rng, COLOURS[obj.colour][1]))
        words.append(self._word(rng, SHAPES[obj.shape]))
        phrase = " ".join(words)
        phrase = f"{_article(phrase)} {phrase}"
        if with_position:
            phrase = f"{phrase} {self.position_phrase(obj)}"
        return phrase

    def caption(self, objects: Sequence[SceneObject], rng: np.random.Generator) -> str:
        """A caption describing every object of a scene."""
        if len(objects) == 1:
            template = SINGLE_TEMPLATES[rng.integers(len(SINGLE_TEMPLATES))]
            return template.format(np=self.noun_phrase(objects[0], rng), pos=self.position_phrase(objects[0]))
        order = rng.permutation(len(objects))
        phrases = [self.noun_phrase(objects[i], rng, rng.random() < self.config.p_position) for i in order]
        listing = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        template = MULTI_TEMPLATES[rng.integers(len(MULTI_TEMPLATES))]
        return template.format(list=listing, count=COUNT_WORDS[len(objects)])

    def shape_swapped(self, caption: str, rng: np.random.Generator) -> str:
        """`caption` with every shape word (or synonym) replaced by the canonical word of another shape.

        A hard negative for contrastive training: it differs from the true caption in the shapes only.
        """
        import re

        if not hasattr(self, "_shape_pattern"):
            word_shape = {word: shape for shape, words in SHAPES.items() for word in words}
            alternatives = "|".join(re.escape(w) for w in sorted(word_shape, key=len, reverse=True))
            self._shape_pattern = (re.compile(rf"\b({alternatives})\b"), word_shape)
        pattern, word_shape = self._shape_pattern
        shapes = list(SHAPES)

        def replace(match) -> str:
            own = shapes.index(word_shape[match.group(1)])
            return shapes[(own + 1 + int(rng.integers(len(shapes) - 1))) % len(shapes)]

        return pattern.sub(replace, caption)

    # ----------------------------------------------------------------------------------------------- splits
    def _stream(self, kind: str, split: str, seed: int) -> np.random.Generator:
        """The random stream of split `split` drawn by the builder of kind `kind` (version 1: by name only)."""
        name = split if self.config.version == 1 else f"{kind}:{split}"
        return np.random.default_rng(_split_seed(seed, name))

    def _scene_rows(self, kind: str, split: str, size: int, seed: int, min_objects: int, max_objects: int,
                    class_pool: Sequence[str] | None, single_class_cycle: bool = False):
        rng = self._stream(kind, split, seed)
        pool = list(class_pool or self.class_names)
        for index in range(size):
            if single_class_cycle:  # balanced classes for single-object evaluation
                scene = self.sample_scene(rng, 1, [pool[index % len(pool)]])
            else:
                scene = self.sample_scene(rng, int(rng.integers(min_objects, max_objects + 1)), pool)
            image = self.render(scene, rng)
            yield index, scene, image, self.caption(scene, rng)

    def _check_size(self, size: int, what: str) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(f"{what} size is {size!r}", "pass a positive number of samples")

    def pairs(self, size: int, seed: int = 0, split: str = "pairs") -> "datasets.Dataset":  # noqa: F821
        """Paired images (1 to `max_objects` objects) and captions.

        Columns: `id`, `image`, `caption`, `labels` (class indices), `num_objects`, `objects` (JSON).
        """
        self._check_size(size, "pairs")
        return self._cached(split, size, seed, lambda: self._build_scenes("pairs", split, size, seed, 1,
                                                                           self.config.max_objects, None))

    def multilabel(self, size: int, seed: int = 0, classes: str = "all", split: str | None = None):
        """Multi-object images with label sets: `classes="seen"` draws only seen classes (for zero-shot training)."""
        self._check_size(size, "multilabel")
        pools = {"all": self.class_names, "seen": self.seen_classes, "unseen": self.unseen_classes}
        if classes not in pools:
            raise ConfigError(f"classes is {classes!r}", f"use one of {sorted(pools)}")
        split = split or f"multilabel-{classes}"
        # the class pool changes what a stream draws, so it is part of the cache key (the stream keeps the name)
        cache_name = split if classes == "all" else f"{split}@{classes}"
        return self._cached(cache_name, size, seed, lambda: self._build_scenes("multilabel", split, size, seed,
                                                                                1, self.config.max_objects,
                                                                                pools[classes]))

    def single_object(self, size: int, seed: int = 0, split: str = "single-object"):
        """One object per image, classes balanced: `id`, `image`, `label` (a `ClassLabel`), `caption`."""
        self._check_size(size, "single_object")
        return self._cached(split, size, seed, lambda: self._build_single(split, size, seed))

    def text_corpus(self, size: int, seed: int = 0, split: str = "text-corpus"):
        """Captions of scenes that are never rendered: `id` ("txt-..."), `text`. No id is shared with images."""
        self._check_size(size, "text_corpus")

        def build():
            import datasets

            rng = self._stream("text-corpus", split, seed)
            texts = []
            for _ in range(size):
                scene = self.sample_scene(rng, int(rng.integers(1, self.config.max_objects + 1)))
                texts.append(self.caption(scene, rng))
            return datasets.Dataset.from_dict(
                {"id": [f"txt-{i:07d}" for i in range(size)], "text": texts},
                features=datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string")}),
            )

        return self._cached(split, size, seed, build)

    def image_pool(self, size: int, seed: int = 0, split: str = "image-pool"):
        """Images without captions: `id` ("img-..."), `image`. No id is shared with the text corpus."""
        self._check_size(size, "image_pool")

        def build():
            import datasets

            rows = self._scene_rows("image-pool", split, size, seed, 1, self.config.max_objects, None)
            ids, images = [], []
            for index, _, image, _ in rows:
                ids.append(f"img-{index:07d}")
                images.append(_png(image))
            return datasets.Dataset.from_dict(
                {"id": ids, "image": images},
                features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()}),
            )

        return self._cached(split, size, seed, build)

    def _build_scenes(self, kind, split, size, seed, min_objects, max_objects, pool):
        import datasets

        columns = {"id": [], "image": [], "caption": [], "labels": [], "num_objects": [], "objects": []}
        for index, scene, image, caption in self._scene_rows(kind, split, size, seed, min_objects, max_objects, pool):
            columns["id"].append(f"{split}-{index:07d}")
            columns["image"].append(_png(image))
            columns["caption"].append(caption)
            columns["labels"].append(sorted({self.class_index(o.class_name) for o in scene}))
            columns["num_objects"].append(len(scene))
            columns["objects"].append(json.dumps([_object_record(o) for o in scene]))
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "image": datasets.Image(),
                "caption": datasets.Value("string"),
                "labels": datasets.List(datasets.ClassLabel(names=self.class_names)),
                "num_objects": datasets.Value("int32"),
                "objects": datasets.Value("string"),  # JSON list of the objects' attributes and geometry
            }
        )
        return datasets.Dataset.from_dict(columns, features=features)

    def _build_single(self, split, size, seed):
        import datasets

        columns = {"id": [], "image": [], "label": [], "caption": [], "objects": []}
        for index, scene, image, caption in self._scene_rows("single-object", split, size, seed, 1, 1, None,
                                                                    single_class_cycle=True):
            columns["id"].append(f"{split}-{index:07d}")
            columns["image"].append(_png(image))
            columns["label"].append(self.class_index(scene[0].class_name))
            columns["caption"].append(caption)
            columns["objects"].append(json.dumps([_object_record(o) for o in scene]))
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=self.class_names),
                "caption": datasets.Value("string"),
                "objects": datasets.Value("string"),
            }
        )
        return datasets.Dataset.from_dict(columns, features=features)

    # ----------------------------------------------------------------------------------------------- text
    def vocabulary_texts(self, size: int = 4000, seed: int = 0) -> list[str]:
        """Texts that cover the world's words (captions of a dedicated split plus every class prompt): the
        training text of a tokenizer."""
        rng = np.random.default_rng(_split_seed(seed, "tokenizer-text"))
        texts = []
        for _ in range(size):
            scene = self.sample_scene(rng, int(rng.integers(1, self.config.max_objects + 1)))
            texts.append(self.caption(scene, rng))
        texts += self.zero_shot_prompts()
        # every synonym at least once, so that no word of the world is left to single bytes
        words = [w for _, syn in COLOURS.values() for w in syn] + [w for syn in SHAPES.values() for w in syn]
        words += [w for _, syn in SIZES.values() for w in syn] + [w for syn in TEXTURES.values() for w in syn]
        texts.append(" ".join(words))
        return texts

    # ----------------------------------------------------------------------------------------------- cache
    def _cached(self, split: str, size: int, seed: int, build):
        if self.cache_dir is None:
            return build()
        import datasets

        key = f"v{self.config.version}-{self.config.fingerprint()[:12]}/{split}-n{size}-s{seed}"
        folder = self.cache_dir / "caption_world" / key
        if (folder / "dataset_info.json").is_file():
            try:
                return datasets.load_from_disk(str(folder))
            except Exception as error:  # a corrupt cache entry is never trusted: the user deletes it
                raise DatasetError(
                    f"Cached caption-world split at '{folder}' cannot be read ({error})",
                    "delete that folder; it is rebuilt on the next call",
                ) from error
        dataset = build()
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            dataset.save_to_disk(str(temporary))
            try:
                os.replace(temporary, folder)
            except OSError:  # another process finished first: keep its copy
                shutil.rmtree(temporary, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return datasets.load_from_disk(str(folder))


def _png(image: Image.Image) -> dict:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _object_record(obj: SceneObject) -> dict:
    return {
        "class_name": obj.class_name,
        "colour": obj.colour,
        "shape": obj.shape,
        "size": obj.size,
        "texture": obj.texture,
        "centre": [round(obj.centre[0], 2), round(obj.centre[1], 2)],
        "radius": round(obj.radius, 2),
        "angle": round(obj.angle, 2),
        "rgb": list(obj.rgb),
    }


def default_cache_dir() -> Path:
    """The user cache of generated data: `$EFFHUB_CACHE`, else `~/.cache/effhub`."""
    return Path(os.environ.get(DEFAULT_CACHE_ENV) or Path.home() / ".cache" / "effhub")


__all__ = [
    "CAPTION_WORLD_VERSION",
    "CAPTION_WORLD_FINGERPRINT",
    "CAPTION_WORLD_FINGERPRINTS",
    "CAPTION_WORLD_VERSIONS",
    "GEOMETRY",
    "SPLIT_KINDS",
    "SPLIT_NAMES",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "ZERO_SHOT_TEMPLATE",
    "CaptionWorldConfig",
    "CaptionWorld",
    "SceneObject",
    "default_cache_dir",
]
