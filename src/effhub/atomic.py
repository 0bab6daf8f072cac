"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then `os.replace`.

Readers (another process, a resumed run, a Hub client) see the old file or the new one, never half of one, and an
interrupted write leaves no stray temporary file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload: Any, sort_keys: bool = False) -> Path:
    """Write `payload` as indented JSON (with a final newline) to `path` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")


def atomic_save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Save `{name: tensor}` as safetensors to `path` atomically (parent folders are created); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        save_file({key: value.detach().contiguous().cpu() for key, value in tensors.items()}, temporary,
                  metadata=metadata or {"format": "pt"})
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_safetensors"]
