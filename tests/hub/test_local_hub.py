"""The local hub through the real clients: huggingface_hub, transformers (in this process and in subprocesses)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from huggingface_hub import (
    CommitOperationAdd,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from effhub.hub.server import LocalHubServer
from hub_helpers import dead_endpoint, raw_request

LOAD_SCRIPT = """
import sys
from safetensors.torch import save_file
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1])
save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, sys.argv[2])
"""


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        vocab_size=64, max_position_embeddings=32)
    return BertModel(config)


def test_push_to_hub_then_from_pretrained_in_new_process_and_offline(local_hub, hub_repo_id, subprocess_env,
                                                                     tmp_path):
    model = tiny_bert()
    model.push_to_hub(hub_repo_id)
    expected = model.state_dict()

    loaded_path = tmp_path / "loaded.safetensors"
    subprocess.run([sys.executable, "-c", LOAD_SCRIPT, hub_repo_id, str(loaded_path)], env=subprocess_env,
                   check=True, timeout=120, capture_output=True)
    loaded = load_file(loaded_path)
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)

    resolve_lines = [line for line in local_hub.log_lines() if f"/{hub_repo_id}/resolve/" in line]
    for filename in ("config.json", "model.safetensors"):
        assert any(f" GET /{hub_repo_id}/resolve/" in line and line.endswith(f"/{filename} 200")
                   for line in resolve_lines), resolve_lines
    before = len(local_hub.log_lines())

    # again from the cache only: the endpoint is dead and the client is told it is offline
    offline_env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_ENDPOINT=dead_endpoint())
    offline_path = tmp_path / "offline.safetensors"
    subprocess.run([sys.executable, "-c", LOAD_SCRIPT, hub_repo_id, str(offline_path)], env=offline_env,
                   check=True, timeout=120, capture_output=True)
    offline = load_file(offline_path)
    assert all(torch.equal(offline[name], expected[name]) for name in expected)
    assert not [line for line in local_hub.log_lines()[before:] if hub_repo_id in line]


def test_snapshot_download_with_allow_patterns(hub_api, hub_repo_id, tmp_path):
    folder = tmp_path / "run"
    (folder / "images").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "eval_results.json").write_text('{"accuracy": 0.5}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    (folder / "images" / "plot.png").write_bytes(b"\x89PNG fake")
    hub_api.create_repo(hub_repo_id)
    hub_api.upload_folder(repo_id=hub_repo_id, folder_path=folder)

    snapshot = snapshot_download(hub_repo_id, allow_patterns=["*.json"])
    got = sorted(str(path.relative_to(snapshot)) for path in Path(snapshot).rglob("*")
                 if path.is_file())
    assert got == ["config.json", "eval_results.json"]

    images = snapshot_download(hub_repo_id, allow_patterns=["images/*"])
    assert (Path(images) / "images" / "plot.png").read_bytes() == b"\x89PNG fake"
    assert sorted(hub_api.list_repo_files(hub_repo_id)) == [".gitattributes", "config.json", "eval_results.json",
                                                           "images/plot.png", "model.safetensors"]
    tree = {entry.path: entry for entry in hub_api.list_repo_tree(hub_repo_id, path_in_repo="images")}
    assert list(tree) == ["images/plot.png"] and tree["images/plot.png"].size == len(b"\x89PNG fake")


def test_model_card_with_model_index_round_trip(hub_api, hub_repo_id):
    card_data = ModelCardData(
        model_name="tiny", library_name="effhub", tags=["multi-task"],
        eval_results=[EvalResult(task_type="image-segmentation", dataset_type="nyu_v2", dataset_name="NYU-v2",
                                 metric_type="mIoU", metric_value=0.4321)],
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n# tiny\n")
    hub_api.create_repo(hub_repo_id)
    card.push_to_hub(hub_repo_id)

    loaded = ModelCard.load(hub_repo_id)
    result = loaded.data.eval_results[0]
    assert (result.metric_type, result.metric_value, result.dataset_name) == ("mIoU", 0.4321, "NYU-v2")
    info = hub_api.model_info(hub_repo_id)
    assert info.library_name == "effhub"
    assert info.card_data.eval_results[0].metric_value == 0.4321
    assert {"effhub", "multi-task"} <= set(info.tags)


def test_list_models_search_library_and_tag(hub_api, hub_repo_id):
    def push_card(repo_id: str, library: str, tags: list[str]) -> None:
        hub_api.create_repo(repo_id)
        hub_api.upload_file(repo_id=repo_id, path_or_fileobj=f"---\nlibrary_name: {library}\ntags: {tags}\n---\n".encode(),
                            path_in_repo="README.md")

    match, other_tag, other_library = (f"{hub_repo_id}-{suffix}" for suffix in ("match", "tag", "lib"))
    push_card(match, "effhub", ["listing-probe"])
    push_card(other_tag, "effhub", ["something-else"])
    push_card(other_library, "timm", ["listing-probe"])

    found = list(hub_api.list_models(search=hub_repo_id.split("/")[1], filter=["effhub", "listing-probe"],
                                     cardData=True))
    assert [model.id for model in found] == [match]
    assert found[0].card_data.library_name == "effhub"
    everything = {model.id for model in hub_api.list_models(search=hub_repo_id.split("/")[1])}
    assert everything == {match, other_tag, other_library}
    by_author = {model.id for model in hub_api.list_models(author="no-such-author")}
    assert by_author == set()


def test_missing_repo_file_and_revision_raise_the_client_errors(hub_api, hub_repo_id):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub_repo_id, "config.json")
    with pytest.raises(RepositoryNotFoundError):
        hub_api.model_info(hub_repo_id)
    assert not hub_api.repo_exists(hub_repo_id)
    hub_api.create_repo(hub_repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "config.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, ".gitattributes", revision="no-such-branch")
    assert not hub_api.file_exists(hub_repo_id, "config.json")
    hub_api.delete_repo(hub_repo_id)
    assert not hub_api.repo_exists(hub_repo_id)


def test_concurrent_pushes_leave_a_consistent_repo(hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    writers = 4
    start = threading.Barrier(writers)
    errors = []

    def push(index: int) -> None:
        operations = [CommitOperationAdd(f"writer-{index}.bin", bytes([index]) * 20_000),
                      CommitOperationAdd("shared.txt", f"writer {index}\n".encode() * 1000)]
        try:
            start.wait()
            hub_api.create_commit(hub_repo_id, operations, commit_message=f"writer {index}")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=push, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors

    commits = hub_api.list_repo_commits(hub_repo_id)  # newest first
    assert [commit.title for commit in commits][-1] == "initial commit"
    order = [int(commit.title.split()[1]) for commit in reversed(commits[:-1])]
    assert sorted(order) == list(range(writers))
    # each snapshot is the previous one plus that commit's complete files, in the order the branch moved
    seen = []
    for commit, index in zip(reversed(commits[:-1]), order):
        seen.append(index)
        files = set(hub_api.list_repo_files(hub_repo_id, revision=commit.commit_id))
        assert files == {".gitattributes", "shared.txt", *(f"writer-{i}.bin" for i in seen)}
        shared = hf_hub_download(hub_repo_id, "shared.txt", revision=commit.commit_id)
        assert open(shared, "rb").read() == f"writer {index}\n".encode() * 1000
    for index in range(writers):
        content = open(hf_hub_download(hub_repo_id, f"writer-{index}.bin"), "rb").read()
        assert content == bytes([index]) * 20_000


def test_repush_of_a_changed_file_is_served_fresh(hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"version 1", path_in_repo="weights.txt")
    first_etag = get_hf_file_metadata(hf_hub_url(hub_repo_id, "weights.txt")).etag
    assert open(hf_hub_download(hub_repo_id, "weights.txt"), "rb").read() == b"version 1"

    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"version 2", path_in_repo="weights.txt")
    second_etag = get_hf_file_metadata(hf_hub_url(hub_repo_id, "weights.txt")).etag
    assert second_etag != first_etag
    assert open(hf_hub_download(hub_repo_id, "weights.txt"), "rb").read() == b"version 2"


@pytest.mark.parametrize("path", ["../../../etc/passwd", "%2e%2e/%2e%2e/secret", "a/%2E%2E/b", "a%5Cb.txt"])
def test_path_traversal_is_refused_on_resolve(hub_api, hub_url, hub_repo_id, path):
    hub_api.create_repo(hub_repo_id)
    status, _, _ = raw_request(hub_url, "GET", f"/{hub_repo_id}/resolve/main/{path}")
    assert status == 400


@pytest.mark.parametrize("path", ["../outside.txt", "/absolute.txt", "a\\b.txt", "a/./b.txt", "a//b.txt"])
def test_path_traversal_is_refused_on_commit(local_hub, hub_api, hub_url, hub_repo_id, path):
    hub_api.create_repo(hub_repo_id)
    head = hub_api.model_info(hub_repo_id).sha
    lines = [{"key": "header", "value": {"summary": "evil"}},
             {"key": "file", "value": {"path": path, "content": base64.b64encode(b"x").decode(), "encoding": "base64"}}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    status, headers, answer = raw_request(hub_url, "POST", f"/api/models/{hub_repo_id}/commit/main", body,
                                          {"Content-Type": "application/x-ndjson"})
    assert status == 400 and "refused" in json.loads(answer)["error"]
    assert hub_api.model_info(hub_repo_id).sha == head
    assert not list(local_hub.root.rglob("outside.txt")) and not list(local_hub.root.rglob("absolute.txt"))


def test_lfs_commit_of_an_object_never_uploaded_is_refused(hub_api, hub_url, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    head = hub_api.model_info(hub_repo_id).sha
    lines = [{"key": "header", "value": {"summary": "lfs"}},
             {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "0" * 64, "size": 1}}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    status, _, answer = raw_request(hub_url, "POST", f"/api/models/{hub_repo_id}/commit/main", body)
    assert status == 422 and "was not uploaded" in json.loads(answer)["error"]
    assert hub_api.model_info(hub_repo_id).sha == head


def test_large_binary_upload_goes_through_lfs(local_hub, hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    big = b"\1" * 3_000_000  # *.bin is an LFS pattern of the initial .gitattributes
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=big, path_in_repo="big.bin")
    assert open(hf_hub_download(hub_repo_id, "big.bin"), "rb").read() == big
    assert any(f"/{hub_repo_id}.git/info/lfs/objects/batch 200" in line for line in local_hub.log_lines())
    (entry,) = [e for e in hub_api.list_repo_tree(hub_repo_id) if e.path == "big.bin"]
    assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(big).hexdigest()


def test_repos_survive_a_server_restart(tmp_path):
    root = tmp_path / "hub-root"
    with LocalHubServer(root) as first:
        api = HfApi(endpoint=first.url)
        api.create_repo("org/persistent")
        api.create_repo("org/persistent-data", repo_type="dataset")
        api.upload_file(repo_id="org/persistent", path_or_fileobj=b"kept", path_in_repo="file.txt")
        api.upload_file(repo_id="org/persistent-data", repo_type="dataset", path_or_fileobj=b"rows",
                        path_in_repo="data/train.csv")
        sha = api.model_info("org/persistent").sha
        first_url = first.url
    with pytest.raises(Exception):
        HfApi(endpoint=first_url).model_info("org/persistent")
    with LocalHubServer(root) as second:
        api = HfApi(endpoint=second.url)
        assert api.model_info("org/persistent").sha == sha
        path = hf_hub_download("org/persistent", "file.txt", endpoint=second.url, cache_dir=tmp_path / "cache")
        assert open(path, "rb").read() == b"kept"
        data = hf_hub_download("org/persistent-data", "data/train.csv", repo_type="dataset", endpoint=second.url,
                               cache_dir=tmp_path / "cache")
        assert open(data, "rb").read() == b"rows"
    assert (root / "hub.log").read_text().count("\n") >= 8


def test_range_requests_and_http_details(hub_api, hub_url, hub_repo_id):
    hub_api.create_repo(hub_repo_id)
    hub_api.upload_file(repo_id=hub_repo_id, path_or_fileobj=b"0123456789", path_in_repo="digits.txt")
    status, headers, body = raw_request(hub_url, "GET", f"/{hub_repo_id}/resolve/main/digits.txt",
                                        headers={"Range": "bytes=2-5"})
    assert (status, body, headers["Content-Range"]) == (206, b"2345", "bytes 2-5/10")
    status, headers, body = raw_request(hub_url, "HEAD", f"/{hub_repo_id}/resolve/main/digits.txt")
    assert status == 200 and headers["Content-Length"] == "10" and body == b""
    assert len(headers["X-Repo-Commit"]) == 40 and headers["ETag"].strip('"')
    status, headers, _ = raw_request(hub_url, "GET", "/api/models/bad..name/x")
    assert status == 400


def test_load_dataset_from_a_dataset_repo(hub_api, hub_repo_id, tmp_path):
    import datasets

    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict({"x": [1, 2, 3], "label": ["a", "b", "c"]}).to_parquet(
        tmp_path / "data" / "train-00000-of-00001.parquet")
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    hub_api.upload_folder(repo_id=hub_repo_id, repo_type="dataset", folder_path=tmp_path / "data", path_in_repo="data")
    loaded = datasets.load_dataset(hub_repo_id, split="train")
    assert loaded.to_dict() == {"x": [1, 2, 3], "label": ["a", "b", "c"]}


def test_peft_adapter_push_and_load_by_repo_id(hub_repo_id):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = tiny_bert()
    model.push_to_hub(f"{hub_repo_id}-base")
    adapted = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"], init_lora_weights=False))
    adapted.push_to_hub(f"{hub_repo_id}-lora")
    loaded = PeftModel.from_pretrained(BertModel.from_pretrained(f"{hub_repo_id}-base"), f"{hub_repo_id}-lora")
    adapted.eval()  # dropout off, as in the loaded (eval-mode) model
    input_ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = adapted(input_ids=input_ids).last_hidden_state
        assert torch.allclose(loaded(input_ids=input_ids).last_hidden_state, expected, atol=1e-6)
        # the adapter changes the outputs: the comparison above is not between two bare bases
        with loaded.disable_adapter():
            assert not torch.allclose(loaded(input_ids=input_ids).last_hidden_state, expected, atol=1e-4)


def test_bad_ports_give_config_errors(tmp_path, local_hub):
    from effhub.errors import ConfigError

    with pytest.raises(ConfigError, match="port"):
        LocalHubServer(tmp_path, port=-1)
    busy_port = int(local_hub.url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="cannot listen"):
        LocalHubServer(tmp_path, port=busy_port).start()
