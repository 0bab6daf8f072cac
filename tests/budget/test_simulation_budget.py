"""The simulation grid: cells, resume at the next unfinished cell, table, plot; and the pilot model end to end."""

from __future__ import annotations

import json

import pytest

from effhub.errors import ConfigError, TrainingInterrupted

TINY = ["dataset_options={config: {height: 32, width: 32, num_train: 24, num_test: 8, seed: 3}}",
        "budgets=[60,200]", "strategies=[taba,uniform_budget]", "seeds=[0]", "train_steps=2", "batch_size=4",
        "pilot.steps=2", "pilot.batch_size=4", "pilot.fraction=0.15", "pilot.min_images=1", "workers=1",
        "eval_batch_size=8"]


def _recipe(*extra):
    from effhub.recipes import load_recipe

    return load_recipe("budget", "demo", [*TINY, *extra])


def test_simulation_writes_results_and_resumes(tmp_path, monkeypatch):
    from effhub.budget import simulation

    recipe = _recipe("budgets=[200]")
    calls = []
    original = simulation.run_cell

    def interrupted(recipe, cell, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(cell.name)
        return original(recipe, cell, *args, **kwargs)

    monkeypatch.setattr(simulation, "run_cell", interrupted)
    with pytest.raises(TrainingInterrupted, match="1 of 3 cells done"):
        simulation.simulate(recipe, tmp_path / "sim", progress=False)
    assert calls == ["reference-s0"]

    monkeypatch.setattr(simulation, "run_cell", lambda recipe, cell, *a, **k: calls.append(cell.name) or original(
        recipe, cell, *a, **k))
    result = simulation.simulate(recipe, tmp_path / "sim", progress=False)
    assert calls[1:] == ["taba-b200-s0", "uniform_budget-b200-s0"]  # the unfinished cells only
    payload = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert payload["summary"]["strategies"].keys() == {"taba", "uniform_budget"}
    assert "reconstruction" in payload["note"] and payload["machine"]["cpu_count"] >= 1
    for cell in result.cells:
        if cell["cell"]["strategy"] != "reference":
            assert cell["spend"] <= cell["cell"]["budget"] and "delta_t" in cell
    taba = next(c for c in result.cells if c["cell"]["strategy"] == "taba")
    assert "reconstruction" in taba["taba"]["note"]
    assert "| taba |" in result.table and (tmp_path / "sim" / "table.md").is_file()
    assert (tmp_path / "sim" / "plot.png").is_file()
    assert result.summary["trivial"]["n"] == 1
    # a third call finds every cell done and trains nothing
    simulation.simulate(recipe, tmp_path / "sim", progress=False)
    assert len(calls) == 3


def test_a_cell_can_train_adashare_on_its_labels(tmp_path):
    from safetensors.torch import load_file

    from effhub.budget.simulation import Cell, run_cell

    recipe = _recipe("model_kind=adashare", "adashare_overrides=[warmup_steps=2,policy_epochs=2,"
                     "weight_steps_per_epoch=1,policy_steps_per_epoch=1,retrain_steps=2,curriculum_speed=1]")
    result = run_cell(recipe, Cell("uniform_budget", 200.0, 0), tmp_path)
    assert set(result["scores"]) == {"segmentation", "depth", "normals"}
    checkpoints = tmp_path / "cells" / "uniform_budget-b200-s0" / "run" / "checkpoints"
    assert list(json.loads((checkpoints / "stages.json").read_text())["stages"]) == ["policy", "retrain"]
    # the policy stage moved the select/skip logits away from their initial values
    from effhub.budget.training_budget import build_model, task_channels
    from effhub.budget.simulation import load_data

    pool, _ = load_data(recipe)
    initial = build_model(recipe.model, task_channels(pool, recipe.tasks, 7), 0, recipe.task_loss_weights)
    learned = load_file(checkpoints / "policy" / "model.safetensors")
    names = [name for name in learned if name.startswith("policy")]
    assert names and any(not learned[name].equal(initial.state_dict()[name]) for name in names)


def test_simulation_refuses_another_recipe_in_the_folder(tmp_path):
    from effhub.budget.simulation import _check_folder

    _check_folder(tmp_path, {"a": 1}, overwrite=False)
    with pytest.raises(ConfigError, match="another recipe"):
        _check_folder(tmp_path, {"a": 2}, overwrite=False)
    _check_folder(tmp_path, {"a": 2}, overwrite=True)


@pytest.mark.parametrize("override, words", [("strategies=[best]", "Unknown allocation strategy"),
                                             ("budgets=[0.5]", "below the cheapest"), ("budgets=[20]", "pilot"),
                                             ("pilot.labels=equal_money & pilot.min_images=2 & budgets=[50]",
                                              "label\\(s\\) of the costliest task"),
                                             ("costs={segmentation: 0, depth: 1, normals: 3}", "positive"),
                                             ("tasks=[segmentation, albedo]", "costs are given")])
def test_bad_grids_are_refused_before_training(override, words, tmp_path):
    from effhub.budget.simulation import simulate

    with pytest.raises(ConfigError, match=words):
        simulate(_recipe(*override.split(" & ")), tmp_path / "sim", progress=False)
    assert not (tmp_path / "sim" / "cells").exists()


@pytest.mark.slow
def test_cells_in_parallel_processes(tmp_path):
    from effhub.budget.simulation import simulate

    result = simulate(_recipe("workers=2", "strategies=[uniform_budget]"), tmp_path / "sim", progress=False)
    assert len(result.cells) == 3 and all((tmp_path / "sim" / "cells" / c["cell"]["name"] / "result.json").is_file()
                                          for c in result.cells)
