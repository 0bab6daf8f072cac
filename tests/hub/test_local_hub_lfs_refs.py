"""The local hub's LFS storage and revisions (branches, tags), through huggingface_hub, datasets, transformers and
the `hf` CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from transformers import BertConfig, BertModel

from hub_helpers import raw_request


def tiny_bert(seed: int = 0, hidden: int = 16) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, vocab_size=64, max_position_embeddings=32))


def lfs_batch(hub_url, repo_id, oid, size, operation="upload"):
    body = json.dumps({"operation": operation, "transfers": ["basic"], "hash_algo": "sha256",
                       "objects": [{"oid": oid, "size": size}]}).encode()
    status, _, answer = raw_request(hub_url, "POST", f"/{repo_id}.git/info/lfs/objects/batch", body,
                                    {"Content-Type": "application/vnd.git-lfs+json"})
    assert status == 200, answer
    return json.loads(answer)["objects"][0]


def test_dataset_push_to_hub_then_load_dataset_by_repo_id(local_hub, hub_repo_id):
    import datasets

    data = datasets.Dataset.from_dict({"x": list(range(50)), "label": [f"c{i % 3}" for i in range(50)]})
    data.push_to_hub(hub_repo_id)
    loaded = datasets.load_dataset(hub_repo_id, split="train")
    assert loaded.to_dict() == data.to_dict()
    files = HfApi().list_repo_files(hub_repo_id, repo_type="dataset")
    assert any(name.endswith(".parquet") for name in files) and "README.md" in files
    assert any(f"/datasets/{hub_repo_id}.git/info/lfs/objects/batch 200" in line for line in local_hub.log_lines())


def test_model_with_a_large_weight_file_round_trips_with_lfs_headers(hub_api, hub_repo_id, hub_url):
    model = tiny_bert(hidden=64)
    model.push_to_hub(hub_repo_id)
    url = hf_hub_url(hub_repo_id, "model.safetensors")
    status, headers, _ = raw_request(hub_url, "HEAD", url[len(hub_url):])
    size = int(headers["X-Linked-Size"])
    assert status == 200 and size == int(headers["Content-Length"]) > 100_000
    local = hf_hub_download(hub_repo_id, "model.safetensors")
    sha256 = hashlib.sha256(Path(local).read_bytes()).hexdigest()
    assert headers["X-Linked-Etag"].strip('"') == sha256 == get_hf_file_metadata(url).etag
    loaded = BertModel.from_pretrained(hub_repo_id)
    assert all(torch.equal(loaded.state_dict()[name], tensor) for name, tensor in model.state_dict().items())


def test_lfs_upload_with_wrong_content_or_size_is_refused_and_nothing_stored(local_hub, hub_api, hub_repo_id,
                                                                             hub_url):
    hub_api.create_repo(hub_repo_id)
    content = os.urandom(5000)
    oid = hashlib.sha256(content).hexdigest()
    action = lfs_batch(hub_url, hub_repo_id, oid, len(content))
    href = action["actions"]["upload"]["href"][len(hub_url):]
    status, _, answer = raw_request(hub_url, "PUT", href, content[:-1] + b"x")  # same size, other content
    assert status == 400 and "nothing was stored" in json.loads(answer)["error"]
    status, _, answer = raw_request(hub_url, "PUT", href, content + b"extra")
    assert status == 400 and "nothing was stored" in json.loads(answer)["error"]
    assert not (local_hub.root / "blobs" / oid[:2] / oid).exists()
    assert not list((local_hub.root / "blobs" / oid[:2]).glob(".upload-*"))
    status, _, _ = raw_request(hub_url, "PUT", href.replace("sig=", "sig=0"), content)  # a forged signature
    assert status == 403
    status, _, _ = raw_request(hub_url, "PUT", href, content)
    assert status == 200 and (local_hub.root / "blobs" / oid[:2] / oid).read_bytes() == content
    assert "actions" not in lfs_batch(hub_url, hub_repo_id, oid, len(content))  # already there: nothing to send
    download = lfs_batch(hub_url, hub_repo_id, oid, len(content), "download")["actions"]["download"]["href"]
    status, _, body = raw_request(hub_url, "GET", download[len(hub_url):])
    assert status == 200 and body == content


def test_xet_token_request_gets_one_clear_error(hub_api, hub_repo_id, hub_url):
    hub_api.create_repo(hub_repo_id)
    status, headers, answer = raw_request(hub_url, "GET", f"/api/models/{hub_repo_id}/xet-write-token/main")
    assert status == 501 and "HF_HUB_DISABLE_XET=1" in headers["X-Error-Message"]


def test_branches_tags_and_downloads_at_each_revision(hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    first = hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"v1", path_in_repo="weights.txt").oid
    hub_api.create_tag(hub_repo_id, tag="v1.0", tag_message="first release")
    hub_api.create_branch(hub_repo_id, branch="dev")
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"dev", path_in_repo="weights.txt", revision="dev")
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"v2", path_in_repo="weights.txt")

    def read(revision):
        return Path(hf_hub_download(hub_repo_id, "weights.txt", revision=revision)).read_bytes()

    assert (read("main"), read("dev"), read("v1.0"), read(first)) == (b"v2", b"dev", b"v1", b"v1")
    refs = hub_api.list_repo_refs(hub_repo_id)
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", first)]
    with pytest.raises(HfHubHTTPError) as conflict:
        hub_api.create_branch(hub_repo_id, branch="dev")
    assert conflict.value.response.status_code == 409
    hub_api.create_branch(hub_repo_id, branch="dev", exist_ok=True)
    hub_api.create_branch(hub_repo_id, branch="from-tag", revision="v1.0")
    assert read("from-tag") == b"v1"
    with pytest.raises(HfHubHTTPError):  # a tag is not a branch: no commits on it
        hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"x", path_in_repo="x.txt", revision="v1.0")
    hub_api.delete_tag(hub_repo_id, tag="v1.0")
    hub_api.delete_branch(hub_repo_id, branch="dev")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, "weights.txt", revision="dev", force_download=True)
    with pytest.raises(HfHubHTTPError):
        hub_api.delete_branch(hub_repo_id, branch="main")
    refs = hub_api.list_repo_refs(hub_repo_id)
    assert {b.name for b in refs.branches} == {"main", "from-tag"} and refs.tags == []


def test_from_pretrained_at_a_tag_a_branch_and_a_commit(hub_api, hub_repo_id):
    old, new = tiny_bert(seed=0), tiny_bert(seed=1)
    commit = old.push_to_hub(hub_repo_id).oid
    hub_api.create_tag(hub_repo_id, tag="v1")
    hub_api.create_branch(hub_repo_id, branch="old")
    new.push_to_hub(hub_repo_id)
    for revision, expected in (("v1", old), ("old", old), (commit, old), ("main", new)):
        loaded = BertModel.from_pretrained(hub_repo_id, revision=revision)
        name = "embeddings.word_embeddings.weight"
        assert torch.equal(loaded.state_dict()[name], expected.state_dict()[name]), revision


def test_hf_cli_branch_tag_and_settings(hub_api, hub_repo_id, subprocess_env):
    hf = shutil.which("hf", path=str(Path(sys.executable).parent)) or "hf"
    hub_api.create_repo(hub_repo_id)
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"x", path_in_repo="a.txt")

    def run(*args):
        done = subprocess.run([hf, *args], env=subprocess_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("repos", "branch", "create", hub_repo_id, "release")
    run("repos", "tag", "create", hub_repo_id, "v0.1", "-m", "tagged from the CLI")
    run("repos", "settings", hub_repo_id, "--private")
    refs = hub_api.list_repo_refs(hub_repo_id)
    assert "release" in {b.name for b in refs.branches} and [t.name for t in refs.tags] == ["v0.1"]
    assert hub_api.model_info(hub_repo_id).private is True
    hub_api.update_repo_settings(hub_repo_id, private=False)
    assert hub_api.model_info(hub_repo_id).private is False


def test_commit_to_a_branch_with_create_commit(hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    hub_api.create_branch(hub_repo_id, branch="exp")
    hub_api.create_commit(hub_repo_id, [CommitOperationAdd("exp.txt", b"only on exp")], commit_message="exp",
                          revision="exp")
    assert "exp.txt" in hub_api.list_repo_files(hub_repo_id, revision="exp")
    assert "exp.txt" not in hub_api.list_repo_files(hub_repo_id)
    assert [c.title for c in hub_api.list_repo_commits(hub_repo_id, revision="exp")][0] == "exp"


XET_CLIENT = """
import sys
from huggingface_hub import HfApi
api = HfApi(endpoint=sys.argv[1])
api.upload_file(repo_id=sys.argv[2], path_or_fileobj=sys.argv[3], path_in_repo="weights.bin")
"""


def test_a_client_left_on_xet_fails_fast_at_the_xet_token_request(hub_api, hub_repo_id, hub_url, subprocess_env,
                                                                   tmp_path):
    hub_api.create_repo(hub_repo_id)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 1000)
    env = {name: value for name, value in subprocess_env.items() if name != "HF_HUB_DISABLE_XET"}
    done = subprocess.run([sys.executable, "-c", XET_CLIENT, hub_url, hub_repo_id, str(weights)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "xet-write-token" in done.stderr
    assert "weights.bin" not in hub_api.list_repo_files(hub_repo_id)
