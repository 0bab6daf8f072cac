"""Helpers shared by the local hub tests."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit


def dead_endpoint() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def raw_request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """Send a request without any client-side URL normalisation (to test what the server itself refuses)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
