"""Two CPU processes under `accelerate launch`: sharding (of one and of two data streams per update),
synchronisation, unused parameters, two stages on one accelerator, clean exit."""

import json
from pathlib import Path

import pytest
import torch

from _ddp_script import PAIRED_BATCH, PAIRED_STEPS
from _training_fixtures import (
    BLOCK_IDS_BELOW,
    INITIAL_STATE,
    build_datasets,
    build_model,
    build_paired_phases,
    build_phases,
    make_options,
    reset_accelerate_state,
    state_dict_of,
)
from effhub.training import Run, read_metrics_log
from tests.launch import accelerate_launch

HERE = Path(__file__).resolve().parent
WORLD = 2
BATCH = 4
DATASET_SIZES = {"train1": 32, "train2": 16}

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    result = accelerate_launch(str(HERE / "_ddp_script.py"), str(folder), num_processes=WORLD, timeout=240)
    assert result.returncode == 0, f"launch failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    reports = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    weights = [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD)]
    return folder, reports, weights


def test_each_rank_runs_in_a_world_of_two(two_process_run):
    folder, reports, _ = two_process_run
    assert [report["rank"] for report in reports] == [0, 1]
    assert all(report["world_size"] == WORLD for report in reports)
    assert all("MULTI_CPU" in report["distributed_type"] for report in reports)
    assert [report["is_main_process"] for report in reports] == [True, False]
    assert all(report["global_step"] == 9 + PAIRED_STEPS for report in reports)
    records = read_metrics_log(folder / "run" / "logs" / "metrics.jsonl")  # written by the main process only
    assert [record["config"]["world_size"] for record in records if record.get("event") == "config"] == [WORLD]
    # the loss is logged for every update on every step, averaged over both ranks; steps count on across stages
    steps = [record for record in records if "phase" in record]
    assert [record["step"] for record in steps] == list(range(1, 10 + PAIRED_STEPS))
    assert all("joint/joint/loss" in record for record in steps[9:])
    stages = json.loads((folder / "run" / "checkpoints" / "stages.json").read_text())["stages"]
    assert list(stages) == ["main", "paired"] and stages["paired"]["global_step"] == 9 + PAIRED_STEPS
    assert (folder / "run" / "checkpoints" / "paired" / "model.safetensors").is_file()
    info = json.loads((folder / "run" / "run_info.json").read_text())
    assert info["world_size"] == WORLD and info["grad_accum"] == 2
    assert all("alternate/policy/loss" in record for record in steps if record["phase"] == "alternate"
               and record["phase_step"] % 2 == 0)


def test_ranks_see_disjoint_shards_covering_the_dataset(two_process_run):
    _, reports, _ = two_process_run
    assert set(reports[0]["seen"]) == {"warmup/train1", "alternate/train1", "alternate/train2", "joint/train1",
                                       "joint/train2"}
    # the paired update drew one batch of each stream per micro-step: 3 steps x 2 micro-steps
    assert [len(reports[0]["seen"][f"joint/{key}"]) for key in PAIRED_BATCH] == [
        PAIRED_STEPS * 2 * size for size in PAIRED_BATCH.values()]
    for key in reports[0]["seen"]:
        dataset = key.split("/")[1]
        per_epoch = DATASET_SIZES[dataset] // WORLD
        sequences = [report["seen"][key] for report in reports]
        assert len(sequences[0]) == len(sequences[1]) >= per_epoch
        epochs = len(sequences[0]) // per_epoch
        for epoch in range(epochs):
            shards = [set(seq[epoch * per_epoch:(epoch + 1) * per_epoch]) for seq in sequences]
            assert all(len(shard) == per_epoch for shard in shards), (key, epoch)
            assert not shards[0] & shards[1], (key, epoch)
            assert shards[0] | shards[1] == set(range(DATASET_SIZES[dataset])), (key, epoch)
        # epochs are reshuffled
        if epochs >= 2:
            assert sequences[0][:per_epoch] != sequences[0][per_epoch:2 * per_epoch]


def test_some_weight_passes_left_the_block_unused_on_one_rank(two_process_run):
    _, reports, _ = two_process_run
    skipped = 0
    for key in ("warmup/train1", "alternate/train1"):
        for report in reports:
            ids = report["seen"][key]
            batches = [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]
            skipped += sum(all(sample >= BLOCK_IDS_BELOW for sample in batch) for batch in batches)
    assert skipped > 0  # so the run above did exercise DDP with locally unused parameters


def test_ranks_end_with_identical_weights(two_process_run):
    _, reports, weights = two_process_run
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert all(report["untrained_unchanged"] for report in reports)
    assert reports[0]["state"] == reports[1]["state"]
    assert reports[0]["state"]["temperature"] == pytest.approx(INITIAL_STATE["temperature"] * 0.8 ** 6)


def _one_process(tmp_path, scale, datasets):
    """The two stages of `_ddp_script.py` on one process, with batch sizes multiplied by `scale`."""
    with Run(make_options(tmp_path, grad_accum=2), method="tiny", seed=0) as run:
        first = run.train_stage("main", build_model(seed=0), build_phases(batch_size=BATCH * scale), datasets,
                                initial_state=dict(INITIAL_STATE))
        paired = build_paired_phases(batch_size={key: size * scale for key, size in PAIRED_BATCH.items()},
                                     steps=PAIRED_STEPS)
        weights = state_dict_of(run.train_stage("paired", first.model, paired, datasets).model)
    reset_accelerate_state()
    return weights


def test_two_processes_equal_one_process_with_the_global_batch(two_process_run, tmp_path):
    """Gradients were averaged over the ranks: the same global batches on one process give the same weights."""
    _, _, weights = two_process_run
    single = _one_process(tmp_path, WORLD, build_datasets())
    initial = state_dict_of(build_model(seed=0))
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], single[key], atol=1e-5, rtol=0, msg=key)
    assert any(not torch.equal(weights[0][key], initial[key]) for key in ("gate", "block.weight", "out.weight"))
    assert not torch.equal(weights[0]["gate"], initial["gate"])


def test_two_processes_differ_from_one_process_on_one_shard(two_process_run, tmp_path):
    _, _, weights = two_process_run
    shard = build_datasets(train1_ids=list(range(0, 32, 2)), train2_ids=list(range(0, 16, 2)))
    single = _one_process(tmp_path, 1, shard)
    difference = max((weights[0][key] - single[key]).abs().max().item() for key in weights[0])
    assert difference > 1e-3
