"""Generated image-caption data: the caption world (coloured shapes described in varied words)."""

from .world import (
    CAPTION_WORLD_FINGERPRINT,
    CAPTION_WORLD_VERSION,
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
    "CAPTION_WORLD_FINGERPRINT",
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
