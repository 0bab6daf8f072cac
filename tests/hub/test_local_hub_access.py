"""Tokens and visibility of the local hub, through huggingface_hub (a hub of its own, with a tokens file)."""

from __future__ import annotations

import json
import socket

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from effhub.errors import ConfigError
from effhub.hub.server import LocalHubServer, is_loopback
from hub_helpers import raw_request

TOKENS = """
tokens:
  - {token: alice-write-0001, user: alice, role: write, orgs: [lab]}
  - {token: bob-read-00000002, user: bob, role: read, orgs: [lab]}
  - {token: carol-write-0003, user: carol, role: write}
"""


@pytest.fixture
def secured_hub(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    with LocalHubServer(tmp_path / "root", tokens=tokens) as hub:
        yield hub


def test_writes_need_a_write_token_for_the_namespace(secured_hub, tmp_path):
    alice, bob, carol = (HfApi(endpoint=secured_hub.url, token=token)
                         for token in ("alice-write-0001", "bob-read-00000002", "carol-write-0003"))
    anonymous = HfApi(endpoint=secured_hub.url, token=False)
    assert alice.whoami()["name"] == "alice" and [o["name"] for o in alice.whoami()["orgs"]] == ["lab"]
    alice.create_repo("lab/model")
    alice.upload_file(repo_id="lab/model", path_or_fileobj=b"weights", path_in_repo="w.txt")
    for api, status in ((bob, 403), (carol, 403), (anonymous, 401)):
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(repo_id="lab/model", path_or_fileobj=b"evil", path_in_repo="w.txt")
        assert refused.value.response.status_code == status
        with pytest.raises(HfHubHTTPError):
            api.create_repo("lab/other")
    # the public repository is readable by anyone, the content unchanged
    path = hf_hub_download("lab/model", "w.txt", endpoint=secured_hub.url, token=False, cache_dir=tmp_path / "c")
    assert open(path, "rb").read() == b"weights"
    with pytest.raises(HfHubHTTPError) as unknown:
        HfApi(endpoint=secured_hub.url, token="not-a-known-token").create_repo("lab/x")
    assert unknown.value.response.status_code == 401
    # a name without namespace goes to the token's user
    assert carol.create_repo("mine").repo_id == "carol/mine"


def test_private_repos_are_invisible_without_read_rights(secured_hub, tmp_path):
    alice, bob, carol = (HfApi(endpoint=secured_hub.url, token=token)
                         for token in ("alice-write-0001", "bob-read-00000002", "carol-write-0003"))
    anonymous = HfApi(endpoint=secured_hub.url, token=False)
    alice.create_repo("lab/secret", private=True)
    alice.upload_file(repo_id="lab/secret", path_or_fileobj=b"s", path_in_repo="s.txt")
    alice.create_repo("lab/open")
    assert bob.model_info("lab/secret").private is True  # read rights on 'lab'
    assert {m.id for m in bob.list_models()} == {"lab/secret", "lab/open"}
    for api in (carol, anonymous):
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("lab/secret")
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("lab/secret", "s.txt", endpoint=secured_hub.url, token=api.token,
                            cache_dir=tmp_path / "cache")
        assert {m.id for m in api.list_models()} == {"lab/open"}
    status, headers, _ = raw_request(secured_hub.url, "GET", "/lab/secret", headers={"Accept": "text/html"})
    assert status == 404 and "not found" in _.decode().lower()
    # visibility as huggingface_hub 2.x sends it ({"visibility": ...}) and as older clients ({"private": ...})
    alice.update_repo_settings("lab/secret", private=False)
    assert "lab/secret" in {m.id for m in anonymous.list_models()}
    status, _, answer = raw_request(secured_hub.url, "PUT", "/api/models/lab/secret/settings",
                                    json.dumps({"private": True}).encode(),
                                    {"Authorization": "Bearer alice-write-0001", "Content-Type": "application/json"})
    assert status == 200 and json.loads(answer)["private"] is True
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("lab/secret")
    with pytest.raises(HfHubHTTPError):  # read-only token: no settings changes
        bob.update_repo_settings("lab/secret", private=False)


def test_non_loopback_without_tokens_is_refused_unless_forced(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ConfigError, match="--tokens"):
        LocalHubServer(tmp_path, host="0.0.0.0")
    with socket.socket() as sock:  # forced: it builds (and would listen) without tokens
        sock.bind(("127.0.0.1", 0))
        LocalHubServer(tmp_path, host="0.0.0.0", allow_remote=True)


@pytest.mark.parametrize("content, problem", [
    ("tokens: []", "lists no tokens"),
    ("tokens:\n  - {token: short, user: a}", "no valid 'token'"),
    ("tokens:\n  - {token: long-enough-1, user: a, role: admin}", "role"),
    ("tokens: [", "not valid"),
])
def test_bad_tokens_files_give_config_errors(tmp_path, content, problem):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        LocalHubServer(tmp_path / "root", tokens=tokens)
    with pytest.raises(ConfigError, match="Cannot read"):
        LocalHubServer(tmp_path / "root", tokens=tmp_path / "missing.json")
