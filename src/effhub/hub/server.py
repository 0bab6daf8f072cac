"""A file-backed Hub server on loopback: the offline and test tool of effhub, not a Hub replacement.

It speaks the part of the Hugging Face Hub HTTP API that `huggingface_hub`, `transformers`, `peft` and `datasets`
call (whoami, validate-yaml, create/delete repo, preupload, commit, tree, paths-info, repo info, commits, refs, list
models/datasets, HEAD/GET resolve), so that `push_to_hub`, `from_pretrained("org/name")`, `snapshot_download`,
`ModelCard.load` and `list_models` run through the real client libraries without a network.

Storage under `root` (everything survives a restart):

```
root/
  hub.log                                  # one line per request: time, method, path, status
  blobs/<sha256[:2]>/<sha256>              # file contents, content-addressed
  repos/<type>s/<namespace>/<name>/
    repo.json                              # id, type, private, createdAt
    commits/<sha>.json                     # immutable snapshot: parents, title, message, date, files
    refs/heads/<branch>                    # the branch's commit sha, moved by an atomic rename
    .lock                                  # the cross-process write lock
```

A commit is an immutable snapshot addressed by a 40-hex sha; a branch moves by `os.replace`, so readers see either
the old or the new snapshot, never half of one. File ETags are git blob hashes of the content (the Hub's convention for
non-LFS files), so a re-pushed file gets a new ETag and no client serves a stale cache. Writes to one repository are
serialised by a thread lock plus an advisory file lock (two server processes on one root stay consistent). Writes are
anonymous: any token, or none, is accepted. Uploads are always "regular" (base64 inside the commit), so clients need
neither LFS nor Xet.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

try:  # advisory cross-process lock; absent on Windows, where the thread lock alone serialises one server
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None

from ..atomic import atomic_write_bytes
from ..errors import ConfigError

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
LOCAL_USER = "effhub"
LOG_FILE = "hub.log"
MAX_FILE_PATH_LENGTH = 1024
# The Hub's repo name rule: letters, digits, '-', '_', '.', not starting or ending with '-' or '.', no '--' or '..'.
_REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_BRANCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_INITIAL_GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


class HubHTTPError(Exception):
    """An error answer of the local hub: HTTP status, the Hub's `X-Error-Code` (if any) and a message."""

    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}
        self.body = body or {}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_sha1(content: bytes) -> str:
    """The git blob hash of `content`: what the Hub reports as the `oid` and `ETag` of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def check_file_path(path: object) -> str:
    """Return `path` if it is a safe relative path inside a repository, else raise a 400 `HubHTTPError`.

    Refused: non-strings, empty paths, absolute paths, backslashes, NUL bytes, and `.`/`..`/empty segments.
    """
    if not isinstance(path, str) or not path:
        raise HubHTTPError(400, f"Invalid file path {path!r}: expected a non-empty relative path")
    if path.startswith("/") or "\\" in path or "\0" in path or re.match(r"^[A-Za-z]:", path):
        raise HubHTTPError(400, f"Invalid file path {path!r}: absolute paths and backslashes are refused")
    if len(path) > MAX_FILE_PATH_LENGTH or any(part in ("", ".", "..") for part in path.split("/")):
        raise HubHTTPError(400, f"Invalid file path {path!r}: '.', '..' and empty segments are refused")
    return path


def parse_card_data(readme: bytes) -> dict | None:
    """The YAML front matter of a README.md as a dict (None when there is none or it is not a mapping)."""
    import yaml

    match = _YAML_BLOCK.search(readme.decode("utf-8", errors="replace"))
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class LocalHubStore:
    """The on-disk repositories of a local hub (see the module docstring for the layout).

    Args:
        root (`str` or `os.PathLike`): folder holding the repositories; created if missing.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ----------------------------------------------------------------------------------------------- identifiers
    @staticmethod
    def check_repo(repo_type: str, repo_id: str) -> tuple[str, str]:
        if repo_type not in REPO_TYPES:
            raise HubHTTPError(400, f"Invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(_REPO_NAME.match(part) and ".." not in part and "--" not in part
                                      for part in parts):
            raise HubHTTPError(400, f"Invalid repo id {repo_id!r}: expected 'namespace/name' of letters, digits, "
                                    "'-', '_' and '.'")
        return repo_type, repo_id

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        self.check_repo(repo_type, repo_id)
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "repo.json").is_file()

    def repo_meta(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            raise HubHTTPError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    # -------------------------------------------------------------------------------------------------- locking
    @contextmanager
    def write_lock(self, repo_type: str, repo_id: str):
        """Serialise writes to one repository across threads (and, where `fcntl` exists, processes)."""
        key = f"{repo_type}s/{repo_id}"
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            lock_path = self.repo_dir(repo_type, repo_id) / ".lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a+b") as handle:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    if fcntl is not None:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------------------------------------ repos
    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> dict:
        """Create a repository with the Hub's initial commit (a `.gitattributes`); 409 if it exists."""
        with self.write_lock(repo_type, repo_id):
            if self.exists(repo_type, repo_id):
                raise HubHTTPError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo_dir = self.repo_dir(repo_type, repo_id)
            meta = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": _now()}
            sha = self._write_commit(repo_dir, parents=[], files={}, additions={".gitattributes": _INITIAL_GITATTRIBUTES},
                                     title="initial commit", message="")
            atomic_write_bytes(repo_dir / "refs" / "heads" / DEFAULT_BRANCH, sha.encode())
            # repo.json last: a repository exists only once its first snapshot and branch are complete
            atomic_write_bytes(repo_dir / "repo.json", json.dumps(meta, indent=1).encode())
            return meta

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Delete a repository (its blobs stay: they may be shared with other repositories)."""
        import shutil

        with self.write_lock(repo_type, repo_id):
            repo_dir = self.repo_dir(repo_type, repo_id)
            if not self.exists(repo_type, repo_id):
                raise HubHTTPError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
            # rename first so that a concurrent reader sees the repository gone at once, then remove the files
            trash = repo_dir.with_name(f".deleted-{repo_dir.name}-{os.getpid()}-{threading.get_ident()}")
            (repo_dir / "repo.json").unlink()
            for entry in repo_dir.iterdir():
                if entry.name != ".lock":
                    trash.mkdir(exist_ok=True)
                    os.replace(entry, trash / entry.name)
            shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> dict:
        with self.write_lock(repo_type, repo_id):
            meta = self.repo_meta(repo_type, repo_id)
            meta["private"] = bool(private)
            atomic_write_bytes(self.repo_dir(repo_type, repo_id) / "repo.json", json.dumps(meta, indent=1).encode())
            return meta

    def list_repos(self, repo_type: str) -> list[tuple[str, dict]]:
        base = self.root / "repos" / f"{repo_type}s"
        found = []
        for meta_path in sorted(base.glob("*/*/repo.json")):
            try:
                found.append((f"{meta_path.parent.parent.name}/{meta_path.parent.name}", json.loads(meta_path.read_text())))
            except (OSError, ValueError):  # deleted while listing
                continue
        return found

    # --------------------------------------------------------------------------------------------- revisions
    def branches(self, repo_type: str, repo_id: str) -> dict[str, str]:
        heads = self.repo_dir(repo_type, repo_id) / "refs" / "heads"
        return {path.name: path.read_text().strip() for path in sorted(heads.iterdir()) if not path.name.startswith(".")}

    def resolve_revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        """The commit sha a branch name or a commit sha points at (404 `RevisionNotFound` otherwise)."""
        self.repo_meta(repo_type, repo_id)
        repo_dir = self.repo_dir(repo_type, repo_id)
        if _BRANCH_NAME.match(revision):
            ref = repo_dir / "refs" / "heads" / revision
            if ref.is_file():
                return ref.read_text().strip()
        if _COMMIT_SHA.match(revision) and (repo_dir / "commits" / f"{revision}.json").is_file():
            return revision
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit(self, repo_type: str, repo_id: str, sha: str) -> dict:
        return json.loads((self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json").read_text())

    def snapshot(self, repo_type: str, repo_id: str, revision: str) -> tuple[str, dict]:
        """(commit sha, commit record) of a revision; the record's `files` maps path -> {sha256, oid, size}."""
        sha = self.resolve_revision(repo_type, repo_id, revision)
        return sha, self.commit(repo_type, repo_id, sha)

    def history(self, repo_type: str, repo_id: str, revision: str) -> list[dict]:
        """The commits reachable from `revision`, newest first (first parents only, like the Hub's linear history)."""
        sha = self.resolve_revision(repo_type, repo_id, revision)
        commits = []
        while sha:
            record = self.commit(repo_type, repo_id, sha)
            commits.append(record)
            sha = record["parents"][0] if record["parents"] else None
        return commits

    # ------------------------------------------------------------------------------------------------ writes
    def _store_blob(self, content: bytes) -> dict:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.blob_path(sha256)
        if not path.is_file():
            atomic_write_bytes(path, content)
        return {"sha256": sha256, "oid": git_blob_sha1(content), "size": len(content)}

    def _write_commit(self, repo_dir: Path, parents: list[str], files: dict, additions: dict[str, bytes],
                      title: str, message: str) -> str:
        files = dict(files)
        for path, content in additions.items():
            files[path] = self._store_blob(content)
        date = _now()
        tree = json.dumps(sorted((path, entry["oid"]) for path, entry in files.items()))
        # the sha covers parents, tree, text and time: two commits with identical content still get distinct ids
        sha = hashlib.sha1("\n".join([*parents, tree, title, message, date, os.urandom(8).hex()]).encode()).hexdigest()
        record = {"id": sha, "parents": parents, "title": title, "message": message, "date": date,
                  "authors": [LOCAL_USER], "files": dict(sorted(files.items()))}
        atomic_write_bytes(repo_dir / "commits" / f"{sha}.json", json.dumps(record, indent=1).encode())
        return sha

    def apply_commit(self, repo_type: str, repo_id: str, branch: str, operations: list[dict], title: str,
                     message: str = "", parent_commit: str | None = None) -> str:
        """Commit `operations` on `branch` atomically and return the new commit sha.

        Args:
            operations (`list[dict]`): `{"op": "add", "path", "content": bytes}`, `{"op": "delete", "path"}` or
                `{"op": "delete_folder", "path"}`, applied in order on top of the branch head.
            parent_commit (`str`, *optional*): if given, the commit fails with 412 unless the branch is still there.
        """
        if not _BRANCH_NAME.match(branch):
            raise HubHTTPError(400, f"Invalid branch {branch!r}: commits go to a branch name such as 'main'")
        # blobs are content-addressed and immutable: store them before taking the lock to keep the lock short
        additions = {}
        for operation in operations:
            check_file_path(operation["path"].rstrip("/") if operation["op"] == "delete_folder" else operation["path"])
            if operation["op"] == "add":
                additions[operation["path"]] = self._store_blob(operation["content"])
        with self.write_lock(repo_type, repo_id):
            head = self.resolve_revision(repo_type, repo_id, branch)
            if parent_commit is not None and parent_commit != head:
                raise HubHTTPError(412, f"A commit has happened since {parent_commit}: the head of {branch} is {head}")
            files = dict(self.commit(repo_type, repo_id, head)["files"])
            for operation in operations:
                path = operation["path"]
                if operation["op"] == "add":
                    files[path] = additions[path]
                elif operation["op"] == "delete":
                    if path not in files:
                        raise HubHTTPError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                else:
                    prefix = path.rstrip("/") + "/"
                    doomed = [name for name in files if name.startswith(prefix)]
                    if not doomed:
                        raise HubHTTPError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for name in doomed:
                        del files[name]
            repo_dir = self.repo_dir(repo_type, repo_id)
            sha = self._write_commit(repo_dir, parents=[head], files=files, additions={}, title=title, message=message)
            atomic_write_bytes(repo_dir / "refs" / "heads" / branch, sha.encode())
            return sha

    def read_blob(self, entry: dict) -> bytes:
        return self.blob_path(entry["sha256"]).read_bytes()

    # ------------------------------------------------------------------------------------------------ views
    def last_commits(self, repo_type: str, repo_id: str, revision: str, paths: list[str]) -> dict[str, dict]:
        """For each path, the newest commit that gave it its current content."""
        commits = self.history(repo_type, repo_id, revision)
        current = commits[0]["files"]
        found = {}
        for path in paths:
            last = commits[0]
            for record in commits[1:]:
                if record["files"].get(path, {}).get("oid") != current.get(path, {}).get("oid"):
                    break
                last = record
            found[path] = {"id": last["id"], "title": last["title"], "date": last["date"]}
        return found

    def repo_summary(self, repo_type: str, repo_id: str, revision: str = DEFAULT_BRANCH, *, siblings: bool = True,
                     files_metadata: bool = False, card_data: bool = True) -> dict:
        """The repo info answer of `GET /api/{type}s/{repo_id}[/revision/{rev}]`."""
        meta = self.repo_meta(repo_type, repo_id)
        sha, record = self.snapshot(repo_type, repo_id, revision)
        files = record["files"]
        card = parse_card_data(self.read_blob(files["README.md"])) if "README.md" in files else None
        info = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": record["date"],
            "createdAt": meta["createdAt"],
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": self._tags(repo_type, files, card),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
            info["library_name"] = (card or {}).get("library_name")
            info["pipeline_tag"] = (card or {}).get("pipeline_tag")
            if card and "model-index" in card:
                info["model-index"] = card["model-index"]
        if card_data:
            info["cardData"] = card
        if siblings:
            info["siblings"] = [
                {"rfilename": path, **({"size": entry["size"], "blobId": entry["oid"]} if files_metadata else {})}
                for path, entry in files.items()
            ]
        return info

    @staticmethod
    def _tags(repo_type: str, files: dict, card: dict | None) -> list[str]:
        card = card or {}
        tags = [str(tag) for tag in (card.get("tags") or []) if tag is not None]

        def as_list(value):
            return [value] if isinstance(value, str) else list(value or [])

        for key in ("library_name", "pipeline_tag"):
            if card.get(key):
                tags.append(str(card[key]))
        if repo_type == "model" and any(path.endswith(".safetensors") for path in files):
            tags.append("safetensors")
        tags += [f"dataset:{name}" for name in as_list(card.get("datasets"))]
        tags += [f"base_model:{name}" for name in as_list(card.get("base_model"))]
        tags += [f"license:{name}" for name in as_list(card.get("license"))]
        return list(dict.fromkeys(tags))


# ---------------------------------------------------------------------------------------------------- HTTP layer
def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() not in ("", "0", "false", "no")


class LocalHubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request of the Hub HTTP API to the `LocalHubStore` of its server."""

    protocol_version = "HTTP/1.1"
    server_version = "effhub-local-hub"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per request
    disable_nagle_algorithm = True

    # quiet: the server writes its own one-line log (see `LocalHubServer.log`)
    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    @property
    def store(self) -> LocalHubStore:
        return self.server.store  # type: ignore[attr-defined]

    @property
    def base_url(self) -> str:
        return self.server.url  # type: ignore[attr-defined]

    # ---------------------------------------------------------------------------------------------- plumbing
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        self._status = 500
        try:
            split = urlsplit(self.path)
            self._query = parse_qs(split.query, keep_blank_values=True)
            body = self._read_body()
            # split before unquoting: the clients quote revisions and tree paths with safe="" (so '/' is '%2F')
            segments = [unquote(part) for part in split.path.split("/")[1:]]
            self._route(method, segments, body)
        except HubHTTPError as error:
            self._send_error(error)
        except Exception as error:  # noqa: BLE001 - a server answers 500 rather than dropping the connection
            self._send_error(HubHTTPError(500, f"Internal error of the local hub: {type(error).__name__}: {error}"))
        finally:
            self.server.log(method, self.path, self._status)  # type: ignore[attr-defined]

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json", head_only: bool = False) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if not (headers and "Content-Length" in headers) else
                                               headers["Content-Length"]))
        for name, value in (headers or {}).items():
            if name != "Content-Length":
                self.send_header(name, value)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _send_json(self, data, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _send_error(self, error: HubHTTPError) -> None:
        headers = dict(error.headers)
        if error.error_code:
            headers["X-Error-Code"] = error.error_code
        # header values must be one printable ASCII line
        headers["X-Error-Message"] = " ".join(error.message.split()).encode("ascii", "replace").decode()[:500]
        body = json.dumps({**error.body, "error": error.message}).encode()
        self._send(error.status, body, headers, head_only=self.command == "HEAD")

    def _json_body(self, body: bytes) -> dict:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError as error:
            raise HubHTTPError(400, f"Request body is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise HubHTTPError(400, "Request body must be a JSON object")
        return data

    # ------------------------------------------------------------------------------------------------ routing
    def _route(self, method: str, seg: list[str], body: bytes) -> None:
        if seg[:1] == ["api"]:
            return self._route_api(method, seg[1:], body)
        # file URLs: /{repo_id}/resolve/{rev}/{path}, /datasets/{repo_id}/resolve/..., /spaces/{repo_id}/resolve/...
        repo_type = "model"
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubHTTPError(404, f"The local hub has no route for {method} {self.path}")

    def _route_api(self, method: str, seg: list[str], body: bytes) -> None:
        if seg in (["whoami-v2"], ["whoami"]) and method == "GET":
            return self._send_json({"type": "user", "id": LOCAL_USER, "name": LOCAL_USER, "fullname": "effhub local hub",
                                    "orgs": [], "auth": {"type": "anonymous"}, "isPro": False})
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(self._json_body(body))
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo(self._json_body(body))
        if seg == ["repos", "delete"] and method == "DELETE":
            data = self._json_body(body)
            repo_type, repo_id = self._repo_from_payload(data)
            self.store.delete_repo(repo_type, repo_id)
            return self._send_json({})
        if len(seg) == 1 and seg[0] in ("models", "datasets", "spaces") and method == "GET":
            return self._list_repos(seg[0][:-1])
        if len(seg) >= 3 and seg[0] in ("models", "datasets", "spaces"):
            repo_type, repo_id, rest = seg[0][:-1], f"{seg[1]}/{seg[2]}", seg[3:]
            self.store.check_repo(repo_type, repo_id)
            return self._route_repo(method, repo_type, repo_id, rest, body)
        raise HubHTTPError(404, f"The local hub has no route for {method} {self.path}")

    def _route_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str], body: bytes) -> None:
        store = self.store
        if method == "GET" and (not rest or (len(rest) == 2 and rest[0] == "revision")):
            revision = rest[1] if rest else DEFAULT_BRANCH
            info = store.repo_summary(repo_type, repo_id, revision,
                                      files_metadata=_truthy(self._query.get("files_metadata")))
            return self._send_json(info)
        if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
            return self._paths_info(repo_type, repo_id, rest[1], body)
        if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
            return self._preupload(repo_type, repo_id, rest[1], self._json_body(body))
        if method == "POST" and len(rest) == 2 and rest[0] == "commit":
            return self._commit(repo_type, repo_id, rest[1], body)
        if method == "GET" and len(rest) == 2 and rest[0] == "commits":
            return self._send_json([
                {"id": record["id"], "title": record["title"], "message": record["message"], "date": record["date"],
                 "authors": [{"user": user} for user in record.get("authors", [])]}
                for record in store.history(repo_type, repo_id, rest[1])
            ])
        if method == "GET" and rest == ["refs"]:
            store.repo_meta(repo_type, repo_id)
            return self._send_json({
                "branches": [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                             for name, sha in store.branches(repo_type, repo_id).items()],
                "tags": [], "converts": [], "pullRequests": [],
            })
        if method == "PUT" and rest == ["settings"]:
            data = self._json_body(body)
            meta = store.repo_meta(repo_type, repo_id)
            if "private" in data:
                meta = store.set_private(repo_type, repo_id, bool(data["private"]))
            return self._send_json({"private": meta["private"]})
        if method == "POST" and len(rest) >= 1 and rest[0] in ("xet-write-token", "xet-read-token", "lfs-files"):
            raise HubHTTPError(400, "The local hub stores files in regular commits only (no LFS or Xet): upload "
                                    "through create_commit/upload_folder, whose preupload answer is 'regular'")
        raise HubHTTPError(404, f"The local hub has no route for {method} {self.path}")

    # ------------------------------------------------------------------------------------------------ handlers
    def _repo_from_payload(self, data: dict) -> tuple[str, str]:
        name, organization = data.get("name"), data.get("organization")
        repo_type = data.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise HubHTTPError(400, "Missing repository 'name' in the request")
        # a name without namespace goes to the local user, as the Hub puts it under the token's user
        repo_id = f"{organization or LOCAL_USER}/{name}" if "/" not in name else name
        return self.store.check_repo(repo_type, repo_id)

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.base_url}/{prefix}{repo_id}"

    def _create_repo(self, data: dict) -> None:
        repo_type, repo_id = self._repo_from_payload(data)
        private = data.get("private", data.get("visibility") == "private")
        answer = {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id}
        try:
            self.store.create_repo(repo_type, repo_id, private=bool(private))
        except HubHTTPError as error:
            if error.status == 409:  # the Hub's 409 also carries the url: clients with exist_ok=True read it
                error.body = answer
            raise
        self._send_json(answer)

    def _validate_yaml(self, data: dict) -> None:
        """Check the YAML front matter of a README (the client sends the whole file as `content`)."""
        import yaml

        content = data.get("content") or ""
        match = _YAML_BLOCK.search(content) if isinstance(content, str) else None
        problem = None
        if match is not None:
            try:
                parsed = yaml.safe_load(match.group(2))
            except yaml.YAMLError as error:
                problem = f"Invalid YAML in the card metadata: {error}"
            else:
                if parsed is not None and not isinstance(parsed, dict):
                    problem = "The card metadata must be a YAML mapping"
        if problem:
            return self._send_json({"errors": [{"message": problem}], "warnings": []}, status=400,
                                   headers={"X-Error-Message": "Invalid metadata in README.md"})
        self._send_json({"errors": [], "warnings": []})

    def _list_repos(self, repo_type: str) -> None:
        query = self._query
        search = (query.get("search") or [""])[-1].lower()
        author = (query.get("author") or [""])[-1]
        wanted_tags = [tag for value in query.get("filter", []) for tag in value.split(",") if tag]
        library = (query.get("library") or [""])[-1]
        pipeline_tag = (query.get("pipeline_tag") or [""])[-1]
        full = _truthy(query.get("full"))
        with_card = full or _truthy(query.get("cardData"))
        limit = int((query.get("limit") or ["0"])[-1] or 0)
        rows = []
        for repo_id, meta in self.store.list_repos(repo_type):
            if meta.get("private") or (search and search not in repo_id.lower()):
                continue
            if author and repo_id.split("/")[0] != author:
                continue
            try:
                info = self.store.repo_summary(repo_type, repo_id, siblings=full, card_data=with_card)
            except HubHTTPError:  # deleted while listing
                continue
            tags = set(info["tags"])
            if any(tag not in tags for tag in wanted_tags):
                continue
            if library and info.get("library_name") != library:
                continue
            if pipeline_tag and info.get("pipeline_tag") != pipeline_tag:
                continue
            if not full:
                info.pop("sha", None)
            rows.append(info)
        sort = (query.get("sort") or [""])[-1]
        if sort in ("lastModified", "createdAt"):
            descending = (query.get("direction") or ["-1"])[-1] == "-1"
            rows.sort(key=lambda row: row[sort], reverse=descending)
        if limit > 0:
            rows = rows[:limit]
        self._send_json(rows)

    @staticmethod
    def _folders(files: dict) -> set[str]:
        return {"/".join(path.split("/")[:depth]) for path in files for depth in range(1, path.count("/") + 1)}

    def _file_entry(self, path: str, entry: dict) -> dict:
        return {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}

    @staticmethod
    def _folder_entry(path: str, files: dict) -> dict:
        inside = sorted((name, entry["oid"]) for name, entry in files.items() if name.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0,
                "path": path}

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        if path:
            check_file_path(path)
        sha, record = self.store.snapshot(repo_type, repo_id, revision)
        files = record["files"]
        folders = self._folders(files)
        recursive = _truthy(self._query.get("recursive"))
        if path and path not in folders:
            raise HubHTTPError(404, f"{path} does not exist on {revision}", "EntryNotFound",
                               {"X-Repo-Commit": sha})
        prefix = path + "/" if path else ""
        entries = []
        for folder in sorted(folders):
            relative = folder[len(prefix):] if folder.startswith(prefix) else None
            if relative and (recursive or "/" not in relative):
                entries.append(self._folder_entry(folder, files))
        for name, entry in files.items():
            relative = name[len(prefix):] if name.startswith(prefix) else None
            if relative and (recursive or "/" not in relative):
                entries.append(self._file_entry(name, entry))
        if _truthy(self._query.get("expand")):
            self._add_last_commits(repo_type, repo_id, revision, entries, files)
        self._send_json(entries, headers={"X-Repo-Commit": sha})

    def _add_last_commits(self, repo_type, repo_id, revision, entries, files):
        file_paths = [entry["path"] for entry in entries if entry["type"] == "file"]
        last = self.store.last_commits(repo_type, repo_id, revision, file_paths)
        for entry in entries:
            if entry["type"] == "file":
                entry["lastCommit"] = last[entry["path"]]
            else:  # a folder's last commit is the newest of its files'
                inside = [name for name in files if name.startswith(entry["path"] + "/")]
                newest = self.store.last_commits(repo_type, repo_id, revision, inside)
                entry["lastCommit"] = max(newest.values(), key=lambda commit: commit["date"])

    def _paths_info(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = self._json_body(body)
            paths, expand = data.get("paths", []), bool(data.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _truthy(form.get("expand"))
        if isinstance(paths, str):
            paths = [paths]
        sha, record = self.store.snapshot(repo_type, repo_id, revision)
        files = record["files"]
        folders = self._folders(files)
        entries = []
        for path in paths:
            check_file_path(path)
            if path in files:
                entries.append(self._file_entry(path, files[path]))
            elif path in folders:
                entries.append(self._folder_entry(path, files))
        if expand:
            self._add_last_commits(repo_type, repo_id, revision, entries, files)
        self._send_json(entries, headers={"X-Repo-Commit": sha})

    def _preupload(self, repo_type: str, repo_id: str, revision: str, data: dict) -> None:
        self.store.resolve_revision(repo_type, repo_id, revision)
        if _truthy(self._query.get("create_pr")):
            raise HubHTTPError(400, "The local hub has no pull requests: commit to a branch (create_pr=False)")
        files = data.get("files")
        if not isinstance(files, list):
            raise HubHTTPError(400, "preupload expects a JSON body {'files': [{'path', 'size', 'sample'}]}")
        answer = []
        for item in files:
            path = check_file_path(item.get("path") if isinstance(item, dict) else None)
            # "regular": the content travels base64 inside the commit, so no client needs LFS or Xet
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False})
        self._send_json({"files": answer, "commitOid": self.store.resolve_revision(repo_type, repo_id, revision)})

    def _commit(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
        if _truthy(self._query.get("create_pr")):
            raise HubHTTPError(400, "The local hub has no pull requests: commit to a branch (create_pr=False)")
        self.store.repo_meta(repo_type, repo_id)
        header, operations = None, []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError):
                raise HubHTTPError(400, f"Line {number} of the commit payload is not a {{key, value}} JSON object") from None
            if key == "header":
                header = value
            elif key == "file":
                path = check_file_path(value.get("path"))
                if value.get("encoding", "base64") != "base64":
                    raise HubHTTPError(400, f"File {path}: only base64 encoded content is accepted")
                try:
                    content = base64.b64decode(value.get("content", ""), validate=True)
                except (binascii.Error, ValueError):
                    raise HubHTTPError(400, f"File {path}: content is not valid base64") from None
                operations.append({"op": "add", "path": path, "content": content})
            elif key == "deletedFile":
                operations.append({"op": "delete", "path": check_file_path(value.get("path"))})
            elif key == "deletedFolder":
                operations.append({"op": "delete_folder", "path": check_file_path(str(value.get("path")).rstrip("/"))})
            elif key == "lfsFile":
                raise HubHTTPError(400, f"File {value.get('path')}: the local hub does not store LFS files; its "
                                        "preupload answers 'regular', so send the content base64 in the commit")
            else:
                raise HubHTTPError(400, f"Unknown commit operation {key!r}")
        if header is None:
            raise HubHTTPError(400, "The commit payload has no header line")
        sha = self.store.apply_commit(repo_type, repo_id, revision, operations, title=str(header.get("summary") or ""),
                                      message=str(header.get("description") or ""),
                                      parent_commit=header.get("parentCommit"))
        self._send_json({"success": True, "commitOid": sha, "pullRequestUrl": None,
                         "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}"})

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        self.store.check_repo(repo_type, repo_id)
        check_file_path(path)
        sha, record = self.store.snapshot(repo_type, repo_id, revision)
        entry = record["files"].get(path)
        if entry is None:
            raise HubHTTPError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                   "Cache-Control": "private, max-age=0, must-revalidate"}
        size = entry["size"]
        if method == "HEAD":
            return self._send(200, b"", {**headers, "Content-Length": str(size)}, "application/octet-stream",
                              head_only=True)
        content = self.store.read_blob(entry)
        match = re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            start, end = match.group(1), match.group(2)
            if start:
                first, last = int(start), min(int(end) if end else size - 1, size - 1)
            else:  # suffix range: the last N bytes
                first, last = max(size - int(end), 0), size - 1
            if first >= size or first > last:
                raise HubHTTPError(416, f"Range {self.headers['Range']} is outside the file ({size} bytes)",
                                   headers={"Content-Range": f"bytes */{size}"})
            return self._send(206, content[first:last + 1], {**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
                              "application/octet-stream")
        self._send(200, content, headers, "application/octet-stream")


class _LocalHubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self.open_connections: set = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Cut the kept-alive client connections too, so that a stopped server answers nothing."""
        import socket

        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LocalHubServer:
    """A local hub served from a background thread; usable as a context manager.

    Args:
        root (`str` or `os.PathLike`): folder holding the repositories (created if missing; kept across restarts).
        host (`str`, *optional*, defaults to `"127.0.0.1"`): interface to bind. Keep loopback: writes are anonymous.
        port (`int`, *optional*, defaults to 0): TCP port; 0 lets the OS pick a free one (see `.url`).
        sock (`socket.socket`, *optional*): an already bound TCP socket to serve on instead of `host`/`port`. This
            lets a caller export `HF_ENDPOINT` before the Hub clients are imported (they freeze it at import).
        log_to_stderr (`bool`, *optional*, defaults to `False`): also print each request's log line to stderr.

    Example:
        ```python
        with LocalHubServer("hub-root") as hub:
            HfApi(endpoint=hub.url).create_repo("org/name")
        ```
    """

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, *, sock=None,
                 log_to_stderr: bool = False):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"Invalid port {port!r} for the local hub", "pass an integer in 0..65535 (0 = any free port)")
        self.store = LocalHubStore(root)
        self.root = self.store.root
        self.host, self.port, self._sock = host, port, sock
        self.log_to_stderr = log_to_stderr
        self._lines: list[str] = []
        self._log_lock = threading.Lock()
        self._httpd: _LocalHubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL (`http://host:port`) to pass as `HF_ENDPOINT` or `endpoint=`."""
        if self._httpd is None:
            raise RuntimeError("The local hub is not started: call .start() or use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _build(self) -> _LocalHubHTTPServer:
        try:
            if self._sock is not None:
                httpd = _LocalHubHTTPServer(self._sock.getsockname()[:2], LocalHubRequestHandler, bind_and_activate=False)
                httpd.socket.close()
                httpd.socket = self._sock
                httpd.server_address = self._sock.getsockname()[:2]
                httpd.server_activate()
            else:
                httpd = _LocalHubHTTPServer((self.host, self.port), LocalHubRequestHandler)
        except OSError as error:
            raise ConfigError(f"The local hub cannot listen on {self.host}:{self.port} ({error})",
                              "pick another --port (0 picks a free one) or stop the process using it") from None
        httpd.store = self.store  # type: ignore[attr-defined]
        httpd.log = self.log  # type: ignore[attr-defined]
        host, port = httpd.server_address[:2]
        httpd.url = f"http://{host}:{port}"  # type: ignore[attr-defined]
        return httpd

    def start(self) -> "LocalHubServer":
        """Start serving in a daemon thread; returns `self`."""
        if self._httpd is None:
            self._httpd = self._build()
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="effhub-local-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (the repositories stay on disk)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_open_connections()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._httpd, self._thread, self._sock = None, None, None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        if self._httpd is None:
            self._httpd = self._build()
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()
            self._httpd = None

    def log(self, method: str, path: str, status: int) -> None:
        """Record one request: kept in memory (`log_lines()`), appended to `root/hub.log`, optionally on stderr."""
        line = f"{_now()} {method} {path} {status}"
        with self._log_lock:
            self._lines.append(line)
            with open(self.root / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.log_to_stderr:
            print(line, file=sys.stderr, flush=True)

    def log_lines(self) -> list[str]:
        """The log lines of the requests this server object answered, oldest first."""
        with self._log_lock:
            return list(self._lines)

    def __enter__(self) -> "LocalHubServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "stopped"
        return f"LocalHubServer(root={str(self.root)!r}, {where})"


def serve(root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve a local hub in the foreground (`effhub hub serve`) until Ctrl-C, logging each request to stderr.

    Args:
        root (`str` or `os.PathLike`): folder holding the repositories.
        host (`str`, *optional*, defaults to `"127.0.0.1"`): interface to bind.
        port (`int`, *optional*, defaults to 8765): TCP port; 0 picks a free one.
    """
    server = LocalHubServer(root, host=host, port=port, log_to_stderr=True)
    server._httpd = server._build()
    url = server.url
    print(f"effhub local hub serving {Path(root).resolve()} at {url}", flush=True)
    print(f"export HF_ENDPOINT={url}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"effhub: warning: {host} is not loopback and the local hub accepts anonymous writes; it is an "
              "offline and test tool, not a Hub replacement", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("effhub local hub stopped", file=sys.stderr, flush=True)


__all__ = ["LocalHubServer", "LocalHubStore", "LocalHubRequestHandler", "HubHTTPError", "serve", "git_blob_sha1",
           "check_file_path", "parse_card_data"]
