"""Generated image-caption data: the caption world (coloured shapes described in varied words)."""

from . import world
from .world import *  # noqa: F401,F403 - the package's public names are the world module's

__all__ = list(world.__all__)
