"""Push an effhub run folder (which is a model folder) to a Hub repository in one atomic commit."""

from __future__ import annotations

import fnmatch
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, HubError, OfflineError

# A run folder is the model folder plus training by-products that do not belong in a model repository.
DEFAULT_IGNORE_PATTERNS = (
    "checkpoints/*",
    "logs/*",
    "*.tmp",
    "*.part",
    "*.lock",
    "*~",
    "*.pyc",
    "__pycache__/*",
    "*/__pycache__/*",
    ".git/*",
    ".cache/*",
    ".DS_Store",
)
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.gguf", "*.h5", "*.msgpack")
LOCAL_HUB_HINT = "start the local hub (`effhub hub serve`) and `export HF_ENDPOINT=http://127.0.0.1:8765`"


def resolve_endpoint(endpoint: str | None) -> str:
    """The Hub URL to talk to: `endpoint`, else `HF_ENDPOINT` as set now, else huggingface_hub's default."""
    if endpoint:
        return endpoint.rstrip("/")
    from huggingface_hub import constants

    # huggingface_hub reads HF_ENDPOINT once at import; the environment as it is now wins
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:  # httpx2 in huggingface_hub 2.x, httpx in 1.x: the utils module re-exports the one in use
        from huggingface_hub.utils import httpx as http_module
    except ImportError:  # pragma: no cover - depends on the huggingface_hub version
        import httpx as http_module
    return (http_module.TransportError, ConnectionError)


@contextmanager
def hub_errors(endpoint: str, action: str):
    """Turn the Hub clients' network and HTTP failures into `OfflineError` / `HubError` naming the fix.

    Args:
        endpoint (`str`): the endpoint the call went to (shown to the user).
        action (`str`): what was being done, e.g. "push to effhub/my-model".
    """
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        yield
    except OfflineModeIsEnabled:
        raise OfflineError(f"Cannot {action}: HF_HUB_OFFLINE is set, so no Hub request is made",
                           f"unset HF_HUB_OFFLINE, or {LOCAL_HUB_HINT} (run it without HF_HUB_OFFLINE)") from None
    except _transport_errors() as error:
        raise OfflineError(f"Cannot {action}: the Hub endpoint {endpoint} is unreachable ({type(error).__name__}: "
                           f"{error})", f"check HF_ENDPOINT and the network, or {LOCAL_HUB_HINT}; HF_HUB_OFFLINE=1 "
                           "only serves files already in the cache") from None
    except HFValidationError as error:
        raise HubError(f"Cannot {action}: {error}", "name the repository 'namespace/name'") from None
    except RepositoryNotFoundError:
        raise HubError(f"Cannot {action}: the repository does not exist on {endpoint} or your token cannot see it",
                       "check the repo id and HF_TOKEN") from None
    except HfHubHTTPError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HubError(f"Cannot {action}: {endpoint} answered {first_line}",
                       "check the repo id, your token (HF_TOKEN) and its write access") from None


def _is_ignored(relative: str, patterns) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def files_to_push(folder: str | os.PathLike,
                  ignore_patterns: list[str] | tuple[str, ...] | None = DEFAULT_IGNORE_PATTERNS) -> list[str]:
    """The files of `folder` that `push_folder` uploads (relative POSIX paths, sorted): every file not ignored."""
    folder = Path(folder)
    patterns = list(ignore_patterns or [])
    kept = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return [relative for relative in kept if not _is_ignored(relative, patterns)]


REPO_TYPES = ("model", "dataset")


def push_folder(folder: str | os.PathLike, repo_id: str, endpoint: str | None = None, token: str | None = None,
                private: bool = False, commit_message: str | None = None,
                ignore_patterns: list[str] | tuple[str, ...] | None = DEFAULT_IGNORE_PATTERNS,
                repo_type: str = "model") -> str:
    """Create `repo_id` if needed and upload `folder` to it in one commit; return the repository URL.

    Works against the local hub (`effhub hub serve`) and any Hub endpoint, through `huggingface_hub.HfApi`.

    Args:
        folder (`str` or `os.PathLike`): a model folder or effhub run folder (`config.json`, `model.safetensors` or an
            adapter, `README.md`, `images/`, ...).
        repo_id (`str`): `namespace/name` of the model repository.
        endpoint (`str`, *optional*): Hub URL; defaults to `HF_ENDPOINT`, then huggingface_hub's default.
        token (`str`, *optional*): access token; defaults to huggingface_hub's (`HF_TOKEN` or the saved login). The
            local hub accepts any token or none.
        private (`bool`, *optional*, defaults to `False`): create the repository as private.
        commit_message (`str`, *optional*): defaults to "Upload <folder name> with effhub".
        ignore_patterns (`list[str]`, *optional*): glob patterns (relative to `folder`) left out of the upload.
            Defaults to `DEFAULT_IGNORE_PATTERNS`: the run folder's `checkpoints/` and `logs/`, temporary, lock and
            cache files. Pass `[]` to upload everything.
        repo_type (`str`, *optional*, defaults to `"model"`): `"model"`, or `"dataset"` for a folder of results
            (tables, plots, JSON; no weights needed), e.g. the results of a tool's simulation.

    Raises:
        `CheckpointError`: `folder` is missing, or (a model repository) holds no model weights outside the ignored
            paths.
        `OfflineError`: the endpoint is unreachable or `HF_HUB_OFFLINE` is set.
        `HubError`: the Hub refused the repository or the commit.
    """
    from huggingface_hub import HfApi

    from .. import __version__

    folder = Path(folder)
    if repo_type not in REPO_TYPES:
        raise HubError(f"Cannot push '{folder}': repo_type {repo_type!r} is not supported",
                       f"use one of {', '.join(REPO_TYPES)}")
    if not folder.is_dir():
        raise CheckpointError(f"Cannot push '{folder}': it is not a folder",
                              "pass a model or run folder written by save_pretrained or `effhub train`")
    patterns = list(ignore_patterns or [])
    kept = files_to_push(folder, patterns)
    if repo_type == "dataset" and not kept:
        raise CheckpointError(f"Cannot push '{folder}': it holds no files outside the ignored paths",
                              "push a folder of results (README.md, tables, plots)")
    if repo_type == "model" and not any(_is_ignored(relative, MODEL_FILE_PATTERNS) for relative in kept):
        raise CheckpointError(
            f"Cannot push '{folder}': it holds no model weights ({', '.join(MODEL_FILE_PATTERNS[:3])}, ...) outside "
            f"the ignored paths ({', '.join(patterns) or 'none'})",
            "push a folder written by save_pretrained / `effhub train`, or adjust ignore_patterns")
    endpoint = resolve_endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token, library_name="effhub", library_version=__version__)
    with hub_errors(endpoint, f"push '{folder}' to {repo_id}"):
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        # one upload_folder call is one commit: readers see the old or the new repository, never a mix
        api.upload_folder(repo_id=repo_url.repo_id, folder_path=folder, ignore_patterns=patterns or None,
                          repo_type=repo_type,
                          commit_message=commit_message or f"Upload {folder.resolve().name} with effhub")
    return str(repo_url)


__all__ = ["push_folder", "files_to_push", "REPO_TYPES", "DEFAULT_IGNORE_PATTERNS", "MODEL_FILE_PATTERNS", "resolve_endpoint", "hub_errors"]
