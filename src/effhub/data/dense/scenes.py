"""Generated multi-task scenes: semantic segmentation, depth and surface normals with exact labels.

Each scene is a ground plane seen by a pinhole camera (random height and downward pitch) with a few objects resting on
it (spheres, rotated boxes, upright cylinders). Every pixel is ray-cast analytically, so depth (z-depth in metres) and
normals (unit vectors in the camera frame: x right, y down, z forward) are exact.

Why the three tasks need different things from a shared backbone:

- **Segmentation depends on appearance.** A class is an object *type*: a shape crossed with a surface texture
  (stripes, checker, dots). Each shape carries two or three textures, so silhouettes do not name the class, and the
  colours are drawn at random for every object, so colour does not either; only the high-frequency texture pattern,
  together with the outline, does. The ground plane is class 0; sky and ground beyond `max_depth` are unlabeled (255).
- **Depth and normals depend on geometry.** Texture is albedo only: it never changes depth or normals. They follow
  from shading (one Lambertian light per scene), outlines, occlusions and where an object meets the ground (the
  camera's height and pitch vary per scene, so the image row alone does not give depth).

The generator is deterministic: scene `i` of a split is drawn from `numpy.random.default_rng([seed, split, i])`, so
the train and test splits come from different seeds and a scene never depends on how many others are generated. The
parameters live in a frozen :class:`SceneConfig`; :data:`SCENES_V1` is the frozen set recorded by recipes and
benchmarks. Data sets are cached on disk under `$EFFHUB_CACHE/scenes/` (default `~/.cache/effhub/scenes/`), keyed by
the parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...atomic import atomic_write_text
from .schema import IGNORE_INDEX

GENERATOR_VERSION = 1
"""Bumped whenever the rendering code changes what a given config produces (it is part of the cache key)."""

SPLITS = {"train": 0, "test": 1}

SHAPES = ("sphere", "box", "cylinder")
TEXTURES = ("stripes", "checker", "dots")
OBJECT_TYPES: tuple[tuple[str, str], ...] = (
    # ordered so that any prefix of 3 or more types shows every shape with more than one texture where possible
    ("sphere", "stripes"),
    ("box", "dots"),
    ("cylinder", "checker"),
    ("sphere", "checker"),
    ("box", "stripes"),
    ("cylinder", "dots"),
    ("sphere", "dots"),
    ("box", "checker"),
    ("cylinder", "stripes"),
)
MAX_CLASSES = 1 + len(OBJECT_TYPES)


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of the scene generator (frozen: a recipe records them and the cache is keyed by them).

    Args:
        height (`int`, defaults to 64): image height in pixels.
        width (`int`, defaults to 64): image width in pixels.
        num_classes (`int`, defaults to 7): segmentation classes: the ground plus `num_classes - 1` object types
            (shape x texture, at most 9).
        min_objects (`int`, defaults to 2): fewest objects per scene.
        max_objects (`int`, defaults to 5): most objects per scene.
        field_of_view (`float`, defaults to 60.0): horizontal field of view in degrees.
        max_depth (`float`, defaults to 20.0): ground farther than this (metres) is unlabeled background.
        noise_std (`float`, defaults to 0.02): std of the Gaussian pixel noise on a [0, 1] scale.
        num_train (`int`, defaults to 1000): scenes in the `train` split.
        num_test (`int`, defaults to 200): scenes in the `test` split.
        seed (`int`, defaults to 0): base seed of both splits.
    """

    height: int = 64
    width: int = 64
    num_classes: int = 7
    min_objects: int = 2
    max_objects: int = 5
    field_of_view: float = 60.0
    max_depth: float = 20.0
    noise_std: float = 0.02
    num_train: int = 1000
    num_test: int = 200
    seed: int = 0

    def __post_init__(self):
        for name in ("height", "width", "num_classes", "min_objects", "max_objects", "num_train", "num_test", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"SceneConfig.{name}={value!r} is not an int", f"pass an integer {name}")
        for name in ("field_of_view", "max_depth", "noise_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"SceneConfig.{name}={value!r} is not a number", f"pass a number for {name}")
        if self.height < 8 or self.width < 8:
            raise ConfigError(f"Scene size {self.height}x{self.width} is below 8x8", "pass height and width >= 8")
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(f"num_classes={self.num_classes} is outside [2, {MAX_CLASSES}]", f"pass 2..{MAX_CLASSES}")
        if not 0 <= self.min_objects <= self.max_objects <= 12:
            raise ConfigError(
                f"min_objects={self.min_objects}, max_objects={self.max_objects} is not 0 <= min <= max <= 12",
                "pass e.g. min_objects=2, max_objects=5",
            )
        if not 10.0 <= self.field_of_view <= 120.0:
            raise ConfigError(f"field_of_view={self.field_of_view} is outside [10, 120] degrees", "pass e.g. 60")
        if self.max_depth <= 3.0:
            raise ConfigError(f"max_depth={self.max_depth} leaves no room for objects", "pass more than 3 m, e.g. 20")
        if not 0.0 <= self.noise_std < 0.5:
            raise ConfigError(f"noise_std={self.noise_std} is outside [0, 0.5)", "pass e.g. 0.02")
        if self.num_train < 0 or self.num_test < 0:
            raise ConfigError("num_train and num_test must be >= 0", "pass non-negative split sizes")

    @property
    def class_names(self) -> tuple[str, ...]:
        return scene_class_names(self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> SceneConfig:
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ConfigError(f"SceneConfig has no field(s) {unknown}", f"use only {sorted(known)}")
        return cls(**mapping)

    def cache_key(self) -> str:
        """A folder name that changes whenever the parameters or the generator's version change."""
        payload = json.dumps({"version": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True)
        return f"v{GENERATOR_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


SCENES_V1 = SceneConfig()
"""The frozen generator parameters that recipes and benchmarks record (64x64, 7 classes, 2-5 objects)."""

SCENE_TASKS = {"segmentation": SCENES_V1.num_classes, "depth": 1, "normals": 3}


def scene_class_names(num_classes: int) -> tuple[str, ...]:
    """Class names of a scene set with `num_classes` classes (index 0 is the ground)."""
    return ("ground",) + tuple(f"{texture} {shape}" for shape, texture in OBJECT_TYPES[: num_classes - 1])


# ------------------------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------------------------


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    sector = hue * 6.0
    index = int(sector) % 6
    fraction = sector - int(sector)
    p, q, t = value * (1 - saturation), value * (1 - fraction * saturation), value * (1 - (1 - fraction) * saturation)
    return np.array([(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][index])


def _rotation_y(angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def _camera_rays(config: SceneConfig) -> np.ndarray:
    """Ray directions in the camera frame, scaled so that z = 1 (then the ray parameter is the z-depth)."""
    focal = (config.width / 2.0) / math.tan(math.radians(config.field_of_view) / 2.0)
    u = (np.arange(config.width) + 0.5 - config.width / 2.0) / focal
    v = (np.arange(config.height) + 0.5 - config.height / 2.0) / focal
    grid_u, grid_v = np.meshgrid(u, v)
    return np.stack([grid_u, grid_v, np.ones_like(grid_u)], axis=-1).reshape(-1, 3)


def _texture(kind: str, local: np.ndarray, size: float, phase: np.ndarray) -> np.ndarray:
    """A solid (3-D) 0/1 pattern in the object's own frame, about three periods across the object."""
    q = local / size + phase
    if kind == "stripes":
        return np.floor(q[:, 1] * 1.5) % 2 == 0
    if kind == "checker":
        return (np.floor(q * 1.5).sum(axis=1) % 2) == 0
    cell = q * 2.0 - np.floor(q * 2.0) - 0.5  # dots: balls on a cubic lattice
    return np.linalg.norm(cell, axis=1) < 0.33


def _intersect_sphere(origin, rays, centre, radius):
    oc = origin - centre
    a = np.einsum("ij,ij->i", rays, rays)
    b = 2.0 * rays @ oc
    c = oc @ oc - radius**2
    disc = b * b - 4 * a * c
    hit = disc >= 0
    t = np.full(len(rays), np.inf)
    t[hit] = (-b[hit] - np.sqrt(disc[hit])) / (2 * a[hit])
    t[t <= 0] = np.inf
    points = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * rays
    normals = (points - centre) / radius
    return t, normals, points - centre


def _intersect_box(origin, rays, centre, half, rotation):
    local_origin = rotation.T @ (origin - centre)
    local_rays = rays @ rotation  # = (R^T d) for each row
    safe = np.where(np.abs(local_rays) < 1e-12, 1e-12, local_rays)
    t1 = (-half - local_origin) / safe
    t2 = (half - local_origin) / safe
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near, t_far = near.max(axis=1), far.min(axis=1)
    hit = (t_far >= t_near) & (t_near > 0)
    t = np.where(hit, t_near, np.inf)
    axis = near.argmax(axis=1)
    local_normals = np.zeros_like(rays)
    local_normals[np.arange(len(rays)), axis] = -np.sign(safe[np.arange(len(rays)), axis])
    local_points = local_origin + np.where(hit, t_near, 0.0)[:, None] * local_rays
    return t, local_normals @ rotation.T, local_points


def _intersect_cylinder(origin, rays, centre, radius, half_height, rotation):
    ox, oz = origin[0] - centre[0], origin[2] - centre[2]
    dx, dz = rays[:, 0], rays[:, 2]
    a = dx * dx + dz * dz
    b = 2.0 * (ox * dx + oz * dz)
    c = ox * ox + oz * oz - radius**2
    disc = b * b - 4 * a * c
    t_side = np.full(len(rays), np.inf)
    ok = (disc >= 0) & (a > 1e-12)
    t_side[ok] = (-b[ok] - np.sqrt(disc[ok])) / (2 * a[ok])
    y_side = origin[1] + t_side * rays[:, 1]
    t_side[(t_side <= 0) | (y_side < 0) | (y_side > 2 * half_height)] = np.inf
    top = 2 * half_height
    with np.errstate(divide="ignore", invalid="ignore"):
        t_top = (top - origin[1]) / rays[:, 1]
    t_top = np.where(np.isfinite(t_top) & (t_top > 0), t_top, np.inf)
    cap_x = origin[0] + t_top * rays[:, 0] - centre[0]
    cap_z = origin[2] + t_top * rays[:, 2] - centre[2]
    with np.errstate(invalid="ignore"):
        t_top[~(cap_x * cap_x + cap_z * cap_z <= radius**2)] = np.inf
    use_top = t_top < t_side
    t = np.minimum(t_side, t_top)
    finite_t = np.where(np.isfinite(t), t, 0.0)
    points = origin + finite_t[:, None] * rays
    normals = np.zeros_like(rays)
    normals[:, 0] = (points[:, 0] - centre[0]) / radius
    normals[:, 2] = (points[:, 2] - centre[2]) / radius
    normals[use_top] = (0.0, 1.0, 0.0)
    return t, normals, (points - centre) @ rotation


def render_scene(config: SceneConfig, split: str, index: int, rays: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Render scene `index` of `split`: `image` uint8 (H, W, 3), `segmentation` uint8 (H, W), `depth` float32 (H, W)
    in metres (0 = no surface), `normals` float32 (H, W, 3) unit vectors in the camera frame (0 = no surface)."""
    if split not in SPLITS:
        raise ConfigError(f"Unknown scene split '{split}'", f"pass one of {sorted(SPLITS)}")
    rng = np.random.default_rng([int(config.seed), SPLITS[split], int(index)])
    height, width = config.height, config.width
    camera_rays = _camera_rays(config) if rays is None else rays
    num_pixels = height * width

    camera_height = rng.uniform(1.2, 2.0)
    pitch = math.radians(rng.uniform(15.0, 30.0))
    # camera -> world rotation; columns are the camera's right, down and forward axes in world coordinates (y up)
    to_world = np.array(
        [[1.0, 0.0, 0.0], [0.0, -math.cos(pitch), -math.sin(pitch)], [0.0, -math.sin(pitch), math.cos(pitch)]]
    ).T
    rays_world = camera_rays @ to_world.T
    origin = np.array([0.0, camera_height, 0.0])

    depth = np.full(num_pixels, np.inf)
    labels = np.full(num_pixels, IGNORE_INDEX, dtype=np.uint8)
    normals_world = np.zeros((num_pixels, 3))
    albedo = np.zeros((num_pixels, 3))

    # ground plane y = 0, class 0, large low-contrast tiles
    with np.errstate(divide="ignore"):
        t_ground = np.where(rays_world[:, 1] < 0, -camera_height / rays_world[:, 1], np.inf)
    t_ground[t_ground > config.max_depth] = np.inf
    ground = np.isfinite(t_ground)
    depth[ground] = t_ground[ground]
    labels[ground] = 0
    normals_world[ground] = (0.0, 1.0, 0.0)
    ground_colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.45, 0.8))
    points = origin + np.where(ground, t_ground, 0.0)[:, None] * rays_world
    tiles = (np.floor(points[:, 0]) + np.floor(points[:, 2])) % 2 == 0
    albedo[ground] = ground_colour * np.where(tiles[ground], 1.0, 0.85)[:, None]

    half_fov = math.tan(math.radians(config.field_of_view) / 2.0)
    num_types = config.num_classes - 1
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        type_index = int(rng.integers(num_types))
        shape, texture = OBJECT_TYPES[type_index]
        distance = rng.uniform(2.5, 7.5)
        x = rng.uniform(-0.8, 0.8) * distance * half_fov
        angle = rng.uniform(0.0, 2 * math.pi)
        rotation = _rotation_y(angle)
        if shape == "sphere":
            radius = rng.uniform(0.35, 0.8)
            centre = np.array([x, radius, distance])
            t, normals, local = _intersect_sphere(origin, rays_world, centre, radius)
            local = local @ rotation
            size = radius
        elif shape == "box":
            half = rng.uniform(0.3, 0.75, size=3)
            centre = np.array([x, half[1], distance])
            t, normals, local = _intersect_box(origin, rays_world, centre, half, rotation)
            size = float(half.max())
        else:
            radius, half_height = rng.uniform(0.25, 0.55), rng.uniform(0.35, 0.9)
            centre = np.array([x, half_height, distance])
            t, normals, local = _intersect_cylinder(origin, rays_world, centre, radius, half_height, rotation)
            size = max(radius, half_height)
        first = rng.uniform(size=3)
        colour_a = _hsv_to_rgb(first[0], 0.5 + 0.5 * first[1], 0.7 + 0.3 * first[2])
        second = rng.uniform(size=3)
        colour_b = _hsv_to_rgb(second[0], 0.5 + 0.5 * second[1], 0.12 + 0.28 * second[2])
        phase = rng.uniform(0.0, 1.0, size=3)
        closer = t < depth
        if not closer.any():
            continue
        pattern = _texture(texture, local[closer], size, phase)
        depth[closer] = t[closer]
        labels[closer] = 1 + type_index
        normals_world[closer] = normals[closer]
        albedo[closer] = np.where(pattern[:, None], colour_a, colour_b)

    # Lambertian shading with one light from above; texture only scales the albedo, never the geometry
    elevation, azimuth = math.radians(rng.uniform(35.0, 75.0)), rng.uniform(0.0, 2 * math.pi)
    light = np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), -math.cos(elevation) * math.cos(azimuth)]
    )
    ambient = rng.uniform(0.3, 0.45)
    shading = ambient + (1.0 - ambient) * np.clip(normals_world @ light, 0.0, None)
    surface = np.isfinite(depth)
    image = np.zeros((num_pixels, 3))
    image[surface] = albedo[surface] * shading[surface, None]
    sky_top = _hsv_to_rgb(rng.uniform(0.5, 0.7), rng.uniform(0.2, 0.6), rng.uniform(0.6, 1.0))
    sky_bottom = np.full(3, 0.9)
    rows = np.repeat(np.linspace(0.0, 1.0, height), width)
    image[~surface] = sky_top + (sky_bottom - sky_top) * rows[~surface, None]
    if config.noise_std > 0:
        image += rng.normal(0.0, config.noise_std, size=image.shape)
    image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    normals_camera = normals_world @ to_world  # world -> camera: n_c = R^T n_w
    normals_camera[~surface] = 0.0
    depth[~surface] = 0.0
    return {
        "image": image.reshape(height, width, 3),
        "segmentation": labels.reshape(height, width),
        "depth": depth.astype(np.float32).reshape(height, width),
        "normals": normals_camera.astype(np.float32).reshape(height, width, 3),
    }


# ------------------------------------------------------------------------------------------------------------------
# data set and cache
# ------------------------------------------------------------------------------------------------------------------


def scene_features(config: SceneConfig):
    """The `datasets.Features` of a scene data set."""
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "segmentation": datasets.Image(),
            "depth": datasets.Array2D(shape=(config.height, config.width), dtype="float32"),
            "normals": datasets.Array3D(shape=(config.height, config.width, 3), dtype="float32"),
            "label_mask": {task: datasets.Value("bool") for task in SCENE_TASKS},
        }
    )


def default_cache_dir() -> Path:
    """`$EFFHUB_CACHE` if set, else `~/.cache/effhub`."""
    return Path(os.environ.get("EFFHUB_CACHE") or Path.home() / ".cache" / "effhub").expanduser()


def build_scenes(config: SceneConfig = SCENES_V1, split: str = "train", progress: bool | None = None):
    """Generate one split as an in-memory `datasets.Dataset` (no cache; see :func:`load_scenes`)."""
    import datasets
    from PIL import Image
    from tqdm.auto import tqdm

    if split not in SPLITS:
        raise ConfigError(f"Unknown scene split '{split}'", f"pass one of {sorted(SPLITS)}")
    count = config.num_train if split == "train" else config.num_test
    rays = _camera_rays(config)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    columns: dict[str, list] = {"id": [], "image": [], "segmentation": [], "depth": [], "normals": [], "label_mask": []}
    for index in tqdm(range(count), desc=f"scenes/{split}", disable=disable):
        scene = render_scene(config, split, index, rays)
        columns["id"].append(f"{split}-{index:06d}")
        columns["image"].append(Image.fromarray(scene["image"], mode="RGB"))
        columns["segmentation"].append(Image.fromarray(scene["segmentation"], mode="L"))
        columns["depth"].append(scene["depth"])
        columns["normals"].append(scene["normals"])
        columns["label_mask"].append({task: True for task in SCENE_TASKS})
    features = scene_features(config)
    info = datasets.DatasetInfo(
        description=f"effhub generated scenes, split {split}, config {json.dumps(config.to_dict(), sort_keys=True)}",
        features=features,
    )
    return datasets.Dataset.from_dict(columns, features=features, info=info, split=split)


def _numpy_view(dataset):
    return dataset.with_format(
        "numpy", columns=["image", "segmentation", "depth", "normals"], output_all_columns=True
    )


def load_scenes(
    config: SceneConfig | dict | None = None,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
):
    """Load a split of the generated scenes, generating and caching it on first use.

    Rows come back with `image` uint8 (H, W, 3), `segmentation` uint8 (H, W), `depth` float32 (H, W) and `normals`
    float32 (H, W, 3) as numpy arrays, plus `id` and `label_mask` (see `effhub.data.dense.schema`).

    Args:
        config (`SceneConfig` or `dict`, defaults to `SCENES_V1`): the generator's parameters.
        split (`str`, defaults to `"train"`): `train` or `test`.
        cache_dir (`str`, *optional*): the cache root (default `$EFFHUB_CACHE` or `~/.cache/effhub`).
        progress (`bool`, *optional*): show a progress bar while generating (default: only on a terminal).
    """
    import datasets

    if config is None:
        config = SCENES_V1
    elif isinstance(config, dict):
        config = SceneConfig.from_dict(config)
    if split not in SPLITS:
        raise ConfigError(f"Unknown scene split '{split}'", f"pass one of {sorted(SPLITS)}")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / "scenes" / config.cache_key() / split
    if not (target / "dataset_info.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target.parent / "config.json", json.dumps(config.to_dict(), indent=1, sort_keys=True))
        dataset = build_scenes(config, split, progress=progress)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{split}."))
        quiet = ((not sys.stderr.isatty()) if progress is None else not progress) and datasets.is_progress_bar_enabled()
        try:
            if quiet:
                datasets.disable_progress_bars()
            dataset.save_to_disk(str(staging / "data"))
            try:
                os.replace(staging / "data", target)
            except OSError:
                # another process finished first: its copy holds the same scenes
                if not (target / "dataset_info.json").is_file():
                    raise
        finally:
            if quiet:
                datasets.enable_progress_bars()
            shutil.rmtree(staging, ignore_errors=True)
    return _numpy_view(datasets.load_from_disk(str(target)))


__all__ = [
    "GENERATOR_VERSION",
    "OBJECT_TYPES",
    "SceneConfig",
    "SCENES_V1",
    "SCENE_TASKS",
    "scene_class_names",
    "render_scene",
    "scene_features",
    "build_scenes",
    "load_scenes",
    "default_cache_dir",
]
