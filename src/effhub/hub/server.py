"""The local hub's lifecycle: a file-backed Hub server on loopback, run in a thread or in the foreground.

It speaks the part of the Hugging Face Hub HTTP API that `huggingface_hub`, `transformers`, `peft` and `datasets`
call (repos, commits with regular and LFS files, the LFS batch API, branches and tags, visibility, listing, resolve),
plus web pages to browse it, so that `push_to_hub`, `Dataset.push_to_hub`, `from_pretrained("org/name",
revision=...)`, `snapshot_download`, `ModelCard.load` and `list_models` run through the real client libraries without
a network. The store is `effhub.hub.storage`, the request handling `effhub.hub.routes`, the pages `effhub.hub.pages`,
the tokens `effhub.hub.auth`.

The local hub does not speak Xet. huggingface_hub uploads LFS files through Xet whenever `hf_xet` is installed, unless
`HF_HUB_DISABLE_XET=1`; so a `LocalHubServer` sets that in its own process when it starts (`disable_xet=True`), and
`serve()` tells the user to export it. A client that still asks for Xet gets one error line saying so.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from ..errors import ConfigError
from .auth import TokenTable
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
        tokens (`TokenTable`, `str` or `os.PathLike`, *optional*): tokens (or a JSON/YAML tokens file) with read or
            write rights per user or organisation. Without them the hub is open: anyone who reaches it may write.
        allow_remote (`bool`, *optional*, defaults to `False`): listen on a non-loopback `host` even without tokens.
        disable_xet (`bool`, *optional*, defaults to `True`): set `HF_HUB_DISABLE_XET=1` in this process (and so in
            its later subprocesses) when the server starts, so that huggingface_hub here uploads large files through
            LFS, which the local hub speaks, instead of Xet, which it does not.

    Example:
        ```python
        with LocalHubServer("hub-root") as hub:
            HfApi(endpoint=hub.url).create_repo("org/name")
        ```
    """

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, *, sock=None,
                 log_to_stderr: bool = False, tokens: TokenTable | str | os.PathLike | None = None,
                 allow_remote: bool = False, disable_xet: bool = True):
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"Invalid port {port!r} for the local hub", "pass an integer in 0..65535 (0 = any free port)")
        self.tokens = tokens if tokens is None or isinstance(tokens, TokenTable) else TokenTable.load(tokens)
        bind_host = sock.getsockname()[0] if sock is not None else host
        if self.tokens is None and not allow_remote and not is_loopback(bind_host):
            raise ConfigError(f"The local hub refuses to listen on {bind_host} without tokens: anyone reaching it "
                              "could write", "pass --tokens FILE (read/write tokens per user or org), keep "
                              "--host 127.0.0.1, or force it with --allow-remote")
        self.disable_xet = disable_xet
        self._secret = os.urandom(32)
        self._created_root = not Path(root).expanduser().exists()  # removed again when the hub cannot listen
        self.store = LocalHubStore(root)
        self.root = self.store.root
        self.host, self.port, self._sock = host, port, sock
        self.log_to_stderr = log_to_stderr
        self._lines: list[str] = []
        self._times: list[tuple[float, str, str, int]] = []
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
            if self._created_root:  # a refused start leaves nothing behind
                shutil.rmtree(self.root, ignore_errors=True)
            raise ConfigError(f"The local hub cannot listen on {self.host}:{self.port} ({error})",
                              "pick another --port (0 picks a free one) or stop the process using it") from None
        httpd.store = self.store  # type: ignore[attr-defined]
        httpd.log = self.log  # type: ignore[attr-defined]
        httpd.tokens = self.tokens  # type: ignore[attr-defined]
        httpd.secret = self._secret  # type: ignore[attr-defined]
        if self.disable_xet:
            disable_xet_here()
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

    def log(self, method: str, path: str, status: int, seconds: float | None = None) -> None:
        """Record one request: kept in memory (`log_lines()`, `request_times()`), appended to `root/hub.log`,
        optionally on stderr."""
        line = f"{_now()} {method} {path} {status}"
        with self._log_lock:
            self._lines.append(line)
            if seconds is not None:
                self._times.append((seconds, method, path.split("?")[0], status))
            with open(self.root / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.log_to_stderr:
            print(line, file=sys.stderr, flush=True)

    def request_times(self) -> list[tuple[float, str, str, int]]:
        """(seconds, method, path, status) of each request this server object answered, oldest first."""
        with self._log_lock:
            return list(self._times)

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


def is_loopback(host: str) -> bool:
    """Whether `host` names a loopback interface (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def disable_xet_here() -> None:
    """Make huggingface_hub in this process (and its later subprocesses) upload LFS files through LFS, not Xet."""
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_DISABLE_XET = True


def serve(root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, *,
          tokens_file: str | os.PathLike | None = None, allow_remote: bool = False) -> None:
    """Serve a local hub in the foreground (`effhub hub serve`) until Ctrl-C, logging each request to stderr.

    Args:
        root (`str` or `os.PathLike`): folder holding the repositories.
        host (`str`, *optional*, defaults to `"127.0.0.1"`): interface to bind; a non-loopback one needs
            `tokens_file` or `allow_remote=True`.
        port (`int`, *optional*, defaults to 8765): TCP port; 0 picks a free one.
        tokens_file (`str` or `os.PathLike`, *optional*): JSON or YAML file of tokens with read/write rights per user
            or organisation (see `effhub.hub.auth`). Without it the hub is an open single-user hub.
        allow_remote (`bool`, *optional*, defaults to `False`): listen beyond loopback without tokens anyway.
    """
    server = LocalHubServer(root, host=host, port=port, log_to_stderr=True, tokens=tokens_file,
                            allow_remote=allow_remote, disable_xet=False)
    server._httpd = server._build()
    url = server.url
    print(f"effhub local hub serving {Path(root).resolve()} at {url}", flush=True)
    print(f"export HF_ENDPOINT={url} HF_HUB_DISABLE_XET=1   # the local hub speaks LFS, not Xet", flush=True)
    if server.tokens is None:
        print("effhub: open single-user hub: no tokens, anyone who reaches it may read and write everything "
              "(pass --tokens FILE for per-user rights and private repos)", file=sys.stderr, flush=True)
    else:
        print(f"effhub: {len(server.tokens)} token(s) from {tokens_file}: writes need a write token, private repos "
              "are hidden from others", file=sys.stderr, flush=True)
    if not is_loopback(host):
        print(f"effhub: warning: listening on {host}, beyond loopback; the local hub is an offline and test tool, "
              "not a Hub replacement (plain HTTP, no rate limits)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("effhub local hub stopped", file=sys.stderr, flush=True)


__all__ = ["LocalHubServer", "LocalHubStore", "LocalHubRequestHandler", "HubHTTPError", "TokenTable", "serve",
           "is_loopback", "disable_xet_here", "git_blob_sha1", "check_file_path", "parse_card_data"]
