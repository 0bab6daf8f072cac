"""The AdaShare benchmark end to end at a toy size: every section measured and written."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def benchmark_module(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.adashare import run

    return run


@pytest.mark.timeout(900)  # 2 seeds x (3 single-task + 2 x 3 multi-task trainings): ~90 s unloaded, slower on a busy CPU
def test_benchmark_toy_run(tmp_path, monkeypatch, benchmark_module):
    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    scenes = ("dataset_options.config={height: 32, width: 32, num_classes: 7, min_objects: 2, max_objects: 3, "
              "field_of_view: 60.0, max_depth: 20.0, noise_std: 0.02, num_train: 24, num_test: 8, seed: 0}")
    sets = [scenes, "warmup_steps=2", "policy_epochs=9", "weight_steps_per_epoch=1", "policy_steps_per_epoch=1",
            "retrain_steps=2", "batch_size=4", "eval_batch_size=8", "model.base_width=4",
            "architecture=argmax_and_samples", "retrain_samples=2"]
    output = tmp_path / "adashare.json"
    argv = ["--seeds", "0", "1", "--output", str(output), "--timing-repeats", "1", "--timing-size", "32", "32"]
    for value in sets:
        argv += ["--set", value]
    assert benchmark_module.main(argv) == 0
    result = json.loads(output.read_text())
    parameters = result["parameters"]
    assert parameters["single_task"] == parameters["tasks"] * parameters["hard_sharing"]
    assert parameters["adashare"] <= parameters["hard_sharing"]
    for task, timing in result["timing"].items():
        assert 0 < timing["mac_fraction"] <= 1 and timing["policy_seconds"] > 0
        assert (timing["mac_fraction"] == 1) == (timing["blocks_executed"] == timing["blocks"])
    assert [run["seed"] for run in result["quality"]] == [0, 1]
    for name in ("adashare", "hard_sharing", "random_policy", "warmup_model"):
        assert len(result["delta_t"][name]["per_seed"]) == 2
    for run in result["quality"]:
        assert {task: sum(plan) for task, plan in run["random_policy"].items()} == {
            task: sum(plan) for task, plan in run["policy"].items()}
        assert set(run["trivial_check"]) == set(run["policy"])
    assert result["paired"]["adashare_minus_hard_sharing"]["seeds"] == 2
    assert result["paired_val"]["adashare_minus_random_policy"]["seeds"] == 2
    for run in result["quality"]:
        # the baselines get as many trainings as AdaShare re-trained candidates, and keep the best on validation
        count = len(run["candidates"]["adashare"])
        assert 1 <= count <= 2 and result["candidates_per_model"][run["seed"]] == count
        hard, random_ = run["candidates"]["hard_sharing"], run["candidates"]["random_policy"]
        assert len(hard) == len(random_) == count
        assert [c["run_seed"] for c in hard] == [run["seed"] + 1000 * i for i in range(count)]
        best = max(range(count), key=lambda i: hard[i]["selection_score"])
        assert run["delta_t_val"]["hard_sharing"] == pytest.approx(hard[best]["delta_t_val"])
        assert run["delta_t"]["hard_sharing"] == pytest.approx(hard[best]["delta_t_test"])
        best = max(range(count), key=lambda i: run["candidates"]["adashare"][i]["selection_score"])
        assert best == run["selected_candidate"]
    assert result["target_adashare_above_hard_sharing"] == (
        result["delta_t"]["adashare"]["mean"] > result["delta_t"]["hard_sharing"]["mean"])
