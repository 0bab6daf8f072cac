"""The HTTP layer of the local hub: one request of the Hub HTTP API routed to the `LocalHubStore` of its server."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from .storage import (
    _YAML_BLOCK,
    DEFAULT_BRANCH,
    LOCAL_USER,
    HubHTTPError,
    LocalHubStore,
    check_file_path,
)


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


__all__ = ["LocalHubRequestHandler"]
