"""Single-process checks of the run layer and its stage engine: errors, logs, metadata, frozen groups, sampling,
evaluation, saving, closing, resuming a finished run, the CLI's options."""

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _training_fixtures import (
    INITIAL_STATE,
    build_datasets,
    build_model,
    build_phases,
    make_options,
    state_dict_of,
    train_one_stage,
)
from effhub.errors import CheckpointError, ConfigError
from effhub.training import (
    Phase,
    Run,
    RunOptions,
    ShardedEpochBatchSampler,
    Update,
    checkpoint_dirs,
    read_metrics_log,
)


def weights_only_update(**changes):
    fields = dict(name="weights", dataset="train1",
                  loss=lambda m, b, ctx: torch.nn.functional.mse_loss(m(b["x"]), b["y"]),
                  parameters=lambda m: m.weight_parameters(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    fields.update(changes)
    return Update(**fields)


class Interrupted(Exception):
    """Raised by a hook to stop a stage in the middle, as a kill would (without leaving the process)."""


def interrupt_at(global_step: int):
    def hook(ctx):
        if ctx.global_step == global_step:
            raise Interrupted
    return hook


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_dataset_key_is_named(tmp_path):
    phases = [Phase("only", 2, [weights_only_update(dataset="trian1")], batch_size=4)]
    with pytest.raises(ConfigError, match="trian1.*not among the datasets.*train1"):
        train_one_stage(tmp_path, phases=phases)


@pytest.mark.parametrize("phase, message", [
    (Phase("empty", 2, [], batch_size=4), "has no updates"),
    (Phase("zero", 0, [weights_only_update()], batch_size=4), "steps=0"),
    (Phase("negative", -1, [weights_only_update()], batch_size=4), "steps=-1"),
    (Phase("batch", 2, [weights_only_update()], batch_size=0), "batch_size=0"),
    (Phase("sizes", 2, [weights_only_update()], batch_size={"train2": 4}), "no batch size for dataset 'train1'"),
    (Phase("offset", 2, [weights_only_update(every=2, offset=2)], batch_size=4), "offset=2"),
])
def test_invalid_phase_is_refused(tmp_path, phase, message):
    with pytest.raises(ConfigError, match=message) as raised:
        train_one_stage(tmp_path, phases=[phase])
    assert "Fix:" in str(raised.value)


def test_invalid_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="mixed_precision='fp8'"):
        RunOptions(tmp_path, mixed_precision="fp8")
    with pytest.raises(ConfigError, match="grad_accum=0"):
        RunOptions(tmp_path, grad_accum=0)
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        train_one_stage(tmp_path, log_with=["tensorbored"])
    with pytest.raises(ConfigError, match="RunOptions"):
        Run({"output_dir": tmp_path}, method="tiny", seed=0)


def test_bad_parameter_selection_and_loss_are_named(tmp_path):
    stranger = torch.nn.Parameter(torch.zeros(3))
    phases = [Phase("p", 2, [weights_only_update(parameters=lambda m: [stranger])], batch_size=4)]
    with pytest.raises(ConfigError, match="not a parameter of the model"):
        train_one_stage(tmp_path, phases=phases)
    phases = [Phase("p", 2, [weights_only_update(parameters=lambda m: [])], batch_size=4)]
    with pytest.raises(ConfigError, match="selected no parameters"):
        train_one_stage(tmp_path / "b", phases=phases)
    detached = weights_only_update(loss=lambda m, b, ctx: m(b["x"]).detach().mean())
    with pytest.raises(ConfigError, match="does not depend on the parameters"):
        train_one_stage(tmp_path / "c", phases=[Phase("p", 2, [detached], batch_size=4)])


def test_resume_without_checkpoint_trains_from_the_start(tmp_path):
    """`resume=True` in a folder holding nothing of the run (e.g. killed before its first checkpoint) starts afresh."""
    result, run = train_one_stage(tmp_path, resume=True)
    assert not result.skipped and run.global_step == 9
    assert set(run.layout.read_stages()) == {"train"}
    steps = [record["step"] for record in read_metrics_log(tmp_path / "logs" / "metrics.jsonl") if "phase" in record]
    assert steps == list(range(1, 10))


def test_resume_from_a_run_with_other_phases_is_an_error(tmp_path):
    # the first attempt stops in its alternating phase, after the warm-up's phase-end checkpoint (step 2)
    with pytest.raises(Interrupted):
        train_one_stage(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2,
                                                      on_step_end_extra=interrupt_at(2)))
    assert [step for step, _ in checkpoint_dirs(tmp_path / "checkpoints" / "train")] == [2]
    assert Run(make_options(tmp_path, resume=True), method="tiny", seed=0).layout.read_stages() == {}
    with pytest.raises(CheckpointError, match="different set of phases"):
        train_one_stage(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=4), resume=True)
    with pytest.raises(CheckpointError, match="grad_accum=1") as raised:
        train_one_stage(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2), resume=True, grad_accum=2)
    assert "Fix:" in str(raised.value)


# ------------------------------------------------------------------------------------------------ logs, metadata
def test_jsonl_log_and_run_info(tmp_path):
    train_one_stage(tmp_path, method="tiny", seed=7, recipe={"lr": 0.05, "nested": {"a": 1}})
    records = read_metrics_log(tmp_path / "logs" / "metrics.jsonl")
    assert records[0]["event"] == "config" and records[0]["config"]["seed"] == 7
    assert records[0]["config"]["world_size"] == 1 and records[0]["config"]["method"] == "tiny"
    steps = [record for record in records if "phase" in record]
    assert [record["step"] for record in steps] == list(range(1, 10))
    for record in steps:
        assert isinstance(record[f"{record['phase']}/weights/loss"], float)
        assert record[f"{record['phase']}/weights/lr"] > 0
    alternate = [record for record in steps if record["phase"] == "alternate"]
    # the policy update runs on odd phase steps (phase_step is 1-based), and logs what its loss returned
    assert [("alternate/policy/loss" in r) for r in alternate] == [False, True] * 3
    assert alternate[1]["alternate/policy/temperature"] == pytest.approx(5.0 * 0.8)
    # the linear schedule of the weights update lowers its lr step by step
    lrs = [record["alternate/weights/lr"] for record in alternate]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]

    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["method"] == "tiny" and info["seed"] == 7 and info["world_size"] == 1
    assert info["recipe"] == {"lr": 0.05, "nested": {"a": 1}}
    assert info["mixed_precision"] == "no" and info["grad_accum"] == 1 and info["start_time"]
    assert set(info["versions"]) >= {"torch", "transformers", "accelerate", "datasets", "peft", "huggingface_hub",
                                     "effhub"}
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"]
    assert "git_sha" in info
    assert info["git_sha"] is None or len(info["git_sha"]) == 40
    assert [phase["name"] for phase in next(iter(info["stages"].values()))] == ["warmup", "alternate"]
    assert "resumes" not in info


def test_tensorboard_tracker_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    train_one_stage(tmp_path, log_with=["tensorboard"], phases=build_phases(warmup_steps=2, alternate_steps=2))
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_checkpoints_are_kept_within_the_limit(tmp_path):
    train_one_stage(tmp_path, checkpoint_every=2, checkpoints_total_limit=2)
    stage_dir = tmp_path / "checkpoints" / "train"
    assert [step for step, _ in checkpoint_dirs(stage_dir)] == [8, 9]
    assert not [p for p in stage_dir.iterdir() if p.name.startswith(".")]
    assert (stage_dir / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["stages.json", "train"]


# ------------------------------------------------------------------------------------------------ frozen groups
def test_frozen_and_alternating_groups(tmp_path):
    """An update changes only its parameters; the other update's parameters stay put even when its loss touches them."""
    snapshots = []
    phases = build_phases(warmup_steps=2, alternate_steps=4,
                          on_step_end_extra=lambda ctx: snapshots.append(state_dict_of(ctx.unwrapped_model)))
    # the weights update's loss also goes through the gate, which only the policy update may change
    phases[1].updates[0].loss = lambda m, b, ctx: torch.nn.functional.mse_loss(m(b["x"], use_gate=True), b["y"])
    model = build_model(seed=0)
    untrained = state_dict_of(model.untrained)
    before_alternate = {}
    phases[1].on_phase_start = lambda m, ctx: before_alternate.update(state_dict_of(m))
    result, _ = train_one_stage(tmp_path, phases=phases, model=model)
    assert result.model is model
    assert torch.equal(state_dict_of(model.untrained)["weight"], untrained["weight"])
    assert not model.untrained.weight.requires_grad
    # step 0: weights only -> gate unchanged; step 1: weights and policy -> gate changed
    assert torch.equal(snapshots[0]["gate"], before_alternate["gate"])
    assert not torch.equal(snapshots[0]["out.weight"], before_alternate["out.weight"])
    assert not torch.equal(snapshots[1]["gate"], snapshots[0]["gate"])
    assert torch.equal(snapshots[2]["gate"], snapshots[1]["gate"])


def test_policy_only_phase_leaves_weights_alone(tmp_path):
    policy = Update("policy", "train2", loss=lambda m, b, ctx: torch.nn.functional.mse_loss(m(b["x"], use_gate=True),
                                                                                           b["y"]),
                    parameters=lambda m: [m.gate], optimizer=lambda p: torch.optim.Adam(p, lr=0.1))
    model = build_model(seed=0)
    before = state_dict_of(model)
    train_one_stage(tmp_path, phases=[Phase("policy", 3, [policy], batch_size=4)], model=model)
    after = state_dict_of(model)
    assert not torch.equal(after["gate"], before["gate"])
    assert all(torch.equal(after[key], before[key]) for key in before if key != "gate")


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    train_one_stage(tmp_path, mixed_precision="bf16", phases=build_phases(warmup_steps=3, alternate_steps=2))
    losses = [r["warmup/weights/loss"] for r in read_metrics_log(tmp_path / "logs" / "metrics.jsonl")
              if r.get("phase") == "warmup"]
    assert len(losses) == 3 and all(loss == loss and loss < 1e4 for loss in losses)
    assert json.loads((tmp_path / "run_info.json").read_text())["mixed_precision"] == "bf16"


# ------------------------------------------------------------------------------------------------ data
def test_sharded_sampler_is_disjoint_padded_and_resumable():
    shards = [ShardedEpochBatchSampler(10, 2, num_shards=2, shard_index=rank, seed=5) for rank in range(2)]
    assert len(shards[0]) == 3  # ceil(10 / 4): the last global batch wraps around
    epoch = [[i for batch in shard for i in batch] for shard in shards]
    assert set(epoch[0]) | set(epoch[1]) == set(range(10))
    assert len(epoch[0]) == len(epoch[1]) == 6
    assert not set(epoch[0][:4]) & set(epoch[1][:4])
    batches = list(shards[0])
    shards[0].set_position(0, start_batch=1)
    assert list(shards[0]) == batches[1:]
    shards[0].set_position(1)
    assert list(shards[0]) != batches
    again = ShardedEpochBatchSampler(10, 2, num_shards=2, shard_index=0, seed=5)
    assert list(again) == batches


def test_trains_on_a_datasets_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    source = build_datasets()["train1"]
    table = datasets.Dataset.from_dict({"x": source.x.tolist(), "y": source.y.tolist(), "id": source.ids})
    table = table.with_format("torch")
    model = build_model(seed=0)
    before = state_dict_of(model)
    train_one_stage(tmp_path, phases=[Phase("p", 3, [weights_only_update()], batch_size=4)],
                    datasets={"train1": table}, model=model)
    assert not torch.equal(state_dict_of(model)["out.weight"], before["out.weight"])


# ------------------------------------------------------------------------------------------------ eval, save, close
def test_evaluate_gathers_every_sample_once(tmp_path):
    dataset = build_datasets()["train1"]

    def step(model, batch):
        error = (model(batch["x"]) - batch["y"]).squeeze(-1) ** 2
        return {"id": batch["id"], "squared_error": error, "count": torch.ones_like(error)}

    with Run(make_options(tmp_path), method="tiny", seed=0) as run:
        model = run.train_stage("train", build_model(seed=0), build_phases(warmup_steps=1, alternate_steps=1),
                                build_datasets(), initial_state=dict(INITIAL_STATE)).model
        gathered = run.evaluate(model, dataset, step, batch_size=5, reduce=None)
        summed = run.evaluate(model, dataset, step, batch_size=5)  # reduce="sum" is the default
    assert gathered["id"].tolist() == list(range(32))
    assert summed["count"].item() == 32
    torch.testing.assert_close(summed["squared_error"], gathered["squared_error"].sum())
    assert model.training  # evaluation restored the mode


def test_save_pretrained_writes_weights_atomically(tmp_path):
    target = tmp_path / "export"
    with Run(make_options(tmp_path / "run"), method="tiny", seed=0) as run:
        model = run.train_stage("train", build_model(seed=0), build_phases(warmup_steps=2, alternate_steps=2),
                                build_datasets(), initial_state=dict(INITIAL_STATE)).model
        assert run.save_pretrained(model, target) == target
    saved = load_file(str(target / "model.safetensors"))
    for key, value in state_dict_of(model).items():
        assert torch.equal(saved[key], value)
    assert [p.name for p in target.iterdir()] == ["model.safetensors"]  # no temp folder left
    # the stage's own final weights are the same tensors
    stage = load_file(str(tmp_path / "run" / "checkpoints" / "train" / "model.safetensors"))
    assert all(torch.equal(stage[key], saved[key]) for key in saved)


def test_a_stage_releases_the_accelerator_and_close_is_idempotent(tmp_path):
    prepared = []
    phases = build_phases(warmup_steps=1, alternate_steps=1,
                          on_step_end_extra=lambda ctx: prepared.append(
                              (len(ctx.accelerator._models), len(ctx.accelerator._optimizers))))
    run = Run(make_options(tmp_path), method="tiny", seed=0)
    run.train_stage("train", build_model(seed=0), phases, build_datasets(), initial_state=dict(INITIAL_STATE))
    accelerator = run.accelerator
    assert prepared == [(1, 3)]  # while training: the model and one optimiser per update of each phase
    assert not accelerator._models and not accelerator._optimizers  # released when the stage ended
    run.close()
    run.close()  # a second call does nothing
    assert run.accelerator is accelerator


def test_a_closed_run_refuses_to_train(tmp_path):
    run = Run(make_options(tmp_path), method="tiny", seed=0)
    run.close()
    with pytest.raises(ConfigError):
        run.train_stage("train", build_model(seed=0), build_phases(warmup_steps=1, alternate_steps=1),
                        build_datasets(), initial_state=dict(INITIAL_STATE))


def test_resuming_a_finished_run_returns_its_weights(tmp_path):
    first, _ = train_one_stage(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2))
    finished = state_dict_of(first.model)
    calls = []
    again, run = train_one_stage(tmp_path, resume=True,
                                 phases=build_phases(warmup_steps=2, alternate_steps=2,
                                                     record=lambda *args: calls.append(args)))
    assert again.skipped and not first.skipped and calls == []
    assert run.global_step == 4 and again.state == first.state
    assert again.state["temperature"] == pytest.approx(INITIAL_STATE["temperature"] * 0.8 ** 2)
    resumed = state_dict_of(again.model)
    assert all(torch.equal(resumed[key], finished[key]) for key in finished)
    assert not torch.equal(finished["out.weight"], state_dict_of(build_model(seed=0))["out.weight"])


def test_cli_flags_become_run_options(tmp_path):
    from effhub.cli import add_training_arguments, run_options

    parser = argparse.ArgumentParser()
    add_training_arguments(parser)

    def parse(flags):
        return parser.parse_args(flags, namespace=argparse.Namespace(method="tiny"))

    options = run_options(parse(["--output-dir", str(tmp_path), "--grad-accum", "4", "--mixed-precision", "bf16",
                                 "--resume", "--no-progress", "--checkpoint-every", "3", "--seed", "11"]))
    assert isinstance(options, RunOptions)
    assert (options.output_dir, options.grad_accum, options.mixed_precision, options.seed) == (tmp_path, 4, "bf16", 11)
    assert options.resume and not options.progress and options.checkpoint_every == 3
    assert options.seed_or(5) == 11
    defaults = run_options(parse(["--recipe", "small"]))
    assert defaults.output_dir == Path("runs") / "tiny-small"
    assert (defaults.seed, defaults.grad_accum, defaults.mixed_precision) == (None, 1, "no")
    assert defaults.seed_or(5) == 5 and defaults.progress and not defaults.resume
    with pytest.raises(ConfigError, match="grad_accum=0"):
        run_options(parse(["--grad-accum", "0"]))


def test_eval_mode_set_by_a_phase_hook_survives_steps_and_evaluation(tmp_path):
    modes = []
    phases = [Phase("p", 3, [weights_only_update(loss=lambda m, b, ctx: (modes.append(ctx.unwrapped_model.dropout
                                                                                      .training) or 0)
                                                  + torch.nn.functional.mse_loss(m(b["x"]), b["y"]))],
                    batch_size=4, on_phase_start=lambda model, ctx: model.dropout.eval())]
    with Run(make_options(tmp_path), method="tiny", seed=0) as run:
        model = run.train_stage("train", build_model(seed=0), phases, build_datasets()).model
        run.evaluate(model, build_datasets()["train1"], lambda m, b: m(b["x"]), batch_size=8)
    assert modes == [False] * 3
    assert model.training and not model.dropout.training
