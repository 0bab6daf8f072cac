"""The file-backed store of the local hub: repositories, commits, refs, blobs and LFS objects.

Storage under `root` (everything survives a restart):

```
root/
  hub.log                                  # one line per request: time, method, path, status
  blobs/<sha256[:2]>/<sha256>              # file contents (regular and LFS), content-addressed
  repos/<type>s/<namespace>/<name>/
    repo.json                              # id, type, private, createdAt
    commits/<sha>.json                     # immutable snapshot: parents, title, message, date, files
    refs/heads/<branch>                    # the branch's commit sha, moved by an atomic rename
    refs/tags/<tag>                        # the tag's commit sha (JSON with its message)
    lfs/<sha256>                           # marker: this LFS object was uploaded to this repository
    .lock                                  # the cross-process write lock
```

A commit is an immutable snapshot addressed by a 40-hex sha; a branch moves by `os.replace`, so readers see either
the old or the new snapshot, never half of one. File ETags are git blob hashes of the content (the Hub's convention for
non-LFS files), so a re-pushed file gets a new ETag and no client serves a stale cache. Writes to one repository are
serialised by a thread lock plus an advisory file lock (two server processes on one root stay consistent).
LFS files are stored like regular ones (by sha256); their commit entry has `"lfs": true` and an `oid` that is the git
blob hash of their LFS pointer, as on the Hub. An LFS upload is hashed while it is written to a temporary file and only
renamed into `blobs/` when its sha256 and size match what the client announced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

try:  # advisory cross-process lock; absent on Windows, where the thread lock alone serialises one server
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None

from ..atomic import atomic_write_bytes

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
LOCAL_USER = "effhub"
LOG_FILE = "hub.log"
MAX_FILE_PATH_LENGTH = 1024
# The Hub's pre-upload rule: files at or above this size, binary files and files matched by an LFS pattern of the
# repository's .gitattributes go through LFS.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_POINTER_TEMPLATE = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
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
        """Branch name -> commit sha."""
        heads = self.repo_dir(repo_type, repo_id) / "refs" / "heads"
        return {path.name: path.read_text().strip() for path in sorted(heads.iterdir()) if not path.name.startswith(".")}

    def tags(self, repo_type: str, repo_id: str) -> dict[str, dict]:
        """Tag name -> `{"sha", "message", "date"}`."""
        folder = self.repo_dir(repo_type, repo_id) / "refs" / "tags"
        if not folder.is_dir():
            return {}
        return {path.name: json.loads(path.read_text()) for path in sorted(folder.iterdir())
                if not path.name.startswith(".")}

    def resolve_revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        """The commit sha a branch, a tag or a commit sha points at (404 `RevisionNotFound` otherwise)."""
        self.repo_meta(repo_type, repo_id)
        repo_dir = self.repo_dir(repo_type, repo_id)
        if _BRANCH_NAME.match(revision):
            ref = repo_dir / "refs" / "heads" / revision
            if ref.is_file():
                return ref.read_text().strip()
            tag = repo_dir / "refs" / "tags" / revision
            if tag.is_file():
                return json.loads(tag.read_text())["sha"]
        if _COMMIT_SHA.match(revision) and (repo_dir / "commits" / f"{revision}.json").is_file():
            return revision
        if revision.startswith("refs/pr/"):
            raise HubHTTPError(404, f"Invalid rev id: {revision} (the local hub has no pull requests)",
                               "RevisionNotFound")
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    @staticmethod
    def _check_ref_name(kind: str, name: str) -> str:
        if not isinstance(name, str) or not _BRANCH_NAME.match(name) or _COMMIT_SHA.match(name):
            raise HubHTTPError(400, f"Invalid {kind} name {name!r}: letters, digits, '.', '_' and '-' (no '/'), "
                                    "not a 40-hex commit id")
        return name

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None = None) -> str:
        """Create `branch` at `starting_point` (default: the head of main); 409 if a branch or tag has that name."""
        self._check_ref_name("branch", branch)
        with self.write_lock(repo_type, repo_id):
            sha = self.resolve_revision(repo_type, repo_id, starting_point or DEFAULT_BRANCH)
            refs = self.repo_dir(repo_type, repo_id) / "refs"
            if (refs / "heads" / branch).is_file() or (refs / "tags" / branch).is_file():
                raise HubHTTPError(409, f"Reference already exists: {branch}")
            atomic_write_bytes(refs / "heads" / branch, sha.encode())
            return sha

    def delete_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        """Delete a branch (not `main`); its commits stay reachable by sha and from tags."""
        with self.write_lock(repo_type, repo_id):
            self.repo_meta(repo_type, repo_id)
            if branch == DEFAULT_BRANCH:
                raise HubHTTPError(403, f"The default branch {DEFAULT_BRANCH} cannot be deleted")
            ref = self.repo_dir(repo_type, repo_id) / "refs" / "heads" / self._check_ref_name("branch", branch)
            if not ref.is_file():
                raise HubHTTPError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            ref.unlink()

    def create_tag(self, repo_type: str, repo_id: str, tag: str, revision: str = DEFAULT_BRANCH,
                   message: str = "") -> str:
        """Tag the commit `revision` points at; 409 if a tag or branch has that name."""
        self._check_ref_name("tag", tag)
        with self.write_lock(repo_type, repo_id):
            sha = self.resolve_revision(repo_type, repo_id, revision)
            refs = self.repo_dir(repo_type, repo_id) / "refs"
            if (refs / "tags" / tag).is_file() or (refs / "heads" / tag).is_file():
                raise HubHTTPError(409, f"Reference already exists: {tag}")
            record = {"sha": sha, "message": str(message or ""), "date": _now()}
            atomic_write_bytes(refs / "tags" / tag, json.dumps(record).encode())
            return sha

    def delete_tag(self, repo_type: str, repo_id: str, tag: str) -> None:
        """Delete a tag (the commit it named stays)."""
        with self.write_lock(repo_type, repo_id):
            self.repo_meta(repo_type, repo_id)
            ref = self.repo_dir(repo_type, repo_id) / "refs" / "tags" / self._check_ref_name("tag", tag)
            if not ref.is_file():
                raise HubHTTPError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
            ref.unlink()

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
    # ---------------------------------------------------------------------------------------------------- LFS
    def has_lfs_object(self, repo_type: str, repo_id: str, sha256: str, size: int | None = None) -> bool:
        """Whether the LFS object `sha256` (of `size` bytes, if given) was uploaded to this repository."""
        if not _SHA256.match(str(sha256)):
            return False
        marker = self.repo_dir(repo_type, repo_id) / "lfs" / sha256
        blob = self.blob_path(sha256)
        return marker.is_file() and blob.is_file() and (size is None or blob.stat().st_size == size)

    def store_lfs_object(self, repo_type: str, repo_id: str, sha256: str, size: int, chunks) -> None:
        """Store an uploaded LFS object from an iterable of byte chunks, verifying its sha256 and size.

        Nothing is stored when the content does not match: it is written to a temporary file, hashed on the way, and
        renamed into `blobs/` only after both checks pass (400 otherwise).
        """
        if not _SHA256.match(str(sha256)):
            raise HubHTTPError(400, f"Invalid LFS oid {sha256!r}: expected a 64-hex sha256")
        self.repo_meta(repo_type, repo_id)
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, written = hashlib.sha256(), 0
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False)
        try:
            with handle:
                for chunk in chunks:
                    written += len(chunk)
                    if written > size:
                        break
                    digest.update(chunk)
                    handle.write(chunk)
            if written != size:
                raise HubHTTPError(400, f"LFS upload of {sha256}: got {'more than ' if written > size else ''}"
                                        f"{written} bytes, expected {size}; nothing was stored")
            if digest.hexdigest() != sha256:
                raise HubHTTPError(400, f"LFS upload of {sha256}: the content's sha256 is {digest.hexdigest()}; "
                                        "nothing was stored")
            os.replace(handle.name, target)
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)
        atomic_write_bytes(self.repo_dir(repo_type, repo_id) / "lfs" / sha256, b"")

    @staticmethod
    def lfs_entry(sha256: str, size: int) -> dict:
        """The commit entry of an LFS file: its `oid` is the git blob hash of its pointer, as on the Hub."""
        pointer = LFS_POINTER_TEMPLATE.format(sha256=sha256, size=size).encode()
        return {"sha256": sha256, "oid": git_blob_sha1(pointer), "size": size, "lfs": True,
                "pointerSize": len(pointer)}

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
            operations (`list[dict]`): `{"op": "add", "path", "content": bytes}`, `{"op": "lfs", "path", "sha256",
                "size"}` (an uploaded LFS object), `{"op": "delete", "path"}` or `{"op": "delete_folder", "path"}`,
                applied in order on top of the branch head.
            parent_commit (`str`, *optional*): if given, the commit fails with 412 unless the branch is still there.
        """
        if not _BRANCH_NAME.match(branch) or _COMMIT_SHA.match(branch):
            raise HubHTTPError(400, f"Invalid branch {branch!r}: commits go to a branch name such as 'main'")
        # blobs are content-addressed and immutable: store them before taking the lock to keep the lock short
        additions = {}
        for operation in operations:
            check_file_path(operation["path"].rstrip("/") if operation["op"] == "delete_folder" else operation["path"])
            if operation["op"] == "add":
                additions[operation["path"]] = self._store_blob(operation["content"])
            elif operation["op"] == "lfs":
                sha256, size = operation["sha256"], operation.get("size")
                if not self.has_lfs_object(repo_type, repo_id, sha256, size):
                    raise HubHTTPError(422, f"File {operation['path']}: LFS object {sha256} was not uploaded to "
                                            f"{repo_id} (upload it through the LFS batch API before committing)")
                additions[operation["path"]] = self.lfs_entry(sha256, self.blob_path(sha256).stat().st_size)
        with self.write_lock(repo_type, repo_id):
            self.repo_meta(repo_type, repo_id)
            ref = self.repo_dir(repo_type, repo_id) / "refs" / "heads" / branch
            if not ref.is_file():
                tags = self.repo_dir(repo_type, repo_id) / "refs" / "tags" / branch
                if tags.is_file():
                    raise HubHTTPError(400, f"{branch} is a tag: commits go to a branch")
                raise HubHTTPError(404, f"Invalid rev id: {branch} (commits go to an existing branch; create it "
                                        "with create_branch)", "RevisionNotFound")
            head = ref.read_text().strip()
            if parent_commit is not None and parent_commit != head:
                raise HubHTTPError(412, f"A commit has happened since {parent_commit}: the head of {branch} is {head}")
            files = dict(self.commit(repo_type, repo_id, head)["files"])
            for operation in operations:
                path = operation["path"]
                if operation["op"] in ("add", "lfs"):
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

    def upload_mode(self, repo_type: str, repo_id: str, revision: str, path: str, size: int, sample: bytes) -> str:
        """The Hub's pre-upload answer for one file: "lfs" when .gitattributes marks it, when it is 10 MiB or more,
        or when it looks binary (a NUL byte in its first 512 bytes); "regular" otherwise."""
        if any(_gitattributes_match(pattern, path) for pattern in self.lfs_patterns(repo_type, repo_id, revision)):
            return "lfs"
        if size >= LFS_SIZE_THRESHOLD or b"\0" in sample:
            return "lfs"
        return "regular"

    def lfs_patterns(self, repo_type: str, repo_id: str, revision: str) -> list[str]:
        """The patterns that `.gitattributes` at `revision` routes through LFS (`filter=lfs`)."""
        _, record = self.snapshot(repo_type, repo_id, revision)
        entry = record["files"].get(".gitattributes")
        if entry is None:
            return []
        return _lfs_patterns(self.read_blob(entry).decode("utf-8", errors="replace"))

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
        info["xetEnabled"] = False
        if siblings:
            info["siblings"] = [
                {"rfilename": path, **({"size": entry["size"], "blobId": entry["oid"], **self.lfs_info(entry)}
                                       if files_metadata else {})}
                for path, entry in files.items()
            ]
        return info

    @staticmethod
    def lfs_info(entry: dict) -> dict:
        """`{"lfs": {...}}` for an LFS file entry (as in the Hub's tree answers), `{}` for a regular one."""
        if not entry.get("lfs"):
            return {}
        return {"lfs": {"oid": entry["sha256"], "sha256": entry["sha256"], "size": entry["size"],
                        "pointerSize": entry.get("pointerSize", 0)}}

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



def _lfs_patterns(gitattributes: str) -> list[str]:
    patterns = []
    for line in gitattributes.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _gitattributes_match(pattern: str, path: str) -> bool:
    """Whether a .gitattributes pattern matches a repository path (basename patterns match at any depth)."""
    import fnmatch

    if "/" not in pattern.strip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    pattern = pattern.lstrip("/")
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.replace("**/", ""))


__all__ = ["LocalHubStore", "HubHTTPError", "git_blob_sha1", "check_file_path", "parse_card_data", "REPO_TYPES",
           "DEFAULT_BRANCH", "LOCAL_USER", "LOG_FILE"]
