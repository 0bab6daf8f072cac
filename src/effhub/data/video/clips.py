"""Generated video clips in which only some frames carry the class evidence: a test-bed for per-frame policies.

Each clip shows `num_frames` frames of one object class. The class is the object's shape (disc, square, triangle,
cross) crossed with the orientation of the stripes painted on it (horizontal or vertical), so a frame must be read at
a resolution and precision that keep both; the object's colour, size and position are nuisances that change from
frame to frame. A fixed share of the frames (`evidence_fraction`, 50% by default) shows the object clearly; every
other frame is one of four uninformative kinds:

- **blank**: background and noise only;
- **blurred**: the object under a strong box blur (shape and stripes unreadable);
- **occluded**: the object mostly covered by a grey block;
- **repeated**: an exact copy of the previous frame (redundant: it adds nothing a model has not seen).

So a per-frame policy can save computation on the uninformative frames (skip them, or read them at a low precision)
without losing the clip's class. Version 2 (:data:`CLIPS_V2`) adds **faint** clips (`faint_fraction` of the clips):
their stripes have a low contrast (`faint_stripe_contrast`), a fine detail that a network reading its activations at
a few bits loses while the stripes of the other clips survive it; their evidence frames are recorded as
`faint evidence`. A policy can then do better than any single precision: skip the uninformative frames, read the
clear evidence at a low precision and spend bits on the faint evidence only.

Everything is deterministic by seed; the parameters are frozen dataclasses, one per version (:data:`CLIP_VERSIONS`;
:data:`CLIPS_V3`, version 2 with fainter stripes, is the version the benchmarks freeze; :data:`CLIPS_V1` and
:data:`CLIPS_V2` stay readable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ConfigError

SHAPES = ("disc", "square", "triangle", "cross")
STRIPES = ("horizontal stripes", "vertical stripes")
CLIP_CLASSES = tuple(f"{shape} with {stripes}" for shape in SHAPES for stripes in STRIPES)
"""The class names: shape x stripe orientation (8 classes)."""

FRAME_KINDS = ("evidence", "blank", "blurred", "occluded", "repeated", "faint evidence")
"""Per-frame kinds recorded with every clip (`frame_kind` column, index into this tuple). `faint evidence` (version 2)
is an evidence frame of a faint clip: both evidence kinds count towards `evidence_fraction`."""
EVIDENCE_KINDS = (0, 5)
"""Indices of the kinds that carry the class evidence."""


@dataclass(frozen=True)
class ClipConfig:
    """Parameters of the clip generator (frozen: recipes and benchmark results record them).

    Args:
        num_frames (`int`): frames per clip.
        size (`int`): frame side in pixels.
        evidence_fraction (`float`): share of each clip's frames that show the object clearly (rounded to frames,
            at least one).
        noise (`float`): std of the Gaussian pixel noise (on [0, 1] pixels).
        min_radius, max_radius (`int`): object half-size range in pixels.
        stripe_period (`int`): period of the stripes in pixels.
        blur (`int`): box-blur radius of the blurred frames.
        occlusion (`float`): share of the object's bounding box the occluder covers.
        background (`tuple[float, float]`): range of the per-clip background grey level.
        stripe_contrast (`float`): the dark stripes are the object's colour times `1 - stripe_contrast`.
        faint_fraction (`float`): share of the clips drawn as faint (version 2; 0 in version 1).
        faint_stripe_contrast (`float`): `stripe_contrast` of the faint clips (every frame of the clip).
    """

    num_frames: int = 8
    size: int = 32
    evidence_fraction: float = 0.5
    noise: float = 0.05
    min_radius: int = 8
    max_radius: int = 12
    stripe_period: int = 8
    blur: int = 4
    occlusion: float = 0.85
    background: tuple[float, float] = (0.0, 0.25)
    stripe_contrast: float = 0.55
    faint_fraction: float = 0.0
    faint_stripe_contrast: float = 0.15

    def __post_init__(self):
        if self.num_frames < 1 or self.size < 2 * self.max_radius + 2:
            raise ConfigError(f"ClipConfig(num_frames={self.num_frames}, size={self.size}) cannot hold an object of "
                              f"radius {self.max_radius}", "use num_frames >= 1 and size >= 2 * max_radius + 2")
        if not 0.0 < self.evidence_fraction <= 1.0:
            raise ConfigError(f"evidence_fraction={self.evidence_fraction} is outside (0, 1]",
                              "pass a fraction such as 0.5")
        if not 0.0 <= self.faint_fraction <= 1.0:
            raise ConfigError(f"faint_fraction={self.faint_fraction} is outside [0, 1]", "pass a share such as 0.5")

    @property
    def evidence_frames(self) -> int:
        """Frames per clip that carry the class evidence."""
        return max(1, int(round(self.evidence_fraction * self.num_frames)))

    def to_dict(self) -> dict:
        return asdict(self)


CLIPS_V1 = ClipConfig()
"""The generator parameters frozen before the first benchmark run (8 frames of 32 x 32, 50% evidence, stripes of
period 8 on objects of radius 8-12). A test pins a fingerprint of the clips it draws. (Earlier, never released
parameters, stripes of period 4 on objects of radius 6-10 with the dark stripes near the background's grey, were too
hard for a small network to learn in a few hundred steps.)"""

CLIPS_V2 = ClipConfig(faint_fraction=0.5, faint_stripe_contrast=0.15)
"""Version 2, frozen before its first benchmark run: version 1 plus faint clips (half of the clips; stripes of
contrast 0.15 instead of 0.55). On version 1 a network read at 4 bits lost nothing against full precision, so a
per-frame precision choice had nothing to buy but skips; on the faint clips low bit-widths lose the stripes."""

CLIPS_V3 = ClipConfig(faint_fraction=0.5, faint_stripe_contrast=0.05)
"""Version 3, frozen before its first benchmark run: version 2 with the faint clips' stripes at contrast 0.05. On
version 2 the any-precision stage taught every bit-width the faint stripes too (2 bits lost 0 to 0.55 points on the
benchmark's three seeds), so the uniform-precision curve was flat and a per-frame policy had nothing to buy but skips.
Two candidates were trained with the demo recipe (seed 0) before any benchmark run: at contrast 0.08 the
full-precision network did not learn the faint clips in its 1,200 steps (0.85 top-1 over all clips); at 0.05 it read
0.996, 4 bits 0.9975 and 2 bits 0.9825."""

CLIP_VERSIONS = {1: CLIPS_V1, 2: CLIPS_V2, 3: CLIPS_V3}
"""Every frozen version of the generator parameters, by number (recipes name one with `data.clips_version`)."""


def clip_config(version: int = 1, **changes) -> ClipConfig:
    """The parameters of frozen `version` with `changes` (e.g. `num_frames`, `size`) applied."""
    from dataclasses import replace

    if version not in CLIP_VERSIONS:
        raise ConfigError(f"clips version {version!r} is unknown", f"use one of {sorted(CLIP_VERSIONS)}")
    return replace(CLIP_VERSIONS[version], **changes)


def _shape_mask(shape: int, offset_y: np.ndarray, offset_x: np.ndarray, radius: int) -> np.ndarray:
    if SHAPES[shape] == "disc":
        return offset_y**2 + offset_x**2 <= radius**2
    if SHAPES[shape] == "square":
        return (np.abs(offset_y) <= radius * 0.85) & (np.abs(offset_x) <= radius * 0.85)
    if SHAPES[shape] == "triangle":  # apex up: the half-width grows from the top row to the bottom
        return (offset_y >= -radius) & (offset_y <= radius) & (np.abs(offset_x) <= (offset_y + radius) / 2)
    arm = max(2, radius // 3)  # cross
    return ((np.abs(offset_y) <= arm) & (np.abs(offset_x) <= radius)) | \
        ((np.abs(offset_x) <= arm) & (np.abs(offset_y) <= radius))


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur of a (H, W, 3) image (edges clamped)."""
    for axis in (0, 1):
        padded = np.concatenate([np.repeat(image.take([0], axis), radius, axis), image,
                                 np.repeat(image.take([-1], axis), radius, axis)], axis)
        cumulative = np.cumsum(padded, axis=axis, dtype=np.float64)
        zero = np.zeros_like(cumulative.take([0], axis))
        cumulative = np.concatenate([zero, cumulative], axis)
        width = 2 * radius + 1
        size = image.shape[axis]
        image = (cumulative.take(np.arange(width, width + size), axis) -
                 cumulative.take(np.arange(0, size), axis)) / width
    return image


def _render_object(rng, label: int, config: ClipConfig, grid_y, grid_x, background,
                   contrast: float) -> tuple[np.ndarray, tuple]:
    """A frame with the object of class `label` at a random place, size and colour, stripes of `contrast`; returns
    it and its box."""
    shape, stripes = divmod(label, len(STRIPES))
    radius = int(rng.integers(config.min_radius, config.max_radius + 1))
    centre_y = int(rng.integers(radius + 1, config.size - radius - 1))
    centre_x = int(rng.integers(radius + 1, config.size - radius - 1))
    offset_y, offset_x = grid_y - centre_y, grid_x - centre_x
    mask = _shape_mask(shape, offset_y, offset_x, radius)
    phase = int(rng.integers(0, config.stripe_period))
    coordinate = grid_y if stripes == 0 else grid_x
    dark = ((coordinate + phase) % config.stripe_period) < config.stripe_period // 2
    colour = rng.uniform(0.55, 1.0, 3)
    shade = np.where(dark[..., None], colour * (1.0 - contrast), colour)
    frame = np.where(mask[..., None], shade, background)
    return frame, (centre_y - radius, centre_y + radius + 1, centre_x - radius, centre_x + radius + 1)


def _clip_frames(rng, label: int, config: ClipConfig, grid_y, grid_x) -> tuple[np.ndarray, np.ndarray]:
    """One clip: (T, H, W, 3) float frames in [0, 1] and the (T,) frame kinds."""
    frames_total = config.num_frames
    # version 1 draws nothing here (its clips stay bit-identical)
    faint = config.faint_fraction > 0 and bool(rng.random() < config.faint_fraction)
    contrast = config.faint_stripe_contrast if faint else config.stripe_contrast
    kinds = np.empty(frames_total, dtype=np.int64)
    evidence = rng.choice(frames_total, size=config.evidence_frames, replace=False)
    kinds[:] = rng.integers(1, FRAME_KINDS.index("repeated") + 1, frames_total)  # blank, blurred, occluded, repeated
    kinds[evidence] = FRAME_KINDS.index("faint evidence") if faint else 0
    if kinds[0] == FRAME_KINDS.index("repeated"):  # nothing to repeat at the start
        kinds[0] = FRAME_KINDS.index("blank")
    base = rng.uniform(*config.background, 3)
    frames = np.empty((frames_total, config.size, config.size, 3), dtype=np.float64)
    for index, kind in enumerate(kinds):
        name = FRAME_KINDS[kind]
        if name == "repeated":
            frames[index] = frames[index - 1]
            continue
        background = np.broadcast_to(base + rng.normal(0, 0.03, 3), (config.size, config.size, 3))
        if name == "blank":
            frame = background.copy()
        else:
            frame, (top, bottom, left, right) = _render_object(rng, label, config, grid_y, grid_x, background,
                                                               contrast)
            if name == "blurred":
                frame = _box_blur(frame, config.blur)
            elif name == "occluded":
                height, width = bottom - top, right - left
                cover_h = int(np.ceil(height * np.sqrt(config.occlusion)))
                cover_w = int(np.ceil(width * np.sqrt(config.occlusion)))
                y0 = top + int(rng.integers(0, height - cover_h + 1))
                x0 = left + int(rng.integers(0, width - cover_w + 1))
                frame[y0:y0 + cover_h, x0:x0 + cover_w] = rng.uniform(0.35, 0.6)
        frames[index] = frame + rng.normal(0.0, config.noise, frame.shape)
    return np.clip(frames, 0.0, 1.0), kinds


def generate_clips(num_clips: int, seed: int, config: ClipConfig | None = None) -> dict[str, np.ndarray]:
    """Generate `num_clips` clips as numpy arrays (deterministic by `seed`).

    Returns:
        `dict` with `frames` (uint8, `(N, T, H, W, 3)`), `label` (int64, `(N,)`) and `frame_kind` (int64, `(N, T)`,
        indices into :data:`FRAME_KINDS`).
    """
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ConfigError(f"num_clips={num_clips!r}", "ask for at least one clip")
    config = config or CLIPS_V1
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLIP_CLASSES), num_clips)
    grid_y, grid_x = np.mgrid[0:config.size, 0:config.size]
    frames = np.empty((num_clips, config.num_frames, config.size, config.size, 3), dtype=np.uint8)
    kinds = np.empty((num_clips, config.num_frames), dtype=np.int64)
    for index, label in enumerate(labels):
        clip, kinds[index] = _clip_frames(rng, int(label), config, grid_y, grid_x)
        frames[index] = np.round(clip * 255).astype(np.uint8)
    return {"frames": frames, "label": labels.astype(np.int64), "frame_kind": kinds}


def load_clips(split: str = "train", num_clips: int | None = None, seed: int = 0,
               config: ClipConfig | dict | None = None):
    """The generated clips of `split` as a `datasets.Dataset` (`id`, `frames`, `label`, `frame_kind`), torch format.

    Splits use disjoint seeds (`train`: 2*seed+1, `test`: 2*seed+2, `val`: 2*seed+3), so no clip is shared.

    Args:
        split (`str`): `"train"`, `"val"` or `"test"`.
        num_clips (`int`, *optional*): defaults to 1024 for train and 512 otherwise.
        seed (`int`): the data seed.
        config (`ClipConfig` or `dict`, *optional*): generator parameters (:data:`CLIPS_V1` by default).
    """
    import datasets

    offsets = {"train": 1, "test": 2, "val": 3}
    if split not in offsets:
        raise ConfigError(f"unknown split '{split}' of the generated clips", f"use one of {sorted(offsets)}")
    if isinstance(config, dict):
        config = ClipConfig(**config)
    config = config or CLIPS_V1
    num_clips = num_clips or (1024 if split == "train" else 512)
    arrays = generate_clips(int(num_clips), seed * 2 + offsets[split], config)
    features = datasets.Features({
        "id": datasets.Value("int64"),
        "frames": datasets.Array4D(shape=(config.num_frames, config.size, config.size, 3), dtype="uint8"),
        "label": datasets.ClassLabel(names=list(CLIP_CLASSES)),
        "frame_kind": datasets.Sequence(datasets.Value("int64"), length=config.num_frames),
    })
    dataset = datasets.Dataset.from_dict({"id": np.arange(len(arrays["label"])), **arrays}, features=features)
    return dataset.with_format("torch")


__all__ = [
    "CLIPS_V1",
    "CLIPS_V2",
    "CLIPS_V3",
    "CLIP_CLASSES",
    "CLIP_VERSIONS",
    "EVIDENCE_KINDS",
    "FRAME_KINDS",
    "SHAPES",
    "STRIPES",
    "ClipConfig",
    "clip_config",
    "generate_clips",
    "load_clips",
]
