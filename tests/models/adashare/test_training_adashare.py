"""AdaShare recipes and the three training phases."""

import json
import types

import pytest
import torch

from effhub.errors import RecipeError
from effhub.models.adashare import AdaShareModel
from effhub.models.adashare.training_adashare import (
    build_policy_phases,
    num_train_blocks,
    policy_epoch_lengths,
    policy_loss,
    weight_loss,
    warmup_loss,
)
from effhub.recipes import list_recipes, load_recipe

PAPER_RECIPES = {"nyuv2-2task": (18, 8), "nyuv2-3task": (34, 16), "cityscapes-2task": (34, 16),
                 "taskonomy-5task": (34, 16)}


def test_recipes_are_listed():
    assert set(list_recipes("adashare")["adashare"]) == {"demo", *PAPER_RECIPES}


def fixture_batch(config, batch_size=2, size=33):
    """A batch in the dense collator's format (pixel_values, labels per task, label_mask [B, T])."""
    generator = torch.Generator().manual_seed(0)
    labels = {}
    for task, kind in config.task_types.items():
        if kind == "segmentation":
            labels[task] = torch.randint(0, config.tasks[task], (batch_size, size, size), generator=generator)
        elif kind == "normals":
            labels[task] = torch.nn.functional.normalize(torch.randn(batch_size, 3, size, size, generator=generator),
                                                         dim=1)
        else:
            labels[task] = torch.rand(batch_size, 1, size, size, generator=generator) + 0.1
    mask = torch.ones(batch_size, len(config.tasks), dtype=torch.bool)
    mask[0, -1] = False  # a partially labeled image
    return {"pixel_values": torch.randn(batch_size, 3, size, size, generator=generator), "labels": labels,
            "label_mask": mask}


def reader_fixture_batch(recipe, tasks, root):
    """A training batch of two images read by the recipe's own reader from a fixture in the real on-disk format
    (the writers of tests/data), through the recipe's collator (crops and augmentation included)."""
    from tests.data.conftest import write_cityscapes, write_nyuv2, write_taskonomy

    from effhub.models.adashare.training_adashare import load_datasets, make_collator

    {"nyuv2": write_nyuv2, "cityscapes": write_cityscapes, "taskonomy": write_taskonomy}[recipe.dataset](root)
    train_set, _ = load_datasets(recipe, data_dir=root)
    return make_collator(recipe, tasks, train=True)([train_set[0], train_set[1]])


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipe_full_size_on_meta_and_one_step(name, tmp_path):
    recipe = load_recipe("adashare", name)
    depth, blocks = PAPER_RECIPES[name]
    config = recipe.model_config()
    assert config.backbone_depth == depth and config.num_blocks == blocks
    assert set(config.task_loss_weights) == set(config.tasks)
    with torch.device("meta"):
        model = AdaShareModel(config)
    counts = model.count_parameters()
    assert counts["policy"] == blocks * 2 * len(config.tasks)
    assert counts["backbone"] > 10_000_000 and counts["heads"] > counts["backbone"]  # four 1024-wide ASPP branches
    # one step of each update on fixture data, with the recipe's losses and optimisers at a reduced width
    small = load_recipe("adashare", name, ["model.base_width=4", "model.head_hidden_size=8"])
    model = AdaShareModel(small.model_config())
    phases = build_policy_phases(small, model, len_train1=8, len_train2=8)
    batch = reader_fixture_batch(small, model.config.task_names, tmp_path / "data")
    assert batch["pixel_values"].shape[-2:] == tuple(small.crop_size)
    ctx = types.SimpleNamespace(state={"temperature": small.gumbel_tau_init, "policy_epoch": 0},
                                unwrapped_model=model)
    for phase in phases:
        for update in phase.updates:
            params = list(update.parameters(model))
            optimizer = update.optimizer(params)
            before = [p.detach().clone() for p in params]
            loss = update.loss(model, batch, ctx)["loss"]
            assert torch.isfinite(loss)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            assert any(not torch.equal(a, p) for a, p in zip(before, params)), f"{phase.name}/{update.name}"


def test_policy_update_only_moves_logits_and_weight_update_only_weights():
    recipe = load_recipe("adashare", "demo", ["model.base_width=4"])
    model = AdaShareModel(recipe.model_config())
    phases = build_policy_phases(recipe, model, 8, 8)
    weights, policy = phases[1].updates
    assert {id(p) for p in policy.parameters(model)} == {id(p) for p in model.policy.parameters()}
    assert not {id(p) for p in weights.parameters(model)} & {id(p) for p in model.policy.parameters()}
    ctx = types.SimpleNamespace(state={"temperature": 5.0, "policy_epoch": 3}, unwrapped_model=model)
    out = policy_loss(model, fixture_batch(model.config), ctx)
    assert out["num_train_blocks"] == num_train_blocks(3, recipe.curriculum_speed) and out["sparsity"] > 0
    assert warmup_loss(model, fixture_batch(model.config), ctx)["loss"] > 0
    assert weight_loss(model, fixture_batch(model.config), ctx)["loss"] > 0


def test_curriculum_and_epoch_lengths():
    assert [num_train_blocks(e, 3) for e in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    recipe = load_recipe("adashare", "nyuv2-3task")
    assert policy_epoch_lengths(recipe, 340, 340) == (22, 22)  # one pass over train1 / train2 at batch 16
    assert policy_epoch_lengths(load_recipe("adashare", "taskonomy-5task"), 10**6, 10**6) == (400, 100)


def test_curriculum_guard_refuses_a_curriculum_that_cannot_complete():
    from effhub.errors import ConfigError
    from effhub.models.adashare.training_adashare import check_curriculum

    for name, (_, blocks) in PAPER_RECIPES.items():
        check_curriculum(load_recipe("adashare", name), blocks)  # the paper recipes complete with epochs to spare
    check_curriculum(load_recipe("adashare", "demo"), 8)
    # ResNet-18 (8 blocks), one block per epoch: every block is learnable from epoch 7; 8 epochs leave only one
    with pytest.raises(ConfigError, match="policy_epochs >= 9") as error:
        check_curriculum(load_recipe("adashare", "demo", ["policy_epochs=8"]), 8)
    assert "curriculum_speed" in str(error.value)
    with pytest.raises(ConfigError, match="policy_epochs >= 23"):
        check_curriculum(load_recipe("adashare", "demo", ["curriculum_speed=3"]), 8)


def test_candidate_policies_argmax_and_distinct_samples():
    from effhub.models.adashare.training_adashare import candidate_policies

    model = AdaShareModel(load_recipe("adashare", "demo").model_config())
    with torch.no_grad():
        for logits in model.policy.values():
            logits[:, 0] = torch.linspace(-1.0, 1.0, logits.shape[0])
            logits[:, 1] = 0.0
    recipe = load_recipe("adashare", "demo", ["architecture=argmax_and_samples", "retrain_samples=4"])
    policies = candidate_policies(model, recipe, torch.Generator().manual_seed(0))
    assert policies[0] == model.argmax_policy() and len(policies) == 4
    assert all(policies[i] != policies[j] for i in range(4) for j in range(i))
    # peaked logits: every sample is the most likely policy, so no further candidate is found
    with torch.no_grad():
        for logits in model.policy.values():
            logits[:, 0], logits[:, 1] = 50.0, -50.0
    assert candidate_policies(model, recipe, torch.Generator().manual_seed(0)) == [model.argmax_policy()]
    recipe = load_recipe("adashare", "demo", ["architecture=sample", "retrain_samples=3"])
    assert len(candidate_policies(model, recipe, torch.Generator().manual_seed(0))) == 3
    assert candidate_policies(model, load_recipe("adashare", "demo"), None) == [model.argmax_policy()]


def test_demo_policy_phase_ends_cold():
    recipe = load_recipe("adashare", "demo")
    assert recipe.gumbel_tau_init * recipe.gumbel_tau_decay ** recipe.policy_epochs <= 0.5


@pytest.mark.parametrize("override,match", [("nonsense_key=1", "unknown key"), ("batch_size=many", "batch_size"),
                                             ("model.head_type=huge", "head_type"),
                                             ("sharing_weight_schedule=both", "sharing_weight_schedule")])
def test_bad_recipe(override, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe("adashare", "demo", [override])


TINY_SCENES = ("dataset_options.config={height: 32, width: 32, num_classes: 7, min_objects: 2, max_objects: 3, "
               "field_of_view: 60.0, max_depth: 20.0, noise_std: 0.02, num_train: 24, num_test: 8, seed: 0}")


def _train_argv(run_dir, sets):
    argv = ["train", "adashare", "--recipe", "demo", "--output-dir", str(run_dir), "--no-progress"]
    for value in [TINY_SCENES, *sets]:
        argv += ["--set", value]
    return argv


def test_resume_runs_the_stages_the_interrupted_run_never_reached(tmp_path, monkeypatch):
    """--resume after an interruption between re-trainings: finished stages are skipped (their weights and outputs
    read from the record), the stage that never finished trains from scratch, and the run ends with the same model
    as the uninterrupted one."""
    import shutil

    from effhub.cli import main

    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    argv = _train_argv(tmp_path / "run", ["warmup_steps=2", "policy_epochs=9", "weight_steps_per_epoch=1",
                                          "policy_steps_per_epoch=1", "retrain_steps=2", "retrain_samples=2",
                                          "architecture=sample",
                                          "batch_size=4", "eval_batch_size=8", "model.base_width=4",
                                          "single_task_references=false"])
    assert main(argv) == 0
    run = tmp_path / "run"
    finished = AdaShareModel.from_pretrained(run).state_dict()
    # as if killed before the second re-training finished: no record, no folder
    record = json.loads((run / "checkpoints" / "stages.json").read_text())
    assert list(record["stages"]) == ["policy", "retrain-0", "retrain-1"]
    del record["stages"]["retrain-1"]
    (run / "checkpoints" / "stages.json").write_text(json.dumps(record))
    shutil.rmtree(run / "checkpoints" / "retrain-1")
    (run / "model.safetensors").unlink()
    assert main(argv + ["--resume"]) == 0
    resumed = AdaShareModel.from_pretrained(run).state_dict()
    assert all(torch.allclose(finished[key], resumed[key], atol=1e-6) for key in finished)
    log = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in log if "phase" in record]
    assert steps == sorted(set(steps)), "a resumed run logs every step once, in order"


def test_sigkill_in_the_middle_of_the_second_stage_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A training process SIGKILLed inside AdaShare's second stage (the first re-training), after one of its
    checkpoints: `--resume` skips the finished policy stage, continues the re-training from its checkpoint, and ends
    with the same weights as the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from effhub.cli import main

    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    sets = ["warmup_steps=2", "policy_epochs=9", "weight_steps_per_epoch=1", "policy_steps_per_epoch=1",
            "retrain_steps=40", "retrain_samples=1", "batch_size=4", "eval_batch_size=8", "model.base_width=4",
            "single_task_references=false"]
    reference = tmp_path / "uninterrupted"
    assert main(_train_argv(reference, sets) + ["--checkpoint-every", "5"]) == 0

    run = tmp_path / "killed"
    argv = _train_argv(run, sets) + ["--checkpoint-every", "5"]
    environment = {**os.environ, "EFFHUB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "effhub.train", *argv[1:]], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stage = run / "checkpoints" / "retrain-0"
    deadline = time.monotonic() + 300
    try:
        while not any(stage.glob("checkpoint-*")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    record = json.loads((run / "checkpoints" / "stages.json").read_text())["stages"]
    assert list(record) == ["policy"], "killed inside the second stage: only the first is finished"
    assert not (stage / "model.safetensors").exists() and not (run / "model.safetensors").exists()
    checkpoint_steps = sorted(int(path.name.split("-")[1]) for path in stage.glob("checkpoint-*"))
    policy_steps = record["policy"]["global_step"]
    assert checkpoint_steps and checkpoint_steps[-1] - policy_steps < 40, "the kill came before the stage's end"

    assert main(argv + ["--resume"]) == 0
    expected = AdaShareModel.from_pretrained(reference).state_dict()
    resumed = AdaShareModel.from_pretrained(run).state_dict()
    assert set(expected) == set(resumed)
    assert max((expected[key].float() - resumed[key].float()).abs().max().item() for key in expected) <= 1e-6
    assert json.loads((run / "checkpoints" / "stages.json").read_text())["stages"]["policy"] == record["policy"]


def test_train_three_phases_end_to_end(tmp_path, monkeypatch):
    """The real loop on tiny generated scenes: splits saved, one candidate per sample, a loadable re-trained model."""
    from effhub.cli import main

    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    scenes = ("dataset_options.config={height: 32, width: 32, num_classes: 7, min_objects: 2, max_objects: 3, "
              "field_of_view: 60.0, max_depth: 20.0, noise_std: 0.02, num_train: 24, num_test: 8, seed: 0}")
    sets = [scenes, "warmup_steps=2", "policy_epochs=9", "weight_steps_per_epoch=1", "policy_steps_per_epoch=1",
            "retrain_steps=2", "retrain_samples=2", "architecture=sample", "batch_size=4", "eval_batch_size=8",
            "model.base_width=4"]
    argv = ["train", "adashare", "--recipe", "demo", "--output-dir", str(tmp_path / "run"), "--no-progress"]
    for value in sets:
        argv += ["--set", value]
    assert main(argv) == 0
    run = tmp_path / "run"
    splits = json.loads((run / "splits.json").read_text())
    assert not set(splits["train1"]) & set(splits["train2"]) and not set(splits["val"]) & set(splits["train1"])
    candidates = json.loads((run / "retrain_candidates.json").read_text())
    assert len(candidates["candidates"]) == 2
    model = AdaShareModel.from_pretrained(run)
    assert model.config.policy == candidates["candidates"][candidates["best"]]["policy"]
    # re-training started from the saved initial weights, not from the policy-learning weights
    from safetensors.torch import load_file

    initial = load_file(str(run / "checkpoints" / "initial_weights.safetensors"))
    assert "backbone.stem.conv.weight" in initial
    # the card and the evaluation JSON it is built from: measured test metrics and the hard-sharing baseline
    evaluation = json.loads((run / "eval_results.json").read_text())
    assert {result["task_name"] for result in evaluation["results"]} == set(model.config.task_names)
    assert set(evaluation["extra"]["warmup_hard_sharing"]) == set(model.config.task_names)
    fractions = evaluation["extra"]["executed_fraction"]
    for task, plan in model.config.policy.items():
        assert 0 < fractions[task] <= 1 and (fractions[task] == 1) == all(plan)
    from huggingface_hub import ModelCard

    card = ModelCard.load(run / "README.md")
    assert [r.metric_value for r in card.data.eval_results] == [r["metric_value"] for r in evaluation["results"]]
    assert (run / "images" / "policy.png").is_file() and "images/policy.png" in card.text
    # Delta_T against the single-task references trained in the same run and saved with it
    references = json.loads((run / "single_task_references.json").read_text())
    assert set(references) == set(model.config.task_names) == set(evaluation["extra"]["single_task"])
    for task in model.config.task_names:
        assert (run / "checkpoints" / f"single-{task}").is_dir()
    from effhub.models.adashare.training_adashare import delta_t

    recomputed = delta_t(model.config, evaluation["extra"]["scores"], references)
    assert evaluation["extra"]["delta_t"] == pytest.approx(recomputed["delta_t"])
    from effhub.hub.cards import format_metric_value

    assert "Delta_T" in card.text and format_metric_value(evaluation["extra"]["delta_t"]) in card.text


def test_demo_pushes_and_reloads_by_repo_id(tmp_path):
    """`effhub demo adashare` (what `make demo` runs), shortened: card, local hub, reload in a new process."""
    import subprocess
    import sys

    sets = ["warmup_steps=3", "policy_epochs=9", "weight_steps_per_epoch=2", "policy_steps_per_epoch=2",
            "retrain_steps=3", "model.base_width=4"]
    command = [sys.executable, "-m", "effhub", "demo", "adashare", "--output-dir", str(tmp_path)]
    for value in sets:
        command += ["--set", value]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "hard sharing (warm-up)" in result.stdout and "MACs executed" in result.stdout
    assert "reloaded AdaShareModel from effhub/adashare-demo" in result.stdout
    assert "OK: the reloaded model's outputs match" in result.stdout


def test_missing_dataset_folder_writes_nothing(tmp_path, capsys):
    from effhub.cli import main

    output = tmp_path / "run"
    argv = ["train", "adashare", "--recipe", "nyuv2-2task", "--data-dir", str(tmp_path / "no-such-nyu"),
            "--output-dir", str(output), "--no-progress"]
    assert main(argv) != 0
    message = capsys.readouterr().err
    assert "does not exist" in message and "Fix:" in message
    assert not output.exists()


@pytest.mark.multiprocess
def test_two_process_run_of_the_demo_recipe(tmp_path, monkeypatch):
    """`accelerate launch --multi_gpu --num_processes 2` of the demo recipe, shortened: it works and the model loads."""
    from tests.launch import accelerate_launch

    monkeypatch.setenv("EFFHUB_CACHE", str(tmp_path / "cache"))
    scenes = ("dataset_options.config={height: 32, width: 32, num_classes: 7, min_objects: 2, max_objects: 3, "
              "field_of_view: 60.0, max_depth: 20.0, noise_std: 0.02, num_train: 32, num_test: 8, seed: 0}")
    sets = [scenes, "warmup_steps=2", "policy_epochs=9", "weight_steps_per_epoch=1", "policy_steps_per_epoch=1",
            "retrain_steps=2", "retrain_samples=1", "batch_size=2", "eval_batch_size=4", "model.base_width=4",
            "single_task_references=false"]
    arguments = ["-m", "effhub.train", "adashare", "--recipe", "demo", "--output-dir", str(tmp_path / "run"),
                 "--no-progress"]
    for value in sets:
        arguments += ["--set", value]
    result = accelerate_launch(*arguments)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    run = tmp_path / "run"
    assert json.loads((run / "run_info.json").read_text())["world_size"] == 2
    model = AdaShareModel.from_pretrained(run)
    assert model.config.policy is not None and (run / "README.md").is_file()
