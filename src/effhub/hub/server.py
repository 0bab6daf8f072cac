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

import os
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from ..errors import ConfigError
from .routes import LocalHubRequestHandler
from .storage import LOG_FILE, HubHTTPError, LocalHubStore, _now, check_file_path, git_blob_sha1, parse_card_data


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
