"""Run metadata (`run_info.json`): what produced a run folder, so that it can be reproduced and evaluated."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RECORDED_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "peft", "huggingface_hub", "effhub")


def package_versions(names=RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None for a missing package)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(folder: Path, *arguments: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_revision(folder: str | Path | None = None) -> dict[str, Any]:
    """`{"git_sha": ..., "git_dirty": ...}` of the git checkout holding `folder` (default: effhub's source)."""
    if folder is None:
        folder = Path(__file__).resolve().parent
    sha = _git(Path(folder), "rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": None, "git_dirty": None}
    status = _git(Path(folder), "status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def collect_run_info(*, method: str, seed: int, recipe: dict | None, world_size: int, mixed_precision: str,
                     grad_accum: int, stages: dict[str, list[dict]], device: str) -> dict[str, Any]:
    """The metadata dict written to `run_info.json` at the start of a run."""
    return {
        "method": method,
        "seed": seed,
        "recipe": recipe,
        "world_size": world_size,
        "mixed_precision": mixed_precision,
        "grad_accum": grad_accum,
        "device": device,
        "stages": stages,
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **git_revision(),
    }


__all__ = ["RECORDED_PACKAGES", "package_versions", "git_revision", "collect_run_info"]
