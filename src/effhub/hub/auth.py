"""Tokens of the local hub: who may read private repositories and who may write, per user or organisation.

A tokens file (JSON or YAML) lists tokens; each acts as one user with read or write rights on that user's namespace
and on the organisations it names:

```yaml
tokens:
  - {token: hf_alice_write_0001, user: alice, role: write, orgs: [vision-lab]}
  - {token: hf_bob_read_0002, user: bob, role: read, orgs: [vision-lab]}
```

With a tokens file, writes need a write token for the repository's namespace, and private repositories are invisible
(404, as on the Hub) to anyone without read rights on their namespace. Public repositories stay readable by anyone.
Without one the hub is open: one anonymous local user who may do everything (fine on loopback only).
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

ROLES = ("read", "write")
MIN_TOKEN_LENGTH = 8


@dataclass(frozen=True)
class Identity:
    """A caller of the local hub: a user name, its read and write namespaces, or everything (`open_hub`)."""

    user: str
    read: frozenset = field(default_factory=frozenset)
    write: frozenset = field(default_factory=frozenset)
    open_hub: bool = False

    def can_read(self, namespace: str) -> bool:
        return self.open_hub or namespace in self.read or namespace in self.write

    def can_write(self, namespace: str) -> bool:
        return self.open_hub or namespace in self.write

    @property
    def orgs(self) -> list[str]:
        return sorted((self.read | self.write) - {self.user})


class TokenTable:
    """The tokens of a local hub, read from a JSON or YAML file.

    Args:
        entries (`list[dict]`): one dict per token with `token`, `user`, optional `role` (`"read"` or `"write"`,
            default `"read"`) and optional `orgs` (namespaces besides the user's own).
    """

    def __init__(self, entries: list[dict], source: str = "the tokens"):
        self._by_token: dict[str, Identity] = {}
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source} lists no tokens", "give a list under 'tokens:' (see docs/local-hub.md)")
        for number, entry in enumerate(entries, start=1):
            where = f"{source}, token #{number}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} is not a mapping", "write {token: ..., user: ..., role: read|write}")
            token, user = entry.get("token"), entry.get("user")
            role, orgs = entry.get("role", "read"), entry.get("orgs") or []
            if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
                raise ConfigError(f"{where} has no valid 'token'",
                                  f"use a string of at least {MIN_TOKEN_LENGTH} characters without spaces")
            if not isinstance(user, str) or not user:
                raise ConfigError(f"{where} has no 'user'", "name the user the token acts as")
            if role not in ROLES:
                raise ConfigError(f"{where} has role {role!r}", "use 'read' or 'write'")
            if isinstance(orgs, str):
                orgs = [orgs]
            if not isinstance(orgs, list) or not all(isinstance(org, str) and org for org in orgs):
                raise ConfigError(f"{where} has an invalid 'orgs'", "give a list of organisation names")
            if token in self._by_token:
                raise ConfigError(f"{where} repeats a token listed before", "give every token once")
            namespaces = frozenset([user, *orgs])
            self._by_token[token] = Identity(user=user, read=namespaces,
                                             write=namespaces if role == "write" else frozenset())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenTable":
        """Read a tokens file: JSON, or YAML (a list, or a mapping with a `tokens` list)."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"Cannot read the tokens file {path} ({error.strerror or error})",
                              "pass an existing JSON or YAML file to --tokens") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise ConfigError(f"The tokens file {path} is not valid JSON/YAML ({error})",
                              "fix its syntax (see docs/local-hub.md)") from None
        if isinstance(data, dict):
            data = data.get("tokens")
        return cls(data, source=f"the tokens file {path}")

    def identify(self, token: str | None) -> Identity | None:
        """The identity of `token`; None for no token. Unknown tokens raise `KeyError`."""
        if not token:
            return None
        for known, identity in self._by_token.items():  # constant-time comparison per entry
            if hmac.compare_digest(known.encode(), token.encode()):
                return identity
        raise KeyError("unknown token")

    def __len__(self) -> int:
        return len(self._by_token)


OPEN_IDENTITY = Identity(user="effhub", open_hub=True)

__all__ = ["Identity", "TokenTable", "OPEN_IDENTITY", "ROLES"]
