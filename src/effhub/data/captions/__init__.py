"""Generated image-caption data: the caption world (coloured shapes described in varied words)."""

from .world import (
    CAPTION_WORLD_FINGERPRINT,
    CAPTION_WORLD_FINGERPRINTS,
    CAPTION_WORLD_VERSION,
    CAPTION_WORLD_VERSIONS,
    GEOMETRY,
    SPLIT_KINDS,
    SPLIT_NAMES,
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    ZERO_SHOT_TEMPLATE,
    CaptionWorld,
    CaptionWorldConfig,
    SceneObject,
    default_cache_dir,
)

__all__ = [
    "CAPTION_WORLD_VERSION",
    "CAPTION_WORLD_VERSIONS",
    "CAPTION_WORLD_FINGERPRINT",
    "CAPTION_WORLD_FINGERPRINTS",
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
