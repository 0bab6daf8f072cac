"""The model zoo: `scripts/zoo.yaml`, the committed cards in `model_cards/` and the table that `scripts/build_zoo.py`
generates from them; `effhub browse` and the local hub's list page show the zoo's models with the same metrics.

The builder itself runs end to end in the slow test, on a one-entry zoo of the tiny method; the zoo on a local hub,
through `effhub browse`, the list page and a browser, is tests/hub/test_zoo_pages.py.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard

from effhub.hub.cards import REPO_PLACEHOLDER
from scripts import build_zoo

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = build_zoo.load_zoo(build_zoo.ZOO_FILE)
BUILT = [entry for entry in ENTRIES if (build_zoo.CARDS_DIR / entry["name"] / build_zoo.RECORD_FILE).is_file()]


def test_zoo_file_lists_registered_methods_and_full_variants():
    from effhub.registry import get_method

    for full in (False, True):
        entries = build_zoo.load_zoo(build_zoo.ZOO_FILE, full=full)
        assert [entry["name"] for entry in entries] == [entry["name"] for entry in ENTRIES]
        for entry in entries:
            get_method(entry["method"])
            assert entry["full"] is full
            build_zoo.recipe_fingerprint(entry)  # the recipe (with its overrides) resolves
            assert build_zoo.data_fingerprint(entry)  # generated data: a version
    adapters = [entry for entry in ENTRIES if get_method(entry["method"]).kind == "adapter"]
    assert adapters and all(entry["depends"] for entry in adapters)  # an adapter's base model is published first


@pytest.mark.parametrize("text, problem", [
    ("models: []", "no `models:` list"),
    ("models:\n  - {name: a, method: tiny}", "has no `recipe`"),
    ("models:\n  - {name: a, method: tiny, recipe: demo, repo_id: x/a, task: t, data: blobs, headline: {metric: m}, "
     "efficiency: {label: l, source: 'f:k', format: count}, depends: [b]}", "depends on 'b'"),
    ("models:\n  - {name: a, method: tiny, recipe: demo, repo_id: x/a, task: t, data: blobs, headline: {metric: m}, "
     "efficiency: {label: l, source: 'f:k', format: count}, build: magic}", "build 'magic'"),
    ("models:\n  - {name: a, method: tiny, recipe: demo, repo_id: a, task: t, data: blobs, headline: {metric: m}, "
     "efficiency: {label: l, source: 'f:k', format: count}}", "'namespace/name'"),
])
def test_zoo_file_errors_name_the_problem(tmp_path, text, problem):
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    with pytest.raises(build_zoo.ZooError, match=problem.replace("(", r"\(").replace("`", ".")):
        build_zoo.load_zoo(path)


def test_stale_reasons_see_recipe_data_code_and_dependencies():
    entry = {**ENTRIES[0], "depends": ["base"]}
    current = {"recipe": build_zoo.recipe_fingerprint(entry), "data": build_zoo.data_fingerprint(entry),
               "code": {"effhub/registry.py": build_zoo._sha256_file(build_zoo.package_dir() / "registry.py")},
               "depends": {"base": "f1"}}
    assert build_zoo.stale_reasons(entry, current, {"base": {"fingerprint": "f1"}}) == []
    assert build_zoo.stale_reasons(entry, None, {}) == ["never built"]
    changed = {**current, "recipe": "0", "data": "scenes-v0", "code": {"effhub/registry.py": "0"},
               "depends": {"base": "f0"}}
    reasons = build_zoo.stale_reasons(entry, changed, {"base": {"fingerprint": "f1"}})
    assert [reason.split(" ")[0] for reason in reasons] == ["recipe", "data", "code", "base"]
    assert "effhub/registry.py" in reasons[2]


# ------------------------------------------------------------------------------------------- the committed cards
def test_every_zoo_entry_has_its_card():
    if not BUILT:
        pytest.skip("model_cards/ holds no zoo card yet: run `make zoo` and commit model_cards/")
    assert [entry["name"] for entry in BUILT] == [entry["name"] for entry in ENTRIES], \
        "run `make zoo` (scripts/build_zoo.py) and commit model_cards/"
    names = {path.name for path in build_zoo.CARDS_DIR.iterdir() if path.is_dir()}
    assert names == {entry["name"] for entry in ENTRIES}, "model_cards/ holds a folder no zoo entry names"


@pytest.mark.parametrize("entry", BUILT, ids=[entry["name"] for entry in BUILT])
def test_card_metadata_parses(entry):
    folder = build_zoo.CARDS_DIR / entry["name"]
    record = json.loads((folder / build_zoo.RECORD_FILE).read_text())
    assert record["repo_id"] == entry["repo_id"] and record["size_bytes"] > 0
    if entry["repo_type"] == "dataset":
        card = DatasetCard.load(folder / "README.md", ignore_metadata_errors=False)
        assert "effhub" in card.data.tags
        return
    card = ModelCard.load(folder / "README.md", ignore_metadata_errors=False)
    results = card.data.eval_results
    assert results, f"{entry['name']}: the card's model-index has no results"
    for result in results:
        assert math.isfinite(float(result.metric_value)) and result.task_type and result.dataset_type
    assert "effhub" in card.data.tags
    assert REPO_PLACEHOLDER not in card.text, "the card's usage code names no repository"
    assert entry["repo_id"] in card.text
    assert str(ROOT) not in card.text, "a published card names a path of the machine that built it"
    for image in (folder / "images").glob("*.png") if (folder / "images").is_dir() else []:
        assert f"images/{image.name}" in card.text
    from effhub.registry import get_method

    if get_method(entry["method"]).kind == "adapter":  # its card names the base model the zoo published first
        base = next(e for e in ENTRIES if e["name"] == entry["depends"][0])
        assert card.data.base_model == base["repo_id"]


def test_table_is_generated_from_the_cards():
    if not BUILT:
        pytest.skip("model_cards/ holds no zoo card yet: run `make zoo` and commit model_cards/")
    table = (build_zoo.CARDS_DIR / build_zoo.TABLE_FILE).read_text()
    assert table == build_zoo.zoo_table(ENTRIES), "model_cards/README.md is stale: python scripts/build_zoo.py --table"
    lines = {line.split(" | ")[0].split("](")[0].strip("| ["): line for line in table.splitlines()
             if line.startswith("| [")}
    for entry in BUILT:
        folder = build_zoo.CARDS_DIR / entry["name"]
        line = lines[entry["name"]]
        if entry["headline"].get("metric"):  # read independently of the builder: the card's own model-index
            card = ModelCard.load(folder / "README.md")
            value = next(r.metric_value for r in card.data.eval_results if r.metric_name == entry["headline"]["metric"])
        else:
            file_name, _, key = entry["headline"]["source"].partition(":")
            value = json.loads((folder / file_name).read_text())[key]
        assert f"{value:.4g}" in line, (entry["name"], value, line)
        record = json.loads((folder / build_zoo.RECORD_FILE).read_text())
        assert record["command"] in line and entry["efficiency"]["label"] in line


# --------------------------------------------------------------------------------------------- the builder itself
def test_builder_goes_past_a_failed_entry_and_reports_it(tmp_path):
    def entry(name, **extra):
        return {"name": name, "method": "tiny", "recipe": "demo", "repo_id": f"effhub-tests/{name}",
                "task": "image classification", "data": "blobs", "headline": {"metric": "Accuracy"},
                "efficiency": {"label": "parameters", "source": "card_spec.json:model_details.parameters",
                               "format": "count"}, **extra}

    zoo = tmp_path / "zoo.yaml"
    # the first entry's recipe override is refused; the second depends on it; the third is broken on its own
    zoo.write_text(yaml.safe_dump({"models": [entry("broken", set=["train.steps=-1"]),
                                              entry("dependent", depends=["broken"]),
                                              entry("also-broken", set=["train.no_such_key=1"])]}))
    command = [sys.executable, str(ROOT / "scripts" / "build_zoo.py"), "--zoo", str(zoo), "--build-dir",
               str(tmp_path / "build"), "--cards-dir", str(tmp_path / "cards")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[3/3] also-broken" in result.stdout and "3 failed" in result.stdout
    for name in ("broken", "dependent", "also-broken"):
        assert f"zoo: FAILED {name}:" in result.stderr
    assert "depends on broken, which failed" in result.stderr


@pytest.mark.slow
def test_builder_builds_then_skips_and_writes_the_table(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"models": [{
        "name": "tiny-blobs", "method": "tiny", "recipe": "demo", "set": ["train.steps=10"],
        "repo_id": "effhub-tests/zoo-tiny", "task": "image classification", "data": "blobs",
        "headline": {"metric": "Accuracy"},
        "efficiency": {"label": "parameters", "source": "card_spec.json:model_details.parameters", "format": "count"},
    }]}))
    command = [sys.executable, str(ROOT / "scripts" / "build_zoo.py"), "--zoo", str(zoo), "--build-dir",
               str(tmp_path / "build"), "--cards-dir", str(tmp_path / "cards")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 built" in first.stdout and (tmp_path / "cards" / "tiny-blobs" / "README.md").is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "1 skipped" in second.stdout, second.stdout + second.stderr
    shutil.rmtree(tmp_path / "build" / "hub")  # a hub without the model: published again, not retrained
    third = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert "1 published again" in third.stdout and "train:" not in third.stdout, third.stdout
    table = (tmp_path / "cards" / "README.md").read_text()
    assert "effhub-tests/zoo-tiny" in table and "parameters:" in table


def test_data_versions_of_generated_and_real_sets():
    from effhub.data import data_version
    from effhub.errors import DatasetError

    versions = [data_version(name) for name in ("scenes", "clips", "caption-world", "blobs")]
    assert all(versions) and len(set(versions)) == 4 and data_version("scenes") == data_version("scenes")
    assert data_version("nyuv2") is None
    with pytest.raises(DatasetError, match="no data version"):
        data_version("imagenet")


def test_budget_dataset_card_from_a_simulation(tmp_path):
    from effhub.budget.card_budget import write_simulation_card

    cell = lambda strategy, budget, counts, spend, delta: {  # noqa: E731
        "cell": {"strategy": strategy, "budget": budget, "seed": 0}, "counts": counts, "spend": spend,
        "delta_t": delta}
    results = {"recipe": {"tasks": ["segmentation", "depth"], "costs": {"segmentation": 10.0, "depth": 1.0},
                          "dataset": "scenes", "model_kind": "hard_sharing", "train_steps": 5},
               "cells": [cell("reference", None, {"segmentation": 100, "depth": 100}, 1100.0, None),
                         cell("taba", 300.0, {"segmentation": 20, "depth": 100}, 300.0, -4.5),
                         cell("uniform_count", 300.0, {"segmentation": 27, "depth": 27}, 297.0, -6.25)],
               "summary": {"strategies": {"taba": {"300": {"mean": -4.5}}, "uniform_count": {"300": {"mean": -6.25}}},
                           "testbed": {}},
               "table": "| strategy | budget 300 |"}
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "results.json").write_text(json.dumps(results))
    card = DatasetCard.load(write_simulation_card(tmp_path / "sim", tmp_path / "out", "lab/budget"))
    assert "effhub" in card.data.tags and "| taba | 300 | 0 | 20 | 100 | 300 | -4.50 |" in card.text
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["taba_delta_t"] == -4.5 and summary["best_heuristic"] == "uniform_count"
    assert summary["budget_fraction"] == pytest.approx(300 / 1100)


@pytest.mark.slow
def test_export_shipped_teacher_measures_it_again(tmp_path):
    from effhub.models.clip_teacher.weights import export_shipped_teacher, recorded_figures

    folder = export_shipped_teacher(tmp_path / "teacher")
    card = ModelCard.load(folder / "README.md")
    accuracy = next(r.metric_value for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy == pytest.approx(recorded_figures()["zero_shot"]["accuracy"], abs=1e-6)
    assert (folder / "run_info.json").is_file() and (folder / "model.safetensors").is_file()
