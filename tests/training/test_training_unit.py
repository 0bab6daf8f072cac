"""Single-process checks of the phased trainer: errors, logs, metadata, frozen groups, sampling, evaluation."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _training_fixtures import INITIAL_STATE, build_datasets, build_model, build_phases, state_dict_of
from effhub.errors import CheckpointError, ConfigError
from effhub.training import (
    Phase,
    PhasedTrainer,
    ShardedEpochBatchSampler,
    TrainingArguments,
    Update,
    checkpoint_dirs,
    end_ranks_cleanly,
    read_metrics_log,
)


def make_args(tmp_path, **overrides):
    return TrainingArguments(output_dir=tmp_path, progress=False, cpu=True, **overrides)


def make_trainer(tmp_path, phases=None, datasets=None, **overrides):
    return PhasedTrainer(build_model(seed=0), phases or build_phases(), datasets or build_datasets(),
                         make_args(tmp_path, **overrides), initial_state=dict(INITIAL_STATE))


def weights_only_update(**changes):
    fields = dict(name="weights", dataset="train1",
                  loss=lambda m, b, ctx: torch.nn.functional.mse_loss(m(b["x"]), b["y"]),
                  parameters=lambda m: m.weight_parameters(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    fields.update(changes)
    return Update(**fields)


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_dataset_key_is_named(tmp_path):
    phases = [Phase("only", 2, [weights_only_update(dataset="trian1")], batch_size=4)]
    with pytest.raises(ConfigError, match="trian1.*not among the datasets.*train1"):
        make_trainer(tmp_path, phases=phases)


@pytest.mark.parametrize("phase, message", [
    (Phase("empty", 2, [], batch_size=4), "has no updates"),
    (Phase("zero", 0, [weights_only_update()], batch_size=4), "steps=0"),
    (Phase("negative", -1, [weights_only_update()], batch_size=4), "steps=-1"),
    (Phase("batch", 2, [weights_only_update()], batch_size=0), "batch_size=0"),
    (Phase("offset", 2, [weights_only_update(every=2, offset=2)], batch_size=4), "offset=2"),
])
def test_invalid_phase_is_refused(tmp_path, phase, message):
    with pytest.raises(ConfigError, match=message) as raised:
        make_trainer(tmp_path, phases=[phase])
    assert "Fix:" in str(raised.value)


def test_invalid_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="mixed_precision='fp8'"):
        TrainingArguments(tmp_path, mixed_precision="fp8")
    with pytest.raises(ConfigError, match="grad_accum=0"):
        TrainingArguments(tmp_path, grad_accum=0)
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        make_trainer(tmp_path, log_with=["tensorbored"])


def test_bad_parameter_selection_and_loss_are_named(tmp_path):
    stranger = torch.nn.Parameter(torch.zeros(3))
    phases = [Phase("p", 2, [weights_only_update(parameters=lambda m: [stranger])], batch_size=4)]
    with pytest.raises(ConfigError, match="not a parameter of the model"):
        make_trainer(tmp_path, phases=phases)
    phases = [Phase("p", 2, [weights_only_update(parameters=lambda m: [])], batch_size=4)]
    with pytest.raises(ConfigError, match="selected no parameters"):
        make_trainer(tmp_path / "b", phases=phases)
    detached = weights_only_update(loss=lambda m, b, ctx: m(b["x"]).detach().mean())
    trainer = make_trainer(tmp_path / "c", phases=[Phase("p", 2, [detached], batch_size=4)])
    with pytest.raises(ConfigError, match="does not depend on the parameters"):
        trainer.train()
    trainer.end()


def test_resume_without_checkpoint_is_an_error(tmp_path):
    trainer = make_trainer(tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        trainer.train()
    trainer.end()


def test_resume_from_a_run_with_other_phases_is_an_error(tmp_path):
    first = make_trainer(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2))
    first.train()
    first.end()
    second = make_trainer(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=4), resume=True)
    with pytest.raises(CheckpointError, match="different set of phases"):
        second.train()
    second.end()


# ------------------------------------------------------------------------------------------------ logs, metadata
def test_jsonl_log_and_run_info(tmp_path):
    trainer = make_trainer(tmp_path, method="tiny", seed=7, recipe={"lr": 0.05, "nested": {"a": 1}})
    trainer.train()
    trainer.end()
    records = read_metrics_log(tmp_path / "logs" / "metrics.jsonl")
    assert records[0]["event"] == "config" and records[0]["config"]["seed"] == 7
    assert any(record.get("world_size") == 1 for record in records)
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
    assert info["mixed_precision"] == "no" and info["start_time"]
    assert set(info["versions"]) >= {"torch", "transformers", "accelerate", "datasets", "peft", "huggingface_hub",
                                     "effhub"}
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"]
    assert "git_sha" in info
    assert info["git_sha"] is None or len(info["git_sha"]) == 40
    assert [phase["name"] for phase in info["phases"]] == ["warmup", "alternate"]


def test_tensorboard_tracker_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = make_trainer(tmp_path, log_with=["tensorboard"], phases=build_phases(warmup_steps=2, alternate_steps=2))
    trainer.train()
    trainer.end()
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_checkpoints_are_kept_within_the_limit(tmp_path):
    trainer = make_trainer(tmp_path, checkpoint_every=2, checkpoints_total_limit=2)
    trainer.train()
    trainer.end()
    assert [step for step, _ in checkpoint_dirs(tmp_path / "checkpoints")] == [8, 9]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


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
    trainer = PhasedTrainer(model, phases, build_datasets(), make_args(tmp_path), initial_state=dict(INITIAL_STATE))
    before_alternate = {}
    phases[1].on_phase_start = lambda m, ctx: before_alternate.update(state_dict_of(m))
    trainer.train()
    trainer.end()
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
    trainer = PhasedTrainer(model, [Phase("policy", 3, [policy], batch_size=4)], build_datasets(), make_args(tmp_path))
    trainer.train()
    trainer.end()
    after = state_dict_of(model)
    assert not torch.equal(after["gate"], before["gate"])
    assert all(torch.equal(after[key], before[key]) for key in before if key != "gate")


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    trainer = make_trainer(tmp_path, mixed_precision="bf16", phases=build_phases(warmup_steps=3, alternate_steps=2))
    trainer.train()
    trainer.end()
    losses = [r["warmup/weights/loss"] for r in read_metrics_log(tmp_path / "logs" / "metrics.jsonl")
              if r.get("phase") == "warmup"]
    assert len(losses) == 3 and all(loss == loss and loss < 1e4 for loss in losses)


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
    trainer = make_trainer(tmp_path, phases=[Phase("p", 3, [weights_only_update()], batch_size=4)],
                           datasets={"train1": table})
    trainer.train()
    trainer.end()


# ------------------------------------------------------------------------------------------------ eval, save, end
def test_evaluate_gathers_every_sample_once(tmp_path):
    trainer = make_trainer(tmp_path, phases=build_phases(warmup_steps=1, alternate_steps=1))
    trainer.train()
    dataset = build_datasets()["train1"]

    def step(model, batch):
        error = (model(batch["x"]) - batch["y"]).squeeze(-1) ** 2
        return {"id": batch["id"], "squared_error": error, "count": torch.ones_like(error)}

    gathered = trainer.evaluate(dataset, step, batch_size=5)
    assert gathered["id"].tolist() == list(range(32))
    summed = trainer.evaluate(dataset, step, batch_size=5, reduce="sum")
    assert summed["count"].item() == 32
    torch.testing.assert_close(summed["squared_error"], gathered["squared_error"].sum())
    assert trainer.unwrapped_model.training  # evaluation restored the mode
    trainer.end()


def test_save_pretrained_writes_weights_atomically(tmp_path):
    trainer = make_trainer(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2))
    model = trainer.train()
    target = tmp_path / "export"
    trainer.save_pretrained(target)
    trainer.end()
    saved = load_file(str(target / "model.safetensors"))
    for key, value in state_dict_of(model).items():
        assert torch.equal(saved[key], value)
    assert [p.name for p in target.iterdir()] == ["model.safetensors"]  # no temp folder left


def test_end_ranks_cleanly_releases_the_accelerator(tmp_path):
    trainer = make_trainer(tmp_path, phases=build_phases(warmup_steps=1, alternate_steps=1))
    trainer.train()
    accelerator = trainer.accelerator
    assert accelerator._models
    trainer.end()
    assert not accelerator._models and not accelerator._optimizers and trainer.model is None
    trainer.end()  # a second call does nothing
    end_ranks_cleanly(None)
    with pytest.raises(ConfigError, match="has been ended"):
        trainer.train()


def test_resuming_a_finished_run_returns_its_weights(tmp_path):
    first = make_trainer(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2))
    finished = state_dict_of(first.train())
    first.end()
    again = make_trainer(tmp_path, phases=build_phases(warmup_steps=2, alternate_steps=2), resume=True)
    resumed = state_dict_of(again.train())
    assert again.global_step == 4 and again.state == first.state
    again.end()
    assert all(torch.equal(resumed[key], finished[key]) for key in finished)


def test_from_cli_args_prefers_given_flags(tmp_path):
    import argparse

    from effhub.cli import add_training_arguments

    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    cli = parser.parse_args(["--output-dir", str(tmp_path), "--grad-accum", "4", "--mixed-precision", "bf16",
                             "--resume", "--no-progress"])
    args = TrainingArguments.from_cli_args(cli, seed=11, grad_accum=2, method="tiny", recipe={"a": 1})
    assert (args.output_dir, args.grad_accum, args.mixed_precision, args.seed) == (tmp_path, 4, "bf16", 11)
    assert args.resume and not args.progress and args.method == "tiny" and args.recipe == {"a": 1}
    with pytest.raises(ConfigError, match="no output folder"):
        TrainingArguments.from_cli_args(parser.parse_args([]))


def test_eval_mode_set_by_a_phase_hook_survives_steps_and_evaluation(tmp_path):
    modes = []
    phases = [Phase("p", 3, [weights_only_update(loss=lambda m, b, ctx: (modes.append(ctx.unwrapped_model.dropout
                                                                                      .training) or 0)
                                                  + torch.nn.functional.mse_loss(m(b["x"]), b["y"]))],
                    batch_size=4, on_phase_start=lambda model, ctx: model.dropout.eval())]
    trainer = make_trainer(tmp_path, phases=phases)
    model = trainer.train()
    trainer.evaluate(build_datasets()["train1"], lambda m, b: m(b["x"]), batch_size=8)
    trainer.end()
    assert modes == [False] * 3
    assert model.training and not model.dropout.training
