"""The run layer's own pieces: several stages in one run (skipped when finished, an interrupted one resumed), updates
drawing from two datasets, `phase_end_checkpoints`, stage outputs and names, `RunOptions` validation, and the
trainer-free `evaluate` / `export_features` / `load_features`."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import _stages_script as stages
import pytest
import torch
from _training_fixtures import (
    INITIAL_STATE,
    PAIRED_BATCH_SIZES,
    RegressionSet,
    build_datasets,
    build_model,
    build_paired_phases,
    build_phases,
    make_options,
    reset_accelerate_state,
    run_training_script,
    state_dict_of,
)
from safetensors.torch import load_file

from effhub.errors import CheckpointError, ConfigError, DatasetError, EffhubError
from effhub.training import (
    Run,
    RunOptions,
    ShardedEpochBatchSampler,
    checkpoint_dirs,
    evaluate,
    export_features,
    load_features,
    read_metrics_log,
    read_trainer_state,
)
from effhub.training.sampling import stream_seed



def logged_steps(run_dir: Path) -> list[int]:
    return [record["step"] for record in read_metrics_log(run_dir / "logs" / "metrics.jsonl") if "phase" in record]


def run_stages_script(run_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    return run_training_script("_stages_script.py", run_dir, *arguments)


# ------------------------------------------------------------------------------------------------ stages
def test_interrupted_second_stage_resumes_and_skips_the_first(tmp_path):
    """SIGKILL inside stage 2 (two data streams, mid-epoch on both), then `resume=True`: stage 1 is not trained again,
    stage 2 continues from its checkpoint, and the weights equal an uninterrupted run's."""
    torch.set_num_threads(1)  # same arithmetic as the subprocesses (OMP_NUM_THREADS=1)
    reference = stages.train(tmp_path / "reference", resume=False)
    reset_accelerate_state()
    joint_micro_steps = stages.JOINT_STEPS * stages.GRAD_ACCUM
    assert reference["calls"] == {"warmup": stages.WARMUP_STEPS * stages.GRAD_ACCUM, "joint": joint_micro_steps}
    total = stages.WARMUP_STEPS + stages.JOINT_STEPS
    assert reference["global_step"] == total

    kill_at = stages.WARMUP_STEPS + 3  # global step 6: three steps (six micro-steps) into the joint stage
    run_dir = tmp_path / "killed"
    killed = run_stages_script(run_dir, "kill", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    checkpoints = run_dir / "checkpoints"
    record = json.loads((checkpoints / "stages.json").read_text())["stages"]
    assert list(record) == ["warmup"]  # stage 1 finished, stage 2 did not
    assert record["warmup"]["global_step"] == stages.WARMUP_STEPS
    assert record["warmup"]["outputs"] == pytest.approx(reference["warmup_outputs"], abs=1e-6)
    assert (checkpoints / "warmup" / "model.safetensors").is_file()
    assert not (checkpoints / "joint" / "model.safetensors").exists()
    # the joint stage's checkpoints are named by the run's global step (limit 2: 4 and 6 are kept)
    assert [step for step, _ in checkpoint_dirs(checkpoints / "joint")] == [kill_at - 2, kill_at]
    saved = read_trainer_state(checkpoints / "joint" / f"checkpoint-{kill_at}")
    assert saved["phase_name"] == "joint" and saved["step_in_phase"] == 3 and saved["global_step"] == kill_at
    # both streams are mid-epoch: 6 batches of 3 of train1's 32 samples; 6 batches of 5 of train2's 16 (4 per epoch)
    assert saved["data_positions"] == {"train1": {"epoch": 0, "batches": 6}, "train2": {"epoch": 1, "batches": 2}}
    assert saved["state"]["temperature"] == pytest.approx(INITIAL_STATE["temperature"] * 0.5 ** 3)

    resumed = run_stages_script(run_dir, "resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    final = torch.load(run_dir / "final.pt")
    assert final["skipped"] == {"warmup": True, "joint": False}
    # stage 1 was not trained again; stage 2 ran only the micro-steps after its checkpoint
    assert final["calls"] == {"warmup": 0, "joint": (total - kill_at) * stages.GRAD_ACCUM}
    assert final["warmup_outputs"] == record["warmup"]["outputs"]  # read from the record
    for key, value in reference["warmup_weights"].items():  # loaded from the stage's weights file
        torch.testing.assert_close(final["warmup_weights"][key], value, atol=1e-6, rtol=0, msg=key)
    for key, value in reference["weights"].items():
        torch.testing.assert_close(final["weights"][key], value, atol=1e-6, rtol=0, msg=key)
    assert final["state"] == pytest.approx(reference["state"]) and final["global_step"] == total
    assert not torch.equal(reference["weights"]["gate"], reference["warmup_weights"]["gate"])  # stage 2 trained

    assert logged_steps(run_dir) == list(range(1, total + 1))  # nothing logged twice, nothing lost
    assert list(json.loads((checkpoints / "stages.json").read_text())["stages"]) == ["warmup", "joint"]
    info = json.loads((run_dir / "run_info.json").read_text())
    assert len(info["resumes"]) == 1
    assert info["resumes"][0]["checkpoints"] == {"joint": "checkpoint-6"}, info["resumes"]
    assert list(info["stages"]) == ["warmup", "joint"]


def test_finished_stages_are_skipped_on_resume_and_new_stages_count_on(tmp_path):
    calls = []

    def train_stages(resume: bool, with_extra: bool = False):
        run = Run(make_options(tmp_path, resume=resume), method="tiny", seed=0)
        with run:
            model = build_model(seed=0)
            first = run.train_stage("first", model, build_phases(warmup_steps=2, alternate_steps=2,
                                                                 record=lambda *a: calls.append("first")),
                                    build_datasets(), initial_state=dict(INITIAL_STATE),
                                    outputs=lambda m: {"gate": m.gate.tolist(), "name": "first"})
            second = run.train_stage("second", first.model, build_paired_phases(steps=2), build_datasets(),
                                     phase_end_checkpoints=False)
            extra = run.train_stage("extra", build_model(seed=1), build_phases(warmup_steps=1, alternate_steps=1),
                                    build_datasets(), initial_state=dict(INITIAL_STATE)) if with_extra else None
        reset_accelerate_state()
        return run, first, second, extra

    run, first, second, _ = train_stages(resume=False)
    assert not first.skipped and not second.skipped and run.global_step == 6
    assert len(calls) == 5  # loss calls: 2 warm-up steps, 2 weights and 1 policy update
    # outputs were computed from stage 1's final weights (the model trains on in stage 2)
    stage_one = load_file(str(tmp_path / "checkpoints" / "first" / "model.safetensors"))
    assert first.outputs == {"gate": stage_one["gate"].tolist(), "name": "first"}
    assert not torch.equal(stage_one["gate"], second.model.gate.detach())
    expected = state_dict_of(second.model)

    calls.clear()
    run, first_again, second_again, extra = train_stages(resume=True, with_extra=True)
    assert first_again.skipped and second_again.skipped and not extra.skipped and calls == []
    assert first_again.outputs == first.outputs and first_again.state == first.state
    assert all(torch.equal(state_dict_of(second_again.model)[key], value) for key, value in expected.items())
    assert run.global_step == 8  # the new stage's steps follow the finished ones
    assert logged_steps(tmp_path) == list(range(1, 9))
    assert [step for step, _ in checkpoint_dirs(tmp_path / "checkpoints" / "extra")] == [7, 8]

    # a record whose weights are gone, or do not fit the model, is refused
    os.remove(tmp_path / "checkpoints" / "second" / "model.safetensors")
    with Run(make_options(tmp_path, resume=True), method="tiny", seed=0) as run:
        with pytest.raises(CheckpointError, match="does not fit the model of stage 'first'"):
            run.train_stage("first", torch.nn.Linear(3, 3), build_phases(), build_datasets())
        with pytest.raises(CheckpointError, match="'second' is recorded as finished but .* is missing"):
            run.train_stage("second", build_model(seed=0), build_paired_phases(steps=2), build_datasets())


def test_an_update_draws_one_batch_of_each_dataset_per_micro_step(tmp_path):
    seen = []
    phases = build_paired_phases(steps=5, record=lambda batches: seen.append(
        {key: batch["id"].tolist() for key, batch in batches.items()}))
    with Run(make_options(tmp_path, grad_accum=2), method="tiny", seed=4) as run:
        run.train_stage("paired", build_model(seed=0), phases, build_datasets())
    assert len(seen) == 5 * 2  # one loss call per micro-step
    assert all(list(batches) == ["train1", "train2"] for batches in seen)
    assert all(len(batches[key]) == PAIRED_BATCH_SIZES[key] for batches in seen for key in batches)
    # each dataset is its own stream, seeded by (run seed, phase, key): the order does not depend on the other one
    sizes = {"train1": 32, "train2": 16}
    for key, size in sizes.items():
        sampler = ShardedEpochBatchSampler(size, PAIRED_BATCH_SIZES[key], seed=stream_seed(4, 0, key))
        expected = []
        for epoch in range(4):
            sampler.set_position(epoch)
            expected.extend(list(sampler))
        assert [batches[key] for batches in seen] == expected[:len(seen)], key
    # train2 ran through more than two epochs of 4 batches, each covering all its samples
    first_epoch = {i for batches in seen[:4] for i in batches["train2"]}
    assert first_epoch == set(range(16))
    records = [r for r in read_metrics_log(tmp_path / "logs" / "metrics.jsonl") if "phase" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and all("joint/joint/loss" in r for r in records)
    stages = json.loads((tmp_path / "run_info.json").read_text())["stages"]
    fingerprint = next(iter(stages.values()))[0]
    assert fingerprint["batch_size"] == PAIRED_BATCH_SIZES
    assert fingerprint["updates"][0]["dataset"] == ["train1", "train2"]


def test_phase_end_checkpoints_can_be_turned_off(tmp_path):
    """Stage "a" (off) keeps only `checkpoint_every` ones; "b" (default) adds its phase ends; "c" (off, no interval)
    has none, yet every stage keeps its final weights."""
    with Run(make_options(tmp_path, checkpoint_every=4, checkpoints_total_limit=10), method="tiny", seed=0) as run:
        run.train_stage("a", build_model(seed=0), build_phases(), build_datasets(), initial_state=dict(INITIAL_STATE),
                        phase_end_checkpoints=False)
        run.train_stage("b", build_model(seed=0), build_phases(), build_datasets(), initial_state=dict(INITIAL_STATE))
    reset_accelerate_state()
    with Run(make_options(tmp_path / "c"), method="tiny", seed=0) as run:
        run.train_stage("c", build_model(seed=0), build_phases(), build_datasets(), initial_state=dict(INITIAL_STATE),
                        phase_end_checkpoints=False)
    root = tmp_path / "checkpoints"
    assert [step for step, _ in checkpoint_dirs(root / "a")] == [4, 8]  # not 3 nor 9, the phase ends
    assert [step for step, _ in checkpoint_dirs(root / "b")] == [12, 16, 18]  # 12 = phase end + interval, 18 end
    assert not [p for p in (tmp_path / "c" / "checkpoints" / "c").iterdir() if p.name != "model.safetensors"]
    assert all((folder / "model.safetensors").is_file() for folder in (root / "a", root / "b",
                                                                        tmp_path / "c" / "checkpoints" / "c"))
    assert logged_steps(tmp_path) == list(range(1, 19))  # steps count on across stages


def test_stage_outputs_must_be_json(tmp_path):
    with Run(make_options(tmp_path), method="tiny", seed=0) as run:
        phases = build_phases(warmup_steps=1, alternate_steps=1)
        with pytest.raises(ConfigError, match="outputs of stage 'tensor'.*JSON") as raised:
            run.train_stage("tensor", build_model(seed=0), phases, build_datasets(),
                            initial_state=dict(INITIAL_STATE), outputs=lambda m: {"weight": m.out.weight})
        assert "Fix:" in str(raised.value)
        with pytest.raises(ConfigError, match="not a dict"):
            run.train_stage("list", build_model(seed=0), phases, build_datasets(), initial_state=dict(INITIAL_STATE),
                            outputs=lambda m: [1.0])
        result = run.train_stage("plain", build_model(seed=0), phases, build_datasets(),
                                 initial_state=dict(INITIAL_STATE), outputs=lambda m: {"val": 0.5, "tags": ["a"]})
    assert result.outputs == {"val": 0.5, "tags": ["a"]}
    record = json.loads((tmp_path / "checkpoints" / "stages.json").read_text())["stages"]
    assert list(record) == ["plain"] and record["plain"]["outputs"] == {"val": 0.5, "tags": ["a"]}


def test_stage_names_are_unique_and_folder_safe(tmp_path):
    calls = []
    phases = build_phases(warmup_steps=1, alternate_steps=1, record=lambda *a: calls.append(a))
    with Run(make_options(tmp_path), method="tiny", seed=0) as run:
        run.train_stage("same", build_model(seed=0), phases, build_datasets(), initial_state=dict(INITIAL_STATE))
        trained = len(calls)
        with pytest.raises(ConfigError, match="two stages of the run are named 'same'") as raised:
            run.train_stage("same", build_model(seed=0), phases, build_datasets(), initial_state=dict(INITIAL_STATE))
        assert "Fix:" in str(raised.value) and len(calls) == trained == 2  # refused before training
        with pytest.raises(EffhubError, match="cannot name a folder"):
            run.train_stage("../escape", build_model(seed=0), phases, build_datasets())
    assert not (tmp_path.parent / "escape").exists()


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("changes, message", [
    ({"mixed_precision": "fp8"}, "mixed_precision='fp8'"),
    ({"grad_accum": 0}, "grad_accum=0"),
    ({"grad_accum": 1.5}, "grad_accum=1.5"),
    ({"grad_accum": True}, "grad_accum=True"),
    ({"checkpoint_every": -1}, "checkpoint_every=-1"),
    ({"checkpoints_total_limit": 0}, "checkpoints_total_limit=0"),
    ({"dataloader_workers": -1}, "dataloader_workers=-1"),
    ({"seed": "3"}, "seed='3'"),
    ({"output_dir": ""}, "output_dir is empty"),
])
def test_run_options_validation(tmp_path, changes, message):
    values = {"output_dir": tmp_path, **changes}
    with pytest.raises(ConfigError, match=message) as raised:
        RunOptions(**values)
    assert "Fix:" in str(raised.value)
    if "output_dir" not in changes:  # `replace` validates again
        with pytest.raises(ConfigError, match=message):
            RunOptions(tmp_path).replace(**changes)


def test_run_options_normalise_their_values(tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    options = RunOptions(str(tmp_path), data_dir=str(tmp_path / "data"), log_with="tensorboard", mixed_precision=None)
    assert options.output_dir == tmp_path and options.data_dir == tmp_path / "data"
    assert options.log_with == ["tensorboard"] and options.mixed_precision == "no" and not options.cpu
    assert options.seed_or(9) == 9 and options.replace(seed=2).seed_or(9) == 2
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    assert RunOptions(tmp_path).cpu
    assert {"output_dir", "seed", "resume", "grad_accum", "checkpoint_every"} <= set(RunOptions.field_names())
    assert not {"method", "recipe"} & set(RunOptions.field_names())


# ------------------------------------------------------------------------------------------------ evaluation
def squared_error_step(model, batch):
    error = (model(batch["x"]) - batch["y"]).squeeze(-1) ** 2
    bins = torch.nn.functional.one_hot(batch["id"] % 3, 3)
    return {"id": batch["id"], "squared_error": error, "bins": bins}


def test_evaluate_sums_per_sample_statistics_or_concatenates(tmp_path):
    model = build_model(seed=0, dropout=0.5)  # dropout would change the numbers unless evaluation is in eval mode
    dataset = build_datasets()["train1"]
    with torch.no_grad():
        model.eval()
        errors = ((model(dataset.x) - dataset.y).squeeze(-1) ** 2)
        model.train()
    summed = evaluate(model, dataset, squared_error_step, batch_size=5)  # reduce="sum" is the default
    torch.testing.assert_close(summed["squared_error"], errors.sum(), atol=1e-5, rtol=1e-6)
    assert summed["bins"].tolist() == [11, 11, 10] and summed["id"].item() == sum(range(32))
    gathered = evaluate(model, dataset, squared_error_step, batch_size=5, reduce=None)
    assert gathered["id"].tolist() == list(range(32))
    torch.testing.assert_close(gathered["squared_error"], errors, atol=1e-6, rtol=1e-6)
    assert gathered["bins"].shape == (32, 3)
    # a plain tensor instead of a dict, on the run's accelerator
    with Run(make_options(tmp_path), method="tiny", seed=0) as run:
        total = run.evaluate(model, dataset, lambda m, b: squared_error_step(m, b)["squared_error"], batch_size=7)
    torch.testing.assert_close(total, errors.sum(), atol=1e-5, rtol=1e-6)
    assert model.training and model.dropout.training  # every module's mode is restored
    with pytest.raises(ConfigError, match="reduce='mean'"):
        evaluate(model, dataset, squared_error_step, batch_size=5, reduce="mean")
    with pytest.raises(ConfigError, match="batch_size=0"):
        evaluate(model, dataset, squared_error_step, batch_size=0)


def test_export_features_writes_resumable_shards(tmp_path):
    model = build_model(seed=0)
    dataset = RegressionSet(32, seed=1, ids=list(range(30)))  # 30 samples: shards of 8, 8, 8 and 6
    calls = []

    def features(m, batch):
        calls.append(len(batch["id"]))
        return {"hidden": torch.relu(m.inp(batch["x"])), "prediction": m(batch["x"]).squeeze(-1)}

    folder = tmp_path / "features"
    assert export_features(model, dataset, features, folder, batch_size=4, shard_size=8, progress=False) == folder
    shards = sorted(p.name for p in folder.iterdir() if p.name.startswith("shard-"))
    assert shards == ["shard-00000", "shard-00001", "shard-00002", "shard-00003"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp folder left
    assert sum(calls) == 30 and len(calls) == 8  # batches of 4 never cross a shard: 2 + 2 + 2 + 2 (4 and 2)

    def check(loaded):
        assert len(loaded) == 30 and loaded["index"] == list(range(30))
        table = loaded.with_format("torch")[:]
        with torch.no_grad():
            torch.testing.assert_close(table["hidden"], torch.relu(model.inp(dataset.x[:30])), atol=1e-6, rtol=0)
            torch.testing.assert_close(table["prediction"], model(dataset.x[:30]).squeeze(-1), atol=1e-6, rtol=0)

    check(load_features(folder))

    # an interrupted export (one shard missing) recomputes only that shard
    shutil.rmtree(folder / "shard-00002")
    with pytest.raises(DatasetError, match="1 of 4 shards are missing"):
        load_features(folder)
    calls.clear()
    export_features(model, dataset, features, folder, batch_size=4, shard_size=8, progress=False)
    assert calls == [4, 4]
    check(load_features(folder))
    calls.clear()
    export_features(model, dataset, features, folder, batch_size=4, shard_size=8, progress=False)
    assert calls == []  # complete: nothing to do

    # a folder of another export is refused
    with pytest.raises(ConfigError, match="another export") as raised:
        export_features(model, dataset, features, folder, batch_size=4, shard_size=16, progress=False)
    assert "Fix:" in str(raised.value)
    with pytest.raises(ConfigError, match="another export"):
        export_features(model, build_datasets()["train1"], features, folder, batch_size=4, shard_size=8,
                        progress=False)
    assert calls == []
    with pytest.raises(DatasetError, match="holds no exported features"):
        load_features(tmp_path)
    with pytest.raises(ConfigError, match="no dict"):
        export_features(model, dataset, lambda m, b: m(b["x"]), tmp_path / "other", batch_size=4, shard_size=8,
                        progress=False)
