"""`push_folder`, `browse_models` and the `effhub push` / `effhub browse` commands against the local hub."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, hf_hub_download
from safetensors.torch import load_file, save_file

from effhub.errors import CheckpointError, ConfigError, OfflineError
from effhub.hub.browse import browse_models, format_table, headline_metrics
from effhub.hub.publish import push_folder

from hub_helpers import dead_endpoint

RESULTS = [("semantic-segmentation", "NYU-v2", "mIoU", 0.4137), ("semantic-segmentation", "NYU-v2", "pixel_acc", 0.71),
           ("depth-estimation", "NYU-v2", "abs_err", 0.6125)]


def write_run_folder(folder, tag: str, results=RESULTS):
    """A run folder as `effhub train` writes it, with by-products that must not be pushed."""
    (folder / "images").mkdir(parents=True)
    (folder / "checkpoints" / "step-10").mkdir(parents=True)
    (folder / "logs").mkdir()
    weights = {"encoder.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    save_file(weights, folder / "model.safetensors")
    save_file(weights, folder / "checkpoints" / "step-10" / "model.safetensors")
    (folder / "config.json").write_text('{"model_type": "probe"}')
    (folder / "eval_results.json").write_text("{}")
    (folder / "run_info.json").write_text('{"method": "probe"}')
    (folder / "images" / "curve.png").write_bytes(b"\x89PNG probe")
    (folder / "logs" / "train.jsonl").write_text('{"loss": 1.0}\n')
    (folder / ".model.safetensors.tmp").write_bytes(b"partial")
    card_data = ModelCardData(
        model_name=folder.name, library_name="effhub", tags=[tag],
        eval_results=[EvalResult(task_type=task, dataset_type=dataset.lower(), dataset_name=dataset,
                                 metric_type=metric, metric_value=value) for task, dataset, metric, value in results],
    )
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n# {folder.name}\n").save(folder / "README.md")
    return weights


def test_push_folder_and_browse_round_trip(hub_api, hub_url, hub_repo_id, tmp_path):
    tag = hub_repo_id.split("/")[1]
    weights = write_run_folder(tmp_path / "run", tag)

    url = push_folder(tmp_path / "run", hub_repo_id)
    assert url == f"{hub_url}/{hub_repo_id}"
    assert sorted(hub_api.list_repo_files(hub_repo_id)) == [
        ".gitattributes", "README.md", "config.json", "eval_results.json", "images/curve.png", "model.safetensors",
        "run_info.json"]
    assert [commit.title for commit in hub_api.list_repo_commits(hub_repo_id)] == [
        "Upload run with effhub", "initial commit"]  # the whole folder in one commit
    pulled = load_file(hf_hub_download(hub_repo_id, "model.safetensors"))
    assert torch.equal(pulled["encoder.weight"], weights["encoder.weight"])

    # pushing again to the existing repository adds one commit
    push_folder(tmp_path / "run", hub_repo_id, commit_message="again")
    assert hub_api.list_repo_commits(hub_repo_id)[0].title == "again"

    rows = browse_models(tag=tag)
    assert [row["id"] for row in rows] == [hub_repo_id]
    assert rows[0]["library"] == "effhub"
    # first metric per (task, dataset), read back from the pushed card
    assert rows[0]["metrics"] == [
        {"task": "semantic-segmentation", "dataset": "NYU-v2", "metric": "mIoU", "value": 0.4137},
        {"task": "depth-estimation", "dataset": "NYU-v2", "metric": "abs_err", "value": 0.6125}]
    table = format_table(rows)
    assert hub_repo_id in table and "0.4137" in table and "abs_err" in table and "pixel_acc" not in table
    assert browse_models(tag=tag, library="some-other-library") == []
    assert browse_models(endpoint=hub_url, search=tag, library=None)[0]["id"] == hub_repo_id


def test_push_folder_refuses_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        push_folder(tmp_path / "missing", "org/name")
    only_checkpoints = tmp_path / "run"
    (only_checkpoints / "checkpoints").mkdir(parents=True)
    (only_checkpoints / "checkpoints" / "model.safetensors").write_bytes(b"x")
    (only_checkpoints / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no model weights"):
        push_folder(only_checkpoints, "org/name")


def test_unreachable_endpoint_gives_offline_error(tmp_path, monkeypatch):
    write_run_folder(tmp_path / "run", "offline")
    endpoint = dead_endpoint()
    with pytest.raises(OfflineError, match="unreachable") as caught:
        push_folder(tmp_path / "run", "org/name", endpoint=endpoint)
    assert "HF_ENDPOINT" in str(caught.value) and "effhub hub serve" in str(caught.value)
    with pytest.raises(OfflineError, match="unreachable"):
        browse_models(endpoint=endpoint)

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        push_folder(tmp_path / "run", "org/name")
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        browse_models()
    with pytest.raises(ConfigError):
        browse_models(limit=0)


def test_headline_metrics_and_table_without_results():
    assert headline_metrics(None) == []
    assert headline_metrics({"library_name": "effhub"}) == []
    table = format_table([{"id": "org/plain", "metrics": []}])
    assert table.splitlines()[0].split() == ["model", "task", "dataset", "metric", "value"]
    assert table.splitlines()[2].split() == ["org/plain", "-", "-", "-", "-"]
    assert format_table([]) == "no models found"


def test_cli_push_and_browse(hub_api, hub_repo_id, subprocess_env, tmp_path):
    tag = hub_repo_id.split("/")[1]
    write_run_folder(tmp_path / "run", tag)
    pushed = subprocess.run([sys.executable, "-m", "effhub", "push", str(tmp_path / "run"), hub_repo_id],
                            env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    assert f"/{hub_repo_id}" in pushed.stdout
    assert "model.safetensors" in hub_api.list_repo_files(hub_repo_id)

    listed = subprocess.run([sys.executable, "-m", "effhub", "browse", "--tag", tag], env=subprocess_env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert hub_repo_id in listed.stdout and "mIoU" in listed.stdout and "0.4137" in listed.stdout



def test_cli_push_error_is_one_clear_line(hub_repo_id, tmp_path, capsys):
    from effhub.cli import main

    assert main(["push", str(tmp_path / "missing"), hub_repo_id]) == 2
    assert "not a folder. Fix:" in capsys.readouterr().err


def test_push_a_results_folder_as_a_dataset_repository(hub_api, hub_repo_id, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntags: [effhub]\n---\n# results\n")
    (folder / "table.md").write_text("| a | b |\n")
    with pytest.raises(CheckpointError, match="no model weights"):
        push_folder(folder, hub_repo_id)  # a model repository still needs weights
    url = push_folder(folder, hub_repo_id, repo_type="dataset")
    assert f"/datasets/{hub_repo_id}" in url
    assert sorted(hub_api.list_repo_files(hub_repo_id, repo_type="dataset")) == [".gitattributes", "README.md",
                                                                                 "table.md"]
    from effhub.hub.publish import files_to_push

    assert files_to_push(folder) == ["README.md", "table.md"]


def test_headline_metrics_are_the_list_pages(hub_api, hub_repo_id):
    from effhub.hub.pages import headline_rows, metric_rows

    data = ModelCardData(library_name="effhub", model_name="scenes-model", eval_results=[
        EvalResult(task_type="image-segmentation", dataset_type="scenes", dataset_name="Scenes", metric_type="mean_iou",
                   metric_name="mIoU", metric_value=0.5),
        EvalResult(task_type="image-segmentation", dataset_type="scenes", dataset_name="Scenes",
                   metric_type="pixel_accuracy", metric_name="Pixel accuracy", metric_value=0.9),
        EvalResult(task_type="depth-estimation", dataset_type="scenes", dataset_name="Scenes", metric_type="abs_err",
                   metric_name="Abs. error", metric_value=0.25)])
    expected = [{"task": "image-segmentation", "dataset": "Scenes", "metric": "mIoU", "value": 0.5},
                {"task": "depth-estimation", "dataset": "Scenes", "metric": "Abs. error", "value": 0.25}]
    assert headline_metrics(data) == expected == headline_metrics(data.to_dict())
    assert [{k: row[k] for k in ("task", "dataset", "metric", "value")}
            for row in headline_rows(metric_rows(data.to_dict()))] == expected
