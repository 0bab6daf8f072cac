"""The HTTP layer of the local hub: one request of the Hub HTTP API (or a web page) routed to its server's store.

Access: without a tokens table every caller is the one open local user; with one (see `effhub.hub.auth`), writes need a
write token for the repository's namespace and a private repository answers 404 to anyone without read rights on its
namespace. LFS transfers (`PUT`/`GET` of `/api/lfs/...`) carry no Authorization header in the clients, so the batch
API hands out URLs signed by the server (HMAC, valid for an hour).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from .auth import OPEN_IDENTITY, Identity
from .storage import (
    _YAML_BLOCK,
    DEFAULT_BRANCH,
    LOCAL_USER,
    HubHTTPError,
    LocalHubStore,
    check_file_path,
)

ANONYMOUS = Identity(user="")
LFS_URL_LIFETIME_S = 3600
XET_REFUSAL = ("The local hub does not speak Xet: set HF_HUB_DISABLE_XET=1 in the client's environment (before "
               "huggingface_hub is imported) so that large files go through LFS")


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
        self._body_read = False
        started = time.perf_counter()
        try:
            split = urlsplit(self.path)
            self._query = parse_qs(split.query, keep_blank_values=True)
            # an LFS upload streams its body to disk (see `_lfs_upload`); everything else is read at once
            streamed = method == "PUT" and split.path.startswith("/api/lfs/")
            body = b"" if streamed else self._read_body()
            self.identity = self._identify()
            # split before unquoting: the clients quote revisions and tree paths with safe="" (so '/' is '%2F')
            segments = [unquote(part) for part in split.path.split("/")[1:]]
            self._route(method, segments, body)
        except HubHTTPError as error:
            self._send_error(error)
        except Exception as error:  # noqa: BLE001 - a server answers 500 rather than dropping the connection
            self._send_error(HubHTTPError(500, f"Internal error of the local hub: {type(error).__name__}: {error}"))
        finally:
            if not self._body_read:  # an unread request body would be taken for the next request
                self.close_connection = True
            self.server.log(method, self.path, self._status,  # type: ignore[attr-defined]
                            seconds=time.perf_counter() - started)

    def _iter_body(self, block: int = 1 << 20):
        """The request body in chunks (chunked transfer encoding or Content-Length)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                yield from self._read_exactly(size, block)
                self.rfile.readline()
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0), block)
        self._body_read = True

    def _read_exactly(self, size: int, block: int):
        """`size` bytes of the request body, in chunks of at most `block`; a body that ends early is refused."""
        while size > 0:
            chunk = self.rfile.read(min(size, block))
            if not chunk:
                raise HubHTTPError(400, "The request body ended early")
            size -= len(chunk)
            yield chunk

    def _read_body(self) -> bytes:
        return b"".join(self._iter_body())

    # ------------------------------------------------------------------------------------------------ access
    def _identify(self) -> Identity:
        tokens = getattr(self.server, "tokens", None)
        if tokens is None:
            return OPEN_IDENTITY
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        try:
            return tokens.identify(token) or ANONYMOUS
        except KeyError:
            raise HubHTTPError(401, "Invalid credentials in Authorization header: the local hub does not know this "
                                    "token") from None

    def _require_read(self, repo_type: str, repo_id: str) -> dict:
        """The repo's metadata; 404 `RepoNotFound` when it is missing or private and unreadable by the caller."""
        meta = self.store.repo_meta(repo_type, repo_id)
        if meta.get("private") and not self.identity.can_read(repo_id.split("/")[0]):
            raise HubHTTPError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
        return meta

    def _can_read(self, repo_id: str, meta: dict) -> bool:
        return not meta.get("private") or self.identity.can_read(repo_id.split("/")[0])

    def _require_write(self, namespace: str) -> None:
        if self.identity.can_write(namespace):
            return
        if not self.identity.user:
            raise HubHTTPError(401, f"Writing to '{namespace}' on this local hub needs a write token: pass one "
                                    "(HF_TOKEN, token=..., or `hf auth login`)")
        raise HubHTTPError(403, f"The token of '{self.identity.user}' has no write access to '{namespace}' on this "
                                "local hub")

    def _sign(self, *parts) -> str:
        key = self.server.secret  # type: ignore[attr-defined]
        return hmac.new(key, "|".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()

    def _lfs_href(self, action: str, repo_type: str, repo_id: str, oid: str, size: int) -> str:
        expires = int(time.time()) + LFS_URL_LIFETIME_S
        signature = self._sign(action, repo_type, repo_id, oid, size, expires)
        return (f"{self.base_url}/api/lfs/{repo_type}s/{repo_id}/{oid}?size={size}&expires={expires}"
                f"&action={action}&sig={signature}")

    def _check_lfs_signature(self, action: str, repo_type: str, repo_id: str, oid: str) -> int:
        query = {key: (values or [""])[-1] for key, values in self._query.items()}
        try:
            size, expires = int(query.get("size", "")), int(query.get("expires", ""))
        except ValueError:
            raise HubHTTPError(403, "This LFS URL is not signed by the local hub") from None
        expected = self._sign(action, repo_type, repo_id, oid, size, expires)
        if query.get("action") != action or not hmac.compare_digest(expected, query.get("sig", "")):
            raise HubHTTPError(403, "This LFS URL is not signed by the local hub")
        if expires < time.time():
            raise HubHTTPError(403, "This LFS URL has expired: ask the batch API again")
        return size

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
        if seg in ([""], []) and method in ("GET", "HEAD"):
            return self._page(method, "list")
        # file URLs: /{repo_id}/resolve/{rev}/{path}, /datasets/{repo_id}/resolve/..., /spaces/{repo_id}/resolve/...
        repo_type = "model"
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        # the LFS batch API: /{prefix}{repo_id}.git/info/lfs/objects/batch
        if (len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]
                and method == "POST"):
            repo_id = f"{seg[0]}/{seg[1][:-4]}"
            self.store.check_repo(repo_type, repo_id)
            return self._lfs_batch(repo_type, repo_id, self._json_body(body))
        if len(seg) == 2 and seg[1] and method in ("GET", "HEAD"):
            return self._page(method, "repo", repo_type, f"{seg[0]}/{seg[1]}")
        if method in ("GET", "HEAD") and "text/html" in self.headers.get("Accept", ""):
            return self._page(method, "missing")
        raise HubHTTPError(404, f"The local hub has no route for {method} {self.path}")

    def _page(self, method: str, kind: str, repo_type: str | None = None, repo_id: str | None = None) -> None:
        from . import pages

        query = {key: values[-1] for key, values in self._query.items() if values}
        can_read = lambda rid, meta: self._can_read(rid, meta)  # noqa: E731 - a small visibility predicate
        if kind == "list":
            status, html = pages.list_page(self.store, can_read, query)
        elif kind == "repo":
            status, html = pages.repo_page(self.store, can_read, repo_type, repo_id, query)
        else:
            status, html = pages.not_found_page(f"Nothing at {self.path.split('?')[0]}")
        self._send(status, html.encode(), pages.PAGE_HEADERS, "text/html; charset=utf-8", head_only=method == "HEAD")

    def _route_api(self, method: str, seg: list[str], body: bytes) -> None:
        if seg in (["whoami-v2"], ["whoami"]) and method == "GET":
            return self._whoami()
        if seg[:1] == ["lfs"] and len(seg) == 5 and seg[1] in ("models", "datasets", "spaces"):
            repo_type, repo_id, oid = seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4]
            self.store.check_repo(repo_type, repo_id)
            if oid == "verify" and method == "POST":
                return self._lfs_verify(repo_type, repo_id, self._json_body(body))
            if method == "PUT":
                return self._lfs_upload(repo_type, repo_id, oid)
            if method in ("GET", "HEAD"):
                return self._lfs_download(method, repo_type, repo_id, oid)
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(self._json_body(body))
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo(self._json_body(body))
        if seg == ["repos", "delete"] and method == "DELETE":
            data = self._json_body(body)
            repo_type, repo_id = self._repo_from_payload(data)
            self._require_read(repo_type, repo_id)
            self._require_write(repo_id.split("/")[0])
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
        if rest[:1] in (["xet-write-token"], ["xet-read-token"]):
            raise HubHTTPError(501, XET_REFUSAL, "XetNotSupported")
        self._require_read(repo_type, repo_id)
        writes = method in ("POST", "PUT", "DELETE") and rest[:1] != ["paths-info"]
        if writes:
            self._require_write(repo_id.split("/")[0])
        if method == "POST" and len(rest) == 2 and rest[0] == "branch":
            data = self._json_body(body)
            if data.get("emptyBranch"):
                raise HubHTTPError(400, "The local hub does not create empty branches: start from a revision")
            store.create_branch(repo_type, repo_id, rest[1], data.get("startingPoint"))
            return self._send_json({})
        if method == "DELETE" and len(rest) == 2 and rest[0] == "branch":
            store.delete_branch(repo_type, repo_id, rest[1])
            return self._send_json({})
        if method == "POST" and len(rest) == 2 and rest[0] == "tag":
            data = self._json_body(body)
            store.create_tag(repo_type, repo_id, data.get("tag"), rest[1], data.get("message") or "")
            return self._send_json({})
        if method == "DELETE" and len(rest) == 2 and rest[0] == "tag":
            store.delete_tag(repo_type, repo_id, rest[1])
            return self._send_json({})
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
            return self._send_json({
                "branches": [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                             for name, sha in store.branches(repo_type, repo_id).items()],
                "tags": [{"name": name, "ref": f"refs/tags/{name}", "targetCommit": tag["sha"]}
                         for name, tag in store.tags(repo_type, repo_id).items()],
                "converts": [], "pullRequests": [],
            })
        if method == "PUT" and rest == ["settings"]:
            return self._settings(repo_type, repo_id, self._json_body(body))
        raise HubHTTPError(404, f"The local hub has no route for {method} {self.path}")

    # ------------------------------------------------------------------------------------------------ handlers
    def _whoami(self) -> None:
        identity = self.identity
        if not identity.user:
            raise HubHTTPError(401, "Invalid credentials in Authorization header: pass a token of this local hub")
        if identity.open_hub:
            return self._send_json({"type": "user", "id": LOCAL_USER, "name": LOCAL_USER,
                                    "fullname": "effhub local hub", "orgs": [], "auth": {"type": "anonymous"},
                                    "isPro": False})
        role = "write" if identity.write else "read"
        self._send_json({"type": "user", "id": identity.user, "name": identity.user, "fullname": identity.user,
                         "orgs": [{"type": "org", "name": org, "roleInOrg": role} for org in identity.orgs],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "local hub token",
                                                                          "role": role}},
                         "isPro": False})

    def _settings(self, repo_type: str, repo_id: str, data: dict) -> None:
        """`PUT settings`: visibility as huggingface_hub 2.x sends it (`visibility`) or as older clients (`private`)."""
        unsupported = sorted(set(data) - {"private", "visibility"})
        if unsupported:
            raise HubHTTPError(400, f"The local hub does not support the setting(s) {', '.join(unsupported)}: only "
                                    "visibility (private/public)")
        if "visibility" in data:
            if data["visibility"] not in ("private", "public"):
                raise HubHTTPError(400, f"Invalid visibility {data['visibility']!r}: the local hub knows 'private' "
                                        "and 'public'")
            private = data["visibility"] == "private"
        elif "private" in data:
            private = bool(data["private"])
        else:
            private = None
        meta = self.store.repo_meta(repo_type, repo_id)
        if private is not None:
            meta = self.store.set_private(repo_type, repo_id, private)
        self._send_json({"private": meta["private"], "visibility": "private" if meta["private"] else "public"})

    def _repo_from_payload(self, data: dict) -> tuple[str, str]:
        name, organization = data.get("name"), data.get("organization")
        repo_type = data.get("type") or "model"
        if not isinstance(name, str) or not name:
            raise HubHTTPError(400, "Missing repository 'name' in the request")
        # a name without namespace goes to the caller (the open hub's local user), as the Hub does with the token's
        owner = LOCAL_USER if self.identity.open_hub or not self.identity.user else self.identity.user
        repo_id = f"{organization or owner}/{name}" if "/" not in name else name
        return self.store.check_repo(repo_type, repo_id)

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.base_url}/{prefix}{repo_id}"

    def _create_repo(self, data: dict) -> None:
        repo_type, repo_id = self._repo_from_payload(data)
        private = data.get("private", data.get("visibility") == "private")
        answer = {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id}
        self._require_write(repo_id.split("/")[0])
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
            if not self._can_read(repo_id, meta) or (search and search not in repo_id.lower()):
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
        return {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path,
                **self.store.lfs_info(entry)}

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
            try:
                size = int(item.get("size") or 0)
                sample = base64.b64decode(item.get("sample") or "")
            except (TypeError, ValueError, binascii.Error):
                raise HubHTTPError(400, f"File {path}: 'size' must be an integer and 'sample' base64") from None
            mode = self.store.upload_mode(repo_type, repo_id, revision, path, size, sample)
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False})
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
                path = check_file_path(value.get("path"))
                if value.get("algo", "sha256") != "sha256":
                    raise HubHTTPError(400, f"File {path}: LFS objects are addressed by sha256")
                size = value.get("size")
                operations.append({"op": "lfs", "path": path, "sha256": str(value.get("oid")),
                                   "size": int(size) if size is not None else None})
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
        self._require_read(repo_type, repo_id)
        check_file_path(path)
        sha, record = self.store.snapshot(repo_type, repo_id, revision)
        entry = record["files"].get(path)
        if entry is None:
            raise HubHTTPError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                   "Cache-Control": "private, max-age=0, must-revalidate"}
        if entry.get("lfs"):  # as the Hub: the content's sha256 and size in the linked headers, which clients use
            headers.update({"ETag": f'"{entry["sha256"]}"', "X-Linked-Etag": f'"{entry["sha256"]}"',
                            "X-Linked-Size": str(entry["size"])})
        self._send_blob(method, entry, headers)

    # ---------------------------------------------------------------------------------------------------- LFS
    def _lfs_batch(self, repo_type: str, repo_id: str, data: dict) -> None:
        """The git-lfs batch API (basic transfer): signed upload/verify or download URLs per object."""
        operation, objects = data.get("operation"), data.get("objects")
        if operation not in ("upload", "download") or not isinstance(objects, list):
            raise HubHTTPError(400, "LFS batch expects {'operation': 'upload'|'download', 'objects': [{oid, size}]}")
        transfers = data.get("transfers") or ["basic"]
        if "basic" not in transfers:
            raise HubHTTPError(400, f"The local hub speaks the LFS 'basic' transfer only, not {transfers}")
        self._require_read(repo_type, repo_id)
        if operation == "upload":
            self._require_write(repo_id.split("/")[0])
        answers = []
        for item in objects:
            oid, size = (item.get("oid"), item.get("size")) if isinstance(item, dict) else (None, None)
            if not isinstance(oid, str) or not re.match(r"^[0-9a-f]{64}$", oid) or not isinstance(size, int) \
                    or size < 0:
                answers.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "oid must be a 64-hex sha256 and size an integer"}})
                continue
            present = self.store.has_lfs_object(repo_type, repo_id, oid, size)
            answer = {"oid": oid, "size": size, "authenticated": True}
            if operation == "upload" and not present:
                verify = f"{self.base_url}/api/lfs/{repo_type}s/{repo_id}/verify"
                answer["actions"] = {"upload": {"href": self._lfs_href("upload", repo_type, repo_id, oid, size),
                                                "expires_in": LFS_URL_LIFETIME_S},
                                     "verify": {"href": verify, "expires_in": LFS_URL_LIFETIME_S}}
            elif operation == "download":
                if not present:
                    answer["error"] = {"code": 404, "message": f"Object {oid} does not exist in {repo_id}"}
                else:
                    answer["actions"] = {"download": {"href": self._lfs_href("download", repo_type, repo_id, oid,
                                                                            size),
                                                      "expires_in": LFS_URL_LIFETIME_S}}
            answers.append(answer)
        self._send(200, json.dumps({"transfer": "basic", "objects": answers, "hash_algo": "sha256"}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_upload(self, repo_type: str, repo_id: str, oid: str) -> None:
        size = self._check_lfs_signature("upload", repo_type, repo_id, oid)
        self.store.store_lfs_object(repo_type, repo_id, oid, size, self._iter_body())
        self._send_json({})

    def _lfs_download(self, method: str, repo_type: str, repo_id: str, oid: str) -> None:
        size = self._check_lfs_signature("download", repo_type, repo_id, oid)
        if not self.store.has_lfs_object(repo_type, repo_id, oid, size):
            raise HubHTTPError(404, f"Object {oid} does not exist in {repo_id}", "EntryNotFound")
        self._send_blob(method, {"sha256": oid, "size": size}, {"ETag": f'"{oid}"'})

    def _lfs_verify(self, repo_type: str, repo_id: str, data: dict) -> None:
        self._require_read(repo_type, repo_id)
        self._require_write(repo_id.split("/")[0])
        oid, size = data.get("oid"), data.get("size")
        if not self.store.has_lfs_object(repo_type, repo_id, str(oid), size if isinstance(size, int) else -1):
            raise HubHTTPError(404, f"LFS object {oid} of {size} bytes was not uploaded to {repo_id}")
        self._send_json({"oid": oid, "size": size})

    def _send_blob(self, method: str, entry: dict, headers: dict) -> None:
        """Send a stored blob (streamed from disk), honouring a single byte range."""
        size = entry["size"]
        content_type = "application/octet-stream"
        match = re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range", "").strip())
        first, last, status = 0, size - 1, 200
        if match and (match.group(1) or match.group(2)):
            start, end = match.group(1), match.group(2)
            if start:
                first, last = int(start), min(int(end) if end else size - 1, size - 1)
            else:  # suffix range: the last N bytes
                first, last = max(size - int(end), 0), size - 1
            if first >= size or first > last:
                raise HubHTTPError(416, f"Range {self.headers['Range']} is outside the file ({size} bytes)",
                                   headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers = {**headers, "Content-Range": f"bytes {first}-{last}/{size}"}
        length = max(last - first + 1, 0)
        self._send(status, b"", {**headers, "Content-Length": str(length)}, content_type, head_only=True)
        if method == "HEAD" or length == 0:
            return
        with open(self.store.blob_path(entry["sha256"]), "rb") as handle:
            handle.seek(first)
            remaining = length
            while remaining > 0:
                chunk = handle.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


__all__ = ["LocalHubRequestHandler"]
